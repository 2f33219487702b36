# -*- coding: utf-8 -*-
"""Where the time of a physical restore and backup goes, stage by stage (docs/performance.md, "Where the time goes").

Makes its own cluster and TodoDb as ``make bench`` does (bench/harness), takes one base backup with the
collection's defaults and one pgBackRest full zst backup, then times the stages::

    .venv/bin/python bench/physical_stages.py --size-mb 1024 --rounds 3

The backup's parts: ``--only raw_basebackup_l1,raw_basebackup_l2,raw_basebackup_l3,verify_alone,sha256_alone,
python_start`` (pg_basebackup alone at zstd levels 1-3 with the server's CPU, the check of the new backup alone, a
second sha256 read, the engine's start).

Every stage starts with an empty page cache (``sync; echo 3 > drop_caches``); the stages alternate per
round, so that the load of the machine hits all of them; medians of wall and CPU (user + system of the
children) are printed. Needs root.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from harness.isolation import drop_caches  # noqa: E402
from harness.sampling import cluster_cpu_seconds  # noqa: E402
from harness.paths import import_collection  # noqa: E402
from harness.workspace import Workspace  # noqa: E402
from methods.collection import CollectionMethods  # noqa: E402
from methods.pgbackrest import PgBackRest  # noqa: E402


def children_cpu():
    """CPU seconds of this process and its (waited for) children: user + system."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usages)


def shell(command):
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)


class Stages(object):
    def __init__(self, work, artifact, collection=None, db=None):
        self.collection = collection
        self.db = db
        self.work = work
        self.scratch = os.path.join(work, "stages")
        self.artifact = artifact
        self.tar = os.path.join(artifact, [n for n in os.listdir(artifact) if n.startswith("base.tar")][0])
        self.pgbr_conf = os.path.join(work, "pgbackrest", "pgbackrest.conf")

    def fresh(self, name, owner=None):
        path = os.path.join(self.scratch, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, 0o700)
        if owner:
            shutil.chown(path, owner, owner)
        return path

    def engine(self):
        import_collection()
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
        return base_backup

    # -- the stages: each returns the seconds of the part that is measured (None: all of it) --
    def zstd_to_null(self):
        shell("zstd -q -d -c %s > /dev/null" % self.tar)

    def _zstd_tar(self, sync=None):
        """zstd -d | tar -x into a new directory, then ``sync`` (a name: fsutil function) timed on its own."""
        dest = self.fresh("x")
        shell("zstd -q -d -c %s | tar -x -f - -C %s --no-same-owner" % (self.tar, dest))
        if sync is None:
            return None
        started = time.monotonic()
        if sync == "sync":
            shell("sync")
        else:
            getattr(self.fsutil(), sync)(dest)
        return {sync: time.monotonic() - started}

    def zstd_tar_nosync(self):
        return self._zstd_tar()

    def zstd_tar_then_sync(self):
        return self._zstd_tar("sync")

    def zstd_tar_then_fsync_tree(self):
        return self._zstd_tar("fsync_tree")

    def zstd_tar_then_syncfs(self):
        return self._zstd_tar("sync_filesystem")

    def engine_extract_check(self):
        """The new path of restore_into: extracted and checked in one pass, then pg_verifybackup
        --skip-checksums (presence, sizes, WAL), then syncfs as pitr_recovery does."""
        import_collection()
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_extract
        dest = self.fresh("x")
        manifest_path = os.path.join(self.artifact, "backup_manifest")
        base_backup_extract.extract_and_check(self.artifact, dest, backup_manifest.BackupManifest.load(manifest_path))
        started = time.monotonic()
        self.engine().verify_data_directory(dest, manifest_path, None, skip_checksums=True)
        verify = time.monotonic() - started
        fsutil.sync_filesystem(dest)
        return {"pg_verifybackup_s": verify, "syncfs": time.monotonic() - started - verify}

    def engine_extract_sync(self):
        dest = self.fresh("x")
        self.engine().extract_backup(self.artifact, dest)
        os.sync()

    def engine_restore_before(self):
        """pitr_recovery's restore before issue 19: tar -x, pg_verifybackup (every checksum), fsync per file."""
        dest = self.fresh("x")
        base_backup = self.engine()
        base_backup.extract_backup(self.artifact, dest)
        started = time.monotonic()
        base_backup.verify_data_directory(dest, os.path.join(self.artifact, "backup_manifest"), None)
        verify = time.monotonic() - started
        self.fsutil().fsync_tree(dest)
        return {"pg_verifybackup": verify, "fsync_tree": time.monotonic() - started - verify}

    def engine_restore_after(self):
        """pitr_recovery's restore now: restore_into (extracted and checked in one pass, pg_verifybackup
        --skip-checksums), then one syncfs."""
        dest = self.fresh("x")
        repo_dir = os.path.dirname(self.artifact)
        started = time.monotonic()
        result = self.engine().restore_into(_Repository(repo_dir), [{"id": os.path.basename(self.artifact)}], dest)
        assert result["checked_while_extracting"], result
        restore = time.monotonic() - started
        self.fsutil().sync_filesystem(dest)
        return {"restore_into": restore, "syncfs": time.monotonic() - started - restore}

    def fsutil(self):
        import_collection()
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
        return fsutil

    def backup_default(self):
        """The collection's default base backup (pg_basebackup, then the stream check of the new backup)."""
        return {"module_seconds": self.collection.basebackup(self.db, "stage", key="stage_default")["seconds"]}

    def backup_noverify(self):
        """The same without the check of the new backup (verify=false): what pg_basebackup alone costs."""
        return {"module_seconds": self.collection.basebackup(self.db, "stage", {"verify": False}, key="noverify")["seconds"]}

    # -- the backup's parts (issue 19: backup <= 0.5 x pgBackRest zst) --
    def _raw_basebackup(self, level):
        """pg_basebackup alone as the engine runs it (no engine, no check), server-side zstd at ``level``; the
        server's CPU (walsender and its compression threads) is part of the row's ``server_cpu``."""
        dest = self.fresh("raw")
        ws = self.collection.ws
        before = cluster_cpu_seconds(ws.postmaster)
        subprocess.run([os.path.join(ws.bin, "pg_basebackup"), "-D", dest, "-F", "t", "-X", "stream", "--checkpoint=fast",
                        "--no-sync", "--no-password", "--manifest-checksums=CRC32C",
                        "--compress=server-zstd:level=%d,workers=%d" % (level, os.cpu_count())],
                       env=ws.env, check=True)
        return {"server_cpu": cluster_cpu_seconds(ws.postmaster) - before,
                "base_tar_mib": os.path.getsize(os.path.join(dest, "base.tar.zst")) / 1048576.0}

    def raw_basebackup_l1(self):
        return self._raw_basebackup(1)

    def raw_basebackup_l2(self):
        return self._raw_basebackup(2)

    def raw_basebackup_l3(self):
        return self._raw_basebackup(3)

    def verify_alone(self):
        """The stream check of the default backup on its own (decompress, CRC32C of every file, pg_wal.tar,
        pg_waldump), with the sha256 of the tars it reads, as after pg_basebackup without base_backup_early."""
        work = self.fresh("verify")
        started = time.monotonic()
        self.engine().verify_tar_backup(self.artifact, work_dir=work, digests={})
        return {"verify_tar_backup": time.monotonic() - started, "base_tar_mib": os.path.getsize(self.tar) / 1048576.0}

    def sha256_alone(self):
        """A second read of the artifact for the repository manifest's sha256 (what ``digests`` saves)."""
        self.fsutil().sha256_tree(self.artifact)

    def python_start(self):
        """Starting the engine: Python and the imports of the module's engine code."""
        import_collection()
        subprocess.run([sys.executable, "-c", "import ansible_collections.todoapi.pgbackup.plugins.module_utils."
                        "physical.base_backup"], check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))

    def _pgbackrest(self, processes):
        dest = self.fresh("pgbr", owner="postgres")
        label = json.loads(subprocess.run(
            ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=%s" % self.pgbr_conf, "--stanza=bench",
             "--output=json", "info"], capture_output=True, text=True, check=True).stdout)[0]["backup"][-1]["label"]
        shell("runuser -u postgres -- pgbackrest --config=%s --stanza=bench --set=%s --pg1-path=%s --process-max=%d "
              "restore && sync" % (self.pgbr_conf, label, dest, processes))

    def pgbackrest_p1(self):
        self._pgbackrest(1)

    def pgbackrest_p2(self):
        self._pgbackrest(2)

    def pgbackrest_p4(self):
        self._pgbackrest(4)


