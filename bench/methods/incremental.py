# -*- coding: utf-8 -*-
"""Incremental base backups on PostgreSQL 18, through the engine as the pg_basebackup and pitr_recovery modules
run it: an incremental backup after 1 % of the rows changed against a full backup (time and size), and
restoring a chain of a full backup and 6 incrementals (pg_combinebackup) against restoring the full backup
alone (both verified with pg_verifybackup, as pitr_recovery does before it starts the server).

"1 % of the rows changed" is an UPDATE of the newest 1 % of the Todos (by id), the table that holds nearly all
of the data: recent rows are the ones an application edits. Changes spread over every page would make an
incremental backup copy most pages; its size follows the changed blocks, not the changed rows.
"""

from __future__ import absolute_import, division, print_function

from harness.common import rmtree
from harness.timing import Timed
from methods.collection import CollectionMethods

CHANGED_FRACTION = 0.01
CHAIN_INCREMENTALS = 6
CHANGE_SQL = 'UPDATE "Todos" SET "Title" = "Title" || \'.\' WHERE "Id" > (SELECT max("Id") - %d FROM "Todos")'


class IncrementalMethods(object):
    """Each round has its own repository: its full backup, then its incremental backups on top."""

    def __init__(self, workspace):
        self.ws = workspace
        self.collection = CollectionMethods(workspace)
        self.rounds = {}  # tag -> {"repo": path, "full": id, "newest": id, "chain": n}

    def _take(self, db, tag, backup_type, name):
        state = self.rounds[tag]
        output, tree_rss = self.collection.engine("physical_backup", name, repository=state["repo"], overrides={
            "type": backup_type, "pg_bin_dir": self.ws.bin})
        state["newest"] = output["id"]
        state["chain"] = len(output["chain"])
        return output, tree_rss

    def change_rows(self, db):
        self.ws.cluster.sql(CHANGE_SQL % max(1, int(db["rows"]["Todos"] * CHANGED_FRACTION)), dbname=db["name"])

    def _fields(self, timed, output, tree_rss):
        return dict(timed.fields(), size_bytes=output.get("size"), engine_seconds=output.get("engine_seconds"),
                    rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"])

    def full(self, db, tag):
        repo = self.ws.path("repo-chain", tag)
        rmtree(repo)
        self.rounds[tag] = {"repo": repo}
        name = "pg18-full-%s" % tag
        with Timed(self.ws, [repo, self.ws.tmp_dir(name)]) as timed:
            output, tree_rss = self._take(db, tag, "full", name)
        self.rounds[tag]["full"] = output["id"]
        return dict(self._fields(timed, output, tree_rss), compression=output["compression"])

    def incremental(self, db, tag):
        self.change_rows(db)
        name = "pg18-incr-%s" % tag
        with Timed(self.ws, [self.rounds[tag]["repo"], self.ws.tmp_dir(name)]) as timed:
            output, tree_rss = self._take(db, tag, "incr", name)
        return dict(self._fields(timed, output, tree_rss), backup_type=output["backup_type"])

    def _restore(self, tag, backup_id, name):
        dest = self.ws.restore_dir(name)
        with Timed(self.ws, [self.ws.path("restore"), self.ws.tmp_dir(name)]) as timed:
            output, tree_rss = self.collection.engine("physical_restore", name, repository=self.rounds[tag]["repo"],
                                                      backup=backup_id, destination=dest, pg_bin_dir=self.ws.bin)
        rmtree(dest)
        return dict(self._fields(timed, output, tree_rss), restored_by=output["method"], chain=len(output["chain"]),
                    step_seconds=output.get("seconds"))

    def restore_full(self, db, tag):
        return self._restore(tag, self.rounds[tag]["full"], "pg18-full-restore-%s" % tag)

    def restore_chain(self, db, tag):
        """Restore the newest backup of a chain of a full backup and CHAIN_INCREMENTALS incrementals (the ones
        missing are taken first, each after a 1 % change, and not timed)."""
        state = self.rounds[tag]
        while state["chain"] < 1 + CHAIN_INCREMENTALS:
            self.change_rows(db)
            self._take(db, tag, "incr", "pg18-chain-%s-%d" % (tag, state["chain"]))
        return self._restore(tag, state["newest"], "pg18-chain-restore-%s" % tag)
