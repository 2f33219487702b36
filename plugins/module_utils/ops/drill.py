# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore drills: prove, on a scratch server, that the newest backup of each database restores.

A drill takes the newest backup of each listed database - damaged or not, so that its damage shows -
and verifies it at level ``restore`` (ops/verify.py, what module backup_verify runs: a restore into a
throwaway database, row counts against the manifest, ``pg_amcheck --heapallindexed``, the database's
smoke queries, the throwaway database always dropped). The outcome is published as the health check's
is (ops/status.py, ops/alerts.py): Prometheus textfile metrics ``todoapi_pgbackup_drill_*``, and
e-mail/webhook alerts with their own state file, so a failing drill alerts once (``on_change``) and
again when it passes.

``main`` is the on-host command ``todoapi-pgbackup-drill`` that role todoapi.pgbackup.restore_drill
installs and schedules; it reads the settings file the role writes (SETTINGS: its keys and defaults).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from . import alerts
from . import status as statuses
from . import verify
from ..core import fsutil
from ..core import manifest as manifests
from ..core import pgconn
from ..core.errors import PgBackupError
from ..storage import factory

EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
PROBLEM_CODE = "drill_failed"
METRIC_PREFIX = statuses.METRIC_PREFIX + "drill_"
DEFAULT_SCRATCH_PREFIX = "pgbackup_drill"

# The settings file: every key, with what leaving it out means. The alert keys are those of the
# health check's monitoring.json (runner/monitor.py), whose delivery the drill uses.
SETTINGS = {
    "repository": None, "owner": "postgres", "storage": {}, "databases": [],
    "connection": {}, "pg_bin_dir": None, "maintenance_db": "postgres", "identity_file": None,
    "smoke_queries": {}, "scratch_prefix": DEFAULT_SCRATCH_PREFIX, "jobs": 0, "no_owner": False,
    "textfile": None, "alert_mode": "on_change", "alert_state_file": None,
    "smtp_host": None, "smtp_port": 25, "smtp_from": None, "smtp_to": [], "smtp_starttls": False,
    "smtp_user": None, "smtp_password": None, "webhook_url": None, "webhook_timeout": 10,
}
CONNECTION_KEYS = ("host", "port", "user", "password", "sslmode")

# name (after METRIC_PREFIX), help, key of the per-database metrics
METRICS = (
    ("success", "1 when the last restore drill of the database passed (restored, row counts as in the manifest, "
                "pg_amcheck and smoke queries OK).", "success"),
    ("timestamp_seconds", "When the last restore drill of the database started (Unix time).", "timestamp_seconds"),
    ("duration_seconds", "Wall time of the last restore drill of the database.", "duration_seconds"),
    ("backup_age_seconds", "Age of the drilled backup (since it finished) when the drill started.", "backup_age_seconds"),
)


# Settings


def load_settings(path):
    """Read and check the settings file; returns a dict with every key of SETTINGS."""
    raw = fsutil.read_json(path, "Cannot read the drill settings '%s': %s.",
                           hint="Role todoapi.pgbackup.restore_drill writes it (0600, readable by the user that runs "
                                "the drill).")
    return check_settings(raw, path)


