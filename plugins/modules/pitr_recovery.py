#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pitr_recovery
short_description: Recover a PostgreSQL cluster to a point in time from a base backup and the WAL archive
version_added: 0.1.0
description:
  - Picks the newest physical base backup (M(todoapi.pgbackup.pg_basebackup)) that ends before the target and
    verifies its checksum (for an incremental backup, the checksum of every backup of its chain, back to the full
    one), then checks that the WAL archive holds every segment from the backup on, without a hole, up to the
    target. A target before the oldest base backup, after the end of the archive, an unknown restore point
    name or a hole is reported as an error B(before anything is changed).
  - Only backups of the target server's major version are candidates (O(cluster_version), or the version of
    C(pg_ctl) in O(pg_bin_dir)); when the repository holds none, or O(backup) names one of another major version, the
    module fails naming both versions B(before anything is changed).
  - Moves an existing data directory aside to C(<data_dir>.pre-pitr-<UTC time>) (it is never deleted), extracts the
    backup - or, for an incremental backup, extracts every backup of its chain (in parallel, without the files
    C(pg_combinebackup) does not read) into a scratch directory beside the data directory and combines them into it
    with C(pg_combinebackup) (hard links with PostgreSQL 18, so the scratch space is at most the size of the chain;
    it is removed before the data directory is made durable) -, checks it (a full tar backup against its
    C(backup_manifest) while it is extracted, then with C(pg_verifybackup --skip-checksums); a chain with
    C(pg_verifybackup)), writes C(restore_command)
    (the C(todoapi-pgbackup-wal restore-wal) helper
    of role C(todoapi.pgbackup.wal_archiving)), the recovery target and C(recovery_target_action=promote) into
    C(postgresql.auto.conf), and creates C(recovery.signal), without which PostgreSQL ignores all recovery settings;
    then makes the data directory durable with one C(syncfs) of its file system (an fsync per file where there is none).
  - Starts the server, waits until it has reached the target and is promoted (C(pg_is_in_recovery()) false), and
    reports the new timeline and the last replayed transaction. Recovery that ends before the target is an error.
  - The target server is a Debian cluster (O(cluster_version) and O(cluster_name), started with C(pg_ctlcluster); its
    C(postgresql.conf) stays in C(/etc/postgresql)) or a plain data directory with a port (O(data_dir), O(port),
    started with C(pg_ctl); minimal C(postgresql.conf)/C(pg_hba.conf) are written when the backup has none).
  - O(repository) may be a URL (C(s3://), C(azure://), C(sftp://)). The backups are listed there, and the chosen
    backup (with every backup of its chain) is downloaded as a stream into a private temporary directory below
    O(work_dir), under temporary names until each file matches the manifest's size and sha256 (nothing
    half-downloaded is ever used), restored from there, and removed afterwards. In check mode its checksum is read
    as a stream instead, and nothing is downloaded (except with O(archive_after_recovery=true), whose check reads the
    backup's configuration files).
  - O(archive_dir) may be a URL too (the archive of role C(todoapi.pgbackup.wal_archiving) with
    C(wal_archiving_archive_url)), read with the same storage options. Before anything is checked, every timeline
    history file and every segment from the start of the oldest base backup that fits the target server on are
    downloaded into a private directory below O(work_dir) (owned by O(owner), mode 0700), each one decoded and
    compared with the sha256 stored with it before it is renamed into place. The checks and the recovery then read
    that directory as they read a directory archive, so the same checks are made (holes, target in the WAL), the
    server's C(restore_command) needs no credentials and no network, and the directory is removed when the module
    ends, whatever happened (also in check mode). It needs local room for that WAL (RV(recovery.wal_download)).
extends_documentation_fragment:
  - todoapi.pgbackup.remote
options:
  repository:
    description:
      - Backup repository holding the physical base backups, a local directory (or a mounted NFS path), or a URL
        C(s3://bucket/prefix), C(azure://container/prefix) or C(sftp://user@host[:port]/absolute/path), reached with
        the C(s3_*)/C(aws_*), C(azure_*) and C(sftp_*) options.
    type: str
    required: true
  archive_dir:
    description:
      - WAL archive written by C(todoapi-pgbackup-wal archive-wal) - a directory, or a URL (C(s3://), C(azure://),
        C(sftp://)) reached with the same C(s3_*)/C(aws_*), C(azure_*) and C(sftp_*) options as O(repository).
    type: str
    required: true
  work_dir:
    description:
      - Local directory below which a backup of a URL O(repository), the WAL of a URL O(archive_dir) and that of a URL in
        O(stream_dirs) are downloaded (private temporary directories, removed afterwards). Default is the system's
        temporary directory.
      - It needs room for the backup (its chain) and the WAL since the oldest base backup, and the O(owner) must be
        able to reach it (the recovering server reads the WAL there).
      - Not used when both are local directories.
    type: path
    version_added: 0.2.0
  stream_dirs:
    description:
      - Directories of C(pg_receivewal) searched after the archive; its C(.partial) segment holds the newest WAL
        when the primary is lost.
      - Each one a local directory, or a URL (typically C(sftp://) to the backup host that runs C(pg_receivewal))
        reached with the same C(sftp_*) (C(s3_*)/C(aws_*), C(azure_*)) options as O(repository). From a URL the
        segments from the oldest usable base backup's start on and the newest C(.partial) are downloaded into a
        private directory below O(work_dir) (owned by O(owner), mode 0700, removed afterwards), each under a
        temporary name until it has the listed size, which must be the WAL segment size (uncompressed stream).
    type: list
    elements: str
    default: []
  target:
    description:
      - V(latest) replays all archived WAL; V(immediate) stops as soon as the base backup is consistent.
      - Ignored when one of O(target_time), O(target_xid), O(target_lsn) or O(target_name) is given.
    type: str
    choices: [latest, immediate]
    default: latest
  target_time:
    description: Recover up to this time (ISO 8601; without a zone it is UTC), e.g. C(2024-01-06T14:30:00Z).
    type: str
  target_xid:
    description: Recover up to the commit of this transaction id.
    type: str
  target_lsn:
    description: Recover up to this WAL location, e.g. C(0/3000060).
    type: str
  target_name:
    description: Recover up to this restore point (created with C(pg_create_restore_point())).
    type: str
  target_inclusive:
    description: Whether the target transaction/time/LSN itself is included (C(recovery_target_inclusive)).
    type: bool
    default: true
  backup:
    description: Base backup id to start from; default V(auto) picks the newest usable one.
    type: str
    default: auto
  cluster_version:
    description: PostgreSQL major version of the Debian cluster to recover into.
    type: str
  cluster_name:
    description:
      - Debian cluster name to recover into (C(pg_lsclusters)); its data directory is replaced. Required unless
        O(data_dir) is given, with which it is mutually exclusive. There is no default, so that a forgotten name
        never recovers over C(main).
    type: str
  data_dir:
    description: Data directory of a non-Debian server to recover into; needs O(port).
    type: path
  port:
    description: Port of the recovered server when O(data_dir) is used.
    type: int
  owner:
    description: OS user PostgreSQL runs as; owns the recovered data directory (and the downloaded WAL).
    type: str
    default: postgres
  wal_command:
    description: Path of the installed WAL helper used in C(restore_command).
    type: path
    default: /usr/local/bin/todoapi-pgbackup-wal
  restore_command:
    description: Complete C(restore_command) to use instead of one built from O(wal_command).
    type: str
  identity_file:
    description: age identity (private key) file for an encrypted WAL archive.
    type: path
  stop_server:
    description: Stop a running target server (fast shutdown) instead of failing. Its data directory is moved aside.
    type: bool
    default: false
  archive_after_recovery:
    description:
      - V(false) (the default) writes C(archive_mode = off); the promoted server archives nothing, so a drill next to a
        live primary leaves the primary's archive alone.
      - V(true) keeps the archiving settings the recovered server comes with (the base backup's
        C(postgresql.auto.conf), where role C(todoapi.pgbackup.wal_archiving) puts them, over the target's
        C(postgresql.conf)). When its C(archive_command) (or C(archive_library)'s directory) would write into
        O(archive_dir) or one of O(stream_dirs) (compared as files, so symbolic links and bind mounts count), the
        module fails before anything changes, because a later recovery to V(latest) would follow the new timeline
        archived there. To make a recovered server the new primary, recover with V(false) and run role
        C(todoapi.pgbackup.wal_archiving) on it. This check plans the recovery once more (backup checksum, WAL check).
    type: bool
    default: false
  server_settings:
    description:
      - Settings of the target server itself (name and value, e.g. C(listen_addresses)), written into the recovered data
        directory's C(postgresql.auto.conf) (as C(ALTER SYSTEM) would write them) before the server first starts, over
        the base backup's values of the same settings; so the server listens where the new host's should from its
        first start and applying the same values with C(ALTER SYSTEM) afterwards changes nothing and needs no restart.
      - A name the recovery sets itself (C(port), C(archive_mode), C(synchronous_standby_names), C(restore_command) and
        the C(recovery_*) settings) or a value with a line break fails the module before anything is changed. A
        setting the server rejects stops it during recovery (the module fails with the server's log).
    type: dict
    default: {}
    version_added: 0.2.0
  timeout:
    description: Seconds to wait for the server to finish recovery and promote.
    type: int
    default: 3600
  pg_bin_dir:
    description:
      - Directory of the PostgreSQL programs of the backup's major version (default Debian's
        C(/usr/lib/postgresql/<major>/bin), then PGDG's C(/usr/pgsql-<major>/bin)).
    type: path
notes:
  - Supports check mode; it chooses the backup and checks the WAL archive and the target, and changes nothing.
  - Must run as root (or the PostgreSQL OS user) on the database host.
  - Tablespaces other than the default ones are not restored.
requirements:
  - PostgreSQL server programs of the backup's major version (C(pg_ctl), C(psql), C(pg_waldump), C(pg_verifybackup);
    C(pg_combinebackup) for an incremental backup)
  - zstd, gzip or lz4 for compressed backups; age for an encrypted archive
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories and archives
seealso:
  - module: todoapi.pgbackup.pg_basebackup
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Recover cluster 15/main to just before a bad deployment
  todoapi.pgbackup.pitr_recovery:
    repository: /var/backups/todoapi
    archive_dir: /var/lib/postgresql/wal-archive
    cluster_version: "15"
    cluster_name: main
    target_time: "2024-01-06T14:30:00Z"
    stop_server: true
  register: pitr

- name: Report where recovery stopped
  ansible.builtin.debug:
    msg: "timeline {{ pitr.recovery.timeline }}, last transaction {{ pitr.recovery.last_replay_timestamp }}"

- name: Rebuild a lost server with everything that was archived
  todoapi.pgbackup.pitr_recovery:
    repository: /var/backups/todoapi
    archive_dir: /var/lib/postgresql/wal-archive
    stream_dirs: [/var/lib/postgresql/wal-stream]
    cluster_version: "15"
    cluster_name: main
    target: latest
    server_settings:
      listen_addresses: "*"  # the new host's, from the first start (the old server's came with the backup)

- name: Rebuild a lost server from S3 alone (base backups and WAL archive there), to a restore point
  todoapi.pgbackup.pitr_recovery:
    repository: s3://todoapi-backups/physical
    archive_dir: s3://todoapi-backups/wal/15-main
    s3_region: eu-central-1
    aws_access_key: "{{ vault_aws_access_key }}"
    aws_secret_key: "{{ vault_aws_secret_key }}"
    work_dir: /var/tmp
    cluster_version: "15"
    cluster_name: main
    target_name: before-migration
    stop_server: true

- name: Rebuild a lost server with no committed transaction lost - the synchronous pg_receivewal stream on the backup host
  todoapi.pgbackup.pitr_recovery:
    repository: sftp://backup@backup1.example.com/var/backups/todoapi
    archive_dir: sftp://backup@backup1.example.com/var/backups/wal-db1
    stream_dirs: [sftp://backup@backup1.example.com/var/lib/pgbackup/wal-stream/db1]
    sftp_key_file: /etc/todoapi-pgbackup/sftp_key
    sftp_known_hosts: /etc/todoapi-pgbackup/known_hosts
    work_dir: /var/tmp
    cluster_version: "15"
    cluster_name: main
    stop_server: true

- name: Drill from an SFTP server into a scratch data directory
  todoapi.pgbackup.pitr_recovery:
    repository: sftp://backup@vault.example.com/srv/backups/todoapi
    archive_dir: sftp://backup@vault.example.com/srv/wal/15-main
    sftp_key_file: /etc/todoapi-pgbackup/sftp_key
    sftp_known_hosts: /etc/todoapi-pgbackup/known_hosts
    data_dir: /var/lib/postgresql/pitr-drill
    port: 5499
'''

RETURN = r'''
recovery:
  description: What was recovered; in check mode the plan (chosen backup, WAL check, target) instead.
  returned: always
  type: dict
  contains:
    backup_id:
      description: Base backup the recovery started from.
      type: str
      sample: 20240106T020000Z_physical_15-main
    chain:
      description: The backups restored, from the full one up to RV(recovery.backup_id) (one for a full backup).
      type: list
      elements: str
      version_added: 0.2.0
    restored_by:
      description: V(extract) (a full backup) or V(pg_combinebackup) (a chain).
      type: str
      version_added: 0.2.0
    timeline:
      description: Timeline of the promoted server.
      type: int
      sample: 2
    last_replay_timestamp:
      description: Commit time of the last transaction replayed (C(pg_last_xact_replay_timestamp())).
      type: str
      sample: "2024-01-06 14:29:58.123456+00"
    recovery_stop:
      description: PostgreSQL's own log line saying where recovery stopped, when it stopped at a target.
      type: str
      sample: recovery stopping before commit of transaction 7421, time 2024-01-06 14:30:01.5+00
    current_lsn:
      description: WAL position of the promoted server.
      type: str
    data_dir:
      description: Data directory of the recovered server.
      type: str
    previous_data_dir:
      description: Where the previous data directory was moved (null when there was none).
      type: str
    wal:
      description: The WAL range check (first/last segment, last contiguous segment, missing segments).
      type: dict
    target:
      description: The recovery target (kind, value, inclusive; the LSN of a named restore point).
      type: dict
    restore_command:
      description: The restore_command the server used.
      type: str
    wal_download:
      description:
        - For a URL O(archive_dir), what was downloaded before the checks - C(url), C(files) (history files and
          segments) and C(directory) (removed when the module ended); null for a directory archive.
      type: dict
      version_added: 0.2.0
    stream_downloads:
      description:
        - For each URL in O(stream_dirs), what was downloaded - C(url), C(files) (history files, segments and the
          C(.partial)), C(partial) (the name of the newest C(.partial), the WAL received last; null when there was
          none) and C(directory) (removed when the module ended). Empty when all O(stream_dirs) are directories.
      type: list
      elements: dict
      version_added: 0.2.0
'''


from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import pitr
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import pitr_safety
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.pitr_remote import StreamDownload, WalDownload
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.remote_backups import DownloadedBackups
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    STORAGE_ARGS, archive_from, expanded, repository_from, run_or_fail, storage_options)
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.base import is_remote


def argument_spec():
    spec = dict(STORAGE_ARGS)  # repository (a path or a URL), owner and the storage options
    spec.update(
        archive_dir=dict(type="str", required=True),
        work_dir=dict(type="path"),
        stream_dirs=dict(type="list", elements="str", default=[]),
        target=dict(type="str", default="latest", choices=["latest", "immediate"]),
        target_time=dict(type="str"),
        target_xid=dict(type="str"),
        target_lsn=dict(type="str"),
        target_name=dict(type="str"),
        target_inclusive=dict(type="bool", default=True),
        backup=dict(type="str", default="auto"),
        cluster_version=dict(type="str"),
        cluster_name=dict(type="str"),
        data_dir=dict(type="path"),
        port=dict(type="int"),
        wal_command=dict(type="path", default=pitr.DEFAULT_WAL_COMMAND),
        restore_command=dict(type="str"),
        identity_file=dict(type="path"),
        stop_server=dict(type="bool", default=False),
        archive_after_recovery=dict(type="bool", default=False),
        timeout=dict(type="int", default=3600),
        pg_bin_dir=dict(type="path"),
        server_settings=dict(type="dict", default={}),
    )
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[["target_time", "target_xid", "target_lsn", "target_name"], ["cluster_name", "data_dir"]],
        required_together=[["cluster_version", "cluster_name"], ["data_dir", "port"]],
        required_one_of=[["cluster_name", "data_dir"]],
        supports_check_mode=True,
    )
    params = module.params
    repository, archive = repository_from(module), archive_from(module)
    downloads = []  # removed when the module ends, whatever happened
    if is_remote(repository):  # the chosen backup (its chain) is downloaded, verified, below work_dir
        repository = DownloadedBackups(repository, params["work_dir"], download=not module.check_mode)
        downloads.append(repository)
    download = None
    if not isinstance(archive, str):  # its WAL is downloaded, verified, below work_dir before the checks
        download = WalDownload(archive, params["work_dir"], owner=params["owner"], identity_file=params["identity_file"])
        downloads.append(download)
    streams = [StreamDownload(stream, params["work_dir"], owner=params["owner"]) for stream in stream_urls(module)]
    downloads.extend(streams)
    try:
        recover(module, repository, archive, download, streams)
    finally:
        for downloaded in downloads:
            downloaded.close()


def stream_urls(module):
    """The storages of the URL stream_dirs (a pg_receivewal directory on another host), opened as the repository is."""
    return [run_or_fail(module, factory.open_repository, location, **storage_options(module.params))
            for location in module.params["stream_dirs"] if "://" in location]


def local_stream_dirs(module):
    return [expanded(location) for location in module.params["stream_dirs"] if "://" not in location]


def recover(module, repository, archive, download, streams):
    params = module.params
    request = run_or_fail(
        module, pitr.PitrRequest, repository, archive if download is None else archive.url,
        target=params["target"], target_time=params["target_time"], target_xid=params["target_xid"],
        target_lsn=params["target_lsn"], target_name=params["target_name"], target_inclusive=params["target_inclusive"],
        backup=params["backup"], cluster_version=params["cluster_version"], cluster_name=params["cluster_name"],
        data_dir=params["data_dir"], port=params["port"], owner=params["owner"], wal_command=params["wal_command"],
        restore_command=params["restore_command"], identity_file=params["identity_file"],
        stream_dirs=local_stream_dirs(module), stop_server=params["stop_server"],
        archive_after_recovery=params["archive_after_recovery"], timeout=params["timeout"],
        pg_bin_dir=params["pg_bin_dir"], wal_download=download, stream_downloads=streams,
        server_settings=params["server_settings"])
    if params["archive_after_recovery"]:
        # recover exactly the backup whose archiving settings were checked
        request.backup = run_or_fail(module, pitr_safety.check_archiving_after_recovery, request)
    if module.check_mode:
        module.exit_json(changed=True, recovery=run_or_fail(module, lambda: pitr.public_plan(pitr.plan(request))))
    try:
        result = pitr.recover(request)
    except PgBackupError as exc:
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint or "")
    module.exit_json(changed=True, recovery=result)


if __name__ == "__main__":
    main()
