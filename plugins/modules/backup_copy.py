#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: backup_copy
short_description: Copy a complete, verified backup between directories, S3, Azure Blob Storage and SFTP servers
version_added: 0.1.0
description:
  - Copies one backup (artifact, extra files such as the globals, and its manifest) from O(repository) to every
    location in O(copy_to), e.g. an S3 bucket for off-site storage and an NFS mount.
  - The backup's checksum is verified in O(repository) first; a damaged backup is never spread. From a URL
    O(repository) it is verified by its download, which is checked against the manifest before anything is kept.
  - O(repository) and every O(copy_to) entry may be a directory or a URL. From a URL to a directory the backup is
    downloaded as a stream under temporary names and published (manifest last) once it matches its manifest. From one
    URL to another (for example S3 to Azure) it goes through a private temporary directory below O(work_dir), which is
    removed afterwards; it needs room for the backup.
  - To S3 the files are uploaded as streaming multipart uploads (never read into memory; Azure and SFTP stream
    too), then read back from the storage and compared with the manifest's size and sha256. Only then is the manifest uploaded, so a
    backup is listed in the bucket only when it is complete and proven.
  - To a directory the files are copied under temporary names, fsynced, renamed, and the manifest is written last.
  - A failed copy removes what it uploaded, writes no manifest, never touches O(repository), and fails naming the
    cause (endpoint unreachable, access denied, no such bucket, checksum mismatch after upload). All targets are
    attempted even when one fails.
  - A target that already holds the same backup with a verifying checksum is left alone (not changed).
extends_documentation_fragment:
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
options:
  backup:
    description:
      - Which backup to copy, as V(latest) (the newest backup of O(database) whose checksum verifies) or a backup id.
    type: str
    default: latest
  database:
    description: Database whose newest backup V(latest) means. Without it, V(latest) is the newest backup of any database.
    type: str
  copy_to:
    description:
      - Where to copy the backup, each a local or NFS-mounted directory, an C(s3://bucket/prefix),
        C(azure://container/prefix) or C(sftp://user@host[:port]/path) URL.
      - The layout at the target is the repository's (C(<prefix>/<id>.dump.zst), C(<prefix>/<id>.manifest.json), ...),
        so the target can itself be used as a repository.
    type: list
    elements: str
    required: true
  work_dir:
    description:
      - Local directory for the temporary copy of a backup copied from one URL to another. Defaults to the system
        temporary directory.
    type: path
    version_added: 0.2.0
notes:
  - Supports check mode; it verifies the backup's checksum, checks that each bucket is reachable, and reports
    which targets would get a copy, without writing anything.
  - The same storage options serve O(repository) and every O(copy_to) URL, so the source and the targets use the same
    credentials per kind of storage (one set of C(s3_*), one of C(azure_*), one of C(sftp_*)).
  - Credentials given as options are passed to the storage client libraries only; they do not appear in results or
    messages.
  - Client-side encryption of the backup itself is done at backup time (O(todoapi.pgbackup.pg_dump#module:encrypt_recipients)),
    so the storage provider only ever sees C(age) ciphertext; see docs/storage.md.
requirements:
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories and targets
seealso:
  - module: todoapi.pgbackup.pg_dump
  - module: todoapi.pgbackup.pg_restore
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Copy the newest TodoDb backup off-site (credentials from the instance role)
  todoapi.pgbackup.backup_copy:
    repository: /var/backups/todoapi
    database: TodoDb
    copy_to:
      - s3://todoapi-backups/prod
    s3_region: eu-central-1
    s3_sse: aws:kms

- name: Copy a given backup to Google Cloud Storage (HMAC keys) and to an NFS mount
  todoapi.pgbackup.backup_copy:
    repository: /var/backups/todoapi
    backup: 20240106T020000Z_logical_TodoDb
    copy_to:
      - s3://todoapi-backups-gcs/prod
      - /mnt/nfs/todoapi-backups
    s3_endpoint_url: https://storage.googleapis.com
    s3_region: auto
    aws_access_key: "{{ vault_gcs_hmac_access_id }}"
    aws_secret_key: "{{ vault_gcs_hmac_secret }}"
  register: copied

- name: Show where the copies went
  ansible.builtin.debug:
    msg: "{{ copied.results | map(attribute='artifact') | list }}"

- name: Bring the newest off-site copy back from an SFTP server into a local repository
  todoapi.pgbackup.backup_copy:
    repository: sftp://backup@vault.example.com/srv/backups/todoapi
    sftp_key_file: /etc/todoapi-pgbackup/sftp_key
    database: TodoDb
    copy_to:
      - /var/backups/todoapi-restore
'''

RETURN = r'''
backup:
  description: The manifest of the copied backup.
  returned: always
  type: dict
  contains:
    id:
      description: Backup id.
      type: str
      sample: 20240106T020000Z_logical_TodoDb
    sha256:
      description: SHA-256 of the artifact.
      type: str
    size:
      description: Size of the artifact in bytes.
      type: int
results:
  description: One entry per O(copy_to) target, in order.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: The target repository (path or URL).
      type: str
      sample: s3://todoapi-backups/prod
    id:
      description: Backup id.
      type: str
    changed:
      description: Whether a copy was made (false when the target already held a verified copy).
      type: bool
    verified:
      description: Whether the copy was read back and matched the manifest's size and sha256 (false in check mode).
      type: bool
    artifact:
      description: Path or URL of the artifact at the target.
      type: str
      sample: s3://todoapi-backups/prod/20240106T020000Z_logical_TodoDb.dump.zst
    size:
      description: Size of the artifact in bytes.
      type: int
    sha256:
      description: SHA-256 of the artifact.
      type: str
    failed:
      description: Present and true when copying to this target failed.
      type: bool
    msg:
      description: Why copying to this target failed.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    STORAGE_ARGS, repository_from, storage_options)


def main():
    spec = dict(STORAGE_ARGS)
    spec.update(
        backup=dict(type="str", default="latest"),
        database=dict(type="str"),
        copy_to=dict(type="list", elements="str", required=True),
        work_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    if not params["copy_to"]:
        module.fail_json(msg="copy_to is empty; name at least one directory or URL (s3://, azure://, sftp://).")
    source = repository_from(module)
    try:
        manifest = source.resolve(params["backup"], database=params["database"])
        if params["backup"] != "latest":
            source.verify_checksum(manifest)
        results = transfer.copy_to_targets(manifest, source, params["copy_to"], owner=params["owner"],
                                           s3_options=storage_options(params), check_mode=module.check_mode,
                                           work_dir=params["work_dir"])
    except PgBackupError as exc:
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint or "",
                         results=exc.details.get("results", []))
    module.exit_json(changed=any(result["changed"] for result in results), backup=manifest, results=results)


if __name__ == "__main__":
    main()
