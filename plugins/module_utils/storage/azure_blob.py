# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups in Azure Blob Storage: ``azure://container/prefix``, through azure-storage-blob.

The layout is the local repository's under the prefix (see storage_base.py). Credentials, the
first that is set wins: ``connection_string``; ``account_name``/``account_url`` with
``account_key`` or ``sas_token``; ``credentials_file`` (a 0600 file holding a connection
string, what the on-host runner uses so that no secret sits in its config); the environment
(``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY`` or
``AZURE_STORAGE_SAS_TOKEN``). They are handed to the SDK only and never appear in messages.

Uploads stream the file object in blocks (``chunk_size_mb``, ``max_concurrency`` blocks in
flight: memory is about their product), then each blob is read back as a stream and its
sha256 compared with the manifest before the manifest is uploaded, last.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ..core import fsutil
from ..core.errors import PgBackupError
from .base import (RemoteRepository, causes, check_private_file, delta_progress, file_md5, interrupted_upload,
                   library_present, open_local_source, open_local_target, options_from_params, pick_options, split_bucket_url, upload_error)

# imported when an Azure repository is opened (_import_azure), not by every module that could open one
azure_exceptions = BlobServiceClient = ContentSettings = ExponentialRetry = None


def _import_azure():
    global azure_exceptions, BlobServiceClient, ContentSettings, ExponentialRetry
    from azure.core import exceptions as azure_exceptions
    from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry


AZURE_SCHEME = "azure://"
DEFAULT_CHUNK_MB = 16      # 50000 blocks of 16 MiB: blobs up to 781 GiB
DEFAULT_CONCURRENCY = 4
CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
AUTH_CODES = ("AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
              "AuthorizationResourceTypeMismatch", "AuthorizationServiceMismatch", "AuthorizationProtocolMismatch",
              "AuthorizationSourceIPMismatch", "InsufficientAccountPermissions", "InvalidAuthenticationInfo")
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_ACCOUNT = "AZURE_STORAGE_ACCOUNT"
ENV_KEY = "AZURE_STORAGE_KEY"
ENV_SAS = "AZURE_STORAGE_SAS_TOKEN"

# Module options (names match azure_options_from_params / open_azure's ``azure_*`` keywords).
AZURE_ARGUMENT_SPEC = dict(
    azure_connection_string=dict(type="str", no_log=True),
    azure_account_name=dict(type="str"),
    azure_account_url=dict(type="str"),
    azure_account_key=dict(type="str", no_log=True),
    azure_sas_token=dict(type="str", no_log=True),
    azure_credentials_file=dict(type="path"),
    azure_chunk_size_mb=dict(type="int", default=DEFAULT_CHUNK_MB),
    azure_max_concurrency=dict(type="int", default=DEFAULT_CONCURRENCY),
)
OPTION_NAMES = ("connection_string", "account_name", "account_url", "account_key", "sas_token", "credentials_file",
                "chunk_size_mb", "max_concurrency", "max_attempts", "retry_backoff", "connect_timeout", "read_timeout")


def is_azure_url(location):
    return isinstance(location, str) and location.lower().startswith(AZURE_SCHEME)


def azure_options_from_params(params):
    """``azure_*`` module parameters -> keywords for open_repository()/open_azure()."""
    return options_from_params(params, AZURE_ARGUMENT_SPEC)


def open_azure(url, owner=None, **options):
    """An AzureRepository from open_repository()'s options: the ``azure_*`` ones (others are ignored)."""
    return AzureRepository(url, **pick_options(options, "azure_", OPTION_NAMES))


def parse_azure_url(url):
    """``azure://container/some/prefix/`` -> ('container', 'some/prefix')."""
    container, prefix, prefix_ok = split_bucket_url(url, AZURE_SCHEME)
    if not CONTAINER_NAME.match(container or "") or not prefix_ok:
        raise PgBackupError("'%s' is not a valid Azure Blob repository URL." % url,
                            hint="Write it as azure://container or azure://container/prefix (container names: 3-63 "
                                 "lower-case letters, digits and single hyphens).")
    return container, prefix