class _Repository(object):
    """Enough of a repository for restore_into: artifact_path of an artifact directory by name."""

    def __init__(self, path):
        self.path = path

    def artifact_path(self, manifest):
        return os.path.join(self.path, manifest["id"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/var/tmp/pgbackup-stages-%d" % os.getpid())
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated stage names")
    parser.add_argument("--json", help="write every run here")
    args = parser.parse_args()
    workspace = Workspace(args.work_dir)
    workspace.create_dirs()
    workspace.setup_cluster()
    try:
        db = workspace.create_database("TodoDb", args.size_mb)
        pgbackrest = PgBackRest(workspace)
        pgbackrest.setup()
        print("pgBackRest full zst: %.1f s" % pgbackrest.backup(db, "stages", "zst")["seconds"], flush=True)
        print("collection base backup: %.1f s" % CollectionMethods(workspace).basebackup(db, "stages")["seconds"])
        artifact = workspace.latest_artifact(("coll_base", None), "base backup")["artifact_dir"]
        measure(Stages(args.work_dir, artifact, CollectionMethods(workspace), db), args)
    finally:
        workspace.teardown(False)


def measure(stages, args):
    names = [n for n in args.only.split(",") if n] or [
        "zstd_to_null", "zstd_tar_nosync", "zstd_tar_then_sync", "zstd_tar_then_fsync_tree", "zstd_tar_then_syncfs",
        "engine_restore_before", "engine_restore_after", "engine_extract_check", "pgbackrest_p1", "pgbackrest_p2", "pgbackrest_p4"]
    runs = dict((name, []) for name in names)
    for round_no in range(args.rounds):
        for name in names:
            shutil.rmtree(stages.scratch, ignore_errors=True)  # the previous stage's output: not timed
            os.makedirs(stages.scratch)
            drop_caches()
            load = os.getloadavg()[0]
            cpu0, started = children_cpu(), time.monotonic()
            parts = getattr(stages, name)() or {}
            wall, cpu = time.monotonic() - started, children_cpu() - cpu0
            runs[name].append(dict(parts, wall=wall, cpu=cpu, load=load))
            print("round %d %-26s wall %6.2f s  cpu %6.2f s  load %5.1f %s" % (
                round_no + 1, name, wall, cpu, load, " ".join("%s %.2f s" % kv for kv in parts.items())), flush=True)
    shutil.rmtree(stages.scratch, ignore_errors=True)
    print("\nmedians (%d rounds):" % args.rounds)
    for name in names:
        keys = [k for k in runs[name][0] if k != "load"]
        medians = ["%s %.2f" % (k, sorted(r[k] for r in runs[name])[len(runs[name]) // 2]) for k in keys]
        print("  %-26s %s" % (name, "  ".join(medians)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(runs, handle, indent=1)


if __name__ == "__main__":
    main()
