# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The options of module_utils/storage/s3.py's S3_ARGUMENT_SPEC, for every module that reads or
    # writes an s3://bucket/prefix repository.
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
'''
