# -*- coding: utf-8 -*-
"""What a run prints on stdout: the method table, the targets, the scale study, the converge times."""

from __future__ import absolute_import, division, print_function

from report.summary import summarize
from report.tables import dr_lines, incremental_lines, method_table, scale_lines, usable_lines, wal_lines
from report.targets import targets, verdict


def print_summary(report):
    section = report["mode"]
    rows = summarize(report["results"], section)
    if section != "wal":
        print("\n".join(method_table(rows)))
    if section in ("main", "incremental"):
        print("")
        for name, measured, ok in targets(report, rows):
            print("%-70s %-50s %s" % (name, measured, verdict(ok).strip("*")))
    if section == "main":
        print("\n".join([""] + usable_lines(rows) + [""] + dr_lines(report)))
        print("\n".join([""] + scale_lines(report)))
        print("\n".join([""] + incremental_lines(report)))
        for run in (report.get("ansible") or {}).get("runs", []):
            print("ansible converge: %.1f s, changed=%s" % (run["seconds"], run["changed"]))
    print("\n".join(wal_lines(report)))
    print("total: %.1f min" % (report["total_seconds"] / 60.0))
