# -*- coding: utf-8 -*-
"""Reference rows of the incremental section: PostgreSQL 18's own programs doing the same work without the
engine (no repository, no verification, no checks), the floor the engine's rows are measured against.

Each round has its own reference chain in ref-chain/<tag>/: a full backup, then incrementals, each against the
newest member (as the engine's ``type: incr``) and each after its own 1 % change (the engine's CHANGE_SQL).
"""

from __future__ import absolute_import, division, print_function

import os
import shutil

from harness.common import mkdir, rmtree
from harness.processes import StepFailed, run_process, run_process_rss
from harness.sampling import tree_bytes
from harness.timing import Timed
from methods.incremental import CHAIN_INCREMENTALS

# What the engine's default falls back to on the wheel's build (no zstd): its full backups' "compression" result
# in the bench runs of 2026-12-07 was {"method": "gzip", "location": "server", "level": 1}.
COMPRESSION = "server-gzip:1"
BASEBACKUP_ARGS = ["-Ft", "--compress=" + COMPRESSION, "-X", "stream", "--checkpoint=fast"]
BASEBACKUP = "pg_basebackup -D DIR " + " ".join(BASEBACKUP_ARGS)


class ReferenceIncremental(object):
    def __init__(self, incremental):
        self.incremental = incremental  # the engine methods: their workspace and their 1 % change
        self.ws = incremental.ws
        self.chains = {}  # tag -> member directories, oldest first

    def _log(self, name, tag):
        return self.ws.path("logs", "ref-%s-%s.log" % (name, tag))

    def _members(self, tag):
        if not self.chains.get(tag):
            raise StepFailed("no reference full backup in this round")
        return self.chains[tag]

    def _backup(self, tag, incremental):
        """pg_basebackup into the chain's next member directory (an incremental against the newest member)."""
        ws = self.ws
        members = self._members(tag) if incremental else []
        chain_dir = mkdir(ws.path("ref-chain", tag))
        out_dir = os.path.join(chain_dir, "m%d" % len(members))
        argv = [os.path.join(ws.bin, "pg_basebackup"), "-D", out_dir] + BASEBACKUP_ARGS
        if incremental:
            argv.append("--incremental=" + os.path.join(members[-1], "backup_manifest"))
        with Timed(ws, [chain_dir]) as timed:
            rss = run_process_rss(argv, env=ws.env, log_path=self._log("backup", tag))
        members.append(out_dir)
        self.chains[tag] = members
        return dict(timed.fields(), size_bytes=tree_bytes(out_dir), tree_rss_kb=rss,
                    wal_bytes=tree_bytes(os.path.join(out_dir, "pg_wal.tar")),
                    command=BASEBACKUP + (" --incremental=FULL/backup_manifest" if incremental else ""))

    def full(self, db, tag):
        rmtree(self.ws.path("ref-chain", tag))
        self.chains[tag] = []
        return self._backup(tag, incremental=False)

    def incremental_backup(self, db, tag):
        self._members(tag)
        self.incremental.change_rows(db)
        return self._backup(tag, incremental=True)

    def _extract(self, member, dest, tag):
        run_process(["tar", "-xzf", os.path.join(member, "base.tar.gz"), "-C", dest], log_path=self._log("extract", tag))

    def _extract_wal(self, member, dest, tag):
        """pg_wal.tar (server-side gzip leaves it uncompressed) into dest/pg_wal."""
        run_process(["tar", "-xf", os.path.join(member, "pg_wal.tar"), "-C", mkdir(os.path.join(dest, "pg_wal"), mode=0o700)],
                    log_path=self._log("extract", tag))

    def restore_full(self, db, tag):
        ws = self.ws
        full = self._members(tag)[0]
        dest = ws.restore_dir("ref-full-%s" % tag)
        with Timed(ws, [dest]) as timed:
            self._extract(full, dest, tag)
            self._extract_wal(full, dest, tag)
            run_process(["sync"])
        rmtree(dest)
        return dict(timed.fields(), command="tar -xzf base.tar.gz -C DATADIR && tar -xf pg_wal.tar -C DATADIR/pg_wal && sync")

    def restore_chain(self, db, tag):
        """Every member of full + CHAIN_INCREMENTALS extracted into a scratch directory, pg_combinebackup --link, the
        last member's WAL, the scratch removed, sync (the missing incrementals are taken first, not timed)."""
        ws = self.ws
        members = self._members(tag)
        while len(members) < 1 + CHAIN_INCREMENTALS:
            self.incremental.change_rows(db)
            self._backup(tag, incremental=True)
        scratch = ws.restore_dir("ref-chain-scratch-%s" % tag)
        dest = ws.path("restore", "ref-chain-%s" % tag)
        rmtree(dest)
        with Timed(ws, [ws.path("restore")]) as timed:
            dirs = []
            for number, member in enumerate(members):
                dirs.append(mkdir(os.path.join(scratch, "m%d" % number), mode=0o700))
                self._extract(member, dirs[-1], tag)
                shutil.copyfile(os.path.join(member, "backup_manifest"), os.path.join(dirs[-1], "backup_manifest"))
            run_process([os.path.join(ws.bin, "pg_combinebackup"), "--link", "-o", dest] + dirs,
                        log_path=self._log("combine", tag))
            self._extract_wal(members[-1], dest, tag)
            rmtree(scratch)
            run_process(["sync"])
        rmtree(dest)
        rmtree(ws.path("ref-chain", tag))
        return dict(timed.fields(), chain=len(members),
                    command="tar -xzf base.tar.gz + backup_manifest per member && pg_combinebackup --link -o DATADIR m0 .. m%d && "
                            "tar -xf pg_wal.tar -C DATADIR/pg_wal && rm -r scratch && sync" % (len(members) - 1))
