# -*- coding: utf-8 -*-
"""The performance targets and whether a run met them: (target, measured, ok) triples."""

from __future__ import absolute_import, division, print_function

from harness.common import MIB
from report.summary import find_row, ratio, summarize

TARGETS = {
    "logical_backup_time_ratio": 1.0 / 3.0,
    "logical_backup_size_ratio": 1.10,
    "logical_restore_time_ratio": 0.6,
    "logical_restore_usable_ratio": 0.6,
    "dr_rto_seconds": {"dr_pitr": 30.0, "dr_logical": 45.0},
    "engine_rss_mb": 100.0,
    "ansible_converge_seconds": {"first": 8.0, "no_change": 5.0},  # issue 19
    "incremental_backup_ratio": 0.10,
    "chain_restore_ratio": 1.3,
    # issue 19: against pgBackRest with zst, in the same run
    "physical_backup_zst_ratio": 0.5,
    "physical_backup_zst_size_ratio": 1.1,
    "physical_restore_zst_ratio": 1.0,
}


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def targets(report, rows):
    return (_logical_backup(rows) + _logical_restore(rows) + _time_to_usable(rows) + _physical_backup(rows)
            + _engine_rss(rows) + _temporary_copies(rows) + _dr_rto(report) + _converge(report)
            + _incremental(summarize(report["results"], "incremental")))


def _logical_backup(rows):
    dump, seed_dump = find_row(rows, "coll_dump"), find_row(rows, "seed_dump")
    if not dump or dump["time_ratio"] is None:
        return []
    ok = dump["time_ratio"] <= TARGETS["logical_backup_time_ratio"] and \
        dump["size_ratio"] <= TARGETS["logical_backup_size_ratio"]
    return [("default logical backup ≤ 1/3 of the seed's time at ≤ %.0f %% of its size"
             % (TARGETS["logical_backup_size_ratio"] * 100),
             "%.2f × the time, %.2f × the size (%.1f s vs %.1f s)" % (
                 dump["time_ratio"], dump["size_ratio"], dump["time"], seed_dump["time"]), ok)]


def _logical_restore(rows):
    row = find_row(rows, "coll_restore")
    if not row or row["time_ratio"] is None:
        return []
    limit = TARGETS["logical_restore_time_ratio"]
    return [("%s ≤ %g × the seed's restore" % (row["label"], limit), "%.2f × (%.1f s vs %.1f s)" % (
        row["time_ratio"], row["time"], find_row(rows, "seed_restore")["time"]), row["time_ratio"] <= limit)]


USABLE_METHODS = (("coll_restore_after_swap", "validate_foreign_keys=after_swap"),
                  ("coll_restore_deferred", "validate_foreign_keys=after_swap, build_indexes=after_swap"))


def _time_to_usable(rows):
    seed, out = find_row(rows, "seed_restore"), []
    limit = TARGETS["logical_restore_usable_ratio"]
    for key, options in USABLE_METHODS:
        row = find_row(rows, key)
        if not row or row["usable_median"] is None or not seed or not seed["time"]:
            continue
        ratio = row["usable_median"] / seed["time"]
        out.append(("logical restore usable (%s) ≤ %g × the seed's whole restore" % (options, limit),
                    "%.2f × (usable after %.1f s, checks done after %.1f s; seed %.1f s)" % (
                        ratio, row["usable_median"], row["checks_finished_median"], seed["time"]), ratio <= limit))
    return out


def _dr_rto(report):
    out = []
    for record in report["results"]:
        limit = TARGETS["dr_rto_seconds"].get(record["method"]) if record["section"] == "dr" else None
        if limit is None:
            continue
        rto = record.get("rto_seconds")
        ok = bool(rto is not None and record.get("outcome") == "succeeded" and rto <= limit)
        measured = ("RTO %.1f s (%s)" % (rto, record.get("outcome"))) if rto is not None else "failed: no DR report"
        out.append(("%s: RTO ≤ %g s at %.0f MiB" % (record["label"], limit, record["database_bytes"] / MIB), measured, ok))
    return out


def _physical_backup(rows):
    out = []
    base = find_row(rows, "coll_base")
    for key in ("pgbr_backup_gz", "pgbr_backup_zst"):
        other = find_row(rows, key)
        if base and other and base["time"] and other["time"]:
            out.append(("default physical backup no slower than %s" % other["label"], "%.1f s vs %.1f s (%.2f ×)" % (
                base["time"], other["time"], base["time"] / other["time"]), base["time"] <= other["time"]))
    return out + _against_pgbackrest_zst(rows)


