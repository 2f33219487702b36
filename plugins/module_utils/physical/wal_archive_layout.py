# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the WAL archive stores files: one flat directory, mode 0700, owned by postgres::

    <archive>/000000010000000000000002          a segment as PostgreSQL wrote it, or
    <archive>/000000010000000000000002.zst      zstd-compressed (frame checksum on), and/or
    <archive>/000000010000000000000002.zst.age  age-encrypted, with
    <archive>/000000010000000000000002.zst.age.sha256   the plaintext's sha256 (encrypted files only)
    <archive>/00000002.history                  timeline history files (same encodings)
    <archive>/.tmp-*                            work in progress, never read by restore

A remote archive (``wal_remote``: s3://, azure://, sftp://) uses the same names under its URL; the
plaintext's sha256 travels as the object's metadata (SFTP: a ``<name>.meta`` file beside it).

The archive/restore commands (``wal_archive``, ``wal_remote``) and the range checks and pruning
(``wal_archive_contents``) read the archive through these names; ``archive_entries`` lists either kind.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ..core.errors import PgBackupError
from ..storage import META_SUFFIX
from .wal_names import WAL_NAME

# Suffixes in lookup order; a file is stored under exactly one of them.
ENCODINGS = ("", ".zst", ".age", ".zst.age")
COMPRESSION_CHOICES = ("none", "zstd")
CHECKSUM_SUFFIX = ".sha256"
SIDECAR_SUFFIXES = (CHECKSUM_SUFFIX, META_SUFFIX)  # files that describe another one, deleted with it
TMP_PREFIX = ".tmp-"


class WalArchiveError(PgBackupError):
    """The archive cannot be trusted for this request (damaged, unreadable, conflicting)."""


def check_wal_name(name):
    """``name`` when it is the name of a file PostgreSQL archives (also a guard: names become paths)."""
    if not name or not WAL_NAME.match(name):
        raise WalArchiveError("'%s' is not a WAL file name." % name,
                              hint="PostgreSQL passes names like 000000010000000000000002 or 00000002.history (%f).")
    return name


def existing_files(archive_dir, wal_name):
    """Archive files that store ``wal_name`` (normally zero or one)."""
    return [os.path.join(archive_dir, wal_name + suffix) for suffix in ENCODINGS
            if os.path.isfile(os.path.join(archive_dir, wal_name + suffix))]


def require_archive_dir(archive_dir):
    if not archive_dir:
        raise WalArchiveError("No WAL archive directory given.", hint="Pass --archive-dir or set archive_dir in the config.")
    if not os.path.isdir(archive_dir):
        raise WalArchiveError("WAL archive directory '%s' does not exist or is not a directory." % archive_dir,
                              hint="Mount/create it (role todoapi.pgbackup.wal_archiving creates it 0700 postgres).")
    if not os.access(archive_dir, os.R_OK | os.X_OK):
        raise WalArchiveError("WAL archive directory '%s' is not readable by this user." % archive_dir,
                              hint="It must belong to the user PostgreSQL runs as (postgres).")


def archive_entries(archive):
    """The names directly in an archive: a directory path, or a remote archive (``wal_remote.RemoteWalArchive``)."""
    if hasattr(archive, "entries"):
        return list(archive.entries())
    require_archive_dir(archive)
    return os.listdir(archive)


def described_by(entry):
    """The entry a sidecar describes (``X.zst`` for ``X.zst.meta``); None for anything else."""
    for suffix in SIDECAR_SUFFIXES:
        if entry.endswith(suffix):
            return entry[:-len(suffix)]
    return None


def strip_encoding(entry):
    """The WAL file name an archive entry stores (None for work files and sidecars)."""
    if entry.startswith(".") or described_by(entry) is not None:
        return None
    for suffix in sorted(ENCODINGS, key=len, reverse=True):
        if suffix and entry.endswith(suffix):
            return entry[:-len(suffix)]
    return entry
