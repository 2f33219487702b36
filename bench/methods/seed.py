# -*- coding: utf-8 -*-
"""The seed document's commands, verbatim (password in PGPASSWORD), and pg_dump's and pg_basebackup's own speed as
floors."""

from __future__ import absolute_import, division, print_function

import os
import time

from harness.common import mkdir, rmtree
from harness.processes import run_process, run_process_rss
from harness.sampling import tree_bytes
from harness.timing import Timed


# The collection's default pg_basebackup options (plugins/modules/pg_basebackup.py; workers=auto is the CPU count),
# without the engine around them.
FLOOR_BASEBACKUP_ARGS = ["-Ft", "--compress=server-zstd:level=1,workers=%d" % (os.cpu_count() or 1), "-X", "stream",
                         "--checkpoint=fast"]


class SeedMethods(object):
    def __init__(self, workspace):
        self.ws = workspace

    def _connection(self):
        return ["-h", self.ws.cluster.host, "-p", str(self.ws.cluster.port), "-U", "postgres"]

    def dump(self, db, tag):
        ws = self.ws
        out_dir = mkdir(ws.path("seed-dump", tag))
        dump = os.path.join(out_dir, "backup_%s.dump" % time.strftime("%Y%m%d_%H%M%S"))
        argv = [ws.bin + "/pg_dump"] + self._connection() + ["-d", db["name"], "-F", "c", "-Z", "9", "-f", dump]
        with Timed(ws, [out_dir]) as timed:
            rss = run_process_rss(argv, env=ws.env, log_path=ws.path("logs", "seed-dump-%s.log" % tag))
        ws.replace_latest(("seed_dump", db["name"]), {"path": dump, "dir": out_dir})
        return dict(timed.fields(), size_bytes=os.path.getsize(dump), tree_rss_kb=rss,
                    command="pg_dump -h HOST -p PORT -U postgres -d %s -F c -Z 9 -f backup_<ts>.dump" % db["name"])

    def restore(self, db, tag):
        ws = self.ws
        source = ws.latest_artifact(("seed_dump", db["name"]), "seed dump to restore")
        target = "%s_seedrestore" % db["name"]
        ws.drop_db(target)
        logfile = ws.path("logs", "seed-restore-%s.log" % tag)
        with Timed(ws) as timed:
            run_process([ws.bin + "/createdb"] + self._connection() + [target], env=ws.env, log_path=logfile)
            rss = run_process_rss([ws.bin + "/pg_restore"] + self._connection() + ["-d", target, "-v", source["path"]],
                                  env=ws.env, log_path=logfile)
        ws.check_rows(target, db["rows"])
        ws.drop_db(target)
        return dict(timed.fields(), tree_rss_kb=rss, command="createdb TARGET && pg_restore -d TARGET -v backup.dump")

    def floor_dump(self, db, tag):
        """Reference: pg_dump's own speed, no compression, output thrown away."""
        ws = self.ws
        argv = [ws.bin + "/pg_dump"] + self._connection() + ["-d", db["name"], "-F", "c", "-Z", "0", "--no-sync",
                                                             "-f", "/dev/null"]
        with Timed(ws) as timed:
            rss = run_process_rss(argv, env=ws.env, log_path=ws.path("logs", "floor-dump-%s.log" % tag))
        return dict(timed.fields(), tree_rss_kb=rss, command="pg_dump -F c -Z 0 --no-sync -f /dev/null")

    def basebackup(self, db, tag):
        ws = self.ws
        out_dir = ws.path("seed-base", tag)
        rmtree(out_dir)
        mkdir(os.path.dirname(out_dir))
        argv = [ws.bin + "/pg_basebackup"] + self._connection() + ["-D", out_dir, "-Ft", "-z", "-P"]
        with Timed(ws, [os.path.dirname(out_dir)]) as timed:
            rss = run_process_rss(argv, env=ws.env, log_path=ws.path("logs", "seed-base-%s.log" % tag))
        ws.replace_latest(("seed_base", None), {"dir": out_dir})
        return dict(timed.fields(), size_bytes=tree_bytes(out_dir), tree_rss_kb=rss,
                    command="pg_basebackup -h HOST -p PORT -U postgres -D /backup/pg_backup -Ft -z -P")

    def floor_basebackup(self, db, tag):
        """Reference: pg_basebackup alone with the collection's default compression (its own fsync at the end, no
        check of what it wrote): the floor of the collection's physical backup on this machine."""
        ws = self.ws
        out_dir = ws.path("floor-base", tag)
        rmtree(out_dir)
        mkdir(os.path.dirname(out_dir))
        argv = [ws.bin + "/pg_basebackup"] + self._connection() + ["-D", out_dir] + FLOOR_BASEBACKUP_ARGS
        with Timed(ws, [os.path.dirname(out_dir)]) as timed:
            rss = run_process_rss(argv, env=ws.env, log_path=ws.path("logs", "floor-base-%s.log" % tag))
        size = tree_bytes(out_dir)
        rmtree(out_dir)
        return dict(timed.fields(), size_bytes=size, tree_rss_kb=rss,
                    command="pg_basebackup -D DIR " + " ".join(FLOOR_BASEBACKUP_ARGS))

    def extract(self, db, tag):
        """The seed has no working physical restore: measured as an operator would do it, by hand."""
        ws = self.ws
        source = ws.latest_artifact(("seed_base", None), "seed base backup to extract")
        dest = ws.restore_dir("seed-%s" % tag)
        mkdir(os.path.join(dest, "pg_wal"), mode=0o700)
        logfile = ws.path("logs", "seed-extract-%s.log" % tag)
        with Timed(ws, [dest]) as timed:
            run_process(["tar", "-xzf", os.path.join(source["dir"], "base.tar.gz"), "-C", dest], log_path=logfile)
            run_process(["tar", "-xzf", os.path.join(source["dir"], "pg_wal.tar.gz"), "-C",
                         os.path.join(dest, "pg_wal")], log_path=logfile)
            run_process(["sync"])
        rmtree(dest)
        return dict(timed.fields(),
                    command="tar -xzf base.tar.gz -C DATADIR && tar -xzf pg_wal.tar.gz -C DATADIR/pg_wal && sync")
