# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health of a backup repository: what is there, how old, how big, whether proven restorable.

``backup_status`` only reads manifests, file sizes, verification sidecars and the runner's
JSON-lines log; it never hashes artifacts (that is ``verify``'s job), so it is cheap enough
to run every few minutes. ``write_prometheus_textfile`` exports the metrics for
node_exporter's textfile collector.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ..core import fsutil
from ..core import manifest as manifests
from ..core import pgconn
from ..core.errors import PgBackupError
from ..logical import staging_leftovers
from ..physical.base_backup_chain import backup_type_of, chain_ids
from .verify import verification_state

ANOMALY_WINDOW = 7
ANOMALY_MIN_HISTORY = 3
LOG_TAIL_BYTES = 4 * 1024 * 1024
ERROR_LEVELS = ("error", "critical", "fatal")

# code -> (severity, what it means); documented in docs/monitoring.md
PROBLEM_CODES = {
    "no_backup": ("critical", "no usable backup exists"),
    "stale": ("critical", "the newest usable backup is older than the threshold"),
    "empty": ("critical", "an artifact is missing or has zero bytes"),
    "truncated": ("critical", "an artifact's size differs from its manifest"),
    "size_anomaly": ("warning", "the newest backup's size is far from the recent median"),
    "verify_failed": ("critical", "the last verification of a backup failed"),
    "last_run_failed": ("critical", "the runner's last backup run for the database failed"),
    "damaged_manifest": ("warning", "a manifest in the repository cannot be read"),
    "archive_failing": ("critical", "PostgreSQL's archive_command fails (pg_stat_archiver): WAL piles up in pg_wal and "
                                    "point-in-time recovery ends at the last archived segment"),
    "leftover_staging_database": ("warning", "a full restore that died left its staging database on the server"),
}

METRICS = (
    ("last_success_timestamp_seconds", "gauge", "Finish time of the newest usable backup (Unix time).", "last_success_timestamp"),
    ("last_size_bytes", "gauge", "Size of the newest usable backup's artifact.", "size_bytes"),
    ("last_duration_seconds", "gauge", "Wall time the newest usable backup took.", "duration_seconds"),
    ("last_verified", "gauge", "1 when the newest usable backup's last verification passed.", "verified"),
    ("last_age_seconds", "gauge", "Age of the newest usable backup at check time.", "age_seconds"),
    ("backups", "gauge", "Number of complete backups in the repository.", "backups"),
    ("ok", "gauge", "1 when no problem was found for the database.", "ok"),
)
METRIC_PREFIX = "todoapi_pgbackup_"


def _epoch(moment):
    return (moment - manifests.parse_time("1970-01-01T00:00:00Z")).total_seconds()


def _file_state(repository, manifest):
    size = repository.artifact_size(manifest)  # a local path or a remote object's listing; None: missing
    if size is None:
        return "missing", None
    if size == 0 or manifest.get("size") == 0:
        return "empty", size
    if size != manifest.get("size"):
        return "truncated", size
    return "ok", size


def _median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def size_anomaly(sizes, factor, window=ANOMALY_WINDOW):
    """For sizes oldest..newest: (median, ratio) when the newest is > factor x or < 1/factor of the
    median of the previous ``window`` sizes, else None. Needs a few earlier backups to judge."""
    if len(sizes) < ANOMALY_MIN_HISTORY + 1 or factor <= 1:
        return None
    previous = sizes[-window - 1:-1]
    median = _median(previous)
    newest = sizes[-1]
    if median <= 0:
        return None
    ratio = newest / median
    if ratio > factor or ratio < 1.0 / factor:
        return median, ratio
    return None


def read_run_log(log_file):
    """Last ``backup`` event per database from the runner's JSON-lines log ({} when unreadable).

    Lines that are not JSON objects, or lack ``event``/``database``, are skipped: a log is
    evidence, not configuration, and one torn line must not hide the rest.
    """
    last = {}
    if not log_file or not os.path.isfile(log_file):
        return last
    try:
        with open(log_file, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return last
    for raw in data.splitlines():
        try:
            event = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            continue
        if not isinstance(event, dict) or not isinstance(event.get("database"), str):
            continue
        name = str(event.get("event") or "")
        if name != "backup" and not name.startswith(("backup.", "backup_", "basebackup_")):
            continue
        if name.startswith(("backup_verify", "backup.verify")):
            continue
        last[event["database"]] = event
    return last


def _problem(code, database, message, backups=None):
    problem = {"code": code, "severity": PROBLEM_CODES[code][0], "database": database, "message": message}
    if backups:
        problem["backups"] = backups
    return problem


def backup_status(repository, database=None, now=None, max_age_hours=25, size_anomaly_factor=3.0, log_file=None,
                  anomaly_window=ANOMALY_WINDOW, expected_databases=None, connection=None):
    """Backups, the newest usable one per database, health problems and metrics.

    ``database`` limits the report to one database (and makes its absence a ``no_backup``
    problem); ``expected_databases`` (e.g. the runner's configured list) must each have a
    usable backup. ``now`` (datetime or ISO text) defaults to the current time. With a
    ``connection`` (ConnectionSpec) the server is checked for leftover staging databases too.
    """
    now = manifests.parse_time(now) if now is not None else manifests.utcnow()
    max_age_hours = float(max_age_hours)
    size_anomaly_factor = float(size_anomaly_factor)
    backups = []
    for manifest in repository.list(database=database):
        finished = manifests.parse_time(manifest["finished_at"])
        state, actual = _file_state(repository, manifest)
        verified = verification_state(repository, manifest["id"])
        backups.append({
            "id": manifest["id"], "database": manifest["database"], "kind": manifest["kind"],
            "format": manifest.get("format"), "finished_at": manifest["finished_at"],
            "finished_timestamp": _epoch(finished), "age_hours": round((now - finished).total_seconds() / 3600.0, 3),
            "size": manifest.get("size"), "actual_size": actual, "file_state": state,
            "duration_seconds": manifest.get("duration_seconds"), "artifact": manifest["artifact"],
            "verified": verified["state"], "verified_level": verified["level"], "verified_at": verified["time"],
            "verify_error": verified["error"]})
        if manifest["kind"] == "physical":  # what restoring it takes: its chain, full backup first
            backups[-1].update(backup_type=backup_type_of(manifest), parent=manifest.get("parent"),
                               chain=chain_ids(manifest), wal_tar=(manifest.get("compression") or {}).get("wal_tar"))
    damaged = list(getattr(repository, "problems", []) or [])
    runs = read_run_log(log_file)
    names = set(b["database"] for b in backups) | set(runs)
    if database is not None:
        names = set([database])
    else:
        names |= set(expected_databases or [])
    health, latest, metrics = [], {}, {}
    for name in sorted(names):
        mine = [b for b in backups if b["database"] == name]
        problems, newest_usable = _database_health(name, mine, runs.get(name), now, max_age_hours, size_anomaly_factor,
                                                   anomaly_window)
        health.extend(problems)
        latest[name] = newest_usable
        metrics[name] = _metrics(newest_usable, mine, not problems, now)
    for text in damaged:
        health.append(_problem("damaged_manifest", None, text))
    for problem in (staging_problems(connection, database) if connection is not None else []):
        health.append(problem)
        if problem["database"] in metrics:
            metrics[problem["database"]]["ok"] = 0
    if not names:
        health.append(_problem("no_backup", None, "Repository '%s' holds no backups%s." % (
            repository.path, "" if repository.exists() else " (the directory does not exist)")))
    return {"ok": not health, "checked_at": manifests.isoformat(now), "repository": repository.path,
            "thresholds": {"max_age_hours": max_age_hours, "size_anomaly_factor": size_anomaly_factor,
                           "anomaly_window": anomaly_window},
            "backups": backups, "latest": latest, "health": health,
            "problem_codes": sorted(set(p["code"] for p in health)), "metrics": metrics}


def _size_class(backup):
    # a base backup whose pg_wal.tar the engine compressed is 16 MiB or more smaller than one taken before it did
    compressed_wal = (backup.get("wal_tar") or {}).get("applied") == "engine"
    return backup["kind"], backup["format"], backup.get("backup_type"), compressed_wal


def _same_type(backup):
    return "%s backups " % backup["backup_type"] if backup.get("backup_type") else ""


def _database_health(name, backups, last_run, now, max_age_hours, factor, window):
    problems = []
    usable = [b for b in backups if b["file_state"] == "ok" and b["verified"] != "failed"]
    newest_usable = usable[-1] if usable else None
    for state in ("empty", "truncated"):
        damaged = [b["id"] for b in backups if b["file_state"] == state or (state == "empty" and b["file_state"] == "missing")]
        if damaged:
            what = "missing or has zero bytes" if state == "empty" else "does not have its manifest's size"
            problems.append(_problem(state, name, "%d backup(s) of '%s': the artifact %s (newest: %s)."
                                     % (len(damaged), name, what, damaged[-1]), damaged))
    failed = [b["id"] for b in backups if b["verified"] == "failed"]
    if failed:
        newest_failed = [b for b in backups if b["id"] == failed[-1]][0]
        problems.append(_problem("verify_failed", name, "The last verification of %d backup(s) of '%s' failed "
                                 "(newest: %s: %s)." % (len(failed), name, failed[-1], newest_failed["verify_error"]),
                                 failed))
    if newest_usable is None:
        detail = " (%d backup(s) present, none usable)" % len(backups) if backups else ""
        problems.append(_problem("no_backup", name, "No usable backup of '%s' exists%s." % (name, detail)))
    elif newest_usable["age_hours"] > max_age_hours:
        problems.append(_problem("stale", name, "The newest usable backup of '%s' (%s) is %.1f hours old; the limit "
                                 "is %g hours." % (name, newest_usable["id"], newest_usable["age_hours"], max_age_hours),
                                 [newest_usable["id"]]))
    # an incremental base backup is small next to a full one by design: sizes compare within one backup type
    comparable = [b for b in backups if b["file_state"] == "ok" and _size_class(b) == _size_class(backups[-1])]
    if comparable and comparable[-1]["id"] == backups[-1]["id"]:
        anomaly = size_anomaly([b["size"] for b in comparable], factor, window)
        if anomaly:
            median, ratio = anomaly
            problems.append(_problem("size_anomaly", name, "The newest backup of '%s' (%s) has %d bytes, %.2f times the "
                                     "median (%d bytes) of the %d %sbefore it." % (
                                         name, backups[-1]["id"], backups[-1]["size"], ratio, median,
                                         len(comparable[-window - 1:-1]), _same_type(backups[-1])),
                                     [backups[-1]["id"]]))
    if last_run and str(last_run.get("level", "")).lower() in ERROR_LEVELS:
        problems.append(_problem("last_run_failed", name, "The last backup run of '%s' failed at %s: %s" % (
            name, last_run.get("ts", "an unknown time"), last_run.get("error") or last_run.get("message") or "no error text")))
    return problems, newest_usable


ARCHIVER_SQL = """
SELECT current_setting('archive_mode'), archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time, stats_reset, now()
  FROM pg_stat_archiver
"""


def _iso_or_none(moment):
    return manifests.isoformat(moment) if moment is not None else None


def staging_problems(connection, database=None):
    """One ``leftover_staging_database`` problem per staging database that a dead full restore left on
    the server at ``connection`` (only those of restores into ``database`` when given)."""
    conn = pgconn.connect(connection)
    try:
        leftovers = staging_leftovers.find_leftovers(conn, database)
    finally:
        conn.close()
    return [_problem("leftover_staging_database", leftover["target"], staging_leftovers.describe(leftover),
                     [leftover["database"]]) for leftover in leftovers]


def archiver_status(connection):
    """WAL archiving health of the server at ``connection`` (a ConnectionSpec), from pg_stat_archiver.

    ``failing`` is true when the newest archiving attempt failed (its last failure is later than
    its last success); then ``problems`` holds one ``archive_failing`` problem, in the shape of
    ``backup_status``'s health entries, so it can go through the same alerts.
    """
    conn = pgconn.connect(connection)
    try:
        row = pgconn.query(conn, ARCHIVER_SQL)[0]
    finally:
        conn.close()
    mode, archived, last_wal, last_time, failed, failed_wal, failed_time, reset, now = row
    failing = failed_time is not None and (last_time is None or failed_time > last_time)
    age = round((now - last_time).total_seconds(), 3) if last_time is not None else None
    result = {"archive_mode": mode, "archived_count": archived, "last_archived_wal": last_wal,
              "last_archived_time": _iso_or_none(last_time), "last_archived_age": age, "failed_count": failed,
              "last_failed_wal": failed_wal, "last_failed_time": _iso_or_none(failed_time),
              "stats_reset": _iso_or_none(reset), "failing": failing, "problems": []}
    if failing:
        result["problems"].append(_problem("archive_failing", None, (
            "archive_command is failing on %s: %d failed attempt(s) since %s, the last for WAL %s at %s; last successful "
            "archive: %s." % (connection.describe(), failed, result["stats_reset"] or "the server started", failed_wal,
                              result["last_failed_time"], ("%s, %.0f s ago" % (last_wal, age)) if last_wal else "never"))))
    return result


def _metrics(newest, backups, ok, now):
    values = {"backups": len(backups), "ok": 1 if ok else 0}
    if newest is not None:
        values.update({
            "last_success_timestamp": newest["finished_timestamp"],
            "size_bytes": newest["size"],
            "duration_seconds": newest["duration_seconds"] if newest["duration_seconds"] is not None else 0,
            "verified": 1 if newest["verified"] == "verified" else 0,
            "age_seconds": round(newest["age_hours"] * 3600.0, 3),
        })
    return values


# Prometheus textfile


def escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def metric_lines(name, kind, help_text, samples, labels=None):
    """``# HELP``, ``# TYPE`` and one line per sample of metric ``name``, in the text exposition format.

    ``samples`` is a list of (labels, value); labels a list of (name, value) pairs, empty for none.
    ``labels`` ({name: value}) go first on every sample (e.g. the runner's config name, so that two
    setups on one host never collide)."""
    common = sorted((labels or {}).items())
    lines = ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, kind)]
    for sample_labels, value in samples:
        label_text = ",".join('%s="%s"' % (label, escape_label(text)) for label, text in common + list(sample_labels))
        lines.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "", _number(value)))
    return lines


