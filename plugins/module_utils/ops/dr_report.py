# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The disaster recovery report: what was done, how long each step took, the achieved RTO
(total wall time) and RPO (data-loss window) against the objectives, the backup used and what
failed. Written as Markdown (for people, the incident record) and JSON (for tools), each
atomically (temporary file, fsync, rename), also when the recovery failed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ..core import fsutil
from ..core import manifest as manifests
from ..core.errors import PgBackupError

REPORT_VERSION = 1
STATUSES = ("ok", "failed", "skipped", "not_run")
DEFAULT_OBJECTIVES = {"rto_hours": 4.0, "rpo_hours": 24.0}  # the seed's Disaster Recovery Plan
FOLLOW_UP = (
    "Monitor the application's logs for database errors.",
    "Verify data consistency with the application's owners (what changed after the backup is lost).",
    "Keep this report with the incident record.",
    "Review and improve the procedures (take a backup of the new server now; check the backup schedule).",
)


FENCE_STATUSES = ("fenced", "pending", "failed")
FENCE_FOLLOW_UP = "Fence %s before it comes back (status %s): %s"


def _time(value, what):
    if value in (None, ""):
        return None
    try:
        return manifests.parse_time(value)
    except PgBackupError:
        raise PgBackupError("%s '%s' is not an ISO 8601 time." % (what, value),
                            hint="Pass times like 2024-01-06T14:30:00Z (Ansible: now(utc=true).isoformat()).")


def _checked_entries(entries, key, statuses, what, hint, default=""):
    """(entry, status) for each entry: a dict with a non-empty key and a status among statuses (default if unset)."""
    for number, entry in enumerate(entries or [], 1):
        if not isinstance(entry, dict) or not entry.get(key):
            raise PgBackupError("%s %d has no %s." % (what, number, key), hint=hint)
        status = str(entry.get("status") or default)
        if status not in statuses:
            raise PgBackupError("%s '%s' has unknown status '%s'." % (what, entry[key], status),
                                hint="Use one of: %s." % ", ".join(statuses))
        yield entry, status


def normalize_steps(steps, expected_steps=None):
    """Steps with parsed times and durations; expected steps that never ran are added as not_run."""
    result = []
    for step, status in _checked_entries(steps, "name", STATUSES, "Step", "Each step needs name, started, finished, status.",
                                         default="ok"):
        started = _time(step.get("started"), "Start of step '%s'" % step["name"])
        finished = _time(step.get("finished"), "End of step '%s'" % step["name"])
        duration = round((finished - started).total_seconds(), 3) if started and finished else None
        result.append({"name": str(step["name"]), "status": status,
                       "started": manifests.isoformat(started) if started else None,
                       "finished": manifests.isoformat(finished) if finished else None,
                       "duration_seconds": duration, "detail": _text(step.get("detail"))})
    seen = set(step["name"] for step in result)
    for name in expected_steps or []:
        if name not in seen:
            result.append({"name": name, "status": "not_run", "started": None, "finished": None,
                           "duration_seconds": None, "detail": ""})
    return result


def normalize_fencing(fencing):
    """The old servers' fencing, each {host, status, detail, checked_at}: fenced (it takes no more writes
    from the application), pending (it did not answer) or failed."""
    result = []
    for item, status in _checked_entries(fencing, "host", FENCE_STATUSES, "Fencing entry", "Each entry needs host, status, detail."):
        checked = _time(item.get("checked_at"), "Fencing time of '%s'" % item["host"])
        result.append({"host": str(item["host"]), "status": status, "detail": _text(item.get("detail")),
                       "checked_at": manifests.isoformat(checked) if checked else None})
    return result


