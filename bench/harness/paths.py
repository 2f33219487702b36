# -*- coding: utf-8 -*-
"""Where the bench, the checkout and its outputs are; makes the checkout importable."""

from __future__ import absolute_import, division, print_function

import os
import sys

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH_DIR)
ENTRY_POINT = os.path.join(BENCH_DIR, "bench.py")
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
DOCS_FILE = os.path.join(ROOT, "docs", "performance.md")
COLLECTIONS_LINK_ROOT = os.path.join(ROOT, "build", "collections")
if ROOT not in sys.path:  # tests.lib (cluster, Todo database, ansible-playbook runs)
    sys.path.insert(0, ROOT)


def import_collection():
    """Make ``ansible_collections.todoapi.pgbackup`` resolve to this checkout."""
    link = os.path.join(COLLECTIONS_LINK_ROOT, "ansible_collections", "todoapi", "pgbackup")
    if os.path.realpath(link) == os.path.realpath(ROOT):
        root = COLLECTIONS_LINK_ROOT
    else:
        from tests.lib.ansible_run import make_collection_root
        root = make_collection_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    return root
