#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: backup_info
short_description: List the backups of a repository and judge their health
version_added: 0.1.0
description:
  - Lists the complete backups of a repository (id, database, kind, finish time, age, size, verified state) and the
    newest usable backup of each database, and reports health problems, the checks behind the seed's
    C(check_backups.sh) and more.
  - Problem codes are V(no_backup), V(stale) (newest usable backup older than O(max_age_hours)), V(empty) (artifact
    missing or zero bytes), V(truncated) (size differs from the manifest), V(size_anomaly) (newest size more than
    O(size_anomaly_factor) times or less than 1/O(size_anomaly_factor) of the median of the previous 7 of the same kind,
    format and, for base backups, backup type (an incremental base backup is compared with earlier incremental ones,
    never with full ones)),
    V(verify_failed) (last verification failed), V(last_run_failed) (the runner's last backup event in O(log_file)
    is an error), V(damaged_manifest) and, with O(check_staging_databases=true), V(leftover_staging_database).
  - Read-only; artifacts are not hashed (use M(todoapi.pgbackup.backup_verify) for that). A URL O(repository) is
    listed through its storage (manifests, verification records and the stored sizes), nothing is downloaded.
extends_documentation_fragment:
  - todoapi.pgbackup.connection
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
options:
  check_staging_databases:
    description:
      - Also connect to the PostgreSQL server (O(host), O(port), O(user), O(password), O(sslmode)) and report, as
        problem V(leftover_staging_database) (severity V(warning)), each staging database (C(<database>__restore_<pid>))
        that a full restore left there when it died. The next full restore into that database drops them (see
        M(todoapi.pgbackup.pg_restore)); one without an owner record is only reported.
      - A staging database whose restore is still running is not reported.
      - Without it the module does not connect to PostgreSQL.
    type: bool
    default: false
  database:
    description: Only report this database; no backup of it is a V(no_backup) problem.
    type: str
  max_age_hours:
    description: The newest usable backup of a database must be younger than this.
    type: float
    default: 25
  size_anomaly_factor:
    description: How far the newest backup's size may be from the median of the previous ones of its kind, format and
      backup type (factor, both ways).
    type: float
    default: 3.0
  log_file:
    description: The on-host runner's JSON-lines log, to report a failed last backup run.
    type: path
notes:
  - Supports check mode; the module never changes anything.
requirements:
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories
seealso:
  - module: todoapi.pgbackup.backup_verify
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Check the backups of TodoDb
  todoapi.pgbackup.backup_info:
    repository: /var/backups/todoapi
    database: TodoDb
    log_file: /var/log/todoapi_backup.log
  register: backups

- name: Fail when something is wrong
  ansible.builtin.assert:
    that: backups.ok
    fail_msg: "{{ backups.health | map(attribute='message') | join(' ') }}"

- name: Check the off-site copies in S3 (credentials from the instance role)
  todoapi.pgbackup.backup_info:
    repository: s3://todoapi-backups/prod
    s3_region: eu-central-1
    database: TodoDb
    max_age_hours: 26
  register: offsite
'''

RETURN = r'''
ok:
  description: V(true) when no problem was found.
  returned: always
  type: bool
backups:
  description:
    - Complete backups, oldest first. Each has C(id), C(database) (a physical backup's is its cluster name), C(kind),
      C(format), C(finished_at), C(finished_timestamp), C(age_hours), C(size) (from the manifest), C(actual_size) (as
      stored), C(file_state) (V(ok), V(missing), V(empty) or V(truncated)), C(duration_seconds), C(artifact),
      C(verified) (V(verified), V(failed) or V(unverified)), C(verified_level), C(verified_at) and C(verify_error).
    - A physical (base) backup also has C(backup_type) (V(full), V(diff) or V(incr)), C(parent) (the id of the backup it
      was taken against, null for a full one) and C(chain) (the ids it is restored from, the full backup first and the
      backup itself last; one id for a full backup). Restoring it needs every backup of its chain. C(wal_tar) is what its
      WAL tar holds, as in the manifest's C(compression.wal_tar) (null for a backup without one or taken before the
      engine recorded it); sizes are compared (C(size_anomaly)) only between backups whose WAL tar the engine
      compressed, or only between backups whose WAL tar it did not compress.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "20240106T020000Z_logical_TodoDb", "database": "TodoDb", "kind": "logical", "age_hours": 3.5,
            "size": 10485760, "file_state": "ok", "verified": "verified"},
           {"id": "20240107T013000Z_physical_main", "database": "main", "kind": "physical", "format": "tar",
            "size": 1048576, "file_state": "ok", "verified": "unverified", "backup_type": "incr",
            "parent": "20240106T013000Z_physical_main",
            "chain": ["20240106T013000Z_physical_main", "20240107T013000Z_physical_main"]}]
latest:
  description: Newest usable backup (file intact, verification not failed) of each database, or null.
  returned: always
  type: dict
health:
  description: Problems found, each with C(code), C(severity), C(database), C(message) and sometimes C(backups).
  returned: always
  type: list
  elements: dict
  sample: [{"code": "stale", "severity": "critical", "database": "TodoDb", "message": "..."}]
metrics:
  description: Per database C(last_success_timestamp), C(size_bytes), C(duration_seconds), C(verified) (0/1),
    C(age_seconds), C(backups) and C(ok).
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import status
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    storage_argument_spec, connection_from, repository_from, require_psycopg2, run_or_fail)


def main():
    spec = storage_argument_spec(
        database=dict(type="str"),
        max_age_hours=dict(type="float", default=25),
        size_anomaly_factor=dict(type="float", default=3.0),
        log_file=dict(type="path"),
        check_staging_databases=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    connection = None
    if params["check_staging_databases"]:
        require_psycopg2(module)
        connection = connection_from(module)
    result = run_or_fail(module, status.backup_status, repository_from(module), database=params["database"],
                         max_age_hours=params["max_age_hours"], size_anomaly_factor=params["size_anomaly_factor"],
                         log_file=params["log_file"], connection=connection)
    module.exit_json(changed=False, ok=result["ok"], backups=result["backups"], latest=result["latest"],
                     health=result["health"], metrics=result["metrics"])


if __name__ == "__main__":
    main()