def _against_pgbackrest_zst(rows):
    """Backup ≤ 0.5 × pgBackRest full zst's time at ≤ 1.1 × its size; restore ≤ 1.0 × its restore."""
    out = []
    base, other = find_row(rows, "coll_base"), find_row(rows, "pgbr_backup_zst")
    if base and other and base["time"] and other["time"] and base["size"] and other["size"]:
        time_ratio, size_ratio = base["time"] / other["time"], base["size"] / float(other["size"])
        out.append(("default physical backup ≤ %g × pgBackRest full zst's time at ≤ %g × its size" % (
            TARGETS["physical_backup_zst_ratio"], TARGETS["physical_backup_zst_size_ratio"]),
            "%.2f × the time, %.2f × the size (%.1f s vs %.1f s)%s" % (
                time_ratio, size_ratio, base["time"], other["time"], _floor(
                    rows, "floor_base", "pgbr_backup_zst", "%.2f × the time", ("time",), "pg_basebackup alone, no checks")),
            time_ratio <= TARGETS["physical_backup_zst_ratio"] and size_ratio <= TARGETS["physical_backup_zst_size_ratio"]))
    restore, other = find_row(rows, "coll_extract"), find_row(rows, "pgbr_restore_zst")
    if restore and other and restore["time"] and other["time"]:
        ratio = restore["time"] / other["time"]
        out.append(("%s ≤ %g × pgBackRest restore, zst" % (restore["label"], TARGETS["physical_restore_zst_ratio"]),
                    "%.2f × (%.1f s vs %.1f s)" % (ratio, restore["time"], other["time"]),
                    ratio <= TARGETS["physical_restore_zst_ratio"]))
    return out


def _engine_rss(rows):
    rss = [row["rss_max"] for row in rows if row["rss_max"] is not None]
    if not rss:
        return []
    limit = TARGETS["engine_rss_mb"]
    return [("engine (module) process peak RSS < %.0f MiB" % limit,
             "max %.0f MiB over all engine runs" % (max(rss) / 1024.0), max(rss) / 1024.0 < limit)]


def _temporary_copies(rows):
    out = []
    for key in ("coll_dump", "coll_base"):
        row = find_row(rows, key)
        if row and row["peak_disk_max"] is not None and row["size"]:
            out.append(("%s: no temporary copy larger than the artifact" % row["label"],
                        "peak extra disk %.0f MiB for a %.0f MiB artifact" % (row["peak_disk_max"] / MIB, row["size"] / MIB),
                        row["peak_disk_max"] <= row["size"] * 1.05 + 8 * MIB))
    return out


def _converge(report):
    ansible = report.get("ansible") or {}
    runs, floor = ansible.get("runs") or [], ansible.get("floor")
    if len(runs) != 2 or runs[1]["rc"] != 0:
        return []
    floor_text = "; floor (facts + one module) %.1f s" % floor["seconds"] if floor and floor["rc"] == 0 else ""
    out = []
    for run, which, text in ((runs[0], "first", "first converge"), (runs[1], "no_change", "no-change converge")):
        limit = TARGETS["ansible_converge_seconds"][which]
        out.append(("%s of the backup role ≤ %g s" % (text, limit), "%.1f s, changed=%s%s" % (
            run["seconds"], run["changed"], floor_text), run["seconds"] <= limit))
    return out


def _incremental(rows):
    out = []
    incr, chain = find_row(rows, "pg18_incr"), find_row(rows, "pg18_chain_restore")
    if incr and incr["time_ratio"] is not None and incr["size_ratio"] is not None:
        limit = TARGETS["incremental_backup_ratio"]
        out.append(("PostgreSQL 18: incremental after a 1 %% change ≤ %.0f %% of a full backup's time and size" % (
            limit * 100), "%.2f × the time, %.2f × the size (%.1f s vs %.1f s)%s" % (
                incr["time_ratio"], incr["size_ratio"], incr["time"], find_row(rows, "pg18_full")["time"],
                _floor(rows, "pg18_ref_incr", "pg18_ref_full", "%.2f × the time, %.2f × the size (%.2f × without pg_wal.tar)",
                       ("time", "size", "base_size"))),
            incr["time_ratio"] <= limit and incr["size_ratio"] <= limit))
    if chain and chain["time_ratio"] is not None:
        limit = TARGETS["chain_restore_ratio"]
        full = find_row(rows, "pg18_full_restore")
        out.append(("PostgreSQL 18: restoring full + 6 incrementals ≤ %g × restoring the full backup" % limit,
                    "%.2f × (%.1f s vs %.1f s)%s" % (chain["time_ratio"], chain["time"], full["time"], _floor(
                        rows, "pg18_ref_chain_restore", "pg18_ref_full_restore", "%.2f ×", ("time",))),
                    chain["time_ratio"] <= limit))
    return out


def _floor(rows, method, base_method, pattern, fields, what="PostgreSQL's programs alone"):
    """'; floor (<what>): <pattern>' from the reference rows of the same run, '' without them."""
    values = tuple(ratio(rows, method, base_method, field) for field in fields)
    if None in values:
        return ""
    return "; floor (%s): %s" % (what, pattern % values)
