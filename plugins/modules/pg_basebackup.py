#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pg_basebackup
short_description: Take a verified physical base backup of a PostgreSQL cluster into a repository
version_added: 0.1.0
description:
  - Runs C(pg_basebackup) into a temporary directory of the repository and publishes it (fsync, rename, manifest)
    only when it is complete and verified, so a failed run never leaves anything that looks like a valid backup.
  - The WAL needed to make the copy consistent is included (O(wal_method)), so every base backup can be restored
    on its own; together with the WAL archive of role C(todoapi.pgbackup.wal_archiving) it is the starting point of
    a point-in-time recovery (M(todoapi.pgbackup.pitr_recovery)).
  - PostgreSQL's own C(backup_manifest) is kept with the backup and checked with C(pg_verifybackup). PostgreSQL 15's
    C(pg_verifybackup) reads only plain directories, so for O(format=tar) the backup is extracted into a temporary
    directory of the repository for the check (disable with O(verify=false) to save that extra read and write).
  - The repository manifest records start and end WAL location, timeline, the WAL segments the backup needs, the
    backup label, the system identifier and the next transaction id at start and end.
extends_documentation_fragment:
  - todoapi.pgbackup.connection
  - todoapi.pgbackup.connection.repository
options:
  format:
    description:
      - V(tar) (default) stores C(base.tar) and C(pg_wal.tar), compressed as O(compression) says.
      - V(plain) stores a copy of the data directory, uncompressed on disk, which C(pg_verifybackup) checks in place.
    type: str
    choices: [tar, plain]
    default: tar
  compression:
    description:
      - C(pg_basebackup --compress) as C([client-|server-]method[:level]) with method V(zstd), V(gzip), V(lz4) or V(none).
        Without a location prefix compression is server side.
      - The default C(server-zstd) lets the server compress while it reads; measured to be as fast as no
        compression at less than half the size. Client-side compression is not possible with O(format=plain).
    type: str
    default: server-zstd
  wal_method:
    description:
      - How the WAL written during the backup gets into it (C(pg_basebackup -X)). Both make the backup
        self-contained; V(stream) uses a second replication connection and cannot lose WAL to recycling.
    type: str
    choices: [stream, fetch]
    default: stream
  max_rate:
    description: Maximum transfer rate (C(pg_basebackup --max-rate)), in kB/s or with a C(k) or C(M) suffix, e.g. C(50M).
    type: str
  checkpoint:
    description: V(fast) starts the backup at once with an immediate checkpoint; V(spread) waits for a spread checkpoint.
    type: str
    choices: [fast, spread]
    default: fast
  verify:
    description: Check the backup with C(pg_verifybackup) (and its WAL with C(pg_waldump)) before publishing it.
    type: bool
    default: true
  label:
    description: Backup label (C(pg_basebackup --label)); defaults to the backup id.
    type: str
  cluster_name:
    description:
      - Name used for the backup id and the manifest's C(database) field; defaults to the server's C(cluster_name)
        setting (C(15/main) on Debian).
    type: str
notes:
  - Supports check mode; it connects to the server to report what would be done, and writes nothing.
  - The connecting role needs the C(REPLICATION) attribute and C(pg_hba.conf) must allow it a replication connection.
  - Tablespaces other than the default ones are backed up, but M(todoapi.pgbackup.pitr_recovery) cannot restore them yet.
requirements:
  - psycopg2 on the managed host
  - PostgreSQL client programs (C(pg_basebackup), C(pg_verifybackup), C(pg_waldump)) of the server's major version or newer
  - zstd, gzip or lz4 for verifying compressed tar backups
seealso:
  - module: todoapi.pgbackup.pitr_recovery
  - module: todoapi.pgbackup.pg_dump
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Nightly base backup of the local cluster
  todoapi.pgbackup.pg_basebackup:
    repository: /var/backups/todoapi
    host: 127.0.0.1
    user: postgres
    password: "{{ vault_postgres_password }}"
  register: base

- name: Show where the backup starts in the WAL archive
  ansible.builtin.debug:
    msg: "{{ base.backup.id }} needs WAL from {{ base.backup.wal_start_segment }}"

- name: Throttled plain-format backup with gzip on the server (saves network only)
  todoapi.pgbackup.pg_basebackup:
    repository: /var/backups/todoapi
    format: plain
    compression: server-gzip:5
    max_rate: 50M
'''

RETURN = r'''
backup:
  description: The manifest of the new base backup, plus its O(repository) path. In check mode, the plan instead.
  returned: always
  type: dict
  contains:
    id:
      description: Backup id, unique in the repository (sorts by time).
      type: str
      sample: 20240106T020000Z_physical_15-main
    kind:
      description: Always C(physical).
      type: str
      sample: physical
    path:
      description: Full path of the artifact directory.
      type: str
      sample: /var/backups/todoapi/20240106T020000Z_physical_15-main.base
    sha256:
      description: SHA-256 over the checksums of the files in the artifact directory.
      type: str
    size:
      description: Total size of the artifact in bytes.
      type: int
    start_lsn:
      description: WAL location where the backup starts (replay starts at its checkpoint).
      type: str
      sample: 0/2000028
    end_lsn:
      description: WAL location where the backup becomes consistent; a recovery target must lie after it.
      type: str
      sample: 0/2000100
    timeline:
      description: Timeline of the backup.
      type: int
      sample: 1
    wal_start_segment:
      description: First WAL segment the backup needs.
      type: str
      sample: "000000010000000000000002"
    wal_end_segment:
      description: WAL segment holding RV(backup.end_lsn); all older segments can be pruned from the archive once this is the oldest kept backup.
      type: str
      sample: "000000010000000000000002"
    backup_label:
      description: Contents of the backup's C(backup_label) file.
      type: str
    system_identifier:
      description: Database system identifier of the backed-up cluster.
      type: str
    verified:
      description: Whether C(pg_verifybackup) checked the backup before it was published, and when.
      type: dict
    format:
      description: V(tar) or V(plain).
      type: str
    compression:
      description: Compression method, level and location (client or server).
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
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils import physical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.module_common import (
    argument_spec, connection_from, repository_from, require_psycopg2, run_or_fail)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            format=dict(type="str", default="tar", choices=list(physical_backup.FORMATS)),
            compression=dict(type="str", default="server-zstd"),
            wal_method=dict(type="str", default="stream", choices=list(physical_backup.WAL_METHODS)),
            max_rate=dict(type="str"),
            checkpoint=dict(type="str", default="fast", choices=["fast", "spread"]),
            verify=dict(type="bool", default=True),
            label=dict(type="str"),
            cluster_name=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    require_psycopg2(module)
    params = module.params
    repository = repository_from(module)
    request = run_or_fail(
        module, physical_backup.PhysicalBackupRequest, repository, connection_from(module), fmt=params["format"],
        compression=params["compression"], wal_method=params["wal_method"], max_rate=params["max_rate"],
        checkpoint=params["checkpoint"], verify=params["verify"], label=params["label"],
        pg_bin_dir=params["pg_bin_dir"], cluster_name=params["cluster_name"])
    if module.check_mode:
        module.exit_json(changed=True, backup=run_or_fail(module, physical_backup.plan, request))
    manifest = run_or_fail(module, physical_backup.backup, request)
    manifest["path"] = os.path.join(repository.path, manifest["artifact"])
    module.exit_json(changed=True, backup=manifest)


if __name__ == "__main__":
    main()
