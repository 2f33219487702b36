# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run tells: one JSON object per event in the log file, one human line on stdout, every
known secret masked in both."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import socket
import sys
import traceback

from ..core.errors import PgBackupError
from .program import PROG

PASSWORD_MASK = "********"


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
                self.warn("cannot write log file '%s': %s" % (self.path, exc.strerror))
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

    def warn(self, text):
        sys.stderr.write("%s: warning: %s\n" % (PROG, self.mask(text)))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def as_error(exc):
    """A PgBackupError for any exception, so that it is logged as one error event."""
    if isinstance(exc, PgBackupError):
        return exc
    return PgBackupError("Unexpected %s: %s" % (type(exc).__name__, exc),
                         hint="This is a bug in todoapi-pgbackup; the traceback is on stderr.",
                         traceback=traceback.format_exc())
