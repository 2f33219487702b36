# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups on an SFTP server: ``sftp://user@host[:port]/absolute/path``, through paramiko.

- Authentication is by key only (``key_file``; without it the user's ~/.ssh/id_* keys),
  never by password and never through an agent.
- The server's host key must be in a known_hosts file (``known_hosts``; default the user's
  ~/.ssh/known_hosts). Unknown or changed host keys are rejected with a clear message; there
  is no "accept on first use".
- Files are uploaded as a stream to ``.tmp-...`` names created exclusively with mode 0600,
  renamed into place (``posix-rename@openssh.com`` when the server offers it), then read back
  and their sha256 compared with the manifest; the manifest is written last. Directories are
  created 0700.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import io
import json
import os
import posixpath
import socket
import stat
import uuid

from ..core import fsutil
from ..core.errors import PgBackupError
from . import META_SUFFIX
from .base import (READ_CHUNK, RemoteRepository, causes, check_private_file, interrupted_upload,
                   library_present, open_local_source, open_local_target, options_from_params, pick_options, upload_error)
from .local import TMP_PREFIX

try:
    from urllib.parse import unquote, urlsplit
except ImportError:  # Python 2 (ansible-test compile only)
    from urlparse import urlsplit  # noqa: F401
    from urllib import unquote  # noqa: F401

# imported when an SFTP repository is opened (_import_paramiko), not by every module that could open one
paramiko = CMD_EXTENDED = None


def _import_paramiko():
    global paramiko, CMD_EXTENDED
    import paramiko
    from paramiko.sftp import CMD_EXTENDED


SFTP_SCHEME = "sftp://"
DEFAULT_PORT = 22
FILE_MODE = 0o600
DIR_MODE = 0o700
WRITE_CHUNK = 256 * 1024

# Module options (names match sftp_options_from_params / open_sftp's ``sftp_*`` keywords).
SFTP_ARGUMENT_SPEC = dict(
    sftp_key_file=dict(type="path", no_log=False),  # a path, not the key
    sftp_key_passphrase=dict(type="str", no_log=True),
    sftp_known_hosts=dict(type="path"),
    sftp_timeout=dict(type="int", default=30),
)
OPTION_NAMES = ("key_file", "key_passphrase", "known_hosts", "timeout")


def is_sftp_url(location):
    return isinstance(location, str) and location.lower().startswith(SFTP_SCHEME)


def sftp_options_from_params(params):
    """``sftp_*`` module parameters -> keywords for open_repository()/open_sftp()."""
    return options_from_params(params, SFTP_ARGUMENT_SPEC)


def open_sftp(url, owner=None, **options):
    """An SftpRepository from open_repository()'s options: the ``sftp_*`` ones (others are ignored)."""
    return SftpRepository(url, **pick_options(options, "sftp_", OPTION_NAMES))


