# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An S3 (or S3-compatible: MinIO, Google Cloud Storage) repository over boto3.

The S3 layout is the local one under the prefix: ``<prefix>/<id><suffix>`` (artifact; for the
directory format every file under ``<prefix>/<id>.dir/``), ``<prefix>/<id>.globals...``,
``<prefix>/<id>.manifest.json`` and sidecars ``<prefix>/<id>.<name>.json``. S3 has no rename,
so an upload puts the data objects first, proves them by re-reading (size and a streamed sha256
against the manifest), and only then puts the manifest: a backup without its manifest is never
listed, and a failed upload removes what it uploaded.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii

from ..core import fsutil
from ..core.errors import PgBackupError
from .base import (READ_CHUNK, RemoteRepository, causes, file_md5, interrupted_upload, library_present, open_local_source,
                   split_bucket_url, upload_error)

# imported when an S3 repository is opened (_import_boto3), not by every module that could open one
boto3 = TransferConfig = BotoConfig = botocore_exceptions = None


def _import_boto3():
    global boto3, TransferConfig, BotoConfig, botocore_exceptions
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config as BotoConfig
    from botocore import exceptions as botocore_exceptions


S3_SCHEME = "s3://"
SSE_CHOICES = ("AES256", "aws:kms")
DEFAULT_CHUNK_MB = 64  # 10000 parts of 64 MiB: backups up to 625 GiB per object
MIN_CHUNK_MB = 5  # S3's smallest multipart part
ACCESS_DENIED_CODES = ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                       "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
                       "AccountProblem", "KMS.AccessDeniedException")
NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")
EXISTS_CODES = ("PreconditionFailed", "412")
UNSUPPORTED_CODES = ("NotImplemented", "501")

# Options for modules (and the runner) that talk to S3; the names match S3Repository's keywords
# through s3_options_from_params().
S3_ARGUMENT_SPEC = dict(
    s3_endpoint_url=dict(type="str"),
    s3_region=dict(type="str"),
    s3_profile=dict(type="str"),
    aws_access_key=dict(type="str", no_log=True, aliases=["s3_access_key"]),
    aws_secret_key=dict(type="str", no_log=True, aliases=["s3_secret_key"]),
    aws_session_token=dict(type="str", no_log=True),
    s3_sse=dict(type="str", choices=list(SSE_CHOICES)),
    s3_kms_key_id=dict(type="str", no_log=False),
    s3_chunk_size_mb=dict(type="int", default=DEFAULT_CHUNK_MB),
)


def s3_options_from_params(params):
    """Map module parameters (S3_ARGUMENT_SPEC) to open_repository()'s ``s3_options``."""
    return dict(endpoint_url=params.get("s3_endpoint_url"), region=params.get("s3_region"),
                profile=params.get("s3_profile"), access_key=params.get("aws_access_key"),
                secret_key=params.get("aws_secret_key"), session_token=params.get("aws_session_token"),
                sse=params.get("s3_sse"), kms_key_id=params.get("s3_kms_key_id"),
                chunk_size_mb=params.get("s3_chunk_size_mb") or DEFAULT_CHUNK_MB)


def is_s3_url(location):
    return isinstance(location, str) and location.lower().startswith(S3_SCHEME)


def parse_s3_url(url):
    """``s3://bucket/some/prefix/`` -> ('bucket', 'some/prefix')."""
    bucket, prefix, prefix_ok = split_bucket_url(url, S3_SCHEME)
    if not bucket or not prefix_ok:
        raise PgBackupError("'%s' is not a valid S3 repository URL." % url,
                            hint="Write it as s3://bucket or s3://bucket/prefix.")
    return bucket, prefix


def _error_code(exc):
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    code = str(error.get("Code") or "")
    if not code:
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(status or "")
    return code, str(error.get("Message") or "")


