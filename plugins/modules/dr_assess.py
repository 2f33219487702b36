#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: dr_assess
short_description: Find the newest backup that verifies, and the data-loss window it implies, for a disaster recovery
version_added: 0.1.0
description:
  - The seed's Disaster Recovery Plan step 1 ("Assess the Situation") - determine the most recent valid backup.
  - Goes through the backups of O(database) in O(repository), newest first, and picks the first whose files match
    their manifest's size and sha256 (O(level=checksum)) and, with O(level=structure), whose archive also reads back
    completely (C(pg_restore --list) and a full read, or C(pg_verifybackup) for a physical backup).
  - B(Read-only) - nothing is written into O(repository) (no verification record, no temporary files), so it can be a
    read-only mount of the backup storage.
  - A URL O(repository) (C(s3://bucket/prefix), C(azure://container/prefix) or C(sftp://user@host[:port]/path)) is
    downloaded into O(download_to) first (as a stream, checksum proven before a backup is kept there), an incremental
    base backup with every backup of its chain (PostgreSQL 17+, full first); the result's RV(repository) is then that
    local directory.
  - The data-loss window is the time from the moment the backup's data is from (a logical backup's start, when pg_dump
    took its snapshot; a physical one's finish) to O(incident_time) (default now); with O(wal_archive)
    and O(kind=physical) it is the time since the newest archived WAL segment instead.
  - Fails naming every backup it tried and why, when none verifies.
extends_documentation_fragment:
  - todoapi.pgbackup.remote
options:
  repository:
    description:
      - Where the backups are - a local directory, a (read-only) NFS mount, or an C(s3://bucket/prefix),
        C(azure://container/prefix) or C(sftp://user@host[:port]/absolute/path) URL, reached with the C(s3_*)/C(aws_*),
        C(azure_*) and C(sftp_*) options.
    type: str
    required: true
  owner:
    description: OS user to own O(download_to) and the downloaded files (only applied when running as root).
    type: str
    default: postgres
  database:
    description: Database whose backups to consider (case-sensitive).
    type: str
    required: true
  backup:
    description:
      - V(latest) (the newest backup that verifies) or the id of the one backup to check (and fail if it does not verify).
    type: str
    default: latest
  kind:
    description: V(logical) (pg_dump) or V(physical) (pg_basebackup) backups.
    type: str
    choices: [logical, physical]
    default: logical
  level:
    description: How much a candidate must prove, V(checksum) or V(structure) (needs C(pg_restore) on the host).
    type: str
    choices: [checksum, structure]
    default: structure
  download_to:
    description: Local directory to download a backup from a URL into (created 0700 for O(owner)). Required for URLs.
    type: path
  identity_file:
    description: C(age) identity (private key) file, to read encrypted backups at O(level=structure).
    type: path
  wal_archive:
    description: WAL archive directory, to report the newest archived WAL segment (point-in-time recovery).
    type: path
  incident_time:
    description: When the data was lost (ISO 8601); the data-loss window ends there. Defaults to now.
    type: str
  pg_bin_dir:
    description: Directory holding C(pg_restore) / C(pg_verifybackup); by default found automatically.
    type: path
notes:
  - Supports check mode; the assessment only reads. From a URL, check mode lists the candidates (so an unreachable
    storage or wrong credentials fail the task) without downloading or verifying them; their RV(candidates) have
    C(usable) null.
  - Nothing is uploaded, so O(s3_sse), O(s3_kms_key_id) and the chunk sizes have no effect; they are accepted so that
    the storage options of M(todoapi.pgbackup.backup_copy) can be passed unchanged.
requirements:
  - PostgreSQL client programs (C(pg_restore)) for O(level=structure); boto3 for C(s3://), azure-storage-blob for
    C(azure://), paramiko for C(sftp://) repositories.
seealso:
  - module: todoapi.pgbackup.pg_restore
  - module: todoapi.pgbackup.dr_report
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Which backup will we restore, and how much data is lost?
  todoapi.pgbackup.dr_assess:
    repository: /mnt/backups/todoapi
    database: TodoDb
  register: assessed

- name: Say it
  ansible.builtin.debug:
    msg: "Restoring {{ assessed.backup.id }}; changes after {{ assessed.backup_data_as_of }} are lost ({{ assessed.data_loss_seconds }} s)"

- name: From S3, downloaded to the new server first
  todoapi.pgbackup.dr_assess:
    repository: s3://todoapi-backups/db1
    database: TodoDb
    download_to: /var/lib/todoapi-dr/repository
    s3_region: eu-central-1

- name: From Azure Blob Storage (a SAS token limited to the container)
  todoapi.pgbackup.dr_assess:
    repository: azure://todoapi-backups/db1
    database: TodoDb
    download_to: /var/lib/todoapi-dr/repository
    azure_account_name: todoapibackups
    azure_sas_token: "{{ vault_azure_sas }}"
'''

RETURN = r'''
backup:
  description: Manifest of the chosen backup.
  returned: success
  type: dict
repository:
  description: Local directory to restore the chosen backup from (O(download_to) for a URL).
  returned: success
  type: str
downloaded:
  description: Whether the backup was downloaded from a URL.
  returned: success
  type: bool
level:
  description: Level the chosen backup was verified at.
  returned: success
  type: str
candidates:
  description:
    - Backups tried, newest first, each with C(id), C(finished_at), C(usable) and C(error).
    - In check mode with a URL O(repository), the backups that would be tried (C(usable) null).
  returned: always
  type: list
  elements: dict
skipped_newer:
  description: Ids of newer backups that did not verify and were skipped.
  returned: success
  type: list
  elements: str
backup_finished_at:
  description: When the chosen backup finished (UTC).
  returned: success
  type: str
backup_data_as_of:
  description:
    - The moment the chosen backup's data is from (UTC); changes committed after it are lost. For a logical backup the
      start of pg_dump (its snapshot; commits during the dump are not in it), for a physical one its finish.
  returned: success
  type: str
reference_time:
  description: End of the data-loss window (O(incident_time) or the time of the assessment).
  returned: success
  type: str
assessed_at:
  description: Time of the assessment (UTC).
  returned: success
  type: str
data_loss_seconds:
  description:
    - The data-loss window (achieved RPO) in seconds, from RV(backup_data_as_of) (physical with O(wal_archive) - the
      newest archived segment) to RV(reference_time).
  returned: success
  type: float
wal:
  description: Newest archived WAL segment (C(segment), C(file), C(archived_at)), or null.
  returned: success
  type: dict
manifest_problems:
  description: Damaged manifests found in the repository (those backups were not considered).
  returned: success
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import dr
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import STORAGE_ARGS, repository_from


def main():
    spec = dict(STORAGE_ARGS)
    spec.update(
        database=dict(type="str", required=True),
        backup=dict(type="str", default="latest"),
        kind=dict(type="str", default="logical", choices=list(dr.KINDS)),
        level=dict(type="str", default="structure", choices=list(dr.ASSESS_LEVELS)),
        download_to=dict(type="path"),
        identity_file=dict(type="path"),
        wal_archive=dict(type="path"),
        incident_time=dict(type="str"),
        pg_bin_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    repository = repository_from(module)
    try:
        if module.check_mode and dr.is_remote(params["repository"]):
            probed = dr.probe(repository, params["database"], kind=params["kind"], backup=params["backup"])
            module.exit_json(changed=False, msg="Check mode: these backups would be tried, newest first, each downloaded to "
                                                "%s and verified there." % params["download_to"], **probed)
        result = dr.assess(repository, params["database"], kind=params["kind"], level=params["level"],
                           download_to=params["download_to"], owner=params["owner"],
                           identity_file=params["identity_file"], pg_bin_dir=params["pg_bin_dir"],
                           wal_archive_dir=params["wal_archive"], incident_time=params["incident_time"],
                           backup=params["backup"])
    except PgBackupError as exc:
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint or "", candidates=exc.details.get("candidates", []))
    module.exit_json(changed=bool(result["downloaded"]), **result)


if __name__ == "__main__":
    main()
