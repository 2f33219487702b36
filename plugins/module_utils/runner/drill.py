# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup-drill``: the on-host face of the restore drill (engine: ops/drill.py), installed
and scheduled by role todoapi.pgbackup.restore_drill. Alerts go through the health check's channels."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import sys

from ..core.errors import PgBackupError
from ..ops.drill import EXIT_ERROR, EXIT_FAILED, EXIT_PASSED, drill_status, load_settings, plan, publish, run_drill
from .monitor import deliver as deliver_alert

PROG = "todoapi-pgbackup-drill"


def _parser():
    parser = argparse.ArgumentParser(prog=PROG, description="Restore drill: restore the newest backup of each database "
                                     "into a throwaway database, prove it, write metrics and send alerts.",
                                     epilog="Exit status: 0 every drill passed, 1 a drill failed, 2 the drill could not "
                                            "run or publish (settings, textfile, alert not delivered).")
    parser.add_argument("--config", required=True, help="settings file (written by role todoapi.pgbackup.restore_drill)")
    parser.add_argument("--plan", action="store_true", help="only say which backups a drill would restore; changes nothing")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    return parser


def main(argv=None, deliver=deliver_alert, out=None, err=None):
    """``todoapi-pgbackup-drill --config FILE [--plan] [--json]``; returns the exit status."""
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        settings = load_settings(args.config)
        if args.plan:
            result, code = {"plan": plan(settings)}, EXIT_PASSED
        else:
            status = drill_status(run_drill(settings), settings["repository"])
            report = publish(status, settings, deliver)
            result = dict(report, ok=status["ok"], checked_at=status["checked_at"], drills=status["drills"])
            code = EXIT_ERROR if report["errors"] else (EXIT_PASSED if status["ok"] else EXIT_FAILED)
    except PgBackupError as exc:
        err.write("%s: ERROR: %s\n" % (PROG, exc))
        return EXIT_ERROR
    if args.json:
        out.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        out.write("".join("%s: %s\n" % (PROG, line) for line in describe(result)))
    for error in result.get("errors", []):
        err.write("%s: NOT PUBLISHED: %s\n" % (PROG, error))
    return code


def describe(result):
    """Human lines for a drill's or a plan's result."""
    if "plan" in result:
        return ["PLAN %s: %s" % (entry["database"], entry.get("error") or "restore %s (finished %s)" % (
            entry["backup_id"], entry["backup_finished_at"])) for entry in result["plan"]]
    lines = ["%s %s" % (result["checked_at"], "PASSED" if result["ok"] else "FAILED")]
    for drill in result["drills"]:
        if drill["passed"]:
            lines.append("PASSED %s: %s (backup %.1f h old, drill %.1f s)" % (
                drill["database"], drill["summary"], drill["backup_age_seconds"] / 3600.0, drill["duration_seconds"]))
        else:
            lines.append("FAILED %s: %s%s" % (drill["database"], drill["error"],
                                              (" " + drill["hint"]) if drill["hint"] else ""))
    if result["alert"] and result["alert"]["send"]:
        lines.append("alert '%s' sent via %s" % (result["alert"]["subject"], ", ".join(result["alert"]["sent"]) or "nothing"))
    return lines