def _text(value):
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def build(steps, started_at, finished_at=None, objectives=None, backup=None, data_loss_seconds=None,
          reference_time=None, expected_steps=None, context=None, error=None, now=None, recovery_point=None,
          fencing=None):
    """The report as a dict (what the JSON file holds).

    RPO (data-loss window), first that applies: ``reference_time`` (default ``started_at``) minus
    ``recovery_point`` (the last transaction a point-in-time recovery replayed); ``data_loss_seconds``;
    ``reference_time`` minus the moment the backup's data is from (a logical backup's ``started_at``,
    its snapshot; a physical one's ``finished_at``).
    """
    now = now or manifests.utcnow()
    steps = normalize_steps(steps, expected_steps)
    started = _time(started_at, "started_at")
    if started is None:
        raise PgBackupError("The recovery's start time is missing.", hint="Pass started_at.")
    finished = _time(finished_at, "finished_at") or now
    goals = dict(DEFAULT_OBJECTIVES)
    goals.update(dict((k, float(v)) for k, v in (objectives or {}).items() if v is not None))
    failed_steps = [step["name"] for step in steps if step["status"] == "failed"]
    succeeded = not failed_steps and not error
    rto_seconds = round((finished - started).total_seconds(), 3)
    rpo_seconds = _rpo_seconds(backup, data_loss_seconds, reference_time, started, recovery_point)
    fenced = normalize_fencing(fencing)
    report = {
        "report_version": REPORT_VERSION,
        "outcome": "succeeded" if succeeded else "failed",
        "started_at": manifests.isoformat(started),
        "finished_at": manifests.isoformat(finished),
        "rto_seconds": rto_seconds,
        "rpo_seconds": rpo_seconds,
        "objectives": goals,
        # A failed recovery restored nothing, so its RTO is not met whatever the clock says.
        "rto_met": bool(succeeded and rto_seconds <= goals["rto_hours"] * 3600),
        "rpo_met": None if rpo_seconds is None else bool(rpo_seconds <= goals["rpo_hours"] * 3600),
        "recovery_point": manifests.isoformat(_time(recovery_point, "recovery_point")) if recovery_point else None,
        "steps": steps,
        "failed_steps": failed_steps,
        "error": _text(error) or (steps[[s["name"] for s in steps].index(failed_steps[0])]["detail"] if failed_steps else ""),
        "backup": _backup_summary(backup),
        "context": context or {},
        "fencing": fenced,
        "follow_up": [FENCE_FOLLOW_UP % (item["host"], item["status"], item["detail"])
                      for item in fenced if item["status"] != "fenced"] + list(FOLLOW_UP),
        "generated_by": "%s %s" % (manifests.TOOL, manifests.TOOL_VERSION),
    }
    return report


def _rpo_seconds(backup, data_loss_seconds, reference_time, started, recovery_point=None):
    reference = _time(reference_time, "reference_time") or started
    recovered = _time(recovery_point, "recovery_point")
    if recovered is not None:
        return round(max(0.0, (reference - recovered).total_seconds()), 3)
    if data_loss_seconds is not None:
        return round(float(data_loss_seconds), 3)
    if not backup or not backup.get("finished_at"):
        return None
    return round(max(0.0, (reference - manifests.parse_time(manifests.data_as_of(backup))).total_seconds()), 3)


def _backup_summary(backup):
    if not backup:
        return None
    keys = ("id", "kind", "database", "artifact", "size", "sha256", "started_at", "finished_at", "format",
            "server_version", "tables", "encryption")
    return dict((key, backup.get(key)) for key in keys if key in backup)


def human_duration(seconds):
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%d h %02d min %02d s" % (hours, minutes, secs)
    if minutes:
        return "%d min %02d s" % (minutes, secs)
    return "%d s" % secs


