# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL archive in a remote repository (``s3://``, ``azure://``, ``sftp://``): the directory
archive's names (``wal_archive_layout``) under the URL, with the same promises to PostgreSQL
(docs/pitr.md):

* ``archive_segment`` returns only when the segment is stored durably: the service answered the
  upload and vouched for its checksum (S3: Content-MD5 and the ETag; Azure: Content-MD5; SFTP:
  the file fsynced on the server and read back), under a name that did not exist (S3: If-None-Match,
  Azure: overwrite=False, SFTP: a rename that never replaces). A file already stored with the same
  content is success, a different one a failure; nothing is ever overwritten.
* ``restore_segment`` streams the stored file to a temp file beside PostgreSQL's target, decodes it,
  compares its sha256 with the one stored with it, and only then renames it into place.
  ``WalSegmentMissing`` (exit 1) only when the archive answers and has no such file; a service that
  cannot be reached or a damaged file is a ``WalArchiveError`` (exit 255: recovery stops).

Every stored file carries the sha256 of what PostgreSQL wrote (metadata ``sha256``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import configparser
import os
import re
import tempfile
import threading

from ..core import fsutil
from ..core.errors import PgBackupError
from ..storage.base import check_private_file
from ..storage.factory import open_repository
from ..storage.s3 import s3_options_from_params
from .wal_archive import WalSegmentMissing, as_archive_error, check_source_size, check_wal_name, find_in_stream_dirs
from .wal_archive import install_wal_file, refuse_different
from .wal_archive_layout import ENCODINGS, WalArchiveError
from .wal_codec import check_compression, decoded_sha256, encode_to, suffix_for

SHA256_KEY = "sha256"
SCHEMES = ("s3://", "azure://", "sftp://")
# Settings a config file may hold: never a secret (those live in the 0600 credentials file).
S3_KEYS = ("s3_endpoint_url", "s3_region", "s3_profile", "s3_sse", "s3_kms_key_id")
AZURE_KEYS = ("azure_max_concurrency",)
SFTP_KEYS = ("sftp_key_file", "sftp_known_hosts", "sftp_timeout")
STORAGE_OPTION_KEYS = S3_KEYS + AZURE_KEYS + SFTP_KEYS


def is_remote(location):
    return isinstance(location, str) and location.lower().startswith(SCHEMES)


def open_remote_archive(url, storage_options=None, credentials_file=None):
    """A RemoteWalArchive for ``url``. ``storage_options``: the settings of STORAGE_OPTION_KEYS (the
    names backup_copy's options have); ``credentials_file``: the 0600 file holding the secret: an AWS
    credentials file (section ``[default]`` or the profile's), an Azure connection string, or the
    SSH private key."""
    options = dict(storage_options or {})
    unknown = sorted(set(options) - set(STORAGE_OPTION_KEYS))
    if unknown:
        raise WalArchiveError("Unknown WAL archive storage option(s): %s." % ", ".join(unknown),
                              hint="Known: %s. Secrets belong in the credentials file." % ", ".join(STORAGE_OPTION_KEYS))
    if credentials_file:
        check_private_file(credentials_file, "WAL archive credentials file", "credentials_file")
    lowered = url.lower()
    if lowered.startswith("s3://"):
        keywords = dict((k, v) for k, v in s3_options_from_params(options).items() if v is not None)
        if credentials_file:
            keywords.update(_aws_credentials(credentials_file, keywords.pop("profile", None)))
    elif lowered.startswith("azure://"):
        keywords = dict((k, v) for k, v in options.items() if k in AZURE_KEYS)
        keywords["azure_credentials_file"] = credentials_file
    elif lowered.startswith("sftp://"):
        keywords = dict((k, v) for k, v in options.items() if k in SFTP_KEYS)
        if credentials_file:
            keywords["sftp_key_file"] = credentials_file
    else:
        raise WalArchiveError("'%s' is not a remote WAL archive URL." % url,
                              hint="Use s3://bucket/prefix, azure://container/prefix or sftp://user@host/path.")
    return RemoteWalArchive(open_repository(url, **keywords))


def _aws_credentials(path, profile):
    """access_key/secret_key/session_token from an AWS shared credentials file (INI)."""
    parser = configparser.RawConfigParser()
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise WalArchiveError("WAL archive credentials file '%s' cannot be read: %s." % (path, type(exc).__name__),
                              hint="Write it as an AWS credentials file: [default] with aws_access_key_id and "
                                   "aws_secret_access_key.")
    section = profile or "default"
    if not parser.has_section(section):
        raise WalArchiveError("WAL archive credentials file '%s' has no [%s] section." % (path, section))
    values = dict(parser.items(section))
    return {"access_key": values.get("aws_access_key_id"), "secret_key": values.get("aws_secret_access_key"),
            "session_token": values.get("aws_session_token")}


class RemoteWalArchive(object):
    """The archive's files in a repository; ``repository`` is storage's RemoteRepository."""

    def __init__(self, repository):
        self.repository = repository
        self.url = repository.url

    def __repr__(self):
        return "RemoteWalArchive(%r)" % self.url

    def entries(self):
        return self.repository.names()

    def check(self):
        """Raise a clear error unless the archive's storage answers with these settings and credentials."""
        self.repository.check_access()

    def url_of(self, name):
        return self.repository.url_of(name)

    def stored(self, wal_name):
        """Names that store ``wal_name`` (normally zero or one), in the lookup order of ENCODINGS."""
        candidates = [wal_name + suffix for suffix in ENCODINGS]
        found = self.repository.existing(candidates)
        return [name for name in candidates if name in found]

    def plain_sha256(self, name):
        """The sha256 of what PostgreSQL wrote, stored with ``name``; None when it has none."""
        metadata = self.repository.metadata(name)
        if metadata is None:
            raise WalArchiveError("'%s' disappeared from the WAL archive while it was read." % self.url_of(name),
                                  hint="Something else deletes from the archive (retention?); retry.")
        value = str(metadata.get(SHA256_KEY) or "").lower()
        return value if re.match(r"^[0-9a-f]{64}$", value) else None

    def remove(self, names):
        self.repository.remove_files(names)

    def close(self):
        self.repository.close()


def archive_segment(wal_path, wal_name, archive, compress=None, recipients=None, level=3, work_dir=None):
    """archive_command for a RemoteWalArchive. ``work_dir``: where an encoded copy is written before it
    is uploaded (default the system's temp directory)."""
    compress = check_compression(compress)
    recipients = [r for r in (recipients or []) if r]
    size = check_source_size(wal_path, wal_name)
    name = wal_name + suffix_for(compress, recipients)
    source_sha = None
    try:
        stored = archive.stored(wal_name)
        if not stored:
            encoded = _work_file(work_dir, name)
            try:
                # one read of the segment where zstd runs in the process: it hashes what it compresses
                written, source_sha = encode_to(wal_path, encoded, name, compress, level, recipients, size, durable=False,
                                                digest=True)
                source_sha = source_sha or fsutil.sha256_file(wal_path)
                if archive.repository.put_new(encoded if written else wal_path, name, {SHA256_KEY: source_sha}):
                    return {"status": "archived", "path": archive.url_of(name), "size": size, "sha256": source_sha}
            finally:
                fsutil.remove_quietly(encoded)
            stored = archive.stored(wal_name)  # another archiver won a race
        return _already_archived(archive, stored, wal_name, source_sha or fsutil.sha256_file(wal_path), size, work_dir)
    except PgBackupError as exc:
        raise as_archive_error(exc, wal_name)


def _work_file(work_dir, name):
    return os.path.join(work_dir or tempfile.gettempdir(), ".todoapi-wal-%s.%d.%d" % (
        name, os.getpid(), threading.current_thread().ident or 0))


def _already_archived(archive, stored, wal_name, source_sha, size, work_dir):
    if not stored:
        raise WalArchiveError("'%s' was reported as stored but is not in '%s'." % (wal_name, archive.url),
                              hint="Something else writes to or deletes from the archive; PostgreSQL retries.")
    for name in stored:
        stored_sha = archive.plain_sha256(name) or _downloaded_sha256(archive, name, work_dir)
        if stored_sha != source_sha:
            raise refuse_different(wal_name, archive.url_of(name))
    return {"status": "already_archived", "path": archive.url_of(stored[0]), "size": size, "sha256": source_sha}


def _downloaded_sha256(archive, name, work_dir):
    """The plaintext sha256 of a stored file that carries none (not written by this archive)."""
    local = _work_file(work_dir, name)
    fsutil.remove_quietly(local)
    try:
        archive.repository.fetch(name, local)
        return decoded_sha256(local, name=name)[0]
    finally:
        fsutil.remove_quietly(local)


def restore_segment(wal_name, target_path, archive, identity_file=None, stream_dirs=None):
    """restore_command for a RemoteWalArchive (then pg_receivewal's ``stream_dirs``)."""
    check_wal_name(wal_name)
    stored = archive.stored(wal_name)
    if not stored:
        streamed = find_in_stream_dirs(wal_name, stream_dirs)
        if not streamed:
            raise WalSegmentMissing("WAL file '%s' is not in the archive." % wal_name)
        return install_wal_file(streamed, wal_name, target_path, identity_file)
    name = stored[0]
    expected = archive.plain_sha256(name)
    if not expected:
        raise WalArchiveError("'%s' carries no checksum, so it cannot be verified." % archive.url_of(name),
                              hint="It was not written by todoapi-pgbackup-wal; recovery stops rather than trust it.")
    download = "%s.todoapi-download-%d" % (target_path, os.getpid())
    fsutil.remove_quietly(download)
    try:
        archive.repository.fetch(name, download)
        return install_wal_file(download, wal_name, target_path, identity_file, expected, stored_name=archive.url_of(name))
    except OSError as exc:
        raise WalArchiveError("Cannot download WAL file '%s' to '%s': %s." % (name, download, exc.strerror or exc))
    finally:
        fsutil.remove_quietly(download)
