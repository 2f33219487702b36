# -*- coding: utf-8 -*-
"""pgBackRest, the usual tool for physical backups, with its own config file in the work directory."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess

from harness.common import CORES, mkdir, rmtree
from harness.processes import StepFailed, run_process
from harness.timing import Timed

STANZA = "bench"


class PgBackRest(object):
    """Full backups (``--type=full``) and restores into a new data directory; gz (its default) or zst.

    Its archive_command is switched on only around its own backups.
    """

    def __init__(self, workspace):
        self.ws = workspace
        self.conf = None
        self.options = {}
        self.archive_command = None

    def setup(self):
        if not shutil.which("pgbackrest"):
            raise StepFailed("pgbackrest is not installed (make venv installs it)")
        base = mkdir(self.ws.path("pgbackrest"), owner="postgres", mode=0o700)
        for sub in ("repo", "log", "lock", "spool"):
            mkdir(os.path.join(base, sub), owner="postgres", mode=0o700)
        self.options = {
            "repo1-path": os.path.join(base, "repo"),
            "repo1-retention-full": "99",
            "process-max": str(CORES),
            "compress-type": "gz",
            "start-fast": "y",
            "log-path": os.path.join(base, "log"),
            "lock-path": os.path.join(base, "lock"),
            "spool-path": os.path.join(base, "spool"),
            "log-level-console": "warn",
            "log-level-file": "info",
        }
        self.conf = os.path.join(base, "pgbackrest.conf")
        self._write_conf()
        self.archive_command = "pgbackrest --config=%s --stanza=%s archive-push %%p" % (self.conf, STANZA)
        with self.ws.archiving_with(self.archive_command):
            self.run(["stanza-create"], "pgbackrest-setup")
            self.run(["check"], "pgbackrest-setup")

    def _write_conf(self):
        cluster = self.ws.cluster
        stanza = {"pg1-path": cluster.data_dir, "pg1-port": str(cluster.port), "pg1-socket-path": cluster.socket_dir}
        with open(self.conf, "w") as handle:
            handle.write("[global]\n")
            handle.writelines("%s=%s\n" % item for item in self.options.items())
            handle.write("\n[%s]\n" % STANZA)
            handle.writelines("%s=%s\n" % item for item in stanza.items())
        shutil.chown(self.conf, "postgres", "postgres")

    def facts(self):
        """What the report says about the pgBackRest setup."""
        cluster = self.ws.cluster
        return {"options": self.options, "archive_command": self.archive_command,
                "stanza": {"pg1-path": cluster.data_dir, "pg1-port": cluster.port}}

    def argv(self, args):
        return ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=%s" % self.conf,
                "--stanza=%s" % STANZA] + args

    def run(self, args, log_name):
        return run_process(self.argv(args), log_path=self.ws.path("logs", log_name + ".log"))

    def info(self):
        out = subprocess.run(self.argv(["--output=json", "info"]), capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["backup"]

    def backup(self, db, tag, compress_type):
        key = "pgbr_backup_" + compress_type
        args = ["--type=full", "--compress-type=%s" % compress_type, "backup"]
        with self.ws.archiving_with(self.archive_command):
            with Timed(self.ws, [self.options["repo1-path"]]) as timed:
                rss = self.run(args, "%s-%s" % (key, tag))[1]
        backup = self.info()[-1]
        self.ws.replace_latest((key, None), {"label": backup["label"]}, cleanup=False)
        return dict(timed.fields(), size_bytes=backup["info"]["repository"]["size"], tree_rss_kb=rss,
                    backup_label=backup["label"], command="pgbackrest --stanza=%s %s" % (STANZA, " ".join(args)))

    def restore(self, db, tag, compress_type):
        ws = self.ws
        source = ws.latest_artifact(("pgbr_backup_" + compress_type, None), "pgBackRest %s backup to restore" % compress_type)
        dest = ws.restore_dir("pgbr-%s-%s" % (compress_type, tag), owner="postgres")
        args = ["--set=%s" % source["label"], "--pg1-path=%s" % dest, "restore"]
        with Timed(ws, [dest]) as timed:
            rss = self.run(args, "pgbr-restore-%s-%s" % (compress_type, tag))[1]
        rmtree(dest)
        return dict(timed.fields(), tree_rss_kb=rss,
                    command="pgbackrest --stanza=%s --set=LABEL --pg1-path=DIR restore" % STANZA)
