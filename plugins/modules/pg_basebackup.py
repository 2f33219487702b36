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
  - PostgreSQL's own C(backup_manifest) is kept with the backup and the backup is checked against it before it is
    published (O(verify)). PostgreSQL 15's C(pg_verifybackup) reads only plain directories, so a O(format=tar) backup
    is checked without extracting it - each tar is read once as a stream (C(zstd -dc) into Python) and checked as
    C(pg_verifybackup) checks a directory; the only extra disk is the WAL segments it needs, written to a
    temporary directory of the repository for C(pg_waldump). A O(format=plain) backup is checked in place by
    C(pg_verifybackup).
  - The repository manifest records start and end WAL location, timeline, the WAL segments the backup needs, the
    backup label, the system identifier and the next transaction id at start and end.
  - With PostgreSQL 17 or newer and C(summarize_wal) on (role C(todoapi.pgbackup.wal_archiving) turns it on), a backup
    can be incremental (O(type)) - only the blocks changed since an earlier backup of the repository. It is restored
    with every backup it depends on, back to a full one (its chain), by M(todoapi.pgbackup.pitr_recovery).
  - O(repository) may be a URL (C(s3://), C(azure://), C(sftp://)). The backup is then taken and verified as above in
    a local directory (O(work_dir)), uploaded file by file as streams, read back from the storage and compared with
    the manifest's size and sha256, and only then is its manifest uploaded, so the URL never lists an incomplete
    backup. The local copy is removed afterwards unless O(keep_local_copy=true).
  - An incremental backup (O(type) V(diff), V(incr), V(auto)) for a URL builds on a backup stored there; only the
    parent's C(backup_manifest) is downloaded (into a private temporary directory below O(work_dir), checked against
    its own C(Manifest-Checksum), removed afterwards), which is all C(pg_basebackup --incremental) needs.
extends_documentation_fragment:
  - todoapi.pgbackup.connection
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
  - todoapi.pgbackup.remote.upload
options:
  format:
    description:
      - V(tar) (default) stores C(base.tar) and C(pg_wal.tar), both compressed as O(compression) says, for example
        C(base.tar.zst) and C(pg_wal.tar.zst). pg_basebackup compresses the WAL it streams only with client-side
        compression (PostgreSQL 15 only with gzip); otherwise the module compresses C(pg_wal.tar) on the host it runs
        on with the same method and level (gzip and lz4 at level 1 when none is given), checks that the compressed
        file decompresses to the original, and only then replaces it, before the backup is verified and its
        checksums are computed (C(wal_tar) in RV(backup.compression)).
      - V(plain) stores a copy of the data directory, uncompressed on disk, which C(pg_verifybackup) checks in place.
    type: str
    choices: [tar, plain]
    default: tar
  type:
    description:
      - V(full) copies the whole cluster.
      - V(diff) copies what changed since the newest full backup of the same cluster in O(repository); V(incr) what
        changed since its newest backup of any type (C(pg_basebackup --incremental)). Both need PostgreSQL 17 or newer
        with C(summarize_wal) on, and WAL summaries back to the start of that backup (they exist from when
        C(summarize_wal) was turned on, for C(wal_summary_keep_time), 10 days by default); otherwise the module fails
        saying why.
      - V(auto) takes an V(incr) backup when that is possible and a full one otherwise, and also a full one when the
        chain it would extend already holds 7 backups (a full one and 6 incremental ones; with daily backups, a
        weekly full backup), so that a restore never combines more and old chains can be removed; the result's
        RV(backup.type_note) says why it took a full one.
      - An incremental backup can only be restored together with its chain (RV(backup.chain)); the chain is verified,
        kept and removed as one (M(todoapi.pgbackup.backup_verify), M(todoapi.pgbackup.backup_retention)).
    type: str
    choices: [full, diff, incr, auto]
    default: full
    version_added: 0.2.0
  compression:
    description:
      - C(pg_basebackup --compress) as C([client-|server-]method[:level]) or
        C([client-|server-]method:level=N[,workers=N]) with method V(zstd), V(gzip), V(lz4) or V(none), for example
        V(server-zstd:level=5,workers=4). Without a location prefix compression is server side.
      - C(workers) (zstd only) is the number of threads that compress; V(auto), the default for zstd, means the CPU
        count of the host the module runs on (the database host when it runs there, as the roles and playbooks of
        this collection do; give a number when it runs elsewhere); V(0) compresses in one thread.
      - The default lets the server compress while it reads, in as many threads as the host has cores (measured
        2.9 s per GiB in one thread and 1.4 s with 2 workers, at a fifth of the size), at level 1, which costs the
        server about half the CPU of level 3 for 4 % more bytes (docs/performance.md).
      - If the server refuses workers (its libzstd cannot compress in threads), a backup with V(workers=auto) is
        taken again in one thread (the result's RV(backup.compression) then holds C(workers_refused)); a backup with
        a number of workers fails with an error that says so.
      - Client-side compression is not possible with O(format=plain).
      - If the server's build lacks the method (PostgreSQL built without zstd or lz4), the same method is used on the
        client (tar format), and if pg_basebackup's build lacks it too, V(server-gzip:1); the result's
        RV(backup.compression) then holds C(requested) and, in C(unsupported), what each build said.
    type: str
    default: server-zstd:level=1,workers=auto
  manifest_checksums:
    description:
      - Checksum of each file in PostgreSQL's C(backup_manifest) (C(pg_basebackup --manifest-checksums)).
      - V(auto) (default) is V(CRC32C), PostgreSQL's own default and the cheapest for the server, when the Python
        module C(crc32c) (Debian C(python3-crc32c)) is installed on the host, so that verification can compute it;
        otherwise V(SHA256), which verification computes with Python's hashlib.
      - The repository manifest's SHA-256 of every file of the backup is recorded whatever this says.
      - With V(CRC32C) and no C(crc32c) module, a O(format=tar) backup is verified by extracting it into a
        temporary directory of the repository and running C(pg_verifybackup) (room for the whole cluster needed).
    type: str
    choices: [auto, CRC32C, SHA224, SHA256, SHA384, SHA512]
    default: auto
    version_added: 0.2.0
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
    description:
      - Check the backup against its C(backup_manifest) before publishing it, as C(pg_verifybackup) does - the
        manifest's own checksum, every file present with its size and checksum, no unexpected file - and parse the
        WAL it needs with C(pg_waldump) (skipped when C(pg_waldump), Debian package C(postgresql-15), is missing).
      - A backup that does not verify is not published; the error names each damaged, missing or unexpected file.
      - With server-side compression or none, C(base.tar) is checked while C(pg_basebackup) writes it (checksums
        computed as the bytes arrive, compared once C(backup_manifest) is there) instead of read again afterwards;
        where that cannot be shown to cover the whole file, it is read again after the backup.
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
  - Supports check mode; it connects to the server to report what would be done, checks that a URL repository
    answers with the given credentials, and writes nothing (for an incremental backup to a URL it reads the parent's
    C(backup_manifest) into a temporary directory, removed before it returns).
  - The connecting role needs the C(REPLICATION) attribute and C(pg_hba.conf) must allow it a replication connection.
  - Tablespaces other than the default ones are backed up, but M(todoapi.pgbackup.pitr_recovery) cannot restore them yet.
requirements:
  - psycopg2 on the managed host
  - C(pg_basebackup) of the server's major version or newer, C(pg_verifybackup) and C(pg_waldump) of its major version
  - zstd, gzip or lz4 for verifying compressed tar backups
  - the Python module C(crc32c) (Debian C(python3-crc32c)) for CRC32C manifest checksums (without it, SHA256 is used)
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories
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

- name: Base backup with zstd level 5 in 4 threads and SHA-256 manifest checksums
  todoapi.pgbackup.pg_basebackup:
    repository: /var/backups/todoapi
    compression: server-zstd:level=5,workers=4
    manifest_checksums: SHA256

- name: Incremental backup on top of the newest backup (PostgreSQL 17+), a full one when that is not possible
  todoapi.pgbackup.pg_basebackup:
    repository: /var/backups/todoapi
    type: auto

- name: Throttled plain-format backup with gzip on the server (saves network only)
  todoapi.pgbackup.pg_basebackup:
    repository: /var/backups/todoapi
    format: plain
    compression: server-gzip:5
    max_rate: 50M

- name: Base backup straight to S3 (taken and verified in /var/tmp, uploaded, read back, then removed locally)
  todoapi.pgbackup.pg_basebackup:
    repository: s3://todoapi-backups/physical
    s3_region: eu-central-1
    aws_access_key: "{{ vault_aws_access_key }}"
    aws_secret_key: "{{ vault_aws_secret_key }}"
    work_dir: /var/tmp
    type: auto

- name: Base backup to an SFTP server, keeping the local copy in /var/backups/todoapi for fast restores
  todoapi.pgbackup.pg_basebackup:
    repository: sftp://backup@vault.example.com/srv/backups/todoapi
    sftp_key_file: /etc/todoapi-pgbackup/sftp_key
    sftp_known_hosts: /etc/todoapi-pgbackup/known_hosts
    work_dir: /var/backups/todoapi
    keep_local_copy: true
'''

RETURN = r'''
backup:
  description:
    - The manifest of the new base backup, plus its O(repository) path. In check mode, the plan instead (for a URL
      repository with its C(repository) URL and the C(work_dir) the backup would be taken in).
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
      description: Full path of the artifact directory, or its URL when O(repository) is a URL.
      type: str
      sample: /var/backups/todoapi/20240106T020000Z_physical_15-main.base
    local_path:
      description: Full path of the artifact directory kept in O(work_dir).
      type: str
      returned: when O(repository) is a URL and O(keep_local_copy=true)
      version_added: 0.2.0
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
      description:
        - Whether the backup was checked against its C(backup_manifest) before it was published (C(backup_manifest)),
          how (C(method) V(stream), V(pg_verifybackup) for plain format, or V(extract+pg_verifybackup) without the
          C(crc32c) module), when (C(at)), the checksum algorithms, the number of files and bytes checked, the tars
          read (C(tars)) and which of them were checked while C(pg_basebackup) wrote them (C(read_while_writing)),
          the WAL segments and whether C(pg_waldump) parsed them (C(wal_parsed)).
      type: dict
      sample: {"backup_manifest": true, "method": "stream", "checksum_algorithms": ["CRC32C"], "files": 1295,
               "bytes": 1070841856, "tars": ["base.tar.zst", "pg_wal.tar"], "read_while_writing": ["base.tar.zst"],
               "wal_segments": ["000000010000000000000023"], "wal_parsed": true,
               "at": "2024-01-06T02:00:09.123456Z"}
    format:
      description: V(tar) or V(plain).
      type: str
    compression:
      description:
        - Compression method, level, location (client or server) and workers (the number of threads, C(auto)
          resolved); C(workers_refused) when the server refused them and the backup was taken in one thread.
        - C(requested) and C(unsupported) (the error of each build that lacked a method) when the compression asked
          for was not available and another one was used.
        - C(wal_tar) (O(format=tar) with O(wal_method=stream)) says what the stored WAL tar holds - C(file), the name
          (e.g. C(pg_wal.tar.zst)), and C(applied), who compressed it - C(engine) (the module, after pg_basebackup,
          then also C(method), C(level), C(bytes_before) and C(bytes), its size before and after, and C(seconds)),
          C(applied_by_pg_basebackup) (client-side compression) or C(none); null when the backup has no WAL tar.
      type: dict
      sample: {"method": "zstd", "location": "server", "level": 3, "workers": 2, "applied": "applied_by_pg_basebackup",
               "wal_tar": {"file": "pg_wal.tar.zst", "applied": "engine", "method": "zstd", "level": 3,
                           "bytes_before": 16779264, "bytes": 41862, "seconds": 0.061}}
    backup_type:
      description: V(full), V(diff) or V(incr) - what was taken (O(type=auto) becomes V(incr) or V(full)).
      type: str
      sample: incr
      version_added: 0.2.0
    parent:
      description: Id of the backup an incremental one was taken against; null for a full backup.
      type: str
      version_added: 0.2.0
    chain:
      description: The ids of the backups a restore needs, from the full backup up to this one.
      type: list
      elements: str
      sample: [20240106T020000Z_physical_main, 20240107T020000Z_physical_main]
      version_added: 0.2.0
    type_note:
      description: Why O(type=auto) took a full backup; null otherwise.
      type: str
      version_added: 0.2.0
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.remote_backups import RemoteParents
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.base import is_remote
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    UPLOAD_ARGS, BackupStaging, storage_argument_spec, connection_from, exit_with_backup, repository_from,
    require_psycopg2, run_or_fail)


def main():
    module = AnsibleModule(
        argument_spec=storage_argument_spec(
            format=dict(type="str", default="tar", choices=list(base_backup.FORMATS)),
            type=dict(type="str", default="full", choices=list(base_backup.BACKUP_TYPES)),
            compression=dict(type="str", default=base_backup.DEFAULT_COMPRESSION),
            manifest_checksums=dict(type="str", default="auto", choices=list(base_backup.MANIFEST_CHECKSUMS)),
            wal_method=dict(type="str", default="stream", choices=list(base_backup.WAL_METHODS)),
            max_rate=dict(type="str"),
            checkpoint=dict(type="str", default="fast", choices=["fast", "spread"]),
            verify=dict(type="bool", default=True),
            label=dict(type="str"),
            cluster_name=dict(type="str"),
            **UPLOAD_ARGS
        ),
        supports_check_mode=True,
    )
    require_psycopg2(module)
    params = module.params
    repository = repository_from(module)
    staging = BackupStaging(module, repository)
    # an incremental backup for a URL builds on a backup stored there: its backup_manifest is fetched
    parents = RemoteParents(repository, params["work_dir"]) if is_remote(repository) and params["type"] != "full" \
        else None
    try:
        request = run_or_fail(
            module, base_backup.PhysicalBackupRequest, staging.local, connection_from(module), fmt=params["format"],
            compression=params["compression"], wal_method=params["wal_method"], max_rate=params["max_rate"],
            checkpoint=params["checkpoint"], verify=params["verify"], label=params["label"],
            pg_bin_dir=params["pg_bin_dir"], cluster_name=params["cluster_name"],
            manifest_checksums=params["manifest_checksums"], backup_type=params["type"], parents=parents)
        exit_with_backup(module, base_backup, request, repository, staging)
    finally:
        if parents is not None:
            parents.close()


if __name__ == "__main__":
    main()