def prometheus_text(status, labels=None):
    """The metrics of ``status`` in the Prometheus text exposition format; ``labels`` go on every sample."""
    lines = []
    for name, kind, help_text, key in METRICS:
        lines.extend(metric_lines(METRIC_PREFIX + name, kind, help_text, [
            ([("database", db)], values[key]) for db, values in sorted(status["metrics"].items())
            if values.get(key) is not None], labels))
    problems, seen = [], set()
    for problem in status["health"]:
        key = (problem["database"] or "", problem["code"])
        if key in seen:
            continue
        seen.add(key)
        problems.append(([("database", key[0]), ("code", key[1]), ("severity", problem["severity"])], 1))
    lines.extend(metric_lines(METRIC_PREFIX + "problem", "gauge", "1 for each problem found, by database and problem code.",
                              problems, labels))
    for name, help_text, value in (
            ("status_ok", "1 when the whole repository is healthy.", 1 if status["ok"] else 0),
            ("status_timestamp_seconds", "When this check ran (Unix time).",
             _epoch(manifests.parse_time(status["checked_at"])))):
        lines.extend(metric_lines(METRIC_PREFIX + name, "gauge", help_text, [([], value)], labels))
    return "\n".join(lines) + "\n"


def write_prometheus_textfile(path, status, mode=0o644, labels=None):
    """Write the metrics of ``status`` for node_exporter (see ``write_textfile``)."""
    return write_textfile(path, prometheus_text(status, labels), mode)


def write_textfile(path, text, mode=0o644):
    """Write metrics text atomically (temporary file in the same directory, then rename), so
    node_exporter never reads half a file. The file is world-readable: metrics are not secret."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PgBackupError("Textfile directory '%s' does not exist." % directory,
                            hint="Create it, or point the textfile path at node_exporter's --collector.textfile.directory.")
    try:
        fsutil.write_text_atomic(path, text, mode)
    except OSError as exc:
        raise fsutil.describe_os_error(exc, path)
    return path
