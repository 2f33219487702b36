# -*- coding: utf-8 -*-
"""runner/config.py owns the defaults of the runner's config; everything that repeats one of them
must agree with it: the backup role's defaults and argument specs, the pg_dump module's defaults and
playbooks/backup_now.yml (for the settings each shares with the config). The role's variable table
in its README is the one scripts/role_vars_table.py generates from the argument specs."""

from __future__ import absolute_import, division, print_function

import os
import re
import subprocess
import sys

import jinja2
import pytest
import yaml

from ansible_collections.todoapi.pgbackup.plugins.filter.runner_config import ROLE_VARIABLES, runner_config
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import INSTALLED_DEFAULTS
from ansible_collections.todoapi.pgbackup.plugins.modules import pg_dump

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
ROLE = os.path.join(ROOT, "roles", "backup")
BACKUP_NOW = os.path.join(ROOT, "playbooks", "backup_now.yml")
# pg_dump option -> the backup role's variable for the same setting
PG_DUMP_OPTIONS = {"format": "pgbackup_format", "jobs": "pgbackup_jobs", "compression": "pgbackup_compression",
                   "globals": "pgbackup_globals", "schemas": "pgbackup_schemas", "exclude_schemas": "pgbackup_exclude_schemas",
                   "exclude_tables": "pgbackup_exclude_tables", "encrypt_recipients": "pgbackup_encrypt_recipients",
                   "owner": "pgbackup_os_user", "port": "pgbackup_db_port", "user": "pgbackup_db_user"}


def load_yaml(*parts):
    with open(os.path.join(*parts)) as handle:
        return yaml.safe_load(handle)


def role_defaults():
    """defaults/main.yml with the defaults built from others ("/run/lock/{{ pgbackup_job_name }}.lock") rendered."""
    defaults = load_yaml(ROLE, "defaults", "main.yml")
    render = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string

    def rendered(value):
        if isinstance(value, str) and "{{" in value:
            return render(value).render(defaults)
        return [rendered(item) for item in value] if isinstance(value, list) else value
    return dict((name, rendered(value)) for name, value in defaults.items())


def argument_spec_defaults():
    options = load_yaml(ROLE, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    return dict((name, spec.get("default")) for name, spec in options.items())


def pg_dump_argument_spec(monkeypatch):
    class Captured(Exception):
        pass

    captured = {}

    def ansible_module(argument_spec, **kwargs):
        captured.update(argument_spec)
        raise Captured()

    monkeypatch.setattr(pg_dump, "AnsibleModule", ansible_module)
    with pytest.raises(Captured):
        pg_dump.main()
    return captured


def as_config(variables):
    """{config key: value in the runner's normal form} for the settings these role variables give."""
    built = runner_config(variables)
    return dict((ROLE_VARIABLES[name], value_at(built, ROLE_VARIABLES[name])) for name in variables)


def value_at(config, key):
    section, _dot, inner = key.rpartition(".")
    return config[section].get(inner) if section else config[key]


def installed(variables):
    return dict((ROLE_VARIABLES[name], value_at(INSTALLED_DEFAULTS, ROLE_VARIABLES[name])) for name in variables)


def shared(values):
    return dict((name, value) for name, value in values.items() if name in ROLE_VARIABLES)


def test_role_defaults_are_the_installed_defaults():
    defaults = shared(role_defaults())
    assert set(defaults) == set(ROLE_VARIABLES), "every config setting has a role variable with a default"
    assert runner_config(defaults) == INSTALLED_DEFAULTS


def test_role_argument_specs_agree_with_the_role_defaults_and_the_config():
    documented, defaults = argument_spec_defaults(), role_defaults()
    assert documented == defaults, "meta/argument_specs.yml and defaults/main.yml differ"
    assert runner_config(shared(documented)) == INSTALLED_DEFAULTS


def test_pg_dump_module_defaults_agree_with_the_config(monkeypatch):
    spec = pg_dump_argument_spec(monkeypatch)
    variables = dict((PG_DUMP_OPTIONS[option], spec[option]["default"]) for option in PG_DUMP_OPTIONS)
    assert as_config(variables) == installed(variables)


def test_backup_now_defaults_agree_with_the_config():
    text = open(BACKUP_NOW).read()
    in_tasks = dict((name, yaml.safe_load(value)) for name, value in
                    re.findall(r"\b(pgbackup_\w+) \| default\(((?!omit)[^()]*)\)", text))
    in_header = dict((name, yaml.safe_load(value)) for name, value in
                     re.findall(r"^#   (pgbackup_\w+) .*\(default: (.*)\)$", text, re.M))
    assert shared(in_tasks) == dict((name, in_header[name]) for name in shared(in_tasks))
    assert set(shared(in_header)) >= {"pgbackup_databases", "pgbackup_repository", "pgbackup_format", "pgbackup_jobs"}
    assert as_config(shared(in_header)) == installed(shared(in_header))
    assert as_config(shared(in_tasks)) == installed(shared(in_tasks))


def test_backup_now_passes_what_it_leaves_out_to_pg_dump():
    """A setting backup_now.yml does not default itself is omitted, so pg_dump's default applies."""
    task = load_yaml(BACKUP_NOW)[0]["tasks"][0]["todoapi.pgbackup.pg_dump"]
    left_to_the_module = [option for option in PG_DUMP_OPTIONS if option in task]
    assert left_to_the_module and all("default(omit)" in task[option] for option in left_to_the_module)


def test_role_readme_variable_table_is_current():
    table = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "role_vars_table.py"), ROLE],
                           capture_output=True, text=True, check=True).stdout
    with open(os.path.join(ROLE, "README.md")) as handle:
        assert table in handle.read(), "run: .venv/bin/python scripts/role_vars_table.py roles/backup"