def check_settings(raw, source="the drill settings"):
    """The settings with every key of SETTINGS; raises PgBackupError naming what is wrong."""
    if not isinstance(raw, dict):
        raise PgBackupError("%s must hold a JSON object." % source)
    unknown = sorted(set(raw) - set(SETTINGS))
    if unknown:
        raise PgBackupError("Unknown setting(s) in %s: %s." % (source, ", ".join(unknown)),
                            hint="Known settings: %s." % ", ".join(sorted(SETTINGS)))
    settings = dict(SETTINGS)
    settings.update((key, value) for key, value in raw.items() if value not in (None, ""))  # "": not set
    databases = settings["databases"]
    if not settings["repository"] or not isinstance(settings["repository"], str):
        raise PgBackupError("No repository in %s." % source, hint="Set 'repository' to a directory or a URL.")
    if not isinstance(databases, list) or not databases or not all(isinstance(name, str) and name for name in databases):
        raise PgBackupError("'databases' in %s must be a non-empty list of database names, not %r." % (source, databases))
    queries = settings["smoke_queries"]
    if not isinstance(queries, dict) or not all(isinstance(sql, list) and all(isinstance(q, str) for q in sql)
                                                for sql in queries.values()):
        raise PgBackupError("'smoke_queries' in %s must map database names to lists of SQL queries, not %r." % (source, queries))
    strays = sorted(set(queries) - set(databases))
    if strays:
        raise PgBackupError("%s has smoke queries for database(s) the drill does not restore: %s." % (source, ", ".join(strays)),
                            hint="Key 'smoke_queries' by the names in 'databases' (case-sensitive).")
    wrong = sorted(set(settings["connection"]) - set(CONNECTION_KEYS))
    if wrong:
        raise PgBackupError("Unknown connection setting(s) in %s: %s." % (source, ", ".join(wrong)),
                            hint="Known: %s." % ", ".join(CONNECTION_KEYS))
    if settings["alert_mode"] not in alerts.MODES:
        raise PgBackupError("Unknown alert mode '%s' in %s." % (settings["alert_mode"], source),
                            hint="Use one of: %s." % ", ".join(alerts.MODES))
    if alert_channels(settings) and not settings["alert_state_file"]:
        raise PgBackupError("Alerts are configured in %s but no alert state file is set." % source,
                            hint="Set 'alert_state_file', e.g. /var/lib/todoapi-pgbackup/drill-alert-state.json.")
    try:  # the scratch prefix, jobs and the connection follow the verification's own rules
        verify.Verification(None, None, "restore", connection=connection_of(settings),
                            scratch_prefix=settings["scratch_prefix"], jobs=settings["jobs"])
    except (TypeError, ValueError) as exc:
        raise PgBackupError("A connection setting or 'jobs' in %s is not valid: %s." % (source, exc))
    return settings


def alert_channels(settings):
    return bool((settings["smtp_host"] and settings["smtp_to"]) or settings["webhook_url"])


def connection_of(settings):
    """The scratch server, as the engine's ConnectionSpec."""
    return pgconn.ConnectionSpec(**dict((key, value) for key, value in settings["connection"].items()
                                        if value not in (None, "")))


def repository_of(settings):
    return factory.open_repository(settings["repository"], owner=settings["owner"], **settings["storage"])


# The drill


def newest_backup(repository, database):
    found = repository.list(database=database)
    if not found:
        raise PgBackupError("No backup of database '%s' in repository '%s'." % (
            database, factory.describe_location(repository)),
            hint="Check that the scheduled backups run, and the repository and database name (case-sensitive).")
    return found[-1]  # the newest, not the newest good one: its damage must show


def drill_database(settings, repository, connection, database):
    """Restore the newest backup of ``database`` into a throwaway database and prove it; returns its outcome."""
    started = manifests.utcnow()
    clock = time.monotonic()
    manifest, summary, error = None, None, None
    try:
        manifest = newest_backup(repository, database)
        result = verify.verify_backup(
            repository, manifest, "restore", connection=connection, identity_file=settings["identity_file"],
            smoke_queries=settings["smoke_queries"].get(database), scratch_prefix=settings["scratch_prefix"],
            pg_bin_dir=settings["pg_bin_dir"], maintenance_db=settings["maintenance_db"], jobs=settings["jobs"],
            no_owner=settings["no_owner"])
        if result["skipped"]:
            raise PgBackupError("The drill did not restore backup '%s': %s" % (manifest["id"], result["summary"]),
                                hint="Give the scratch host the age identity (private key): 'identity_file'.")
        summary = result["summary"]
    except PgBackupError as exc:
        error = exc
    except Exception as exc:  # pylint: disable=broad-except
        # a drill that breaks has failed: it must still reach the metrics and the alert
        error = PgBackupError("The drill of '%s' broke: %s: %s" % (database, type(exc).__name__, exc))
    return outcome(database, manifest, started, time.monotonic() - clock, summary, error)


def outcome(database, manifest, started, duration, summary=None, error=None):
    """What one database's drill found (``error`` a PgBackupError, None when it passed)."""
    finished = manifests.parse_time(manifest["finished_at"]) if manifest else None
    return {"database": database, "passed": error is None, "summary": summary,
            "error": error.message if error else None, "hint": (error.hint if error else None) or None,
            "failed_level": error.details.get("failed_level") if error else None,
            "backup_id": manifest["id"] if manifest else None, "backup_size": manifest.get("size") if manifest else None,
            "backup_finished_at": manifest["finished_at"] if manifest else None,
            "backup_age_seconds": round((started - finished).total_seconds(), 3) if finished else None,
            "started_at": manifests.isoformat(started), "duration_seconds": round(duration, 3)}


