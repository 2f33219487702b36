# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The options of module_utils/storage/{s3,azure_blob,sftp}.py's argument specs, for every module that reads
    # or writes an s3://, azure:// or sftp:// repository (ansible_module/common.py's STORAGE_ARGS).
    DOCUMENTATION = r'''
options:
  s3_endpoint_url:
    description:
      - Endpoint of an S3-compatible service, e.g. C(https://storage.googleapis.com) (Google Cloud Storage with HMAC keys)
        or C(https://minio.example.com:9000). Path-style addressing is used with a custom endpoint.
      - Unset means AWS S3.
    type: str
  s3_region:
    description: Region of the bucket (e.g. V(eu-central-1)). Defaults to the AWS configuration of the host.
    type: str
  s3_profile:
    description: Profile from the host's AWS shared config/credentials files.
    type: str
  aws_access_key:
    description:
      - Access key id. Without O(aws_access_key) and O(aws_secret_key), credentials come from boto3's default chain
        (C(AWS_*) environment variables, shared credentials files, container or instance role).
    type: str
    aliases: [s3_access_key]
  aws_secret_key:
    description: Secret access key belonging to O(aws_access_key). Never logged.
    type: str
    aliases: [s3_secret_key]
  aws_session_token:
    description: Session token for temporary credentials.
    type: str
  s3_sse:
    description: Server-side encryption of the objects uploaded to S3.
    type: str
    choices: [AES256, aws:kms]
  s3_kms_key_id:
    description: KMS key id or ARN, with O(s3_sse=aws:kms). Unset means the bucket's/account's default KMS key.
    type: str
  s3_chunk_size_mb:
    description:
      - Multipart part size in MiB (at least 5) of uploads and downloads. S3 allows 10000 parts per object, so the
        default of 64 covers objects up to 625 GiB. Memory use is about four parts.
    type: int
    default: 64
  azure_connection_string:
    description:
      - Azure Storage connection string (account key or SAS form) for C(azure://container/prefix) repositories.
      - Without any C(azure_*) credential option, E(AZURE_STORAGE_CONNECTION_STRING) (or E(AZURE_STORAGE_ACCOUNT) with
        E(AZURE_STORAGE_KEY) or E(AZURE_STORAGE_SAS_TOKEN)) of the module's environment is used.
    type: str
  azure_account_name:
    description: Storage account name, with O(azure_account_key) or O(azure_sas_token).
    type: str
  azure_account_url:
    description: Blob service URL, for accounts outside the public cloud or emulators.
    type: str
  azure_account_key:
    description: Storage account key. Never logged.
    type: str
  azure_sas_token:
    description: Shared access signature token (preferred to an account key; limit it to the container). Never logged.
    type: str
  azure_credentials_file:
    description: File (mode 0600) holding the connection string, so no secret needs to be a module argument.
    type: path
  azure_chunk_size_mb:
    description: Block size of streamed uploads and downloads, in MiB.
    type: int
    default: 16
  azure_max_concurrency:
    description: Parallel blocks per blob.
    type: int
    default: 4
  sftp_key_file:
    description:
      - Private key for C(sftp://user@host[:port]/path) repositories (key-based login only; mode 0600). Defaults to
        the user's C(~/.ssh/id_*) keys.
    type: path
  sftp_key_passphrase:
    description: Passphrase of O(sftp_key_file). Never logged.
    type: str
  sftp_known_hosts:
    description:
      - known_hosts file that must hold the server's host key; unknown or changed keys are refused. Defaults to
        C(~/.ssh/known_hosts).
    type: path
  sftp_timeout:
    description: Connection timeout for SFTP, in seconds.
    type: int
    default: 30
'''

    # The repository option of the modules that take a path or a URL.
    REPOSITORY = r'''
options:
  repository:
    description:
      - Backup repository, a local directory (or a mounted NFS path), or a URL C(s3://bucket/prefix),
        C(azure://container/prefix) or C(sftp://user@host[:port]/absolute/path), reached with the C(s3_*)/C(aws_*),
        C(azure_*) and C(sftp_*) options.
      - Each backup is an artifact plus a C(<id>.manifest.json) file beside it, the same layout on every kind of storage.
      - Operations that read a backup's files (a restore, a verification above the checksum level) first download it
        from a URL into a private temporary directory (below the module's C(work_dir) option, when it has one), as a
        stream, checked against the manifest's size and sha256 under temporary names, and remove it afterwards.
    type: str
    required: true
  owner:
    description:
      - OS user that owns a local repository, its artifacts (mode 0600) and directories (mode 0700).
      - Only applied when the module runs as root.
    type: str
    default: postgres
'''

    # Where a backup module takes a backup whose repository is a URL (common.py's UPLOAD_ARGS).
    UPLOAD = r'''
options:
  work_dir:
    description:
      - With a URL as O(repository), the local directory the backup is taken in before it is uploaded. It goes to a
        private temporary directory below O(work_dir) (by default the system's temporary directory, which needs room
        for the backup), is uploaded, read back from the storage and compared with its manifest (the manifest is
        uploaded last), and the local copy is then removed, also when the upload fails.
      - With O(keep_local_copy=true), O(work_dir) is a local repository that keeps the backup after the upload.
      - Not used when O(repository) is a local directory.
    type: path
    version_added: 0.2.0
  keep_local_copy:
    description:
      - Keep the backup in O(work_dir) (required then) after uploading it to a URL O(repository), for example for fast
        restores of recent backups while the URL holds the off-site copy. Retention of that local repository is then
        up to you (M(todoapi.pgbackup.backup_retention)).
    type: bool
    default: false
    version_added: 0.2.0
'''
