# -*- coding: utf-8 -*-
"""The raw results: bench/results/<time>-<mode>-<size>mb.json, every run of every method and the setup."""

from __future__ import absolute_import, division, print_function

import json
import os
import time

from harness.machine import machine_facts
from harness.paths import RESULTS_DIR


def save(report):
    """Write the report; records its file name in it (the docs section points at it). Returns the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = "%s-%s-%dmb.json" % (time.strftime("%Y%m%dT%H%M%S"), report["mode"], report["size_mb"])
    report["results_file"] = name
    path = os.path.join(RESULTS_DIR, name)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    return path


def load(path):
    """A saved report, with the machine facts an older version of the bench failed to read filled in."""
    with open(path) as handle:
        report = json.load(handle)
    current = machine_facts(os.path.dirname(os.path.abspath(path)))
    for key in ("disk", "filesystem"):
        if not report["machine"].get(key) or report["machine"][key].startswith("("):
            report["machine"][key] = current[key]
    return report