def run_drill(settings):
    """Drill every database of the settings, one after the other; returns their outcomes."""
    repository = repository_of(settings)
    connection = connection_of(settings)
    return [drill_database(settings, repository, connection, database) for database in settings["databases"]]


def plan(settings):
    """What a drill would do, per database (the backup it would take and the steps); changes nothing."""
    repository = repository_of(settings)
    planned = []
    for database in settings["databases"]:
        try:
            manifest = newest_backup(repository, database)
        except PgBackupError as exc:
            planned.append({"database": database, "backup_id": None, "error": str(exc)})
            continue
        steps = verify.plan(repository, manifest, "restore", scratch_prefix=settings["scratch_prefix"],
                            smoke_queries=settings["smoke_queries"].get(database))["steps"]
        planned.append({"database": database, "backup_id": manifest["id"],
                        "backup_finished_at": manifest["finished_at"], "steps": steps})
    return planned


# Publishing


def drill_status(outcomes, location, now=None):
    """The outcomes in the shape of ops/status.py's ``backup_status``, which ops/alerts.py words and
    remembers: one ``drill_failed`` problem per failed database."""
    now = manifests.parse_time(now) if now is not None else manifests.utcnow()
    health, latest, metrics = [], {}, {}
    for drill in outcomes:
        database = drill["database"]
        if not drill["passed"]:
            health.append({"code": PROBLEM_CODE, "severity": "critical", "database": database,
                           "backups": [drill["backup_id"]] if drill["backup_id"] else [],
                           "message": "The restore drill of '%s' failed: %s" % (database, drill["error"])})
        age = drill["backup_age_seconds"]
        latest[database] = {"id": drill["backup_id"], "age_hours": age / 3600.0, "size": drill["backup_size"],
                            "verified": "drill passed" if drill["passed"] else "drill failed"} if drill["backup_id"] else None
        metrics[database] = {"success": 1 if drill["passed"] else 0, "duration_seconds": drill["duration_seconds"],
                             "timestamp_seconds": manifests.parse_time(drill["started_at"]).timestamp(),
                             "backup_age_seconds": age}
    return {"ok": not health, "checked_at": manifests.isoformat(now), "repository": location, "health": health,
            "problem_codes": sorted(set(problem["code"] for problem in health)), "latest": latest, "metrics": metrics,
            "drills": list(outcomes)}


def prometheus_text(status):
    """The drill's metrics in the Prometheus text exposition format (names apart from the health check's,
    so both textfiles can sit in node_exporter's directory)."""
    lines = []
    for name, help_text, key in METRICS:
        lines.extend(statuses.metric_lines(METRIC_PREFIX + name, "gauge", help_text, [
            ([("database", database)], values[key]) for database, values in sorted(status["metrics"].items())
            if values.get(key) is not None]))
    lines.extend(statuses.metric_lines(METRIC_PREFIX + "ok", "gauge", "1 when the last restore drill of every database "
                                       "passed.", [([], 1 if status["ok"] else 0)]))
    lines.extend(statuses.metric_lines(METRIC_PREFIX + "completed_timestamp_seconds", "gauge", "When the last restore "
                                       "drill finished (Unix time).", [([], manifests.parse_time(status["checked_at"]).timestamp())]))
    return "\n".join(lines) + "\n"


def publish(status, settings, deliver):
    """Write the metrics and send the alert the drill calls for; returns {textfile, alert, errors}.

    ``deliver(settings, decision, status)`` sends through the configured channels and returns (channels
    sent, errors): runner/monitor.py's, so that a drill alerts exactly as the health check does. What was
    alerted is remembered only once it went out, so an undelivered alert is tried again by the next drill.
    """
    report = {"textfile": None, "alert": None, "errors": []}
    if settings["textfile"]:
        try:
            report["textfile"] = statuses.write_textfile(settings["textfile"], prometheus_text(status))
        except PgBackupError as exc:  # the alert must still go out
            report["errors"].append(str(exc))
    if not alert_channels(settings):
        return report
    decision = alerts.alert_decision(settings["alert_state_file"], status, settings["alert_mode"])
    report["alert"] = {"send": decision["send"], "kind": decision["kind"], "subject": decision["subject"], "sent": []}
    delivery_errors = []
    if decision["send"]:
        report["alert"]["sent"], delivery_errors = deliver(settings, decision, status)
        report["errors"].extend(delivery_errors)
    if not delivery_errors:
        alerts.save_alert_state(settings["alert_state_file"], decision)
    return report
