# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-host runner ``todoapi-pgbackup`` (cron / systemd): a thin adapter over the engine.

    todoapi-pgbackup [--config PATH] backup  [--database DB ...]
    todoapi-pgbackup [--config PATH] list    [--database DB] [--json]
    todoapi-pgbackup [--config PATH] verify  [--backup ID] [--database DB] [--level LEVEL]
    todoapi-pgbackup [--config PATH] prune   [--dry-run]
    todoapi-pgbackup [--config PATH] restore [--backup ID] [--database DB] [--tables T ...] [--force] [--clean] ...
    todoapi-pgbackup [--config PATH] status  [--monitoring-config PATH] ...   (health check, see monitor.py)
    todoapi-pgbackup --version

The config is a JSON file written by the ``todoapi.pgbackup.backup`` role; it never holds a
password: ``connection.passfile`` names a 0600 libpq passfile that is handed to libpq
through PGPASSFILE. Every run that changes or reads backups holds an exclusive ``flock``
on ``lock_file`` (released by the kernel when the process dies, so a killed run leaves no
stale lock). Each event is one JSON line in ``log_file``; stdout gets a human line.

Exit status: 0 success, 1 a backup/verify/prune/restore failed, 2 usage error,
75 another run held the lock for longer than ``lock_wait_seconds``, 78 bad config.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import errno
import fcntl
import json
import os
import pwd
import socket
import stat
import sys
import time
import traceback

from ..logical import backup as logical_backup
from ..logical import restore as logical_restore
from ..core import manifest as manifests
from ..core import pgconn
from ..core.errors import PgBackupError
from ..storage.local import LocalRepository

from ..ops import retention
from ..ops import verify as verify_engine
from ..storage import transfer
from . import monitor

PROG = "todoapi-pgbackup"
VERSION = manifests.TOOL_VERSION
DEFAULT_CONFIG = "/etc/todoapi-pgbackup/config.json"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75   # EX_TEMPFAIL: try again later
EXIT_CONFIG = 78   # EX_CONFIG

DEFAULTS = {
    "repository": "/var/backups/todoapi",
    "owner": "postgres",
    "databases": ["TodoDb"],
    "connection": {},
    "format": "custom",
    "compression": "zstd:1",
    "jobs": 1,
    "globals": True,
    "schemas": [],
    "exclude_schemas": [],
    "exclude_tables": [],
    "encrypt_recipients": [],
    "identity_file": None,
    "pg_bin_dir": None,
    "log_file": "/var/log/todoapi_backup.log",
    "lock_file": "/run/lock/todoapi-pgbackup.lock",
    "lock_wait_seconds": 300,
    "retention": None,
    "copy_to": [],
    "s3": {},
    "verify_level": "checksum",
    "max_age_hours": None,
}
CONNECTION_KEYS = ("host", "port", "user", "passfile", "sslmode", "connect_timeout")
S3_KEYS = ("endpoint_url", "region", "profile", "sse", "kms_key_id", "chunk_size_mb", "credentials_file")
LIST_KEYS = ("databases", "schemas", "exclude_schemas", "exclude_tables", "encrypt_recipients", "copy_to")
PASSWORD_MASK = "********"


class LockBusy(PgBackupError):
    """Another run holds the lock for longer than we may wait."""


class ConfigError(PgBackupError):
    """The runner's config file is missing or wrong."""


# Config


