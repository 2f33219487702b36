#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pg_dump
short_description: Take a verified logical backup of one PostgreSQL database into a repository
version_added: 0.1.0
description:
  - Runs C(pg_dump) in an exported snapshot and streams its output through compression (zstd by default) and
    optional C(age) encryption into a temporary file in the repository, hashing it on the way.
  - Every process of that pipeline is checked; the backup is published (renamed, manifest written, fsynced) only
    when all of them succeeded, so a failed or killed run never leaves anything that looks like a valid backup.
  - The manifest beside the artifact records the server and C(pg_dump) versions, format, compression, encryption
    recipients, size, sha256, start and end time and the exact row count of every dumped table, counted in the
    same snapshot as the dump.
  - Roles and tablespaces (C(pg_dumpall --globals-only)) are stored with the backup by default, so it can be
    restored onto a new server.
  - O(repository) may be a URL (C(s3://), C(azure://), C(sftp://)). The backup is then taken as above into a local
    directory (O(work_dir)), uploaded as a stream, read back from the storage and compared with the manifest's size
    and sha256, and only then is its manifest uploaded, so the URL never lists an incomplete backup. The local copy
    is removed afterwards unless O(keep_local_copy=true). To copy a backup taken into a local repository elsewhere
    as well, use M(todoapi.pgbackup.backup_copy).
extends_documentation_fragment:
  - todoapi.pgbackup.connection
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
  - todoapi.pgbackup.remote.upload
options:
  database:
    description: Name of the database to back up (case-sensitive).
    type: str
    required: true
  format:
    description:
      - C(pg_dump) archive format. V(custom) allows per-table and parallel restore; V(directory) allows
        parallel dump with O(jobs); V(plain) is an SQL script; V(tar) a tar archive.
    type: str
    choices: [custom, directory, plain, tar]
    default: custom
  jobs:
    description: Parallel dump jobs (C(pg_dump -j)); only with O(format=directory).
    type: int
    default: 1
  compression:
    description:
      - Compression as C(method) or C(method:level), with method V(zstd) (levels 1-19, multi-threaded),
        V(gzip) (1-9) or V(none).
      - The default C(zstd:1) was measured to dump in under a third of the time of the classic
        C(pg_dump -Fc -Z9) at about 6% more size (see docs/performance.md); C(zstd:6) is smaller than C(-Z9)
        and still more than twice as fast. V(zstd) alone means zstd's own default level 3.
      - The directory format compresses inside C(pg_dump), which supports zstd only from PostgreSQL 16 on.
    type: str
    default: zstd:1
  schemas:
    description: Dump only these schemas (exact names; C(pg_dump -n)).
    type: list
    elements: str
    default: []
  exclude_schemas:
    description: Do not dump these schemas (C(pg_dump -N)).
    type: list
    elements: str
    default: []
  tables:
    description:
      - Dump only these tables, as C(Table) (found through the search path) or C(schema.Table). Exact,
        case-sensitive names; wildcards are not expanded. An unknown name is an error.
    type: list
    elements: str
    default: []
  exclude_tables:
    description: Do not dump these tables (same naming as O(tables)).
    type: list
    elements: str
    default: []
  globals:
    description:
      - Also store roles and tablespaces (C(pg_dumpall --globals-only)) with the backup, needed to restore onto
        a new server. Role passwords are included only when O(user) is a superuser.
    type: bool
    default: true
  encrypt_recipients:
    description:
      - Encrypt the backup with C(age) to these public keys (C(age1...) or C(ssh-ed25519 ...)).
      - The host then cannot read its own backups back; only a holder of a matching private key can restore.
      - Not supported with O(format=directory).
    type: list
    elements: str
    default: []
notes:
  - Supports check mode; it connects to the server to report what would be dumped, checks that a URL repository
    answers with the given credentials, and writes nothing.
  - The password is handed to C(pg_dump) through a temporary 0600 passfile, never on the command line.
requirements:
  - psycopg2 on the managed host
  - PostgreSQL client programs (C(pg_dump), C(pg_dumpall)) of the server's major version or newer
  - zstd (for zstd compression) and age (for encryption)
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories
seealso:
  - module: todoapi.pgbackup.pg_restore
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Back up TodoDb into the default repository
  todoapi.pgbackup.pg_dump:
    database: TodoDb
    repository: /var/backups/todoapi
  become: true
  become_user: postgres

- name: Back up over TCP, encrypted for the restore host's age key
  todoapi.pgbackup.pg_dump:
    database: TodoDb
    repository: /var/backups/todoapi
    host: 127.0.0.1
    user: backup
    password: "{{ vault_backup_password }}"
    encrypt_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p

- name: Only the public schema, like the seed's "pg_dump -n public"
  todoapi.pgbackup.pg_dump:
    database: TodoDb
    repository: /var/backups/todoapi
    schemas: [public]
  register: dump

- name: Show the backup id and its row counts
  ansible.builtin.debug:
    msg: "{{ dump.backup.id }}: {{ dump.backup.tables }}"

- name: Back up straight to Azure Blob Storage (taken in /var/tmp, uploaded, proven, then removed locally)
  todoapi.pgbackup.pg_dump:
    database: TodoDb
    repository: azure://todoapi-backups/prod
    azure_account_name: todoapibackups
    azure_sas_token: "{{ vault_azure_sas }}"
    work_dir: /var/tmp
'''

RETURN = r'''
backup:
  description:
    - The manifest of the new backup, plus its O(repository) path. In check mode, the plan instead (for a URL
      repository with its C(repository) URL and the C(work_dir) the backup would be taken in).
  returned: always
  type: dict
  contains:
    id:
      description: Backup id, unique in the repository (sorts by time).
      type: str
      sample: 20240106T020000Z_logical_TodoDb
    path:
      description: Full path of the artifact, or its URL when O(repository) is a URL.
      type: str
      sample: /var/backups/todoapi/20240106T020000Z_logical_TodoDb.dump.zst
    local_path:
      description: Full path of the artifact kept in O(work_dir).
      type: str
      returned: when O(repository) is a URL and O(keep_local_copy=true)
      sample: /var/backups/todoapi/20240106T020000Z_logical_TodoDb.dump.zst
    sha256:
      description: SHA-256 of the artifact.
      type: str
    size:
      description: Size of the artifact in bytes.
      type: int
    tables:
      description: Exact row count of every dumped table at dump time, keyed C(schema.table).
      type: dict
      sample: {"public.Todos": 200000, "public.Users": 1000}
    format:
      description: Archive format.
      type: str
    compression:
      description: Compression method, level, and whether pg_dump or an external program applied it.
      type: dict
    encryption:
      description: C(age) recipients, or null when not encrypted.
      type: dict
    started_at:
      description: Start time (UTC, ISO 8601).
      type: str
    finished_at:
      description: End time (UTC, ISO 8601).
      type: str
    duration_seconds:
      description: Wall time of the backup.
      type: float
    server_version:
      description: PostgreSQL server version.
      type: str
    pg_dump_version:
      description: Version of the pg_dump that wrote the backup.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    UPLOAD_ARGS, BackupStaging, storage_argument_spec, connection_from, exit_with_backup, repository_from,
    require_psycopg2, run_or_fail)


def main():
    module = AnsibleModule(
        argument_spec=storage_argument_spec(
            database=dict(type="str", required=True),
            format=dict(type="str", default="custom", choices=list(logical_backup.FORMATS)),
            jobs=dict(type="int", default=1),
            compression=dict(type="str", default="zstd:1"),
            schemas=dict(type="list", elements="str", default=[]),
            exclude_schemas=dict(type="list", elements="str", default=[]),
            tables=dict(type="list", elements="str", default=[]),
            exclude_tables=dict(type="list", elements="str", default=[]),
            globals=dict(type="bool", default=True),
            encrypt_recipients=dict(type="list", elements="str", default=[]),
            **UPLOAD_ARGS
        ),
        supports_check_mode=True,
    )
    require_psycopg2(module)
    params = module.params
    repository = repository_from(module)
    staging = BackupStaging(module, repository)
    request = run_or_fail(
        module, logical_backup.LogicalBackupRequest,
        params["database"], staging.local, connection_from(module), fmt=params["format"], jobs=params["jobs"],
        compression=params["compression"], schemas=params["schemas"], exclude_schemas=params["exclude_schemas"],
        tables=params["tables"], exclude_tables=params["exclude_tables"], globals_=params["globals"],
        encrypt_recipients=params["encrypt_recipients"], pg_bin_dir=params["pg_bin_dir"])
    exit_with_backup(module, logical_backup, request, repository, staging)


if __name__ == "__main__":
    main()
