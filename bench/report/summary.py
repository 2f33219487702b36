# -*- coding: utf-8 -*-
"""Per-method summaries of the raw records: medians, peaks, and ratios against the seed of the same step."""

from __future__ import absolute_import, division, print_function

from harness.common import median

PEAK_FIELDS = (("size_bytes", "sizes"), ("rss_kb", "rss"), ("tree_rss_kb", "tree_rss"), ("peak_disk_bytes", "peak_disk"),
               ("wal_bytes", "wal_sizes"))
# Times a restore reports besides its wall time (methods/collection.py time_to_usable): their medians.
MOMENT_FIELDS = (("usable_seconds", "usable"), ("checks_finished_seconds", "checks_finished"))


def _new_row(record):
    return {"method": record["method"], "label": record["label"], "group": record["group"],
            "baseline": record["baseline"], "comparator": record.get("comparator"),
            "database": record["database"], "database_bytes": record["database_bytes"],
            "times": [], "sizes": [], "rss": [], "tree_rss": [], "peak_disk": [], "errors": [], "cpu": [],
            "usable": [], "checks_finished": [], "wal_sizes": [],
            "loads": [], "command": record.get("command"), "settings": record.get("settings")}


def _add_record(row, record):
    if record.get("error"):
        row["errors"].append(record["error"])
        return
    row["times"].append(record["seconds"])
    row["loads"].append(record.get("loadavg_1m"))
    if record.get("cpu_client_seconds") is not None:
        row["cpu"].append(record["cpu_client_seconds"] + record.get("cpu_server_seconds", 0))
    for field, name in PEAK_FIELDS + MOMENT_FIELDS:
        if record.get(field) is not None:
            row[name].append(record[field])


def _finish_row(row):
    row["time"] = median(row["times"])
    row["size"] = median(row["sizes"])
    row["wal_size"] = median(row["wal_sizes"])  # a reference backup's pg_wal.tar (methods/incremental_reference.py)
    row["cpu_median"] = median(row["cpu"])
    row["usable_median"] = median(row["usable"])
    row["checks_finished_median"] = median(row["checks_finished"])
    row["rss_max"] = max(row["rss"]) if row["rss"] else None
    row["tree_rss_max"] = max(row["tree_rss"]) if row["tree_rss"] else None
    row["peak_disk_max"] = max(row["peak_disk"]) if row["peak_disk"] else None
    return row


def summarize(results, section, database=None):
    """Per method (in first-run order): median/min/max time, median size, peaks."""
    rows, order = {}, []
    for record in results:
        if record["section"] != section or (database and record["database"] != database):
            continue
        key = (record["database"], record["method"])
        if key not in rows:
            order.append(key)
            rows[key] = _new_row(record)
        _add_record(rows[key], record)
    out = [_finish_row(rows[key]) for key in order]
    baselines = dict((row["group"], row) for row in out if row["baseline"])
    for row in out:
        base = baselines.get(row["group"])
        row["time_ratio"] = row["time"] / base["time"] if base and base["time"] and row["time"] else None
        row["size_ratio"] = row["size"] / base["size"] if base and base.get("size") and row["size"] else None
    return out


def find_row(rows, method):
    return next((row for row in rows if row["method"] == method), None)


def ratio(rows, method, base_method, field="time"):
    """A row's median time (or size, or "base_size": the size without pg_wal.tar) divided by another row's; None when
    either is missing."""
    row, base = find_row(rows, method), find_row(rows, base_method)
    values = [_field(r, field) for r in (row, base)] if row and base else [None]
    if not all(values):
        return None
    return values[0] / float(values[1])


def _field(row, field):
    if field == "base_size":
        return row["size"] - row["wal_size"] if row["size"] and row["wal_size"] is not None else None
    return row[field]