def load_config(path):
    """Read and check the JSON config; returns a dict with every key of DEFAULTS."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            raise ConfigError("Config file '%s' does not exist." % path,
                              hint="Install the runner with the todoapi.pgbackup.backup role, or pass --config PATH.")
        if exc.errno == errno.EACCES:
            raise ConfigError("Config file '%s' is not readable by OS user '%s'." % (path, _current_user()),
                              hint="Run as the backup user (postgres) or root.")
        raise ConfigError("Cannot read config file '%s': %s." % (path, exc.strerror))
    except ValueError as exc:
        raise ConfigError("Config file '%s' is not valid JSON: %s." % (path, exc),
                          hint="Fix the file (the backup role writes it with to_nice_json).")
    return check_config(raw, path)


def check_config(raw, source="config"):
    if not isinstance(raw, dict):
        raise ConfigError("%s must hold a JSON object." % source)
    raw = dict(raw)
    if "database" in raw:
        if "databases" in raw:
            raise ConfigError("%s sets both 'database' and 'databases'." % source, hint="Keep one of them.")
        raw["databases"] = raw.pop("database")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError("%s has unknown key(s): %s." % (source, ", ".join(unknown)),
                          hint="Known keys: %s." % ", ".join(sorted(DEFAULTS)))
    config = dict(DEFAULTS)
    config.update(raw)
    if isinstance(config["databases"], str):
        config["databases"] = [config["databases"]]
    for key in LIST_KEYS:
        value = config[key] if config[key] is not None else []
        if not isinstance(value, list):
            raise ConfigError("'%s' in %s must be a list." % (key, source))
        config[key] = value
    if not config["databases"] or not all(isinstance(db, str) and db for db in config["databases"]):
        raise ConfigError("'databases' in %s must be a non-empty list of database names." % source)
    if not isinstance(config["repository"], str) or not config["repository"]:
        raise ConfigError("'repository' in %s must be a directory path." % source)
    config["connection"] = _check_connection(config["connection"] or {}, source)
    for key in ("jobs", "lock_wait_seconds"):
        try:
            config[key] = float(config[key]) if key == "lock_wait_seconds" else int(config[key])
        except (TypeError, ValueError):
            raise ConfigError("'%s' in %s must be a number, not %r." % (key, source, config[key]))
        if config[key] < 0:
            raise ConfigError("'%s' in %s must not be negative." % (key, source))
    if config["max_age_hours"] is not None:
        try:
            config["max_age_hours"] = float(config["max_age_hours"])
        except (TypeError, ValueError):
            raise ConfigError("'max_age_hours' in %s must be a number of hours." % source)
    config["s3"] = _check_s3(config["s3"] or {}, source)
    if config["retention"] is not None and not isinstance(config["retention"], dict):
        raise ConfigError("'retention' in %s must be an object (the retention policy)." % source)
    return config


def _check_connection(connection, source):
    if not isinstance(connection, dict):
        raise ConfigError("'connection' in %s must be an object." % source)
    if "password" in connection:
        raise ConfigError("%s holds a password in 'connection'; the runner refuses it." % source,
                          hint="Put the password in a 0600 libpq passfile and set 'connection.passfile' to its path.")
    unknown = sorted(set(connection) - set(CONNECTION_KEYS))
    if unknown:
        raise ConfigError("'connection' in %s has unknown key(s): %s." % (source, ", ".join(unknown)),
                          hint="Known keys: %s." % ", ".join(CONNECTION_KEYS))
    return dict(connection)


def _check_s3(options, source):
    if not isinstance(options, dict):
        raise ConfigError("'s3' in %s must be an object." % source)
    secrets = sorted(key for key in options if "secret" in key or "access_key" in key or "token" in key)
    if secrets:
        raise ConfigError("%s holds S3 credentials (%s); the runner refuses them." % (source, ", ".join(secrets)),
                          hint="Use an AWS profile, a 0600 credentials file ('s3.credentials_file') or the instance role.")
    unknown = sorted(set(options) - set(S3_KEYS))
    if unknown:
        raise ConfigError("'s3' in %s has unknown key(s): %s." % (source, ", ".join(unknown)),
                          hint="Known keys: %s." % ", ".join(S3_KEYS))
    return dict(options)


def connection_spec(config):
    """The engine's ConnectionSpec; the password stays in the passfile (PGPASSFILE)."""
    connection = config["connection"]
    passfile = connection.get("passfile")
    if passfile:
        check_passfile(passfile)
        os.environ["PGPASSFILE"] = passfile
    os.environ.pop("PGPASSWORD", None)
    spec = pgconn.ConnectionSpec(host=connection.get("host"), port=connection.get("port"),
                                 user=connection.get("user"), sslmode=connection.get("sslmode"))
    if connection.get("connect_timeout"):
        spec.connect_timeout = int(connection["connect_timeout"])
    return spec


