# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compression and encryption stages, and how an artifact is named and read back."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from .errors import PgBackupError
from .pipeline import Stage, require_tool

COMPRESSION_METHODS = ("zstd", "gzip", "none")
DEFAULT_COMPRESSION = {"method": "zstd", "level": 1}  # measured: docs/performance.md
LEVEL_RANGES = {"zstd": (1, 19), "gzip": (1, 9), "none": (0, 0)}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6, "none": 0}
FORMAT_EXTENSIONS = {"custom": "dump", "plain": "sql", "tar": "tar", "directory": "dir"}
AGE_RECIPIENT = re.compile(r"^(age1[0-9a-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$")


def parse_compression(value):
    """Accept 'zstd', 'zstd:3', 'gzip:9', 'none' or {'method':..., 'level':...}."""
    if value is None or value == "":
        value = dict(DEFAULT_COMPRESSION)
    if isinstance(value, str):
        method, level = (value.split(":", 1) + [None])[:2]
        value = {"method": method, "level": level or None}
    method = str(value.get("method") or "zstd").lower()
    if method not in COMPRESSION_METHODS:
        raise PgBackupError("Unknown compression method '%s'." % method,
                            hint="Use one of: %s." % ", ".join(COMPRESSION_METHODS))
    level = value.get("level")
    level = DEFAULT_LEVELS[method] if level in (None, "") else level
    try:
        level = int(level)
    except (TypeError, ValueError):
        raise PgBackupError("Compression level '%s' is not a number." % level)
    low, high = LEVEL_RANGES[method]
    if not low <= level <= high:
        raise PgBackupError("Compression level %d is out of range for %s." % (level, method),
                            hint="Use %d to %d." % (low, high))
    return {"method": method, "level": level}


def validate_recipients(recipients):
    recipients = [r.strip() for r in (recipients or []) if r and r.strip()]
    bad = [r for r in recipients if not AGE_RECIPIENT.match(r)]
    if bad:
        raise PgBackupError("Not an age recipient: %s." % ", ".join(repr(b[:30]) for b in bad),
                            hint="Give public keys such as 'age1...' (from age-keygen -y) or ssh-ed25519 keys.")
    return recipients


def dump_plan(fmt, compression, encrypted, pg_dump_major):
    """Decide who compresses what: returns (pg_dump compression args, external stage spec, suffix).

    pg_dump's own gzip keeps custom and directory archives seekable for parallel restore;
    zstd runs as an external multi-threaded stage (faster than pg_dump's single thread),
    except for directory format, where only pg_dump can compress each file.
    """
    method, level = compression["method"], compression["level"]
    if fmt == "directory":
        if encrypted:
            raise PgBackupError("Encryption is not supported for the directory format.",
                                hint="Use format 'custom' (the default) for encrypted backups.")
        if method == "zstd" and pg_dump_major < 16:
            raise PgBackupError("zstd compression of the directory format needs pg_dump 16 or newer.",
                                hint="Use compression 'gzip' with the directory format, or format 'custom'.")
        if method == "none":
            return ["-Z", "0"], None, "applied_by_pg_dump"
        native = "%s:%d" % (method, level) if pg_dump_major >= 16 else str(level)
        return ["-Z", native], None, "applied_by_pg_dump"
    if method == "gzip" and fmt in ("custom", "plain"):
        native = "gzip:%d" % level if pg_dump_major >= 16 else str(level)
        return ["-Z", native], None, "applied_by_pg_dump"
    if method == "none":
        return ["-Z", "0"] if fmt in ("custom", "plain") else [], None, "none"
    return (["-Z", "0"] if fmt in ("custom", "plain") else []), method, "external"


def artifact_suffix(fmt, compression, applied, encrypted):
    suffix = "." + FORMAT_EXTENSIONS[fmt]
    if fmt == "plain" and applied == "applied_by_pg_dump" and compression["method"] == "gzip":
        suffix += ".gz"
    if applied == "external":
        suffix += ".zst" if compression["method"] == "zstd" else ".gz"
    if encrypted:
        suffix += ".age"
    return suffix


def compress_stage(method, level, threads=0):
    if method == "zstd":
        return Stage([require_tool("zstd", "the zstd package"), "-q", "-%d" % level, "-T%d" % threads, "-c"],
                     name="zstd")
    return Stage([require_tool("gzip", "the gzip package"), "-c", "-%d" % level], name="gzip")


def decompress_stage(method):
    if method == "zstd":
        return Stage([require_tool("zstd", "the zstd package"), "-q", "-d", "-c"], name="zstd")
    return Stage([require_tool("gzip", "the gzip package"), "-d", "-c"], name="gzip")


def encrypt_stage(recipients):
    argv = [require_tool("age", "the age package")]
    for recipient in recipients:
        argv += ["-r", recipient]
    return Stage(argv, name="age")


def missing_identity(manifest, identity_file, what="this backup"):
    """Why ``manifest``'s artifact (``what``: how to name it) cannot be decrypted with ``identity_file`` here
    (None: it can, or it is not encrypted). Only the absence of a key is judged: a wrong key shows when age runs."""
    if not manifest.get("encryption"):
        return None
    if not identity_file:
        return "%s is encrypted with age and no identity (private key) file was given" % what
    if not os.path.isfile(identity_file):
        return "identity file '%s' does not exist" % identity_file
    return None


def decrypt_stage(identity_file):
    reason = missing_identity({"encryption": True}, identity_file)
    if reason:
        raise PgBackupError(reason[0].upper() + reason[1:] + ".",
                            hint="Pass 'identity_file' (runner: --identity) with a key for one of its recipients.")
    return Stage([require_tool("age", "the age package"), "-d", "-i", identity_file], name="age")


def read_stages(manifest, identity_file=None):
    """Stages that turn a stored artifact back into what pg_dump wrote."""
    stages = []
    if manifest.get("encryption"):
        stages.append(decrypt_stage(identity_file))
    compression = manifest.get("compression") or {}
    gzip_plain_script = manifest.get("format") == "plain" and compression.get("method") == "gzip"
    if compression.get("applied") == "external" or gzip_plain_script:
        # pg_dump's own gzip of a plain script is a .sql.gz file that psql cannot read.
        stages.append(decompress_stage(compression["method"]))
    return stages


def explain_decrypt_failure(error):
    """age's 'no identity matched' means the wrong key: say so plainly."""
    if getattr(error, "details", {}).get("stage") == "age":
        text = error.message.lower()
        if "no identity matched" in text:
            return PgBackupError("The age identity does not match any recipient of this backup (wrong key).",
                                 hint="Use the private key that belongs to one of the recipients in the manifest.")
        if 'error: reading "' in text:  # age could not use the identity file; the artifact was not even read
            return PgBackupError("The age identity file cannot be used (it is not an age private key): %s" % error.message,
                                 hint="Give the file written by age-keygen (a line AGE-SECRET-KEY-1...), not the "
                                      "public recipient (age1...); the backup itself was not judged.")
        if "header" in text or "parse" in text or "unexpected" in text:
            return PgBackupError("The encrypted artifact is damaged (age cannot read it): %s" % error.message)
    return error
