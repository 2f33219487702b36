# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's config: one JSON object per setup (a named configuration), written by the backup role
or by hand, read by every runner command and by the monitoring check.

This module is the one owner of that config: its keys, their defaults and the rules every value
follows. The backup role builds the config through the ``todoapi.pgbackup.runner_config`` filter,
which calls check_config, so a value the runner would refuse fails the role instead.

- DEFAULTS: what a key a config leaves out means to the runner. ``log_file``, ``lock_file`` and
  ``state_dir`` left out follow the setup's ``name`` (names.py), and so does ``cluster_name`` (what the
  ``basebackup`` command names its base backups after and ``prune`` finds them by); ``repositories`` left out is the
  one repository ``/var/backups/todoapi`` (or the older keys ``repository`` and ``copy_to``, see
  LEGACY_DEFAULTS; repositories.py owns the entries).
- INSTALLED_DEFAULTS: what the backup role (and the pg_dump module and playbooks/backup_now.yml,
  for the settings they share) use when not told otherwise: the seed's retention policy, a 26-hour
  age limit for the verify job and the monitoring check, and libpq's port 5432 as role postgres.
  A unit test keeps them in line.

An empty value means "not set": '' for an optional path or connection setting, 0 for
``max_age_hours`` (no age check) and {} for ``retention`` (keep everything).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import math

from ..core import streams
from ..core.errors import PgBackupError
from ..logical import backup as logical_backup
from ..ops import retention
from ..ops import verify as verify_engine
from . import names
from . import repositories as repository_entries
from .program import current_user

DEFAULT_CONFIG = names.setup_paths(names.DEFAULT_NAME)["config_file"]
DEFAULT_REPOSITORY = "/var/backups/todoapi"

DEFAULTS = {
    "name": names.DEFAULT_NAME,
    "repositories": [{"location": DEFAULT_REPOSITORY}],
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
    "cluster_name": None,
    "log_file": None,
    "lock_file": None,
    "lock_wait_seconds": 300,
    "state_dir": None,
    "retention": None,
    "verify_level": "checksum",
    "max_age_hours": None,
    "size_anomaly_factor": 3.0,
}
# Keys whose default follows the setup's name (names.setup_paths).
NAMED_DEFAULTS = ("log_file", "lock_file", "state_dir")
# Keys of configs written before ``repositories``; still read, turned into repositories.
LEGACY_DEFAULTS = {"repository": DEFAULT_REPOSITORY, "copy_to": [], "s3": {}}
CONNECTION_KEYS = ("host", "port", "user", "passfile", "sslmode", "connect_timeout")
S3_KEYS = repository_entries.OPTIONS["s3"] + ("credentials_file",)
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
COPY_TO_DEPRECATED = ("'copy_to' is deprecated: list the copies in 'repositories' (each with its own options, "
                      "credentials file and retention). Its targets are read as repositories that keep everything.")


class ConfigError(PgBackupError):
    """The runner's config file is missing or wrong.

    ``key`` names the setting at fault (``connection.port``; None for the file as a whole) and
    ``problem`` says what is wrong with it, so that the backup role can name its own variable."""

    def __init__(self, message, hint=None, key=None, problem=None):
        super(ConfigError, self).__init__(message, hint=hint)
        self.key = key
        self.problem = problem or message


# A value at fault: its problem, a hint and the key (filled in on the way up); shared with repositories.py.
_Problem = repository_entries.ValueProblem


