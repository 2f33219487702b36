# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: runner_config
author: todoapi.pgbackup maintainers
version_added: 0.2.0
short_description: The todoapi-pgbackup runner's config from the backup role's variables, checked
description:
  - Maps the variables of the C(todoapi.pgbackup.backup) role to the keys of the runner's JSON config
    (C(pgbackup_format) to C(format), C(pgbackup_db_port) to C(connection.port) ...), fills in the runner's
    defaults and checks every value with the runner's own rules (C(plugins/module_utils/runner/config.py)),
    so that the role fails on a value the runner would refuse, with one message naming the variable.
  - Empty values mean "not set" - C('') for an optional path or connection setting, C(0) for
    C(pgbackup_max_age_hours), C({}) for C(pgbackup_retention).
  - The result never holds a password; only the path of the passfile (and of each remote repository's
    credentials file).
  - C(pgbackup_copy_to) and C(pgbackup_s3) are deprecated (a warning says so when C(pgbackup_copy_to) is not empty) -
    their targets become repositories that keep everything; list them in C(pgbackup_repositories) instead.
positional: _input
options:
  _input:
    description:
      - "The role's variables by name, for example C({'pgbackup_repository': pgbackup_repository, ...})."
      - The names are those of the role's variables that set a key of the config (C(pgbackup_repository),
        C(pgbackup_db_port), C(pgbackup_retention) ...; the mapping is C(ROLE_VARIABLES) in this plugin). One left
        out takes the runner's default; an unknown name is an error.
    type: dict
    required: true
  passfile:
    description: Path of the libpq passfile the runner hands to libpq (C(connection.passfile)); empty - none.
    type: path
    default: ""
'''

EXAMPLES = r'''
# What roles/backup/vars/main.yml does
- name: Write the runner's config
  ansible.builtin.copy:
    content: >-
      {{ {'pgbackup_name': 'main', 'pgbackup_repositories': [{'location': '/var/backups/todoapi'}],
          'pgbackup_databases': ['TodoDb']}
         | todoapi.pgbackup.runner_config(passfile='/etc/todoapi-pgbackup/pgpass') | ansible.builtin.to_nice_json }}
    dest: /etc/todoapi-pgbackup/config.json
    mode: "0640"
'''

RETURN = r'''
_value:
  description:
    - The runner's config with every key (C(name), C(repositories), C(owner), C(databases), C(connection),
      C(format) ...); see docs/configuration.md for the keys.
  type: dict
'''

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import config

# Role variable -> config key ("section.key" inside a section).
ROLE_VARIABLES = {
    "pgbackup_name": "name",
    "pgbackup_repositories": "repositories",
    "pgbackup_repository": "repository",
    "pgbackup_os_user": "owner",
    "pgbackup_databases": "databases",
    "pgbackup_db_host": "connection.host",
    "pgbackup_db_port": "connection.port",
    "pgbackup_db_user": "connection.user",
    "pgbackup_sslmode": "connection.sslmode",
    "pgbackup_format": "format",
    "pgbackup_compression": "compression",
    "pgbackup_jobs": "jobs",
    "pgbackup_globals": "globals",
    "pgbackup_schemas": "schemas",
    "pgbackup_exclude_schemas": "exclude_schemas",
    "pgbackup_exclude_tables": "exclude_tables",
    "pgbackup_encrypt_recipients": "encrypt_recipients",
    "pgbackup_identity_file": "identity_file",
    "pgbackup_pg_bin_dir": "pg_bin_dir",
    "pgbackup_cluster_name": "cluster_name",
    "pgbackup_log_file": "log_file",
    "pgbackup_lock_file": "lock_file",
    "pgbackup_lock_wait_seconds": "lock_wait_seconds",
    "pgbackup_retention": "retention",
    "pgbackup_verify_level": "verify_level",
    "pgbackup_max_age_hours": "max_age_hours",
    "pgbackup_size_anomaly_factor": "size_anomaly_factor",
    "pgbackup_state_dir": "state_dir",
    "pgbackup_copy_to": "copy_to",
    "pgbackup_s3": "s3",
}
VARIABLE_OF = dict((key, name) for name, key in ROLE_VARIABLES.items())
COPY_TO_DEPRECATED = ("pgbackup_copy_to (with pgbackup_s3) is deprecated: list the copies in pgbackup_repositories, each "
                      "with its own options, credentials_file and retention. Until then its targets are repositories "
                      "that keep everything.")


def raw_config(variables, passfile=None):
    """The role's variables as the runner's (unchecked) config keys."""
    if not isinstance(variables, dict):
        raise AnsibleFilterError("runner_config needs a dict of the backup role's variables, not %s." % type(variables).__name__)
    unknown = sorted(set(variables) - set(ROLE_VARIABLES))
    if unknown:
        raise AnsibleFilterError("runner_config does not know the variable(s) %s." % ", ".join(unknown))
    raw = {}
    for name, value in variables.items():
        section, _dot, key = ROLE_VARIABLES[name].rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[key] = value
    if passfile:
        raw.setdefault("connection", {})["passfile"] = passfile
    return raw


def variable_of(key):
    """The role variable of a config key: 'repositories[1].options' -> 'pgbackup_repositories[1].options'."""
    top, rest = key, ""
    for mark in ("[", "."):
        if mark in top:
            top, rest = top[:top.index(mark)], top[top.index(mark):] + rest
    if top == "connection" and rest:
        return VARIABLE_OF.get(key, "the runner config's '%s'" % key)
    return VARIABLE_OF[top] + rest if top in VARIABLE_OF else "the runner config's '%s'" % key


def runner_config(variables, passfile=None):
    try:
        built = config.check_config(raw_config(variables, passfile), source="the backup role's variables")
    except config.ConfigError as exc:
        if exc.key is None:
            raise AnsibleFilterError(str(exc))
        raise AnsibleFilterError("%s %s%s" % (variable_of(exc.key), exc.problem, (" " + exc.hint) if exc.hint else ""))
    if variables.get("pgbackup_copy_to"):
        Display().deprecated(COPY_TO_DEPRECATED, version="1.0.0", collection_name="todoapi.pgbackup")
    return built


class FilterModule(object):
    def filters(self):
        return {"runner_config": runner_config}
