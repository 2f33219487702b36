# -*- coding: utf-8 -*-
"""Alternating rounds: round 1 runs A B C ..., round 2 A B C ..., so that machine drift hits all methods alike."""

from __future__ import absolute_import, division, print_function

import datetime
import re
import traceback

from harness.common import MIB, log


class Method(object):
    """One measured way of doing a step. ``group``: backup/restore kind; ``baseline``: the seed's.

    ``run(db, tag)`` returns the measured fields (see Timed.fields) plus the method's own.
    """

    def __init__(self, key, group, label, run, baseline=False, comparator=False):
        self.key = key
        self.group = group
        self.label = label
        self.run = run
        self.baseline = baseline
        self.comparator = comparator


def measure(method, db, round_no, section):
    """One run of one method as a results record; a failure is recorded, not raised."""
    tag = "r%d-%s" % (round_no, re.sub(r"[^A-Za-z0-9]+", "", db["name"]))
    log("%s round %d: %s ..." % (db["name"], round_no, method.label))
    record = {"section": section, "method": method.key, "group": method.group, "label": method.label,
              "baseline": method.baseline, "comparator": method.comparator, "round": round_no,
              "database": db["name"], "database_bytes": db["size_bytes"],
              "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    try:
        record.update(method.run(db, tag))
        size = (", %.1f MiB" % (record["size_bytes"] / MIB)) if record.get("size_bytes") else ""
        log("    %.1f s%s" % (record["seconds"], size))
    except Exception as exc:  # one broken method must not sink the whole run
        record["error"] = str(exc)[-2000:]
        record["traceback"] = traceback.format_exc()[-4000:]
        log("    FAILED: %s" % str(exc)[-500:])
    return record


def run_rounds(methods, db, rounds, section, results, only=None):
    """Append a record of every method in every round to results (as they come: a failed run keeps them).

    ``only``: a regex on the method keys to keep.
    """
    if only:
        methods = [m for m in methods if re.search(only, m.key)]
    for round_no in range(1, rounds + 1):
        for method in methods:
            results.append(measure(method, db, round_no, section))