def check_passfile(path):
    """libpq silently ignores a passfile others may read; say so instead of failing to log in."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError("Passfile '%s' cannot be used: %s." % (path, exc.strerror),
                          hint="Create it (the backup role does when pgbackup_password is set) or fix 'connection.passfile'.")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("Passfile '%s' is not a regular file." % path)
    if info.st_mode & 0o077:
        raise ConfigError("Passfile '%s' has mode %04o; libpq ignores a passfile that group or others can read."
                          % (path, stat.S_IMODE(info.st_mode)), hint="chmod 0600 '%s'." % path)
    if not os.access(path, os.R_OK):
        raise ConfigError("Passfile '%s' is not readable by OS user '%s'." % (path, _current_user()),
                          hint="Run as the user that owns it (postgres).")


def passfile_secrets(config):
    """Passwords in the passfile, so that no log line can ever carry one."""
    path = (config.get("connection") or {}).get("passfile")
    secrets = []
    if not path:
        return secrets
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return secrets
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _split_passfile_line(line)
        if len(fields) >= 5 and fields[4]:
            secrets.append(fields[4])
    return secrets


def _split_passfile_line(line):
    fields, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _current_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# Event log


def utc_timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def human_size(size):
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%d B" % size


class EventLog(object):
    """One JSON object per line in ``path`` (appended with single writes, so concurrent runs
    do not interleave within a line) and one human line on ``stream``.

    When ``stream`` is the log file itself (the seed's ``>> /var/log/todoapi_backup.log 2>&1``
    cron line), the human lines are not echoed, so the log stays one JSON object per line.
    Every known secret is masked in both.
    """

    FIELDS = ("database", "backup_id", "size", "duration", "error", "hint")

    def __init__(self, path, command=None, secrets=(), stream=None, quiet=False):
        self.path = path
        self.command = command
        self.secrets = [s for s in secrets if s]
        self.stream = stream if stream is not None else sys.stdout
        self.fd = None
        self.open_error = None
        if path:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as exc:
                self.open_error = "cannot write log file '%s': %s" % (path, exc.strerror)
        self.echo = not quiet and not self._stream_is_log()
        self.host = socket.gethostname()

    def _stream_is_log(self):
        if self.fd is None:
            return False
        try:
            mine, theirs = os.fstat(self.fd), os.fstat(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            return False
        return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)

    def mask(self, value):
        if not isinstance(value, str):
            return value
        for secret in self.secrets:
            value = value.replace(secret, PASSWORD_MASK)
        return value

    def event(self, event, message, level="info", **fields):
        record = {"ts": utc_timestamp(), "level": level, "event": event, "host": self.host, "pid": os.getpid()}
        if self.command:
            record["command"] = self.command
        for key, value in fields.items():
            if value is not None:
                record[key] = self.mask(value)
        record["message"] = self.mask(message)
        if self.fd is not None:
            line = json.dumps(record, sort_keys=False, default=str) + "\n"
            try:
                os.write(self.fd, line.encode("utf-8"))
            except OSError as exc:
                self._warn("cannot write log file '%s': %s" % (self.path, exc.strerror))
        if self.echo:
            self.stream.write("%s %-5s %s\n" % (record["ts"][:19] + "Z", level.upper(), record["message"]))
            self.stream.flush()
        return record

    def info(self, event, message, **fields):
        return self.event(event, message, level="info", **fields)

    def warning(self, event, message, **fields):
        return self.event(event, message, level="warning", **fields)

    def error(self, event, error, **fields):
        """Log a PgBackupError (or any exception) as one error event."""
        message = getattr(error, "message", None) or str(error)
        hint = getattr(error, "hint", None)
        details = getattr(error, "details", None) or {}
        if details.get("traceback"):
            sys.stderr.write(self.mask(details["traceback"]))
        text = fields.pop("prefix", "") + message + ((" " + hint) if hint else "")
        return self.event(event, text, level="error", error=message, hint=hint, **fields)

    def _warn(self, text):
        sys.stderr.write("%s: warning: %s\n" % (PROG, self.mask(text)))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# Lock


class RunLock(object):
    """Exclusive flock on ``path``. The kernel drops it when the holding process exits, so a
    lock file left behind by a killed run never blocks the next one."""

    def __init__(self, path, wait_seconds, poll_seconds=0.2):
        self.path = path
        self.wait_seconds = max(0.0, float(wait_seconds))
        self.poll_seconds = poll_seconds
        self.fd = None
        self.waited = 0.0

    def _open(self):
        """(fd, flags): read-write if possible; read-only is enough for flock."""
        path = path_or_die(self.path)
        # Open without O_CREAT first: with fs.protected_regular, O_CREAT on another user's file in
        # a sticky directory (/run/lock) is refused even when the mode would allow the open.
        attempts = [os.O_RDWR, os.O_RDWR | os.O_CREAT, os.O_RDONLY]
        failure = None
        for flags in attempts:
            try:
                return os.open(path, flags, 0o644), flags
            except OSError as exc:
                if failure is None or exc.errno != errno.ENOENT:
                    failure = exc
                if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                    break
        if failure.errno == errno.ENOENT:
            hint = "Create its directory, or set 'lock_file' to a path in an existing directory."
        else:
            hint = "Let OS user '%s' create or open it (e.g. keep it in /run/lock), or set 'lock_file'." % _current_user()
        raise PgBackupError("Cannot open lock file '%s': %s." % (path, failure.strerror), hint=hint)

    def holder(self):
        try:
            with open(self.path) as handle:
                return handle.read().strip() or None
        except (IOError, OSError):
            return None

    def try_acquire(self):
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (IOError, OSError) as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise

    def acquire(self, on_wait=None):
        """Take the lock, waiting up to ``wait_seconds``; raises LockBusy after that."""
        self.fd, flags = self._open()
        started = time.monotonic()
        deadline = started + self.wait_seconds
        announced = False
        while not self.try_acquire():
            if not announced and on_wait is not None:
                on_wait(self.holder())
                announced = True
            if time.monotonic() >= deadline:
                holder = self.holder()
                os.close(self.fd)
                self.fd = None
                raise LockBusy(
                    "Another %s run%s still holds lock file '%s' after %ds of waiting; this run was skipped."
                    % (PROG, (" (pid %s)" % holder) if holder else "", self.path, int(self.wait_seconds)),
                    hint="The next scheduled run retries; if runs keep overlapping, spread the schedules or raise "
                         "lock_wait_seconds. A crashed run never leaves a stale lock (the kernel releases it).")
            time.sleep(self.poll_seconds)
        self.waited = time.monotonic() - started
        if flags != os.O_RDONLY:
            try:
                os.ftruncate(self.fd, 0)
                os.write(self.fd, ("%d\n" % os.getpid()).encode("ascii"))
            except OSError:
                pass
        return self

    def release(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def path_or_die(path):
    if not path:
        raise PgBackupError("No lock file configured.", hint="Set 'lock_file' in the config.")
    return path


# Commands


def repository_of(config):
    return LocalRepository(config["repository"], owner=config["owner"])


def backup_request(config, database, repository, connection):
    return logical_backup.LogicalBackupRequest(
        database, repository, connection, fmt=config["format"], jobs=config["jobs"],
        compression=config["compression"], schemas=config["schemas"], exclude_schemas=config["exclude_schemas"],
        exclude_tables=config["exclude_tables"], globals_=config["globals"],
        encrypt_recipients=config["encrypt_recipients"], pg_bin_dir=config["pg_bin_dir"])


def copy_to(config, repository, manifest, log):
    """Hook: copy a finished backup to every ``copy_to`` target (second path, NFS or s3:// URL)."""
    targets = config["copy_to"]
    if not targets:
        return None
    started = time.monotonic()
    results = transfer.copy_to_targets(manifest, repository, targets, owner=config["owner"], s3_options=s3_options(config))
    for result in results:
        log.info("copy_ok", "copied %s to %s" % (manifest["id"], result.get("target")),
                 database=manifest["database"], backup_id=manifest["id"], target=result.get("target"),
                 size=result.get("size"), changed=result.get("changed"))
    log.info("copy_done", "%s copied to %d target(s) in %.1fs" % (manifest["id"], len(results), time.monotonic() - started),
             database=manifest["database"], backup_id=manifest["id"], duration=round(time.monotonic() - started, 3))
    return results


def s3_options(config):
    """S3 settings for copy_to; credentials come from boto3's chain (profile, env, instance role)."""
    options = dict(config["s3"] or {})
    credentials_file = options.pop("credentials_file", None)
    if credentials_file:
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
    return options


def cmd_backup(args, config, log):
    repository = repository_of(config)
    connection = connection_spec(config)
    databases = args.database or config["databases"]
    failed = []
    for database in databases:
        log.info("backup_started", "backup of %s started" % database, database=database)
        started = time.monotonic()
        try:
            manifest = logical_backup.backup(backup_request(config, database, repository, connection))
        except Exception as exc:  # one database failing must not stop the others
            failed.append(database)
            log.error("backup_failed", _as_error(exc), prefix="backup of %s failed: " % database, database=database,
                      duration=round(time.monotonic() - started, 3))
            continue
        log.info("backup_ok", "backup of %s ok: %s, %s in %.1fs" % (
            database, manifest["id"], human_size(manifest["size"]), manifest.get("duration_seconds", 0)),
            database=database, backup_id=manifest["id"], size=manifest["size"],
            duration=manifest.get("duration_seconds"), sha256=manifest["sha256"], tables=len(manifest.get("tables") or {}))
        try:
            copy_to(config, repository, manifest, log)
        except Exception as exc:
            failed.append(database)
            log.error("copy_failed", _as_error(exc), prefix="copy of %s failed: " % manifest["id"], database=database,
                      backup_id=manifest["id"])
    if failed:
        log.event("run_failed", "%d of %d backup(s) failed: %s" % (len(failed), len(databases), ", ".join(failed)),
                  level="error")
        return EXIT_FAILED
    return EXIT_OK


def _as_error(exc):
    if isinstance(exc, PgBackupError):
        return exc
    return PgBackupError("Unexpected %s: %s" % (type(exc).__name__, exc),
                         hint="This is a bug in todoapi-pgbackup; the traceback is on stderr.",
                         traceback=traceback.format_exc())


def summary(manifest):
    """What `list` shows of a manifest."""
    return {
        "id": manifest["id"],
        "database": manifest["database"],
        "kind": manifest["kind"],
        "finished_at": manifest["finished_at"],
        "size": manifest["size"],
        "sha256": manifest["sha256"],
        "format": manifest.get("format"),
        "compression": (manifest.get("compression") or {}).get("method"),
        "encrypted": bool(manifest.get("encryption")),
        "artifact": manifest["artifact"],
        "tables": manifest.get("tables") or {},
        "server_version": manifest.get("server_version"),
    }


def cmd_list(args, config, log):
    repository = repository_of(config)
    backups = repository.list(database=args.database)
    problems = list(getattr(repository, "problems", []))
    rows = [summary(m) for m in backups]
    if args.json:
        json.dump({"repository": repository.path, "backups": rows, "problems": problems}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(rows, repository.path)
        for problem in problems:
            sys.stderr.write("warning: %s\n" % problem)
    return EXIT_OK


def print_table(rows, path):
    if not rows:
        sys.stdout.write("No backups in %s.\n" % path)
        return
    header = ("ID", "DATABASE", "FINISHED (UTC)", "SIZE", "FORMAT", "ENCRYPTED")
    lines = [header] + [(r["id"], r["database"], r["finished_at"][:19].replace("T", " "), human_size(r["size"]),
                         "%s/%s" % (r["format"], r["compression"]), "yes" if r["encrypted"] else "no") for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        sys.stdout.write("  ".join(str(value).ljust(width) for value, width in zip(line, widths)).rstrip() + "\n")


def backups_to_verify(args, config, repository):
    if args.backup and args.backup != "latest":
        return [repository.resolve(args.backup)]
    chosen = []
    for database in args.database or config["databases"]:
        found = repository.list(database=database)
        if not found:
            raise PgBackupError("No backup of database '%s' in repository '%s'." % (database, repository.path),
                                hint="Check that scheduled backups run (see the log file).")
        chosen.append(found[-1])   # the newest, not the newest good one: its damage must show
    return chosen


def verify_one(config, repository, manifest, level):
    return verify_engine.verify_backup(repository, manifest, level, connection=connection_spec(config),
                                       identity_file=config["identity_file"], pg_bin_dir=config["pg_bin_dir"])


def cmd_verify(args, config, log):
    repository = repository_of(config)
    level = args.level or config["verify_level"]
    failures = 0
    try:
        manifests_to_check = backups_to_verify(args, config, repository)
    except PgBackupError as exc:
        log.error("verify_failed", exc)
        return EXIT_FAILED
    for manifest in manifests_to_check:
        started = time.monotonic()
        fields = {"database": manifest["database"], "backup_id": manifest["id"], "size": manifest["size"]}
        try:
            result = verify_one(config, repository, manifest, level)
            age_problem = stale_backup_problem(config, manifest)
            if age_problem:
                raise age_problem
        except Exception as exc:
            failures += 1
            log.error("verify_failed", _as_error(exc), duration=round(time.monotonic() - started, 3), level_checked=level, **fields)
            continue
        log.info("verify_ok", "verify (%s) of %s ok" % (level, manifest["id"]), duration=round(time.monotonic() - started, 3),
                 level_checked=level, result=result if isinstance(result, dict) else None, **fields)
    return EXIT_FAILED if failures else EXIT_OK


def stale_backup_problem(config, manifest):
    limit = config["max_age_hours"]
    if not limit:
        return None
    age = (manifests.utcnow() - manifests.parse_time(manifest["finished_at"])).total_seconds() / 3600.0
    if age <= limit:
        return None
    return PgBackupError("The newest backup of '%s' is %.1f hours old (limit %g)." % (manifest["database"], age, limit),
                         hint="Scheduled backups are not running or failing; see the log file.")


def cmd_prune(args, config, log):
    policy = config["retention"]
    if not policy:
        log.info("prune_skipped", "no retention policy configured; nothing pruned")
        return EXIT_OK
    repository = repository_of(config)
    verb = "would delete" if args.dry_run else "deleted"
    reported = set()
    for database in config["databases"]:
        # Only this runner's own backups: other databases or physical backups in a shared
        # repository are someone else's to prune.
        result = retention.apply_retention(repository, policy, dry_run=args.dry_run, database=database, kind="logical")
        for entry in result.get("deleted") or []:
            log.info("prune_deleted" if not args.dry_run else "prune_would_delete",
                     "%s %s (%s)" % (verb, entry["id"], entry.get("reason") or "retention"),
                     database=database, backup_id=entry["id"], reason=entry.get("reason"), dry_run=bool(args.dry_run))
        for problem in result.get("problems") or []:
            log.warning("prune_problem", problem, database=database)
        for temp in result.get("stale_temp") or []:
            name = temp.get("name") if isinstance(temp, dict) else str(temp)
            if name not in reported:
                reported.add(name)
                log.warning("stale_temp", "stale work-in-progress file left by an interrupted run: %s" % name)
        deleted, kept = len(result.get("deleted") or []), len(result.get("kept") or [])
        log.info("prune_ok", "prune of %s: %s %d, kept %d" % (database, verb, deleted, kept),
                 database=database, deleted=deleted, kept=kept, dry_run=bool(args.dry_run))
    return EXIT_OK


def cmd_restore(args, config, log):
    repository = repository_of(config)
    connection = connection_spec(config)
    selector = args.backup or "latest"
    source = args.source_database
    if not source:
        if selector != "latest":
            source = repository.resolve(selector)["database"]
        elif len(config["databases"]) == 1:
            source = config["databases"][0]
        else:
            raise PgBackupError("Several databases are configured; say which one's latest backup to restore.",
                                hint="Pass --source-database NAME (or --backup ID).")
    request = logical_restore.LogicalRestoreRequest(
        repository, connection, database=args.database or source, backup=selector, source_database=source,
        tables=args.tables, clean=args.clean, force=args.force, jobs=args.jobs or 1, globals_=args.globals,
        identity_file=args.identity or config["identity_file"], pg_bin_dir=config["pg_bin_dir"])
    if args.dry_run:
        plan = logical_restore.plan(request)
        log.info("restore_plan", "would restore %s into %s (%s restore; target %s)" % (
            plan["backup"]["id"], request.database, plan["mode"], "exists" if plan["target_exists"] else "is new"),
            database=request.database, backup_id=plan["backup"]["id"])
        return EXIT_OK
    log.info("restore_started", "restore of %s (%s) into %s started" % (selector, source, request.database),
             database=request.database)
    try:
        result = logical_restore.restore(request)
    except Exception as exc:
        log.error("restore_failed", _as_error(exc), prefix="restore into %s failed: " % request.database,
                  database=request.database)
        return EXIT_FAILED
    log.info("restore_ok", "restore of %s into %s ok: %d table(s) in %.1fs" % (
        result["backup_id"], request.database, len(result.get("restored_tables") or []), result["duration_seconds"]),
        database=request.database, backup_id=result["backup_id"], duration=result["duration_seconds"],
        tables=result.get("tables"))
    return EXIT_OK


COMMANDS = {
    # name: (function, takes the lock)
    "backup": (cmd_backup, True),
    "list": (cmd_list, False),
    "verify": (cmd_verify, True),
    "prune": (cmd_prune, True),
    "restore": (cmd_restore, True),
    "status": (lambda args, config, log: monitor.run_status_command(args, runner_config=config), False),
}


# Argument parsing and main


class _Parser(argparse.ArgumentParser):
    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)


class _ParserExit(Exception):
    def __init__(self, status):
        super(_ParserExit, self).__init__(status)
        self.status = status


def build_parser():
    parser = _Parser(prog=PROG, description="Scheduled PostgreSQL backups of the Todo API (todoapi.pgbackup runner).",
                     epilog="Exit status: 0 ok, 1 failure, 2 usage, 75 lock busy (another run), 78 bad config.")
    parser.add_argument("--version", action="version", version="%s %s" % (PROG, VERSION))
    parser.add_argument("--config", default=os.environ.get("TODOAPI_PGBACKUP_CONFIG", DEFAULT_CONFIG),
                        help="JSON config file (default: %(default)s)")
    parser.add_argument("--lock-wait", type=float, metavar="SECONDS",
                        help="wait at most this long for another run's lock (default: lock_wait_seconds of the config)")
    parser.add_argument("--quiet", action="store_true", help="no human lines on stdout (the log file still gets events)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    backup = commands.add_parser("backup", help="back up every configured database (exit 1 if any failed)")
    backup.add_argument("--database", action="append", metavar="DB", help="only this database (repeatable)")

    listing = commands.add_parser("list", help="list the repository's backups")
    listing.add_argument("--database", metavar="DB", help="only backups of this database")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    verify = commands.add_parser("verify", help="verify the newest backup of each database, or --backup ID")
    verify.add_argument("--backup", metavar="ID", help="backup id (default: the newest of each configured database)")
    verify.add_argument("--database", action="append", metavar="DB", help="only this database (repeatable)")
    verify.add_argument("--level", help="verification level (default: verify_level of the config, 'checksum')")

    prune = commands.add_parser("prune", help="delete backups the retention policy no longer keeps")
    prune.add_argument("--dry-run", action="store_true", help="only report what would be deleted")

    restore = commands.add_parser("restore", help="restore a backup (whole database or some tables)")
    restore.add_argument("--backup", metavar="ID", default="latest", help="backup id, or 'latest' (default)")
    restore.add_argument("--database", metavar="DB", help="target database (default: the backup's database)")
    restore.add_argument("--source-database", metavar="DB",
                         help="database whose latest backup to restore (default: the configured one)")
    restore.add_argument("--tables", nargs="+", action="extend", metavar="TABLE",
                         help="restore only these tables into the existing target")
    restore.add_argument("--force", action="store_true", help="replace a target database that holds tables")
    restore.add_argument("--clean", action="store_true", help="with --force: drop and recreate the target")
    restore.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs")
    restore.add_argument("--globals", action="store_true", help="also restore roles and tablespaces")
    restore.add_argument("--identity", metavar="FILE", help="age identity (private key) file for encrypted backups")
    restore.add_argument("--dry-run", action="store_true", help="check the backup and the target, change nothing")

    status = commands.add_parser("status", help="check backup health, write metrics, send alerts (monitoring)")
    monitor.add_status_arguments(status)
    return parser


def parse_args(argv=None):
    """Parsed arguments, or an int exit status (help, --version, usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ParserExit as exc:
        return exc.status
    if not args.command:
        parser.print_usage(sys.stderr)
        sys.stderr.write("%s: error: a command is required (%s)\n" % (PROG, ", ".join(sorted(COMMANDS))))
        return EXIT_USAGE
    return args


def main(argv=None):
    args = parse_args(argv)
    if isinstance(args, int):
        return args
    try:
        config = load_config(args.config)
    except PgBackupError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return EXIT_CONFIG
    function, needs_lock = COMMANDS[args.command]
    log = EventLog(config["log_file"] if needs_lock else None, command=args.command,
                   secrets=passfile_secrets(config), quiet=args.quiet)
    if log.open_error:
        log._warn(log.open_error)
    lock = None
    status = EXIT_FAILED
    try:
        if needs_lock:
            wait = config["lock_wait_seconds"] if args.lock_wait is None else args.lock_wait
            lock = RunLock(config["lock_file"], wait)
            lock.acquire(on_wait=lambda holder: log.info(
                "lock_wait", "waiting up to %ds for another run%s to finish" % (
                    int(wait), (" (pid %s)" % holder) if holder else ""), lock_file=config["lock_file"]))
            log.info("lock_acquired", "%s started (lock %s)" % (args.command, config["lock_file"]),
                     waited=round(lock.waited, 3))
        status = function(args, config, log)
    except LockBusy as exc:
        log.error("lock_timeout", exc)
        status = EXIT_LOCKED
    except ConfigError as exc:
        log.error("config_error", exc)
        status = EXIT_CONFIG
    except PgBackupError as exc:
        log.error("%s_failed" % args.command, exc)
        status = EXIT_FAILED
    except KeyboardInterrupt:
        log.event("interrupted", "%s interrupted" % args.command, level="error")
        status = 130
    except Exception as exc:
        log.error("%s_failed" % args.command, _as_error(exc))
        status = EXIT_FAILED
    finally:
        if lock is not None and lock.fd is not None:
            lock.release()
            log.event("lock_released", "%s finished (exit %d)" % (args.command, status),
                      level="info" if status == EXIT_OK else "error", exit_status=status)
    log.close()
    return status