def load_config(path, warn=None):
    """Read and check the JSON config; returns a dict with every key of DEFAULTS.

    ``warn(message)`` hears about deprecated keys."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            raise ConfigError("Config file '%s' does not exist." % path,
                              hint="Install the runner with the todoapi.pgbackup.backup role, or pass --config PATH "
                                   "or --name NAME.")
        if exc.errno == errno.EACCES:
            raise ConfigError("Config file '%s' is not readable by OS user '%s'." % (path, current_user()),
                              hint="Run as the backup user (postgres) or root.")
        raise ConfigError("Cannot read config file '%s': %s." % (path, exc.strerror))
    except ValueError as exc:
        raise ConfigError("Config file '%s' is not valid JSON: %s." % (path, exc),
                          hint="Fix the file (the backup role writes it with to_nice_json).")
    return check_config(raw, path, warn=warn)


def check_config(raw, source="config", warn=None):
    """The config with every key of DEFAULTS, each value checked and in its normal form."""
    if not isinstance(raw, dict):
        raise ConfigError("%s must hold a JSON object." % source)
    raw = dict(raw)
    if "database" in raw:
        if "databases" in raw:
            raise ConfigError("%s sets both 'database' and 'databases'." % source, hint="Keep one of them.", key="databases",
                              problem="is set twice (as 'database' and 'databases').")
        raw["databases"] = raw.pop("database")
    unknown = sorted(set(raw) - set(DEFAULTS) - set(LEGACY_DEFAULTS))
    if unknown:
        raise ConfigError("%s has unknown key(s): %s." % (source, ", ".join(unknown)),
                          hint="Known keys: %s." % ", ".join(sorted(set(DEFAULTS) | set(LEGACY_DEFAULTS))))
    config = dict(DEFAULTS)
    config.update((key, value) for key, value in raw.items() if key in DEFAULTS)
    try:
        config["name"] = _checked("name", _name, config["name"])
        paths = names.setup_paths(config["name"])
        for key in NAMED_DEFAULTS:
            if key not in raw:
                config[key] = paths[key]
        for key in sorted(config):
            if key != "repositories":
                config[key] = _checked(key, CHECKS[key], config[key])
        _checked("jobs", _backup_settings, config)
        config["cluster_name"] = config["cluster_name"] or config["name"]
        config["repositories"] = _checked("repositories", _repositories, (raw, config["retention"], warn))
    except _Problem as problem:
        raise ConfigError("'%s' in %s %s" % (problem.key, source, problem.problem), hint=problem.hint,
                          key=problem.key, problem=problem.problem)
    return config


def repository_of(config, selector=None):
    """The repository object of the entry ``selector`` names (``--repository``; None: the first)."""
    return repository_entries.open_entry(repository_entries.choose(config["repositories"], selector), owner=config["owner"])


def _checked(key, check, value):
    try:
        return check(value)
    except _Problem as problem:
        problem.key = problem.key or key
        raise
    except PgBackupError as exc:  # a rule of the engine (compression, recipients, retention ...)
        raise _Problem("is not valid: %s" % exc.message, hint=exc.hint, key=key)


def _name(value):
    try:
        return names.check_name(value)
    except names.BadName as exc:
        raise _Problem(str(exc))


def _database_names(value):
    databases = [value] if isinstance(value, str) else value
    if not isinstance(databases, list) or not databases or not all(isinstance(name, str) and name for name in databases):
        raise _Problem("must be a non-empty list of database names, not %r." % (value,))
    return list(databases)


def _strings(value):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Problem("must be a list of strings, not %r." % (value,))
    return list(value)


def _required_text(value):
    if not isinstance(value, str) or not value:
        raise _Problem("must be a non-empty path or name, not %r." % (value,))
    return value


def _optional_text(value):
    return None if value in (None, "") else _required_text(value)


def _number(value, integer=False, minimum=0, maximum=None):
    kind = "a whole number" if integer else "a number"
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise _Problem("must be %s, not %r." % (kind, value))
    if not math.isfinite(number) or (integer and not number.is_integer()):
        raise _Problem("must be %s, not %r." % (kind, value))
    number = int(number) if number.is_integer() else number
    if number < minimum or (maximum is not None and number > maximum):
        raise _Problem("must be %s from %s%s, not %r." % (kind, minimum, " to %s" % maximum if maximum else " up", value))
    return number


def _boolean(value):
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise _Problem("must be true or false, not %r." % (value,))


def _one_of(choices):
    def check(value):
        if value not in choices:
            raise _Problem("must be one of %s, not %r." % (", ".join(choices), value))
        return value
    return check


def _compression(value):
    streams.parse_compression(value)
    return value


def _recipients(value):
    return streams.validate_recipients(_strings(value))


def _max_age(value):
    hours = None if value in (None, "") else _number(value)
    return hours or None


def _retention_policy(value):
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise _Problem("must be an object (the retention policy), not %r." % (value,))
    retention.normalize_policy(value)
    return dict(value)


CONNECTION_CHECKS = {
    "host": _required_text,
    "port": lambda value: _number(value, integer=True, minimum=1, maximum=65535),
    "user": _required_text,
    "passfile": _required_text,
    "sslmode": _required_text,
    "connect_timeout": lambda value: _number(value, integer=True),
}


def _connection(value):
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise _Problem("must be an object, not %r." % (value,))
    if "password" in value:
        raise _Problem("holds a password; the runner refuses it.",
                       hint="Put the password in a 0600 libpq passfile and set 'connection.passfile' to its path.")
    unknown = sorted(set(value) - set(CONNECTION_KEYS))
    if unknown:
        raise _Problem("has unknown key(s): %s." % ", ".join(unknown), hint="Known keys: %s." % ", ".join(CONNECTION_KEYS))
    return dict((key, _checked("connection." + key, CONNECTION_CHECKS[key], item))
                for key, item in value.items() if item not in (None, ""))


def _s3(value):
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise _Problem("must be an object, not %r." % (value,))
    secrets = sorted(key for key in value if "secret" in key or "access_key" in key or "token" in key)
    if secrets:
        raise _Problem("holds S3 credentials (%s); the runner refuses them." % ", ".join(secrets),
                       hint="Use an AWS profile, a 0600 credentials file ('s3.credentials_file') or the instance role.")
    unknown = sorted(set(value) - set(S3_KEYS))
    if unknown:
        raise _Problem("has unknown key(s): %s." % ", ".join(unknown), hint="Known keys: %s." % ", ".join(S3_KEYS))
    return dict(value)


def _repositories(arguments):
    """``repositories``, or the older ``repository`` + ``copy_to`` + ``s3``, as checked entries."""
    raw, default_retention, warn = arguments
    if "repositories" in raw:
        if "repository" in raw:
            raise _Problem("is set together with 'repository'.",
                           hint="Keep 'repositories' (its first entry is where backups are taken).")
        entries = raw["repositories"]
    else:
        entries = [_checked("repository", _required_text, raw.get("repository", DEFAULT_REPOSITORY))]
    copy_to = _checked("copy_to", _strings, raw.get("copy_to"))
    s3_settings = _checked("s3", _s3, raw.get("s3"))
    if copy_to:
        if warn:
            warn(COPY_TO_DEPRECATED)
        if not isinstance(entries, list):
            raise _Problem("must be a non-empty list of repositories, not %r." % (entries,))
        entries = entries + repository_entries.copy_to_entries(copy_to, s3_settings)
    return repository_entries.check_repositories(entries, default_retention,
                                                 lambda value: _checked("retention", _retention_policy, value))


def _backup_settings(config):
    """The rules between settings (parallel jobs need the directory format) are the engine's."""
    logical_backup.LogicalBackupRequest(config["databases"][0], None, None, fmt=config["format"], jobs=config["jobs"],
                                        compression=config["compression"], globals_=config["globals"],
                                        encrypt_recipients=config["encrypt_recipients"])


CHECKS = {
    "name": _name,
    "owner": _optional_text,
    "databases": _database_names,
    "connection": _connection,
    "format": _one_of(logical_backup.FORMATS),
    "compression": _compression,
    "jobs": lambda value: _number(value, integer=True),
    "globals": _boolean,
    "schemas": _strings,
    "exclude_schemas": _strings,
    "exclude_tables": _strings,
    "encrypt_recipients": _recipients,
    "identity_file": _optional_text,
    "pg_bin_dir": _optional_text,
    "cluster_name": _optional_text,
    "log_file": _optional_text,
    "lock_file": _required_text,
    "lock_wait_seconds": _number,
    "state_dir": _required_text,
    "retention": _retention_policy,
    "verify_level": _one_of(verify_engine.LEVELS),
    "max_age_hours": _max_age,
    "size_anomaly_factor": lambda value: _number(value, minimum=1),
}
INSTALLED_DEFAULTS = check_config({"connection": {"port": 5432, "user": "postgres"},
                                   "retention": dict(retention.DEFAULT_POLICY), "max_age_hours": 26})
