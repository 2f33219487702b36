# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repositories of a setup: ``repositories`` in the runner's config, a list.

Backups are taken into the first and copied to the others. Each entry is::

    {"name": "offsite",                 # optional; default repo<N> (N from 1)
     "location": "s3://bucket/db01",    # a directory, or an s3://, azure:// or sftp:// URL
     "options": {"region": "eu-west-1"},   # the back-end's settings, never a secret
     "credentials_file": "/etc/todoapi-pgbackup/s3.credentials",   # 0600, its secrets
     "retention": {"daily_days": 0, "monthly_months": 12},          # its own policy
     "wal_archive": "s3://bucket/db01-wal"}   # optional: pruned after its backups (same options)

The secrets live in the credentials file only: for S3 an AWS shared credentials file, for Azure
a file holding the storage connection string, for SFTP the SSH private key. A retention left out
is the config's ``retention``; ``{}`` keeps everything. ``wal_archive`` (a directory, or a URL on the
repository's own back-end, read with its options and credentials file) is the cluster's WAL archive that
``prune`` cleans after the repository's base backups: WAL no kept base backup needs is deleted.

This module checks the entries (config.py calls ``check_repositories``), opens them through
storage/factory.open_repository and picks one for ``--repository NAME|INDEX``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ..core.errors import PgBackupError
from ..physical.wal_remote import RemoteWalArchive
from ..storage import azure_blob, factory, s3, sftp
from ..storage.base import check_private_file
from ..storage.local import LocalRepository

ENTRY_KEYS = ("name", "location", "options", "credentials_file", "retention", "wal_archive")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
# Settings a config may hold, per back-end; the secrets go in the credentials file.
OPTIONS = {
    "local": (),
    "s3": ("endpoint_url", "region", "profile", "sse", "kms_key_id", "chunk_size_mb"),
    "azure": tuple(name for name in azure_blob.OPTION_NAMES
                   if name not in ("connection_string", "account_key", "sas_token", "credentials_file")),
    "sftp": tuple(name for name in sftp.OPTION_NAMES if name not in ("key_file", "key_passphrase")),
}
CREDENTIALS = {
    "s3": "an AWS shared credentials file ([default] with aws_access_key_id and aws_secret_access_key)",
    "azure": "a file holding the storage account's connection string",
    "sftp": "the SSH private key (unencrypted: a passphrase would be a secret in the config)",
}
SECRET_WORDS = ("secret", "password", "passphrase", "token", "access_key", "account_key", "connection_string", "sas")


class UnknownRepository(PgBackupError):
    """``--repository`` names no repository of the config (a usage error)."""


class ValueProblem(Exception):
    """What is wrong with a value of the config: the problem, a hint and the key at fault (filled in
    on the way up); config.py turns it into a ConfigError naming the key."""

    def __init__(self, problem, hint=None, key=None):
        super(ValueProblem, self).__init__(problem)
        self.problem = problem
        self.hint = hint
        self.key = key


def backend_of(location):
    if s3.is_s3_url(location):
        return "s3"
    if azure_blob.is_azure_url(location):
        return "azure"
    if sftp.is_sftp_url(location):
        return "sftp"
    if "://" in location:
        raise ValueProblem("uses an unsupported URL scheme: %r." % location,
                           hint="Use a directory, s3://bucket/prefix, azure://container/prefix or sftp://user@host/path.")
    return "local"


def check_repositories(entries, default_retention, check_policy):
    """The entries in their normal form: every key set, names unique, options allowed for the back-end.

    ``check_policy(value)`` is config.py's retention check (None for "keep everything")."""
    if not isinstance(entries, list) or not entries:
        raise ValueProblem("must be a non-empty list of repositories, not %r." % (entries,))
    checked, names = [], set()
    for index, entry in enumerate(entries, 1):
        where = "repositories[%d]" % (index - 1)
        try:
            normal = _entry(entry, index, default_retention, check_policy)
        except ValueProblem as problem:
            problem.key = where + ("." + problem.key if problem.key else "")
            raise
        if normal["name"] in names:
            raise ValueProblem("names the repository %r twice." % normal["name"], hint="Give each one its own name.")
        names.add(normal["name"])
        checked.append(normal)
    return checked


def _entry(entry, index, default_retention, check_policy):
    if isinstance(entry, str):
        entry = {"location": entry}
    if not isinstance(entry, dict):
        raise ValueProblem("must be an object (or a location), not %r." % (entry,))
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ValueProblem("has unknown key(s): %s." % ", ".join(unknown), hint="Known keys: %s." % ", ".join(ENTRY_KEYS))
    location = entry.get("location")
    if not isinstance(location, str) or not location:
        raise ValueProblem("must be a directory or a URL, not %r." % (location,), key="location")
    backend = backend_of(location)
    name = entry.get("name") or "repo%d" % index
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueProblem("must start with a letter and hold at most 32 letters, digits, '.', '-' and '_', not %r."
                           % (name,), key="name")
    credentials_file = entry.get("credentials_file") or None
    if credentials_file is not None and (backend == "local" or not isinstance(credentials_file, str)):
        raise ValueProblem("is for a remote repository's secrets (a path), not %r for %s." % (credentials_file, location),
                           key="credentials_file")
    retention = check_policy(entry["retention"]) if "retention" in entry else default_retention
    return {"name": name, "location": location, "options": _options(entry.get("options"), backend),
            "credentials_file": credentials_file, "retention": retention,
            "wal_archive": _wal_archive(entry.get("wal_archive") or None, backend)}


