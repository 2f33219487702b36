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
import jinja2.meta
import jinja2.nativetypes
import pytest
import yaml

from ansible_collections.todoapi.pgbackup.plugins.filter.runner_config import ROLE_VARIABLES, runner_config
from ansible_collections.todoapi.pgbackup.plugins.filter.setup_paths import setup_paths
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import names
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


def role_defaults(role=ROLE):
    """defaults/main.yml with the defaults built from others ("/run/lock/{{ pgbackup_job_name }}.lock") and from
    the setup's name (vars/main.yml's paths, through the setup_paths filter) rendered, as Ansible would: a value
    is rendered once every variable it uses is."""
    defaults = load_yaml(role, "defaults", "main.yml")
    environment = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
    environment.filters["todoapi.pgbackup.setup_paths"] = setup_paths
    environment.filters["dirname"] = os.path.dirname

    def templates(value):
        if isinstance(value, dict):
            return [text for item in value.values() for text in templates(item)]
        if isinstance(value, list):
            return [text for item in value for text in templates(item)]
        return [value] if isinstance(value, str) and "{{" in value else []

    def rendered(value, known):
        if isinstance(value, dict):
            return dict((key, rendered(item, known)) for key, item in value.items())
        if isinstance(value, list):
            return [rendered(item, known) for item in value]
        return environment.from_string(value).render(known) if value in templates(value) else value

    def uses(text):
        """The variables a template uses; None for one this test cannot render (Ansible's own filters)."""
        try:
            return jinja2.meta.find_undeclared_variables(environment.parse(text))
        except jinja2.TemplateError:
            return None

    pending = dict(load_yaml(role, "vars", "main.yml") or {}, **defaults)
    known = {}
    while True:  # a variable no file defines (another role's, a fact) stays undefined: default() applies
        ready = [name for name, value in pending.items()
                 if all(uses(text) is not None and not uses(text) & set(pending) for text in templates(value))]
        if not ready:
            break
        for name in ready:
            try:
                known[name] = rendered(pending.pop(name), known)
            except (jinja2.UndefinedError, jinja2.TemplateRuntimeError):  # needs a fact or an Ansible filter
                pass
    return dict((name, known[name]) for name in defaults if name in known)


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
    built["repository"] = built["repositories"][0]["location"]
    return dict((ROLE_VARIABLES[name], value_at(built, ROLE_VARIABLES[name])) for name in variables)


def value_at(config, key):
    section, _dot, inner = key.rpartition(".")
    return config[section].get(inner) if section else config[key]


def installed(variables):
    return dict((ROLE_VARIABLES[name], installed_value(ROLE_VARIABLES[name])) for name in variables)


def installed_value(key):
    if key == "repository":  # now the location of the first of the repositories
        return INSTALLED_DEFAULTS["repositories"][0]["location"]
    return value_at(INSTALLED_DEFAULTS, key)


def shared(values):
    return dict((name, value) for name, value in values.items() if name in ROLE_VARIABLES)


# The role builds pgbackup_repositories' default from it, so it never reaches the config itself.
ONLY_IN_THE_DEFAULT_REPOSITORIES = {"pgbackup_repository"}


def test_role_defaults_are_the_installed_defaults():
    defaults = shared(role_defaults())
    assert set(defaults) == set(ROLE_VARIABLES), "every config setting has a role variable with a default"
    passed = dict((name, value) for name, value in defaults.items() if name not in ONLY_IN_THE_DEFAULT_REPOSITORIES)
    assert runner_config(passed) == INSTALLED_DEFAULTS
    assert defaults["pgbackup_repositories"] == [{"location": defaults["pgbackup_repository"]}]


def test_the_roles_pass_every_config_setting_to_the_filter():
    passed = load_yaml(ROLE, "vars", "main.yml")["_pgbackup_config_variables"]
    assert set(passed) == set(ROLE_VARIABLES) - ONLY_IN_THE_DEFAULT_REPOSITORIES
    assert all(value == "{{ %s }}" % name for name, value in passed.items())


def test_both_roles_default_to_the_default_name_and_its_paths():
    monitoring = role_defaults(os.path.join(ROOT, "roles", "monitoring"))
    backup = role_defaults()
    assert backup["pgbackup_name"] == monitoring["pgbackup_name"] == names.DEFAULT_NAME
    paths = names.setup_paths(names.DEFAULT_NAME)
    assert (backup["pgbackup_config_dir"], backup["pgbackup_log_file"], backup["pgbackup_state_dir"]) == (
        paths["config_dir"], paths["log_file"], paths["state_dir"])
    assert (backup["pgbackup_job_name"], backup["pgbackup_lock_file"]) == (paths["job_name"], paths["lock_file"])
    assert (monitoring["monitoring_runner_config"], monitoring["monitoring_config_path"]) == (
        paths["config_file"], paths["monitoring_file"])
    assert (monitoring["monitoring_state_dir"], monitoring["monitoring_textfile_path"]) == (
        paths["state_dir"], paths["textfile"])


def test_role_argument_specs_agree_with_the_role_defaults_and_the_config():
    documented, defaults = argument_spec_defaults(), role_defaults()
    assert documented == defaults, "meta/argument_specs.yml and defaults/main.yml differ"
    passed = dict((name, value) for name, value in shared(documented).items() if name not in ONLY_IN_THE_DEFAULT_REPOSITORIES)
    assert runner_config(passed) == INSTALLED_DEFAULTS


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


def test_base_backups_are_named_after_the_setup_unless_told():
    defaults = dict((name, value) for name, value in shared(role_defaults()).items()
                    if name not in ONLY_IN_THE_DEFAULT_REPOSITORIES)
    assert defaults["pgbackup_cluster_name"] == "" and INSTALLED_DEFAULTS["cluster_name"] == names.DEFAULT_NAME
    assert runner_config(dict(defaults, pgbackup_name="pg18"))["cluster_name"] == "pg18"
    assert runner_config(dict(defaults, pgbackup_cluster_name="db01"))["cluster_name"] == "db01"