def parse_sftp_url(url):
    """``sftp://user@host:2222/srv/backups`` -> ('user', 'host', 2222, '/srv/backups')."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        port = None
    raw_path = unquote(parts.path or "")
    path = posixpath.normpath(raw_path) if raw_path else ""
    if (parts.scheme.lower() != "sftp" or not parts.username or not parts.hostname or port is None or parts.password
            or parts.query or parts.fragment or not path.startswith("/") or ".." in raw_path.split("/")):
        raise PgBackupError("'%s' is not a valid SFTP repository URL." % _without_password(url),
                            hint="Write it as sftp://user@host[:port]/absolute/path (no password in the URL: "
                                 "authentication is by key, sftp_key_file).")
    return unquote(parts.username), parts.hostname, port, path


def _without_password(url):
    parts = urlsplit(url)
    if parts.password:
        return url.replace(":" + parts.password + "@", ":********@")
    return url


def _chunks_of(handle):
    """The chunks of an open remote file, read ahead (paramiko's prefetch) to the end."""
    handle.prefetch()
    while True:
        chunk = handle.read(READ_CHUNK)
        if not chunk:
            return
        yield chunk


class SftpRepository(RemoteRepository):
    """Backups in a directory on an SFTP server, laid out like a LocalRepository."""

    kind = "sftp"

    def __init__(self, url, key_file=None, key_passphrase=None, known_hosts=None, timeout=30):
        if not library_present(_import_paramiko):
            raise PgBackupError("SFTP repositories need the Python library paramiko, which is not installed.",
                                hint="Install it on this host: apt-get install python3-paramiko, or pip install paramiko.")
        self.user, self.host, self.port, self.root = parse_sftp_url(url)
        host = self.host if ":" not in self.host else "[%s]" % self.host
        port = "" if self.port == DEFAULT_PORT else ":%d" % self.port
        self.url = "sftp://%s@%s%s%s" % (self.user, host, port, self.root.rstrip("/"))
        self.path = self.url
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self.key_passphrase = key_passphrase or None
        self.known_hosts = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
        self.timeout = int(timeout or 30)
        self.ssh = None
        self._sftp = None
        self.posix_rename = None
        self.server_fsync = None

    # Connection

    @property
    def server(self):
        return "%s:%d" % (self.host, self.port)

    def _connect(self):
        if self._sftp is not None and self.ssh.get_transport() is not None and self.ssh.get_transport().is_active():
            return self._sftp
        self.close()
        if self.key_file:
            check_private_file(self.key_file, "SSH private key file", "sftp_key_file")
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(self.known_hosts)
        except (IOError, OSError) as exc:
            raise PgBackupError("known_hosts file '%s' cannot be read: %s." % (self.known_hosts, exc.strerror or exc),
                                hint="Create it with the SFTP server's host key (ssh-keyscan -p %d %s, checked against "
                                     "the server's fingerprint) and set sftp_known_hosts." % (self.port, self.host))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(self.host, port=self.port, username=self.user, key_filename=self.key_file,
                           passphrase=self.key_passphrase, look_for_keys=not self.key_file, allow_agent=False,
                           timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout)
            self.ssh = client
            self._sftp = client.open_sftp()
            self._sftp.get_channel().settimeout(self.timeout * 4)
        except Exception as exc:
            client.close()
            self.ssh = self._sftp = None
            raise self._connect_error(exc)
        return self._sftp

    def _connect_error(self, exc):
        if isinstance(exc, PgBackupError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return PgBackupError("The host key of SFTP server %s does not match the one in '%s' (expected %s, got %s): "
                                 "refusing to connect." % (self.server, self.known_hosts, exc.expected_key.get_name(),
                                                           exc.key.get_name()),
                                 hint="Someone may be intercepting the connection, or the server was reinstalled. Check "
                                      "the server's fingerprint out of band before replacing its known_hosts entry.")
        if isinstance(exc, paramiko.AuthenticationException):
            return PgBackupError("The SFTP server %s refused the SSH key of user '%s' (%s)." % (
                self.server, self.user, str(exc).rstrip(".") or "authentication failed"),
                hint="Check sftp_key_file and that its public key is in ~%s/.ssh/authorized_keys on the server (after a "
                     "key rotation: the new key)." % self.user)
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return PgBackupError("The host key of SFTP server %s is not in '%s': refusing to connect to an unknown host."
                                 % (self.server, self.known_hosts),
                                 hint="Add the server's host key to that file after checking its fingerprint "
                                      "(ssh-keyscan -p %d %s; ssh-keygen -lf); unknown keys are never accepted "
                                      "automatically." % (self.port, self.host))
        if isinstance(exc, paramiko.PasswordRequiredException):
            return PgBackupError("SSH private key '%s' is encrypted and no passphrase was given." % self.key_file,
                                 hint="Set sftp_key_passphrase, or use a key without a passphrase kept 0600.")
        if isinstance(exc, (socket.timeout, socket.error, EOFError, paramiko.SSHException)):
            return PgBackupError("Cannot reach SFTP server %s: %s." % (self.server, str(exc).rstrip(".") or type(exc).__name__),
                                 hint="Check the host, port, firewall and that sshd runs with the SFTP subsystem.")
        return PgBackupError("Cannot connect to SFTP server %s: %s." % (self.server, exc))

    def close(self):
        for thing in (getattr(self, "_sftp", None), getattr(self, "ssh", None)):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass
        self._sftp = None
        self.ssh = None

    def __del__(self):
        self.close()

    # Names

    def remote_path(self, name):
        return posixpath.join(self.root, name) if name else self.root

    def url_of(self, name):
        return "%s/%s" % (self.url, name)

    # Errors

    def _error(self, exc, action, name=None):
        where = "'%s'" % (self.url_of(name) if name else self.url)
        for cause in causes(exc):
            if isinstance(cause, PgBackupError):
                return cause
            if isinstance(cause, (IOError, OSError)) and getattr(cause, "errno", None) in (errno.EACCES, errno.EPERM):
                return PgBackupError("Permission denied by SFTP server %s while trying to %s %s." % (self.server, action, where),
                                     hint="Check the directory's owner and mode on the server (the backup user needs "
                                          "rwx on it).")
            if isinstance(cause, (IOError, OSError)) and getattr(cause, "errno", None) == errno.ENOSPC:
                return PgBackupError("SFTP server %s has no space left to %s %s." % (self.server, action, where),
                                     hint="Free space on the server (retention) or use another target.")
            if isinstance(cause, (EOFError, socket.timeout, socket.error, paramiko.SSHException)) and not (
                    isinstance(cause, IOError) and getattr(cause, "errno", None)):
                return PgBackupError("The connection to SFTP server %s was interrupted while trying to %s %s: %s." % (
                    self.server, action, where, str(cause).rstrip(".") or type(cause).__name__),
                    hint="Check the network path to the server and retry; the local backup was not touched.")
        reason = str(exc).rstrip(".") or type(exc).__name__
        return PgBackupError("SFTP server %s refused to %s %s: %s." % (self.server, action, where, reason))

    @staticmethod
    def _missing(exc):
        return isinstance(exc, IOError) and getattr(exc, "errno", None) == errno.ENOENT

    # Storage primitives

    def check_access(self):
        sftp = self._connect()
        try:
            info = sftp.stat(self.root)
        except Exception as exc:
            if self._missing(exc):
                raise PgBackupError("Directory '%s' does not exist on SFTP server %s." % (self.root, self.server),
                                    hint="Create it (owned by '%s', mode 0700) or fix the path in the URL." % self.user)
            raise self._error(exc, "open directory")
        if not stat.S_ISDIR(info.st_mode or 0):
            raise PgBackupError("'%s' on SFTP server %s is not a directory." % (self.root, self.server))

    def _missing_directories(self):
        """The repository directory and those of its parents that do not exist yet, outermost first."""
        sftp = self._connect()
        missing = []
        current = self.root
        while current not in ("/", ""):
            try:
                sftp.stat(current)
                break
            except Exception as exc:
                if not self._missing(exc):
                    raise self._error(exc, "open directory")
                missing.append(current)
                current = posixpath.dirname(current)
        return list(reversed(missing))

    def prepare(self):
        """Create the repository directory (0700) and its parents if needed."""
        sftp = self._connect()
        for directory in self._missing_directories():
            try:
                sftp.mkdir(directory, DIR_MODE)
            except Exception as exc:
                raise self._error(exc, "create directory %s in" % directory)
        self.check_access()

    def check_reachable(self):
        """The server answers with these keys; a repository directory that prepare() would create may be missing."""
        if not self._missing_directories():
            self.check_access()

    def stat(self, name=""):
        """paramiko SFTPAttributes of a file (or of the repository directory): mode, uid, gid, size."""
        try:
            return self._connect().stat(self.remote_path(name))
        except Exception as exc:
            raise self._error(exc, "inspect", name or None)

    def _listdir(self, path):
        try:
            return self._connect().listdir_attr(path)
        except Exception as exc:
            if self._missing(exc):
                return []
            raise self._error(exc, "list")

    def _top_names(self):
        return [entry.filename for entry in self._listdir(self.root)]

    def temp_entries(self):
        """[(name, modification time)] of ``.tmp-*`` files: uploads in progress, or left by killed ones."""
        return sorted((entry.filename, entry.st_mtime or 0) for entry in self._listdir(self.root)
                      if entry.filename.startswith(TMP_PREFIX))

    def _tree(self, prefix):
        """{name: size} of all files whose repository-relative name starts with ``prefix``."""
        found = {}
        directory, start = posixpath.split(prefix)
        pending = [(directory, start)]
        while pending:
            relative_dir, start = pending.pop()
            for entry in self._listdir(self.remote_path(relative_dir)):
                if not entry.filename.startswith(start):
                    continue
                name = posixpath.join(relative_dir, entry.filename) if relative_dir else entry.filename
                if stat.S_ISDIR(entry.st_mode or 0):
                    pending.append((name, ""))
                else:
                    found[name] = entry.st_size
        return found

    def _size(self, name):
        try:
            info = self._connect().stat(self.remote_path(name))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(exc, "inspect", name)
        if stat.S_ISDIR(info.st_mode or 0):
            return None
        return info.st_size

    def _read(self, name):
        try:
            with self._connect().open(self.remote_path(name), "rb") as handle:
                return handle.read()
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(exc, "read", name)

    def _temp_name(self, name):
        directory, base = posixpath.split(name)
        temp = "%s%s.%s" % (TMP_PREFIX, base, uuid.uuid4().hex[:12])
        return posixpath.join(directory, temp) if directory else temp

    def _ensure_parent(self, name):
        directory = posixpath.dirname(name)
        if not directory:
            return
        sftp = self._connect()
        parts = directory.split("/")
        for index in range(1, len(parts) + 1):
            path = self.remote_path("/".join(parts[:index]))
            try:
                sftp.stat(path)
            except Exception as exc:
                if not self._missing(exc):
                    raise
                sftp.mkdir(path, DIR_MODE)

    def _rename_into_place(self, temp, name):
        sftp = self._connect()
        source, target = self.remote_path(temp), self.remote_path(name)
        if self.posix_rename is not False:
            try:
                sftp.posix_rename(source, target)
                return
            except IOError as exc:
                if "unsupported" not in str(exc).lower():  # paramiko: SFTP_OP_UNSUPPORTED -> "Operation unsupported"
                    raise
                self.posix_rename = False
        # Plain SFTP rename refuses to replace: remove the old file first (a short window without it).
        try:
            sftp.remove(target)
        except IOError as exc:
            if not self._missing(exc):
                raise
        sftp.rename(source, target)

    def _write_stream(self, name, reader, progress=None):
        """Stream ``reader`` into ``.tmp-<name>.<random>`` (0600, exclusive), rename it to ``name``.
        Returns (size, sha256) of what was sent."""
        temp, size, digest = self._upload_temp(name, reader, progress)
        try:
            self._rename_into_place(temp, name)
        except BaseException:
            self._remove_quietly([temp])
            raise
        return size, digest

    def _upload_temp(self, name, reader, progress=None, durable=False):
        """Stream ``reader`` into a new temp file beside ``name`` (0600, exclusive); with ``durable`` the
        server fsyncs it (fsync@openssh.com) before it is closed. Returns (temp name, size, sha256)."""
        sftp = self._connect()
        self._ensure_parent(name)
        temp = self._temp_name(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with sftp.open(self.remote_path(temp), "wxb") as handle:
                handle.chmod(FILE_MODE)
                handle.set_pipelined(True)
                while True:
                    chunk = reader.read(WRITE_CHUNK)
                    if not chunk:
                        break
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if progress:
                        progress(len(chunk))
                if durable:
                    self._fsync(handle)
        except BaseException:
            self._remove_quietly([temp])
            raise
        return temp, size, digest.hexdigest()

    def _fsync(self, handle):
        """Make an open remote file durable where the server offers fsync@openssh.com (OpenSSH does since
        6.5; paramiko has no call for it, hence its request API)."""
        if self.server_fsync is False:
            return
        handle.flush()
        try:
            self._sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)
            self.server_fsync = True
        except IOError as exc:
            if "unsupported" not in str(exc).lower():
                raise
            self.server_fsync = False

    def metadata(self, name):
        """Kept in a ``<name>.meta`` JSON file beside it: SFTP files carry no metadata."""
        if self._size(name) is None:
            return None
        body = self._read(name + META_SUFFIX)
        try:
            data = json.loads(body.decode("utf-8")) if body else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def put_new(self, path, name, metadata=None):
        """Upload to a temp file the server fsyncs, read it back, then give it its name with a plain SFTP
        rename, which never replaces a file (OpenSSH links, then unlinks). The metadata file is written
        just before: it may outlive a crash, never miss for a published file."""
        try:
            if self._size(name) is not None:
                return False
            with open_local_source(path) as handle:
                temp, size, digest = self._upload_temp(name, handle, durable=True)
            try:
                self._confirm_upload(temp, size, digest)
                if metadata:
                    self._write(name + META_SUFFIX, json.dumps(metadata, sort_keys=True).encode("utf-8"))
                self._connect().rename(self.remote_path(temp), self.remote_path(name))
            except IOError:
                self._remove_quietly([temp])
                if self._size(name) is not None:
                    return False
                raise
            except BaseException:
                self._remove_quietly([temp])
                raise
        except PgBackupError:
            raise
        except Exception as exc:
            raise upload_error(self._error(exc, "upload to", name), path)
        return True

    def _write(self, name, data):
        try:
            self._write_stream(name, io.BytesIO(data))
        except Exception as exc:
            raise self._error(exc, "write", name)

    def _put_file(self, path, name, sha256=None, progress=None):
        with open_local_source(path) as handle:
            try:
                size, digest = self._write_stream(name, handle, progress)
            except PgBackupError:
                raise
            except Exception as exc:
                if not os.path.exists(path):
                    raise PgBackupError("Upload interrupted: source file '%s' disappeared during the upload." % path,
                                        hint="The partial copy was removed and no manifest was written. Retry the copy.")
                if not any(isinstance(cause, (IOError, OSError, EOFError, paramiko.SSHException)) for cause in causes(exc)):
                    raise interrupted_upload(path, self.url_of(name), str(exc).rstrip(".") or type(exc).__name__)
                raise self._error(exc, "upload to", name)
        if sha256 and digest != sha256:
            raise PgBackupError("Checksum mismatch while uploading '%s': the local file changed or is damaged." % path,
                                hint="Nothing was published; verify the source backup.", reason="damaged")
        return size

    def _sha256(self, name):
        try:
            with self._connect().open(self.remote_path(name), "rb") as handle:
                digest, size = fsutil.sha256_chunks(_chunks_of(handle))
        except Exception as exc:
            raise self._error(exc, "read", name)
        return size, digest

    def _get_file(self, name, path, progress=None):
        with open_local_target(path) as target:
            try:
                with self._connect().open(self.remote_path(name), "rb") as handle:
                    for chunk in _chunks_of(handle):
                        target.write(chunk)
                        if progress:
                            progress(len(chunk))
            except Exception as exc:
                raise self._error(exc, "download", name)
            target.flush()
            os.fsync(target.fileno())

    def _remove(self, names):
        sftp = self._connect()
        directories = set()
        for name in names:
            try:
                sftp.remove(self.remote_path(name))
            except Exception as exc:
                if not self._missing(exc):
                    raise self._error(exc, "delete", name)
            parent = posixpath.dirname(name)
            while parent:
                directories.add(parent)
                parent = posixpath.dirname(parent)
        for directory in sorted(directories, key=len, reverse=True):
            try:  # directory-format artifacts: remove the then empty <id>.dir/ tree
                sftp.rmdir(self.remote_path(directory))
            except IOError:
                pass