def read_credentials_file(path):
    """The connection string in a private credentials file (first non-comment line)."""
    check_private_file(path, "Azure credentials file", "azure_credentials_file")
    try:
        with open(path) as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except (IOError, OSError) as exc:
        raise PgBackupError("Azure credentials file '%s' cannot be read: %s." % (path, exc.strerror or exc),
                            hint="Create it (mode 0600, owned by the backup user) with the storage connection string.")
    if not lines:
        raise PgBackupError("Azure credentials file '%s' is empty." % path,
                            hint="Put the storage account's connection string (or a SAS connection string) in it.")
    return lines[0]


class AzureRepository(RemoteRepository):
    """Backups in an Azure Blob container under a prefix, laid out like a LocalRepository."""

    kind = "azure"
    list_by_prefix = True

    def __init__(self, url, connection_string=None, account_name=None, account_url=None, account_key=None,
                 sas_token=None, credentials_file=None, chunk_size_mb=DEFAULT_CHUNK_MB,
                 max_concurrency=DEFAULT_CONCURRENCY, max_attempts=3, retry_backoff=2, connect_timeout=10,
                 read_timeout=60):
        if not library_present(_import_azure):
            raise PgBackupError("Azure Blob repositories need the Python library azure-storage-blob, which is not installed.",
                                hint="Install it on this host: pip install azure-storage-blob.")
        self.url = url.rstrip("/")
        self.path = self.url
        self.container, self.prefix = parse_azure_url(url)
        chunk_size_mb = int(chunk_size_mb or DEFAULT_CHUNK_MB)
        if chunk_size_mb < 1 or chunk_size_mb > 4000:
            raise PgBackupError("Azure block size must be between 1 and 4000 MiB, not %d." % chunk_size_mb)
        self.max_concurrency = max(1, int(max_concurrency or DEFAULT_CONCURRENCY))
        chunk = chunk_size_mb * 1024 * 1024
        client_options = dict(max_single_put_size=chunk, max_block_size=chunk, max_single_get_size=chunk,
                              max_chunk_get_size=min(chunk, 4 * 1024 * 1024), connection_timeout=connect_timeout,
                              read_timeout=read_timeout,
                              retry_policy=ExponentialRetry(initial_backoff=retry_backoff, increment_base=2,
                                                            retry_total=max(0, int(max_attempts) - 1)))
        self.endpoint, self.client = self._make_client(connection_string, account_name, account_url, account_key,
                                                       sas_token, credentials_file, client_options)
        self.container_client = self.client.get_container_client(self.container)

    def _make_client(self, connection_string, account_name, account_url, account_key, sas_token, credentials_file,
                     client_options):
        if account_key and sas_token:
            raise PgBackupError("Both an Azure account key and a SAS token were given.",
                                hint="Give one of them (a SAS token limited to the container is the safer choice).")
        if not connection_string and not (account_name or account_url) and credentials_file:
            connection_string = read_credentials_file(credentials_file)
        if not connection_string and not (account_name or account_url):
            connection_string = os.environ.get(ENV_CONNECTION_STRING)
            if not connection_string and os.environ.get(ENV_ACCOUNT):
                account_name = os.environ.get(ENV_ACCOUNT)
                account_key = account_key or os.environ.get(ENV_KEY)
                sas_token = sas_token or os.environ.get(ENV_SAS)
        try:
            if connection_string:
                client = BlobServiceClient.from_connection_string(connection_string, **client_options)
                return client.url.rstrip("/"), client
            if not (account_name or account_url):
                raise PgBackupError("No Azure Storage credentials were found for '%s'." % self.url,
                                    hint="Set azure_connection_string, azure_account_name with azure_account_key or "
                                         "azure_sas_token, azure_credentials_file, or the AZURE_STORAGE_CONNECTION_STRING "
                                         "environment variable.")
            url = account_url or "https://%s.blob.core.windows.net" % account_name
            if account_key:
                if not account_name:
                    raise PgBackupError("An Azure account key needs the account name (azure_account_name).")
                credential = {"account_name": account_name, "account_key": account_key}
            elif sas_token:
                credential = sas_token.lstrip("?")
            else:
                raise PgBackupError("No Azure account key or SAS token was given for account '%s'." % (account_name or url),
                                    hint="Set azure_account_key or azure_sas_token (or a connection string).")
            return url.rstrip("/"), BlobServiceClient(account_url=url, credential=credential, **client_options)
        except PgBackupError:
            raise
        except ValueError as exc:
            # The SDK's message can quote the connection string: never pass it on.
            raise PgBackupError("The Azure Storage credentials are malformed (%s)." % type(exc).__name__,
                                hint="Check the connection string / account key / SAS token (copied whole, no quotes).")

    # Names

    def key(self, name):
        return "%s/%s" % (self.prefix, name) if self.prefix else name

    def url_of(self, name):
        return "azure://%s/%s" % (self.container, self.key(name))

    def _blob(self, name):
        return self.container_client.get_blob_client(self.key(name))

    # Errors

    def _error(self, exc, action, name=None):
        """One PgBackupError naming the cause of an azure-core/azure-storage exception."""
        where = "'%s'" % (self.url_of(name) if name else self.url)
        endpoint = self.endpoint
        for cause in causes(exc):
            if isinstance(cause, PgBackupError):
                return cause
            if azure_exceptions is None:
                break
            if isinstance(cause, azure_exceptions.ClientAuthenticationError) or (
                    isinstance(cause, azure_exceptions.HttpResponseError) and (
                        getattr(cause, "error_code", None) in AUTH_CODES or getattr(cause, "status_code", None) == 403)):
                code = getattr(cause, "error_code", None) or "403"
                return PgBackupError("Azure Storage refused the credentials or their rights (%s) while trying to %s %s."
                                     % (code, action, where),
                                     hint="Check the account key / SAS token (expired? rotated?) and that it allows read, "
                                          "write, list and delete on the container.")
            if isinstance(cause, azure_exceptions.ResourceNotFoundError) and (
                    getattr(cause, "error_code", None) == "ContainerNotFound" or name is None):
                return PgBackupError("Azure container '%s' does not exist (at %s)." % (self.container, endpoint),
                                     hint="Create the container, or fix the container name / account in the URL and "
                                          "credentials.")
            if isinstance(cause, azure_exceptions.ResourceNotFoundError):
                return PgBackupError("Blob %s does not exist." % where)
            if isinstance(cause, (azure_exceptions.ServiceResponseError, azure_exceptions.IncompleteReadError)):
                return PgBackupError("The connection to Azure Blob endpoint %s was interrupted while trying to %s %s: %s." % (
                    endpoint, action, where, _first_line(cause)),
                    hint="Check the network path to the endpoint and retry; the local backup was not touched.")
            if isinstance(cause, azure_exceptions.ServiceRequestError):
                return PgBackupError("Cannot reach Azure Blob endpoint %s while trying to %s %s: %s." % (
                    endpoint, action, where, _first_line(cause)),
                    hint="Check the account / endpoint, DNS, firewall and proxy settings; the local backup was not touched.")
            if isinstance(cause, azure_exceptions.HttpResponseError):
                return PgBackupError("Azure Storage refused to %s %s: %s %s" % (
                    action, where, getattr(cause, "error_code", None) or getattr(cause, "status_code", ""),
                    _first_line(cause)),
                    hint="See the Azure error code above; the local backup was not touched.")
            if isinstance(cause, azure_exceptions.AzureError):
                return PgBackupError("Azure Storage error while trying to %s %s: %s." % (action, where, _first_line(cause)))
        return PgBackupError("Cannot %s %s: %s." % (action, where, _first_line(exc)))

    def _not_found(self, exc):
        return (azure_exceptions is not None and isinstance(exc, azure_exceptions.ResourceNotFoundError)
                and getattr(exc, "error_code", None) != "ContainerNotFound")

    # Storage primitives

    def check_access(self):
        try:
            self.container_client.get_container_properties()
        except Exception as exc:
            raise self._error(exc, "open container")

    def _iter_blobs(self, prefix):
        try:
            for blob in self.container_client.list_blobs(name_starts_with=self.key(prefix)):
                yield blob.name, blob.size
        except Exception as exc:
            raise self._error(exc, "list")

    def _top_names(self):
        base = self.key("")
        names = []
        try:
            for item in self.container_client.walk_blobs(name_starts_with=base, delimiter="/"):
                names.append(item.name[len(base):].rstrip("/"))
        except Exception as exc:
            raise self._error(exc, "list")
        return names

    def _tree(self, prefix):
        base = self.key("")
        return dict((name[len(base):], size) for name, size in self._iter_blobs(prefix))

    def _size(self, name):
        try:
            return self._blob(name).get_blob_properties().size
        except Exception as exc:
            if self._not_found(exc):
                return None
            raise self._error(exc, "inspect", name)

    def _read(self, name):
        try:
            return self._blob(name).download_blob().readall()
        except Exception as exc:
            if self._not_found(exc):
                return None
            raise self._error(exc, "read", name)

    def _write(self, name, data):
        try:
            self._blob(name).upload_blob(data, overwrite=True,
                                         content_settings=ContentSettings(content_type="application/json"))
        except Exception as exc:
            raise self._error(exc, "write", name)

    def _sha256(self, name):
        try:
            digest, size = fsutil.sha256_chunks(self._blob(name).download_blob(max_concurrency=1).chunks())
        except Exception as exc:
            raise self._error(exc, "read", name)
        return size, digest

    def _remove(self, names):
        for name in names:
            try:
                self._blob(name).delete_blob()
            except Exception as exc:
                if self._not_found(exc):
                    continue
                raise self._error(exc, "delete", name)

    def _put_file(self, path, name, sha256=None, progress=None):
        """Block upload streamed from the open file (never the whole file in memory)."""
        with open_local_source(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            try:
                self._blob(name).upload_blob(handle, length=size, overwrite=True, max_concurrency=self.max_concurrency,
                                             metadata={"sha256": sha256} if sha256 else None,
                                             progress_hook=delta_progress(progress))
            except Exception as exc:
                if azure_exceptions is not None and not any(isinstance(cause, azure_exceptions.AzureError)
                                                            for cause in causes(exc)):
                    raise interrupted_upload(path, self.url_of(name), _first_line(exc) or type(exc).__name__)
                raise upload_error(self._error(exc, "upload to", name), path)

    def metadata(self, name):
        try:
            return dict(self._blob(name).get_blob_properties().metadata or {})
        except Exception as exc:
            if self._not_found(exc):
                return None
            raise self._error(exc, "inspect", name)

    def put_new(self, path, name, metadata=None):
        """Upload with overwrite=False (Azure refuses to replace a blob, atomically) and validate_content
        (an MD5 per request that the service checks). The blob's Content-MD5 the service answers is
        compared with the file's; without one (block uploads of large files) the blob is read back."""
        md5, size = file_md5(path)
        with open_local_source(path) as handle:
            try:
                result = self._blob(name).upload_blob(handle, length=size, overwrite=False, metadata=metadata or None,
                                                      validate_content=True, max_concurrency=self.max_concurrency)
            except Exception as exc:
                if isinstance(exc, azure_exceptions.ResourceExistsError):
                    return False
                raise upload_error(self._error(exc, "upload to", name), path)
        if bytes(result.get("content_md5") or b"") != md5:
            self._confirm_upload(name, size, fsutil.sha256_file(path))
        return True

    def _get_file(self, name, path, progress=None):
        with open_local_target(path) as handle:
            try:
                self._blob(name).download_blob(max_concurrency=self.max_concurrency,
                                               progress_hook=delta_progress(progress)).readinto(handle)
            except Exception as exc:
                raise self._error(exc, "download", name)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self):
        try:
            self.client.close()
        except Exception:
            pass


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
