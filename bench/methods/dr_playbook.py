# -*- coding: utf-8 -*-
"""``playbooks/dr_restore.yml`` end to end on the bench's TodoDb: logical and PITR, onto a NEW local cluster.

The backup it recovers from is taken first (not timed): a logical backup by the engine, or for PITR a base
backup while the cluster archives its WAL through the collection's WAL helper, then a change that only WAL
replay brings back. The playbook then provisions a new cluster (another name and a free port, standing for
the new host; PostgreSQL already installed, so ``dr_install_packages: false``), recovers, checks and reports,
driven by its extra vars only, as an operator runs it (no application: the application step is skipped).

Recorded per run: the playbook's wall time, the DR report's RTO and outcome, each step's duration from the
report's JSON, the playbook's slowest tasks and every task's time in the order they ran (where the time went). The new cluster is dropped afterwards.
"""

from __future__ import absolute_import, division, print_function

import glob
import json
import os

from harness.common import log, mkdir, rmtree
from harness.paths import ROOT, import_collection
from harness.processes import StepFailed
from harness.timing import Timed
from methods.ansible_role import playbook_run, task_durations

DR_PLAYBOOK = os.path.join(ROOT, "playbooks", "dr_restore.yml")
ADMIN_PASSWORD = "bench-dr-Admin-1"
APP_PASSWORD = "bench-dr-App-1"


class DrPlaybook(object):
    def __init__(self, workspace, collection):
        self.ws = workspace
        self.collection = collection  # CollectionMethods: the engine calls that take the backups

    def logical(self, db, tag):
        repo = self._repository("dr-logical")
        self.collection.engine("logical_backup", "dr-logical-backup", repository=repo, database=db["name"],
                               overrides={})
        return self._recover("logical", repo, db)

    def pitr(self, db, tag):
        import_collection()  # tests.lib.archiving imports the collection's WAL helper
        from tests.lib.archiving import install_wal_tool, postgres_dir, wait_archived
        base = self._fresh_dir("dr-pitr")
        try:
            wal_command = install_wal_tool(mkdir(os.path.join(base, "wal-helper")))
            archive = postgres_dir(base, "wal-archive")
            repo = self._repository("dr-pitr-base")
            with self.ws.archiving_with("%s archive-wal %%p %%f --archive-dir %s" % (wal_command, archive)):
                self.collection.engine("physical_backup", "dr-pitr-backup", repository=repo, overrides={})
                # After the base backup: only WAL replay brings this back (row counts stay the same).
                self.ws.cluster.sql('UPDATE "Users" SET "UserName" = "UserName" || \'-dr\' WHERE "Id" = 1',
                                    dbname=db["name"])
                wait_archived(self.ws.cluster, timeout=120)
            return self._recover("pitr", repo, db, dr_method="pitr", dr_wal_archive=archive,
                                 dr_wal_command=wal_command, dr_install_wal_helper=False)
        finally:
            rmtree(base)

    def _fresh_dir(self, name):
        path = self.ws.path(name)
        rmtree(path)
        return mkdir(path)

    def _repository(self, name):
        path = self.ws.path(name)
        rmtree(path)
        return mkdir(path, owner="postgres", mode=0o700)

    def _recover(self, method, repo, db, **extra_vars):
        from tests.lib.dr_local import PLAYBOOK_ENV, new_local_server_vars
        from tests.lib.pgcluster import PgCluster, drop_cluster, find_free_port, next_cluster_name
        from tests.lib.tododb import todo_row_counts
        name, port = next_cluster_name(15), find_free_port()
        work = self._fresh_dir("dr-run-%s" % method)
        report_dir = os.path.join(work, "reports")
        # no application: the application step is skipped; everything else as the playbook's defaults say
        extra_vars.update(new_local_server_vars(repo, db["name"], (name, port), work, ADMIN_PASSWORD, APP_PASSWORD))
        try:
            with Timed(self.ws) as timed:
                result, _seconds, _cpu = playbook_run(DR_PLAYBOOK, extra_vars, import_collection(), work, env=PLAYBOOK_ENV)
            report = _read_report(report_dir)
            record = dict(timed.fields(), rc=result.rc, cluster=name, slowest_tasks=task_durations(result.report)[:6],
                          tasks=task_durations(result.report, in_order=True), **_summary(report))
            if result.rc != 0:  # the record keeps the report's steps: where it failed
                record["error"] = "dr_restore.yml failed (steps %s): %s" % (
                    record.get("failed_steps"), (result.stderr or result.stdout)[-1500:])
                return record
            rows = todo_row_counts(PgCluster(15, name, port, password=ADMIN_PASSWORD), db["name"])
            record["rows_match"] = rows == db["rows"]
            if not record["rows_match"]:
                raise StepFailed("recovered %s has rows %s, source has %s" % (db["name"], rows, db["rows"]))
            log("    RTO %s s (%s)" % (record.get("rto_seconds"), ", ".join(
                "%s %s s" % (step["name"], step["duration_seconds"]) for step in record["steps"])))
            return record
        finally:
            drop_cluster(15, name)
            for leftover in glob.glob("/var/lib/postgresql/15/%s.*-pitr-*" % name) + [work, repo]:
                rmtree(leftover)


def _read_report(report_dir):
    found = sorted(glob.glob(os.path.join(report_dir, "dr-report-*.json")))
    if not found:
        return {}
    with open(found[-1]) as handle:
        return json.load(handle)


def _summary(report):
    """What the DR report says: outcome, RTO, the failed steps and each step's status and duration."""
    return {"outcome": report.get("outcome"), "rto_seconds": report.get("rto_seconds"),
            "failed_steps": report.get("failed_steps"),
            "steps": [{"name": step.get("name"), "status": step.get("status"),
                       "duration_seconds": step.get("duration_seconds")} for step in report.get("steps") or []]}
