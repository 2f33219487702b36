#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: backup_verify
short_description: Prove that a backup in the repository can be restored
version_added: 0.1.0
description:
  - Verifies one backup at a chosen level; the levels are cumulative.
  - V(checksum) compares the size and sha256 of every file of the backup with its manifest (catches bit flips,
    truncation, zero-byte files and an artifact that belongs to another manifest).
  - V(structure) also reads the decoded archive with C(pg_restore --list) and a full C(pg_restore) read without a
    database (custom, tar, directory formats), checks that a plain SQL script ends with pg_dump's completion marker,
    or checks a physical base backup against PostgreSQL's C(backup_manifest) as C(pg_verifybackup) does (the
    manifest's checksum, every file's presence, size and checksum, no unexpected file, the needed WAL parsed by
    C(pg_waldump)). A tar-format base backup is read as a stream and not extracted - only the WAL segments it needs
    are written to a temporary directory; a plain-format one is checked in place by C(pg_verifybackup).
  - V(restore) also restores the backup into a throwaway database named C(pgbackup_verify_<backup id>_<random>),
    compares every table's row count with the manifest, runs C(pg_amcheck --heapallindexed) on it and the optional
    O(smoke_queries), and always drops the throwaway database, also when a step fails.
  - Every run (passed, skipped or failed) is appended to the backup's C(<id>.verify.json) record, which
    M(todoapi.pgbackup.backup_info) reports as the backup's verified state.
  - With a URL O(repository) (C(s3://), C(azure://), C(sftp://)) the V(checksum) level reads every file as a stream
    from the storage. The V(structure) and V(restore) levels first download the backup into a private temporary
    directory below O(work_dir) (as a stream, under temporary names until every file matches the manifest's size and
    sha256, which is the checksum level), check that copy, and remove it afterwards. The record is written back into
    the URL repository. A storage that does not answer (network, credentials) fails the task without recording
    anything, as that says nothing about the backup.
  - An encrypted backup needs its C(age) private key (O(identity_file)) for the V(structure) and V(restore) levels.
    Without one on this host those levels are B(skipped) (RV(skipped_level) and RV(skipped_reason), and a warning), never
    failed. The checksum level still runs, the record counts the backup as verified at that level, and neither
    retention nor monitoring treats it as damaged. A key that is present but wrong fails the verification.
extends_documentation_fragment:
  - todoapi.pgbackup.connection
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
options:
  backup:
    description:
      - V(latest) (the newest backup of O(database), damaged or not, so that its damage shows) or a backup id.
    type: str
    default: latest
  database:
    description: Database whose newest backup V(latest) means. Required with O(backup=latest).
    type: str
  level:
    description: How far to go; each level includes the ones before it.
    type: str
    choices: [checksum, structure, restore]
    default: restore
  identity_file:
    description: C(age) identity (private key) file, for encrypted backups at the V(structure) and V(restore) levels.
    type: path
  smoke_queries:
    description:
      - SQL queries run on the restored copy (level V(restore)); each must succeed and return at least one row.
      - For example the seed's C(SELECT COUNT(*) FROM "Users").
    type: list
    elements: str
    default: []
  jobs:
    description:
      - Connections that restore the backup at the V(restore) level, as the O(todoapi.pgbackup.pg_restore#module:jobs)
        option of the restore module; V(0) is one per CPU of this host (at most 8).
    type: int
    default: 0
  no_owner:
    description: Restore without object ownership (C(pg_restore --no-owner)), for servers that lack the backup's roles.
    type: bool
    default: false
  maintenance_db:
    description: Database to connect to for creating and dropping the throwaway database.
    type: str
    default: postgres
  scratch_prefix:
    description: Name prefix of the throwaway database (letters, digits and underscores, at most 30 characters).
    type: str
    default: pgbackup_verify
  work_dir:
    description:
      - Local directory for the download of a backup from a URL O(repository) at the V(structure) and V(restore)
        levels (it needs room for the backup), and for the WAL segments a tar-format base backup check extracts.
        Defaults to the system temporary directory.
    type: path
    version_added: 0.2.0
notes:
  - Supports check mode; it only reports which backup would be verified and what would be done (for a URL it lists
    the repository, so wrong credentials fail the task, and downloads nothing).
  - A successful verification reports RV(ignore:changed=true) because it writes the verification record.
  - The V(restore) level needs room on the server for one more copy of the database for the duration of the check.
requirements:
  - psycopg2 on the managed host (V(restore) level)
  - PostgreSQL client programs (C(pg_restore), C(pg_amcheck)) of the server's major version or newer
  - for physical base backups C(pg_waldump) (Debian C(postgresql-15)), C(zstd) for compressed tars, and the Python
    module C(crc32c) (Debian C(python3-crc32c)) for CRC32C manifest checksums (without it such a backup is extracted
    into a temporary directory and checked with C(pg_verifybackup))
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories
seealso:
  - module: todoapi.pgbackup.backup_info
  - module: todoapi.pgbackup.pg_restore
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Prove that the newest TodoDb backup restores (the seed's verify_backup.sh, done properly)
  todoapi.pgbackup.backup_verify:
    repository: /var/backups/todoapi
    database: TodoDb
    smoke_queries:
      - SELECT COUNT(*) FROM "Users"
  register: verification

- name: Cheap daily integrity check of a given backup
  todoapi.pgbackup.backup_verify:
    repository: /var/backups/todoapi
    backup: 20240106T020000Z_logical_TodoDb
    level: checksum

- name: Prove that the newest off-site copy in Azure restores (downloaded to /var/tmp, then removed)
  todoapi.pgbackup.backup_verify:
    repository: azure://todoapi-backups/prod
    azure_credentials_file: /etc/todoapi-pgbackup/azure.credentials
    database: TodoDb
    work_dir: /var/tmp
'''

RETURN = r'''
verified:
  description: Whether the backup was verified (V(false) in check mode).
  returned: always
  type: bool
backup_id:
  description: Id of the verified backup.
  returned: always
  type: str
  sample: 20240106T020000Z_logical_TodoDb
level:
  description: Level that was (or would be) verified.
  returned: always
  type: str
duration_seconds:
  description: Wall time of the verification.
  returned: success
  type: float
summary:
  description: One line saying what was proven.
  returned: success
  type: str
  sample: 20240106T020000Z_logical_TodoDb restored, 4 tables, counts match, amcheck OK
details:
  description:
    - Result of each level (checksum, structure, restore). The restore entry holds the throwaway database's name,
      the row count of each table, the pg_amcheck result and the smoke query results.
    - In check mode, the steps that would run.
  returned: always
  type: dict
failed_level:
  description: Level at which a failed verification stopped.
  returned: failure
  type: str
skipped_level:
  description:
    - The first level that did not run because the backup is encrypted and this host has no private key for it (see
      O(identity_file)); V(null) when every level ran. The levels in RV(details) passed.
    - (Not named C(skipped), which Ansible reserves for a skipped task.)
  returned: success
  type: str
  sample: structure
skipped_reason:
  description: Why RV(skipped_level) did not run; V(null) when every level ran.
  returned: success
  type: str
  sample: "this backup is encrypted with age and no identity (private key) file was given; verify at level 'structure' where ..."
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import verify
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    storage_argument_spec, connection_from, repository_from, require_psycopg2, run_or_fail)


def select(repository, backup, database):
    if backup and backup != "latest":
        return repository.load(backup)
    if not database:
        raise PgBackupError("backup=latest needs 'database'.", hint="Set 'database', or give a backup id.")
    found = repository.list(database=database)
    if not found:
        raise PgBackupError("No backup of database '%s' in repository '%s'." % (database, repository.path),
                            hint="Take a backup first, or check the repository path and database name.")
    return found[-1]


def main():
    module = AnsibleModule(
        argument_spec=storage_argument_spec(
            backup=dict(type="str", default="latest"),
            database=dict(type="str"),
            level=dict(type="str", default="restore", choices=list(verify.LEVELS)),
            identity_file=dict(type="path"),
            smoke_queries=dict(type="list", elements="str", default=[]),
            jobs=dict(type="int", default=0),
            no_owner=dict(type="bool", default=False),
            maintenance_db=dict(type="str", default="postgres"),
            scratch_prefix=dict(type="str", default="pgbackup_verify"),
            work_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["level"] == "restore":
        require_psycopg2(module)
    repository = repository_from(module)
    manifest = run_or_fail(module, select, repository, params["backup"], params["database"])
    if module.check_mode:
        plan = verify.plan(repository, manifest, params["level"], scratch_prefix=params["scratch_prefix"],
                           smoke_queries=params["smoke_queries"])
        module.exit_json(changed=False, verified=False, backup_id=manifest["id"], level=params["level"], details=plan)
    try:
        result = verify.verify_backup(
            repository, manifest, params["level"],
            connection=connection_from(module) if params["level"] == "restore" else None,
            identity_file=params["identity_file"], smoke_queries=params["smoke_queries"],
            scratch_prefix=params["scratch_prefix"], pg_bin_dir=params["pg_bin_dir"],
            maintenance_db=params["maintenance_db"], jobs=params["jobs"], no_owner=params["no_owner"],
            work_dir=params["work_dir"])
    except PgBackupError as exc:
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint or "", verified=False, backup_id=manifest["id"],
                         level=params["level"], failed_level=exc.details.get("failed_level"),
                         details=exc.details.get("checks") or {})
    if result["skipped"]:
        module.warn(result["summary"])
    module.exit_json(changed=True, verified=True, backup_id=result["backup_id"], level=result["level"],
                     duration_seconds=result["duration_seconds"], summary=result["summary"], details=result["checks"],
                     skipped_level=(result["skipped"] or {}).get("level"),
                     skipped_reason=(result["skipped"] or {}).get("reason"))


if __name__ == "__main__":
    main()