class S3Repository(RemoteRepository):
    """Backups in an S3 bucket under a prefix, laid out like a LocalRepository.

    The repository interface (list, load, resolve, verify_checksum, delete, sidecars, upload,
    download) is remote_store.RemoteRepository's; this class implements its storage primitives
    with boto3. Credentials come from boto3's default chain (environment, shared config/credentials
    files with ``profile``, container/instance role) unless ``access_key``/``secret_key`` are given;
    they are handed to boto3 only and never appear in messages or ``repr``.
    """

    kind = "s3"
    noun = "object"
    list_by_prefix = True
    conditional_put = None  # If-None-Match: * on PUT: known to this botocore and not refused by the service

    def __init__(self, url, endpoint_url=None, region=None, profile=None, access_key=None, secret_key=None,
                 session_token=None, sse=None, kms_key_id=None, chunk_size_mb=DEFAULT_CHUNK_MB,
                 connect_timeout=10, read_timeout=60, max_attempts=3):
        if not library_present(_import_boto3):
            raise PgBackupError("S3 repositories need the Python library boto3, which is not installed.",
                                hint="Install boto3 (Debian: python3-boto3, or pip install boto3) on this host.")
        self.url = url.rstrip("/")
        self.path = self.url  # for messages shared with LocalRepository
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        if sse and sse not in SSE_CHOICES:
            raise PgBackupError("Unknown server-side encryption '%s'." % sse, hint="Use AES256 or aws:kms.")
        if kms_key_id and sse != "aws:kms":
            raise PgBackupError("A KMS key id was given without server-side encryption aws:kms.",
                                hint="Set s3_sse: aws:kms together with s3_kms_key_id.")
        self.sse = sse or None
        self.kms_key_id = kms_key_id or None
        chunk_size_mb = int(chunk_size_mb or DEFAULT_CHUNK_MB)
        if chunk_size_mb < MIN_CHUNK_MB:
            raise PgBackupError("S3 multipart chunk size must be at least %d MiB." % MIN_CHUNK_MB)
        if bool(access_key) != bool(secret_key):
            raise PgBackupError("Only one of the S3 access key and secret key was given.",
                                hint="Give both, or neither to use the environment, a profile or the instance role.")
        self.transfer_config = TransferConfig(multipart_threshold=chunk_size_mb * 1024 * 1024,
                                              multipart_chunksize=chunk_size_mb * 1024 * 1024,
                                              max_concurrency=4, use_threads=True)
        try:
            session = boto3.session.Session(profile_name=profile or None, aws_access_key_id=access_key or None,
                                            aws_secret_access_key=secret_key or None,
                                            aws_session_token=session_token or None, region_name=self.region)
        except botocore_exceptions.ProfileNotFound:
            raise PgBackupError("AWS profile '%s' is not configured on this host." % profile,
                                hint="Add it to ~/.aws/config / ~/.aws/credentials, or leave the profile unset.")
        config_args = dict(connect_timeout=connect_timeout, read_timeout=read_timeout,
                           retries={"max_attempts": max_attempts, "mode": "standard"})
        if self.endpoint_url:
            # S3-compatible services (MinIO, Google Cloud Storage, Ceph...): path-style addressing,
            # and checksum headers only where the API requires them (many reject AWS's newer
            # default CRC32 trailers). Integrity is proven by our own sha256 re-read anyway.
            config_args["s3"] = {"addressing_style": "path"}
            config_args.update(request_checksum_calculation="when_required",
                               response_checksum_validation="when_required")
        try:
            config = BotoConfig(**config_args)
        except TypeError:  # botocore older than 1.36 knows no checksum settings
            config_args.pop("request_checksum_calculation", None)
            config_args.pop("response_checksum_validation", None)
            config = BotoConfig(**config_args)
        self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)

    # Names

    def key(self, name):
        return "%s/%s" % (self.prefix, name) if self.prefix else name

    def url_of(self, name):
        return "s3://%s/%s" % (self.bucket, self.key(name))

    def _extra_args(self, metadata=None):
        extra = {}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        if metadata:
            extra["Metadata"] = metadata
        return extra

    # Errors

    def _error(self, exc, action, name=None):
        """Turn a boto3/botocore exception into one PgBackupError naming the cause."""
        where = "'%s'" % (self.url_of(name) if name else self.url)
        endpoint = self.endpoint_url or "the AWS S3 endpoint"
        for cause in causes(exc):
            if isinstance(cause, PgBackupError):
                return cause
            if botocore_exceptions is None:
                break
            if isinstance(cause, (botocore_exceptions.ConnectionClosedError, botocore_exceptions.ResponseStreamingError,
                                  botocore_exceptions.IncompleteReadError)):
                return PgBackupError("The connection to S3 endpoint %s was interrupted while trying to %s %s: %s." % (
                    endpoint, action, where, str(cause).rstrip(".")),
                    hint="Check the network path to the endpoint and retry; the local backup was not touched.")
            if isinstance(cause, (botocore_exceptions.EndpointConnectionError, botocore_exceptions.ConnectTimeoutError,
                                  botocore_exceptions.ProxyConnectionError)):
                return PgBackupError("Cannot reach S3 endpoint %s while trying to %s %s: %s." % (
                    endpoint, action, where, str(cause).rstrip(".")),
                    hint="Check s3_endpoint_url, DNS, firewall and proxy settings; the local backup was not touched.")
            if isinstance(cause, botocore_exceptions.ReadTimeoutError):
                return PgBackupError("S3 endpoint %s stopped answering while trying to %s %s." % (endpoint, action, where),
                                     hint="Retry later; check the network path to the endpoint.")
            if isinstance(cause, (botocore_exceptions.NoCredentialsError, botocore_exceptions.PartialCredentialsError)):
                return PgBackupError("No AWS credentials were found to %s %s." % (action, where),
                                     hint="Set aws_access_key/aws_secret_key, an AWS profile, the AWS_* environment "
                                          "variables, or give the host an instance role.")
            if isinstance(cause, botocore_exceptions.ClientError):
                code, message = _error_code(cause)
                if code == "NoSuchBucket" or (code in ("404", "NotFound") and name is None):
                    return PgBackupError("S3 bucket '%s' does not exist (at %s)." % (self.bucket, endpoint),
                                         hint="Create the bucket, or fix the bucket name / s3_endpoint_url / s3_region.")
                if code in ACCESS_DENIED_CODES:
                    return PgBackupError("Access denied by S3 (%s) while trying to %s %s." % (code, action, where),
                                         hint="Check the credentials and that their policy allows s3:ListBucket, "
                                              "s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket/prefix "
                                              "(and kms:GenerateDataKey/kms:Decrypt for aws:kms).")
                if code in NOT_FOUND_CODES:
                    return PgBackupError("Object %s does not exist." % where)
                return PgBackupError("S3 refused to %s %s: %s %s" % (action, where, code, message),
                                     hint="See the S3 error code above; the local backup was not touched.")
            if isinstance(cause, botocore_exceptions.BotoCoreError):
                return PgBackupError("S3 error while trying to %s %s: %s." % (action, where, cause))
        return PgBackupError("Cannot %s %s: %s." % (action, where, exc))

    def _missing(self, exc):
        return isinstance(exc, botocore_exceptions.ClientError) and _error_code(exc)[0] in NOT_FOUND_CODES

    # Storage primitives (see remote_store)

    def check_access(self):
        """Raise a clear error unless the bucket is reachable with these credentials."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._error(exc, "open bucket")

    def _iter_keys(self, prefix, delimiter=None):
        """(key, size) of the objects under ``prefix``, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        args = dict(Bucket=self.bucket, Prefix=prefix)
        if delimiter:
            args["Delimiter"] = delimiter
        try:
            for page in paginator.paginate(**args):
                for item in page.get("Contents") or []:
                    yield item["Key"], item["Size"]
        except Exception as exc:
            raise self._error(exc, "list")

    def _top_names(self):
        base = self.key("")
        return [key[len(base):] for key, size in self._iter_keys(base, delimiter="/")]

    def _tree(self, prefix):
        base = self.key("")
        return dict((key[len(base):], size) for key, size in self._iter_keys(self.key(prefix)))

    def _size(self, name):
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(name))["ContentLength"]
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(exc, "inspect", name)

    def _read(self, name):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(exc, "read", name)

    def _write(self, name, data):
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data,
                                   ContentType="application/json", **self._extra_args())
        except Exception as exc:
            raise self._error(exc, "write", name)

    def _sha256(self, name):
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
            digest, size = fsutil.sha256_chunks(body.iter_chunks(READ_CHUNK))
        except Exception as exc:
            raise self._error(exc, "read", name)
        return size, digest

    def _remove(self, names):
        keys = [self.key(name) for name in names if not name.endswith("/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            try:
                response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except Exception as exc:
                raise self._error(exc, "delete objects in")
            errors = response.get("Errors") or []
            if errors:
                raise PgBackupError("S3 could not delete %s: %s" % (
                    errors[0].get("Key"), errors[0].get("Message") or errors[0].get("Code")))

    def _put_file(self, path, name, sha256=None, progress=None):
        self._upload_file(path, name, sha256, progress)

    def _upload_file(self, path, name, sha256=None, progress=None):
        """Multipart, streaming upload (boto3 reads the file part by part; never all in memory)."""
        try:
            self.client.upload_file(path, self.bucket, self.key(name),
                                    ExtraArgs=self._extra_args({"sha256": sha256} if sha256 else None),
                                    Callback=progress, Config=self.transfer_config)
        except PgBackupError:
            raise
        except Exception as exc:
            if not any(isinstance(cause, (botocore_exceptions.BotoCoreError, botocore_exceptions.ClientError))
                       for cause in causes(exc)):
                raise interrupted_upload(path, self.url_of(name), str(exc).rstrip(".") or type(exc).__name__)
            raise upload_error(self._error(exc, "upload to", name), path)

    def metadata(self, name):
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self.key(name)).get("Metadata") or {})
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(exc, "inspect", name)

    def put_new(self, path, name, metadata=None):
        """One PUT (up to 5 GiB; a WAL file has at most 1 GiB) with If-None-Match: * so that S3 itself refuses
        to replace an object (services without conditional writes: the caller's existence check is all
        there is), and Content-MD5 so that S3 refuses a body damaged on the way. The ETag S3 answers is
        its MD5 of what it stored; when it is not that MD5 (SSE-KMS, other services) the object is read back."""
        md5, size = file_md5(path)
        if self.conditional_put is None:  # botocore learnt it in 1.35 (2024); Debian 12 ships 1.29
            model = self.client.meta.service_model.operation_model("PutObject")
            self.conditional_put = "IfNoneMatch" in model.input_shape.members
        args = dict(Bucket=self.bucket, Key=self.key(name), ContentLength=size,
                    ContentMD5=base64.b64encode(md5).decode("ascii"), **self._extra_args(metadata))
        while True:
            if self.conditional_put:
                args["IfNoneMatch"] = "*"
            try:
                with open_local_source(path) as body:
                    etag = self.client.put_object(Body=body, **args).get("ETag") or ""
                break
            except Exception as exc:
                code = _error_code(exc)[0] if isinstance(exc, botocore_exceptions.ClientError) else ""
                if code in EXISTS_CODES:
                    return False
                if code in UNSUPPORTED_CODES and self.conditional_put:
                    self.conditional_put = False
                    args.pop("IfNoneMatch")
                    continue
                raise upload_error(self._error(exc, "upload to", name), path)
        if etag.strip('"') != binascii.hexlify(md5).decode("ascii"):
            self._confirm_upload(name, size, fsutil.sha256_file(path))
        return True

    def _get_file(self, name, path, progress=None):
        try:
            self.client.download_file(self.bucket, self.key(name), path, Callback=progress, Config=self.transfer_config)
        except Exception as exc:
            raise self._error(exc, "download", name)