def _wal_archive(location, backend):
    """A directory, or a URL on the repository's back-end (it is opened with the entry's options and credentials)."""
    if location is None:
        return None
    if not isinstance(location, str):
        raise ValueProblem("must be a directory or a URL, not %r." % (location,), key="wal_archive")
    archive_backend = backend_of(location)
    if archive_backend not in ("local", backend):
        raise ValueProblem("is a %s URL but the repository is %s: a remote WAL archive is read with the repository's "
                           "own options and credentials_file." % (archive_backend, backend), key="wal_archive",
                           hint="Name the WAL archive in the repository entry on the same back-end, or give a directory.")
    return location


def _options(options, backend):
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise ValueProblem("must be an object, not %r." % (options,), key="options")
    secrets = sorted(key for key in options if any(word in key for word in SECRET_WORDS))
    if secrets:
        raise ValueProblem("holds secrets (%s); the runner refuses them." % ", ".join(secrets), key="options",
                           hint="Put them in the repository's credentials_file (%s)." % CREDENTIALS.get(backend, "none"))
    unknown = sorted(set(options) - set(OPTIONS[backend]))
    if unknown:
        raise ValueProblem("has setting(s) a %s repository does not know: %s." % (backend, ", ".join(unknown)),
                           key="options", hint="Known: %s." % (", ".join(OPTIONS[backend]) or "none"))
    return dict((key, value) for key, value in options.items() if value not in (None, ""))


def copy_to_entries(copy_to, s3_settings):
    """The older ``copy_to`` targets as entries: each a repository that keeps everything, as copy_to
    targets always did; S3 targets take the older ``s3`` settings."""
    entries = []
    s3_options = dict((key, value) for key, value in (s3_settings or {}).items() if key != "credentials_file")
    for target in copy_to:
        entry = {"location": target, "retention": {}}
        if s3.is_s3_url(target):
            entry.update(options=s3_options, credentials_file=(s3_settings or {}).get("credentials_file"))
        entries.append(entry)
    return entries


def is_remote(entry):
    return backend_of(entry["location"]) != "local"


def open_entry(entry, owner=None):
    """The repository object of one (checked) entry: a LocalRepository or the S3, Azure or SFTP one."""
    backend = backend_of(entry["location"])
    if backend == "local":
        return LocalRepository(entry["location"], owner=owner)
    credentials = entry["credentials_file"]
    if credentials:
        check_private_file(credentials, "Credentials file of repository '%s'" % entry["name"], "credentials_file")
    if backend == "s3":
        return _open_s3(entry, owner, credentials)
    prefix = backend + "_"
    options = dict((prefix + key, value) for key, value in entry["options"].items())
    if credentials:
        options[prefix + ("credentials_file" if backend == "azure" else "key_file")] = credentials
    return factory.open_repository(entry["location"], owner=owner, **options)


def open_wal_archive(entry):
    """The entry's ``wal_archive``: a directory path, or a RemoteWalArchive opened like the repository."""
    location = entry["wal_archive"]
    if backend_of(location) == "local":
        return location
    return RemoteWalArchive(open_entry(dict(entry, location=location)))


def _open_s3(entry, owner, credentials):
    """boto3 reads the credentials file when the client is made, so it is named only for that moment:
    two S3 repositories with their own files never see each other's."""
    variable = "AWS_SHARED_CREDENTIALS_FILE"
    before = os.environ.get(variable)
    if credentials:
        os.environ[variable] = credentials
    try:
        return factory.open_repository(entry["location"], owner=owner, **entry["options"])
    finally:
        if credentials:
            if before is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = before


def add_argument(parser):
    """``--repository NAME|INDEX`` of list, verify, restore and status."""
    parser.add_argument("--repository", metavar="NAME|INDEX",
                        help="a repository of the config, by name or by position from 1 (default: the first)")


def find(entries, selector):
    """The entry named ``selector``, or at that position counted from 1; None when there is none."""
    for entry in entries:
        if entry["name"] == selector:
            return entry
    if str(selector).isdigit() and 1 <= int(selector) <= len(entries):
        return entries[int(selector) - 1]
    return None


def choose(entries, selector=None):
    """The entry ``--repository`` names; the first without one."""
    if selector in (None, ""):
        return entries[0]
    entry = find(entries, selector)
    if entry is None:
        known = ", ".join("%d=%s" % (index, entry["name"]) for index, entry in enumerate(entries, 1))
        raise UnknownRepository("No repository '%s' in this config." % selector,
                                hint="Give a name or a number from 1: %s." % known)
    return entry


def describe(entry):
    return "%s (%s)" % (entry["name"], entry["location"])