def _cell(value):
    text = _text(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= 300 else text[:297] + "..."


def _yes_no(flag):
    return "n/a" if flag is None else ("yes" if flag else "**NO**")


def to_markdown(report):
    backup = report["backup"] or {}
    context = report["context"] or {}
    title = context.get("database") or backup.get("database") or ""
    lines = ["# Disaster recovery report%s: %s" % (" - %s" % title if title else "", report["outcome"].upper()), ""]
    lines += ["| | |", "|---|---|",
              "| started | %s |" % report["started_at"],
              "| finished | %s |" % report["finished_at"],
              "| outcome | %s |" % report["outcome"]]
    for key in sorted(context):
        lines.append("| %s | %s |" % (_cell(key), _cell(context[key])))
    lines += ["", "## Objectives", "",
              "| objective | target | achieved | met |", "|---|---|---|---|",
              "| RTO (total wall time of the recovery) | %s | %s (%s s) | %s |" % (
                  human_duration(report["objectives"]["rto_hours"] * 3600), human_duration(report["rto_seconds"]),
                  report["rto_seconds"], _yes_no(report["rto_met"])),
              "| RPO (data-loss window: changes after the backup's snapshot are lost) | %s | %s | %s |" % (
                  human_duration(report["objectives"]["rpo_hours"] * 3600),
                  "%s (%s s)" % (human_duration(report["rpo_seconds"]), report["rpo_seconds"])
                  if report["rpo_seconds"] is not None else "unknown (no backup selected)",
                  _yes_no(report["rpo_met"])),
              "", "## Steps", "",
              "| # | step | status | started | duration | detail |", "|---|---|---|---|---|---|"]
    for number, step in enumerate(report["steps"], 1):
        lines.append("| %d | %s | %s | %s | %s | %s |" % (
            number, _cell(step["name"]), step["status"] if step["status"] != "failed" else "**FAILED**",
            step["started"] or "", human_duration(step["duration_seconds"]) if step["duration_seconds"] is not None else "",
            _cell(step["detail"])))
    if report["outcome"] != "succeeded":
        lines += ["", "## What failed", "",
                  "Step(s): %s" % (", ".join(report["failed_steps"]) or "none recorded"), "",
                  "```", report["error"] or "(no message)", "```"]
    if report.get("fencing"):
        lines += ["", "## Fencing of the old servers", "",
                  "| host | status | checked | detail |", "|---|---|---|---|"]
        lines += ["| %s | %s | %s | %s |" % (_cell(item["host"]), item["status"] if item["status"] == "fenced"
                                             else "**%s**" % item["status"].upper(), item["checked_at"] or "",
                                             _cell(item["detail"])) for item in report["fencing"]]
    lines += ["", "## Backup used", ""]
    if backup:
        lines += ["| | |", "|---|---|"]
        for key in ("id", "kind", "database", "finished_at", "size", "sha256", "format", "server_version"):
            if key in backup:
                lines.append("| %s | %s |" % (key, _cell(backup[key])))
        tables = backup.get("tables") or {}
        if tables:
            lines += ["", "| table | rows in the backup |", "|---|---|"]
            lines += ["| %s | %s |" % (_cell(name), tables[name]) for name in sorted(tables)]
    else:
        lines.append("None: no backup was selected.")
    lines += ["", "## Follow-up", ""] + ["- [ ] %s" % item for item in report["follow_up"]]
    lines += ["", "_Generated by %s._" % report["generated_by"], ""]
    return "\n".join(lines)


def report_paths(report_dir, started_at, prefix="dr-report"):
    stamp = manifests.parse_time(started_at).strftime("%Y%m%dT%H%M%SZ")
    base = os.path.join(report_dir, "%s-%s" % (prefix, stamp))
    return base + ".md", base + ".json"


def write(report, report_dir, prefix="dr-report", mode=0o640):
    """Write <report_dir>/<prefix>-<start>.md and .json atomically; returns (md_path, json_path)."""
    md_path, json_path = report_paths(report_dir, report["started_at"], prefix)
    try:
        if not os.path.isdir(report_dir):
            os.makedirs(report_dir, 0o750)
        fsutil.write_text_atomic(json_path, json.dumps(report, indent=2, sort_keys=True) + "\n", mode)
        fsutil.write_text_atomic(md_path, to_markdown(report), mode)
    except OSError as exc:
        raise fsutil.describe_os_error(exc, report_dir)
    return md_path, json_path
