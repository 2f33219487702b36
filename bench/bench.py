# -*- coding: utf-8 -*-
"""Benchmark of the collection's defaults against the seed's commands and pgBackRest.

Run through ``make bench`` (bench/run.sh). One run:

1. creates a dedicated PostgreSQL 15 cluster (fsync on, PostgreSQL defaults otherwise) and
   fills a Todo API database of ``--size-mb`` (tests/lib/tododb.py);
2. measures every method ``--rounds`` times, alternating them (round 1: A B C ..., round 2:
   A B C ...) so that machine drift hits all methods alike; before every measurement the
   cluster is checkpointed and the OS page cache dropped (cold cache, as for a nightly job);
3. measures the default logical backup and restore at several sizes (``--sizes``);
4. times a second, no-change converge of the backup role through ansible-playbook;
5. writes raw JSON to bench/results/ and the tables to docs/performance.md (only between
   the ``bench:*`` markers; the prose around them is kept).

``--explore`` instead measures candidate defaults (compression levels, formats, jobs,
pg_basebackup variants) and writes the ``explore`` section.

The collection's methods run the engine exactly as its modules do: the request is built from
the defaults in the module's DOCUMENTATION (which ansible-test keeps equal to its
argument_spec), in a separate Python process that also imports ansible.module_utils.basic
like an AnsiballZ module, so its peak RSS is the module process's.
"""

from __future__ import absolute_import, division, print_function

import argparse
import ast
import datetime
import inspect
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
DOCS_FILE = os.path.join(ROOT, "docs", "performance.md")
COLLECTIONS_LINK_ROOT = os.path.join(ROOT, "build", "collections")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DB_NAME = "TodoDb"
STANZA = "bench"
MIB = 1024.0 * 1024.0
CORES = os.cpu_count() or 1
TARGETS = {
    "logical_backup_time_ratio": 1.0 / 3.0,
    "logical_backup_size_ratio": 1.10,
    "logical_restore_time_ratio": 0.6,
    "engine_rss_mb": 100.0,
    "ansible_converge_seconds": 15.0,
}
# Options of the modules that are not engine request arguments (connection, repository, target).
NOT_REQUEST_OPTIONS = ("database", "repository", "owner", "host", "port", "user", "password", "sslmode",
                       "pg_bin_dir", "backup", "source_database", "connection")
OPTION_TO_KWARG = {"format": "fmt", "globals": "globals_"}


def log(message):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# The collection: import path and module defaults
# ---------------------------------------------------------------------------------------------

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


def module_defaults(module):
    """{option: default} from a module's DOCUMENTATION (kept equal to argument_spec by sanity tests)."""
    import yaml
    path = os.path.join(ROOT, "plugins", "modules", module + ".py")
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            options = yaml.safe_load(node.value.value).get("options") or {}
            return dict((name, spec.get("default")) for name, spec in options.items())
    raise RuntimeError("no DOCUMENTATION in %s" % path)


def request_kwargs(module, request_class, overrides=None):
    """The keyword arguments the module passes to the engine request when the user sets nothing."""
    accepted = inspect.signature(request_class.__init__).parameters
    kwargs = {}
    for option, value in module_defaults(module).items():
        name = OPTION_TO_KWARG.get(option, option)
        if option in NOT_REQUEST_OPTIONS or name not in accepted:
            continue
        kwargs[name] = value
    for option, value in (overrides or {}).items():
        kwargs[OPTION_TO_KWARG.get(option, option)] = value
    return kwargs


# ---------------------------------------------------------------------------------------------
# Engine child process: runs one engine call the way a module does and reports its resources
# ---------------------------------------------------------------------------------------------

def engine_child(spec_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    import_collection()
    import ansible.module_utils.basic  # noqa: F401  (an AnsiballZ module process imports it too)
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgconn
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup, restore as logical_restore
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import local as repository
    connection = pgconn.ConnectionSpec(host=spec["host"], port=spec["port"], user=spec["user"],
                                       password=os.environ.get("BENCH_PGPASSWORD"))
    repo = repository.LocalRepository(spec["repository"], owner="postgres") if spec.get("repository") else None
    action = spec["action"]
    overrides = spec.get("overrides") or {}
    output = {"action": action}
    clock = time.monotonic()
    if action == "logical_backup":
        kwargs = request_kwargs("pg_dump", logical_backup.LogicalBackupRequest, overrides)
        manifest = logical_backup.backup(logical_backup.LogicalBackupRequest(spec["database"], repo, connection, **kwargs))
        extra = sum(entry.get("size", 0) for entry in (manifest.get("extra_files") or {}).values())
        output.update(settings=kwargs, id=manifest["id"], artifact=manifest["artifact"], size=manifest["size"] + extra,
                      artifact_size=manifest["size"], compression=manifest["compression"], format=manifest["format"],
                      engine_seconds=manifest.get("duration_seconds"))
    elif action == "logical_restore":
        kwargs = request_kwargs("pg_restore", logical_restore.LogicalRestoreRequest, overrides)
        result = logical_restore.restore(logical_restore.LogicalRestoreRequest(
            repo, connection, database=spec["target"], backup=spec.get("backup", "latest"),
            source_database=spec["database"], **kwargs))
        output.update(settings=kwargs, mode=result.get("mode"), engine_seconds=result.get("duration_seconds"),
                      tables=result.get("tables"))
    elif action == "physical_backup":
        kwargs = request_kwargs("pg_basebackup", base_backup.PhysicalBackupRequest, overrides)
        manifest = base_backup.backup(base_backup.PhysicalBackupRequest(repo, connection, **kwargs))
        output.update(settings=kwargs, id=manifest["id"], artifact=manifest["artifact"], size=manifest["size"],
                      compression=manifest["compression"], engine_seconds=manifest.get("duration_seconds"),
                      verified=manifest.get("verified"))
    elif action == "physical_extract":
        base_backup.extract_backup(spec["artifact_dir"], spec["destination"])
        os.sync()
        output.update(settings={"function": "base_backup.extract_backup"})
    else:
        raise SystemExit("unknown action %r" % action)
    output["wall_in_process"] = round(time.monotonic() - clock, 3)
    output["maxrss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    output["maxrss_children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(spec["result_file"], "w") as handle:
        json.dump(output, handle, default=str)


# ---------------------------------------------------------------------------------------------
# Measuring helpers
# ---------------------------------------------------------------------------------------------

class StepFailed(RuntimeError):
    pass


CLIENT_CPU = [0.0]  # CPU seconds of the processes run_process waited for (and their waited-for children)


def cluster_cpu_seconds(postmaster):
    """CPU seconds used so far by a cluster: its live processes plus the backends the postmaster reaped."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid, ppid = int(entry), int(fields[1])
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        if pid == postmaster or ppid == postmaster:  # cutime: e.g. archive_command runs of the archiver
            total += utime + stime + cutime + cstime
    return total / tick


class Timed(object):
    """The measured part of a method: checkpoint + cold cache first, then wall time and CPU (client and server)."""

    def __init__(self, bench, watch=()):
        self.bench = bench
        self.watch = DiskWatch(watch)

    def __enter__(self):
        self.load = self.bench.prepare_measurement()
        self.server0 = cluster_cpu_seconds(self.bench.postmaster)
        CLIENT_CPU[0] = 0.0
        self.watch.__enter__()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        self.watch.__exit__(*exc)
        self.server_cpu = cluster_cpu_seconds(self.bench.postmaster) - self.server0
        self.client_cpu = CLIENT_CPU[0]
        self.bench.last_timed = self
        return False

    def fields(self):
        return {"seconds": self.seconds, "peak_disk_bytes": self.watch.peak, "final_disk_bytes": self.watch.final,
                "cpu_client_seconds": round(self.client_cpu, 2), "cpu_server_seconds": round(self.server_cpu, 2),
                "loadavg_1m": self.load}


def run_process(argv, env=None, log_path=None, stdin_path=None, timeout=7200):
    """Run argv; return (seconds, peak RSS in kB of the process or any of its waited-for children)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    inp = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
                                stdin=inp, close_fds=True)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        CLIENT_CPU[0] += usage.ru_utime + usage.ru_stime
    finally:
        if log_path:
            out.close()
        if stdin_path:
            inp.close()
    if proc.returncode != 0:
        tail = ""
        if log_path and os.path.exists(log_path):
            with open(log_path, "rb") as handle:
                tail = handle.read()[-1500:].decode("utf-8", "replace")
        raise StepFailed("%s exited %s: %s" % (os.path.basename(argv[0]), proc.returncode, tail.strip()))
    return seconds, usage.ru_maxrss


def run_process_rss(*args, **kwargs):
    """run_process, returning only the peak RSS (the Timed block around it keeps the time)."""
    return run_process(*args, **kwargs)[1]


def tree_bytes(path):
    """Disk space used under path (allocated blocks), 0 if it does not exist."""
    total = 0
    try:
        if not os.path.isdir(path):
            return os.lstat(path).st_blocks * 512
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


class DiskWatch(object):
    """Peak growth of the space used under some directories while a step runs (polled every 0.1 s)."""

    def __init__(self, paths, interval=0.1):
        self.paths = [p for p in paths if p]
        self.interval = interval
        self.baseline = sum(tree_bytes(p) for p in self.paths)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _sample(self):
        self.peak = max(self.peak, sum(tree_bytes(p) for p in self.paths) - self.baseline)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        self.final = sum(tree_bytes(p) for p in self.paths) - self.baseline
        return False


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def median(values):
    return statistics.median(values) if values else None


def mkdir(path, owner=None, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def rmtree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.unlink(path)


# ---------------------------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------------------------

def command_output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts(work_dir):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as handle:
            mem_kb = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        pass
    fs = command_output(["df", "-h", "--output=source,fstype,size,avail,target", work_dir]).splitlines()[1:]
    fs = " ".join(fs[0].split()) if fs else ""
    source = fs.split()[0] if fs else ""
    disk = ""
    if source.startswith("/dev/"):
        disk = " ".join(command_output(["lsblk", "-ndo", "NAME,SIZE,ROTA,TYPE,MODEL", source]).split())
        name = re.sub(r"[0-9]+$", "", os.path.basename(source)) if not source.startswith("/dev/nvme") else \
            re.sub(r"p[0-9]+$", "", os.path.basename(source))
        driver = os.path.join("/sys/block", name, "device", "driver")
        if os.path.islink(driver):
            disk += " (driver %s)" % os.path.basename(os.readlink(driver))
    os_name = ""
    try:
        with open("/etc/os-release") as handle:
            os_name = next((line.split("=", 1)[1].strip().strip('"') for line in handle if line.startswith("PRETTY_NAME")), "")
    except OSError:
        pass
    return {
        "cores": CORES, "cpu": cpu, "ram_gib": round(mem_kb / 1024.0 / 1024.0, 1), "os": os_name,
        "kernel": platform.release(), "filesystem": fs, "disk": disk or "(not found)",
        "postgresql": command_output(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        "pgbackrest": command_output(["pgbackrest", "version"]),
        "zstd": command_output(["zstd", "--version"]),
        "python": platform.python_version(),
        "ansible": (command_output([os.path.join(os.path.dirname(sys.executable), "ansible"), "--version"])
                    .splitlines() or [""])[0],
    }


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------

class Method(object):
    """One measured way of doing a step. ``group``: backup/restore kind; ``baseline``: the seed's."""

    def __init__(self, key, group, label, run, baseline=False, comparator=False):
        self.key = key
        self.group = group
        self.label = label
        self.run = run
        self.baseline = baseline
        self.comparator = comparator


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.work = args.work_dir
        self.cluster = None
        self.bin = "/usr/lib/postgresql/15/bin"
        self.latest = {}  # method key -> artifact info of its latest successful run
        self.results = []
        self.caches_dropped = None
        self.pgbackrest_conf = None
        self.pgbackrest_options = {}

    # -- environment ------------------------------------------------------------------------

    def setup_cluster(self):
        from tests.lib.pgcluster import PgCluster, cleanup_stale_clusters
        cleanup_stale_clusters()
        log("creating a PostgreSQL 15 cluster (fsync on)")
        self.cluster = PgCluster.create(fsync=True, extra_conf={
            "archive_mode": True,
            "archive_command": "/bin/true",
        })
        with open(os.path.join(self.cluster.data_dir, "postmaster.pid")) as handle:
            self.postmaster = int(handle.readline())
        if self.args.nice:
            self.renice_cluster()
        self.env = dict(os.environ, PGHOST=self.cluster.host, PGPORT=str(self.cluster.port),
                        PGUSER=self.cluster.user, PGPASSWORD=self.cluster.password)
        for key in ("PGOPTIONS", "PGDATABASE", "PGSERVICE"):
            self.env.pop(key, None)
        self.engine_env = dict(self.env, BENCH_PGPASSWORD=self.cluster.password)
        self.engine_env.pop("PGPASSWORD", None)

    def renice_cluster(self):
        """Give the cluster's processes the bench's priority (backends forked later inherit the postmaster's)."""
        with open(os.path.join(self.cluster.data_dir, "postmaster.pid")) as handle:
            postmaster = int(handle.readline())
        pids = [postmaster]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as handle:
                        if int(handle.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                            pids.append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        for pid in pids:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, self.args.nice)
            except OSError:
                pass

    def create_database(self, dbname, size_mb):
        from tests.lib.tododb import create_todo_db, database_size_bytes
        started = time.monotonic()
        counts = create_todo_db(self.cluster, dbname=dbname, size_mb=size_mb)
        self.checkpoint()
        size = database_size_bytes(self.cluster, dbname)
        log("%s: %.0f MiB, rows %s, generated in %.1f s" % (dbname, size / MIB, counts, time.monotonic() - started))
        return {"name": dbname, "size_bytes": size, "rows": counts, "generate_seconds": round(time.monotonic() - started, 1)}

    def checkpoint(self):
        self.cluster.sql("CHECKPOINT")

    def cluster_size(self):
        return int(self.cluster.scalar("SELECT sum(pg_database_size(oid)) FROM pg_database"))

    def prepare_measurement(self):
        self.checkpoint()
        dropped = drop_caches()
        if self.caches_dropped is None:
            self.caches_dropped = dropped
            if not dropped:
                log("cannot drop the page cache (no permission): measurements run with a warm cache")
        return os.getloadavg()[0]

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def engine(self, action, tmp_name, **spec):
        """Run one engine call in a child process (inside a Timed block); returns (child output, tree RSS kB)."""
        spec.update(action=action, host=self.cluster.host, port=self.cluster.port, user=self.cluster.user)
        tmp_dir = mkdir(self.path("tmp", tmp_name), mode=0o1777)
        spec_file = self.path("tmp", tmp_name + ".spec.json")
        spec["result_file"] = self.path("tmp", tmp_name + ".result.json")
        env = dict(self.engine_env, TMPDIR=tmp_dir)
        env.update(spec.pop("extra_env", None) or {})
        with open(spec_file, "w") as handle:
            json.dump(spec, handle)
        argv = [sys.executable, os.path.abspath(__file__), "--engine-child", spec_file]
        tree_rss = run_process_rss(argv, env=env, log_path=self.path("logs", tmp_name + ".log"))
        with open(spec["result_file"]) as handle:
            output = json.load(handle)
        return output, tree_rss

    def engine_tmp(self, tmp_name):
        return mkdir(self.path("tmp", tmp_name), mode=0o1777)

    def drop_db(self, name):
        self.cluster.drop_database(name)

    def check_rows(self, dbname, expected):
        from tests.lib.tododb import todo_row_counts
        actual = todo_row_counts(self.cluster, dbname)
        if actual != expected:
            raise StepFailed("restored %s has rows %s, source has %s" % (dbname, actual, expected))

    # -- logical: the seed ------------------------------------------------------------------

    def seed_dump(self, db, tag):
        out_dir = mkdir(self.path("seed-dump", tag))
        dump = os.path.join(out_dir, "backup_%s.dump" % time.strftime("%Y%m%d_%H%M%S"))
        argv = [self.bin + "/pg_dump", "-h", self.cluster.host, "-p", str(self.cluster.port), "-U", "postgres",
                "-d", db["name"], "-F", "c", "-Z", "9", "-f", dump]
        with Timed(self, [out_dir]) as timed:
            rss = run_process_rss(argv, env=self.env, log_path=self.path("logs", "seed-dump-%s.log" % tag))
        self.replace_latest(("seed_dump", db["name"]), {"path": dump, "dir": out_dir})
        return dict(timed.fields(), size_bytes=os.path.getsize(dump), tree_rss_kb=rss,
                    command="pg_dump -h HOST -p PORT -U postgres -d %s -F c -Z 9 -f backup_<ts>.dump" % db["name"])

    def seed_restore(self, db, tag):
        source = self.latest.get(("seed_dump", db["name"]))
        if not source:
            raise StepFailed("no seed dump to restore")
        target = "%s_seedrestore" % db["name"]
        self.drop_db(target)
        conn = ["-h", self.cluster.host, "-p", str(self.cluster.port), "-U", "postgres"]
        logfile = self.path("logs", "seed-restore-%s.log" % tag)
        with Timed(self) as timed:
            run_process([self.bin + "/createdb"] + conn + [target], env=self.env, log_path=logfile)
            rss = run_process_rss([self.bin + "/pg_restore"] + conn + ["-d", target, "-v", source["path"]],
                                  env=self.env, log_path=logfile)
        self.check_rows(target, db["rows"])
        self.drop_db(target)
        return dict(timed.fields(), tree_rss_kb=rss, command="createdb TARGET && pg_restore -d TARGET -v backup.dump")

    def floor_dump(self, db, tag):
        """Reference: pg_dump's own speed, no compression, output thrown away."""
        argv = [self.bin + "/pg_dump", "-h", self.cluster.host, "-p", str(self.cluster.port), "-U", "postgres",
                "-d", db["name"], "-F", "c", "-Z", "0", "--no-sync", "-f", "/dev/null"]
        with Timed(self) as timed:
            rss = run_process_rss(argv, env=self.env, log_path=self.path("logs", "floor-dump-%s.log" % tag))
        return dict(timed.fields(), tree_rss_kb=rss, command="pg_dump -F c -Z 0 --no-sync -f /dev/null")

    # -- logical: the collection ------------------------------------------------------------

    def coll_dump(self, db, tag, overrides=None, key="coll_dump"):
        repo = self.path("repo-logical", "%s-%s" % (key, tag))
        rmtree(repo)
        name = "%s-%s" % (key, tag)
        with Timed(self, [repo, self.engine_tmp(name)]) as timed:
            output, tree_rss = self.engine("logical_backup", name, repository=repo, database=db["name"],
                                           overrides=overrides or {})
        self.replace_latest((key, db["name"]), {"dir": repo, "id": output["id"], "format": output["format"]})
        return dict(timed.fields(), size_bytes=output["size"], engine_seconds=output.get("engine_seconds"),
                    rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"],
                    compression=output["compression"])

    def coll_restore(self, db, tag, overrides=None, source_key="coll_dump", key="coll_restore", extra_env=None):
        source = self.latest.get((source_key, db["name"]))
        if not source:
            raise StepFailed("no %s backup to restore" % source_key)
        target = "%s_collrestore" % db["name"]
        self.drop_db(target)
        name = "%s-%s" % (key, tag)
        with Timed(self, [source["dir"], self.engine_tmp(name)]) as timed:
            output, tree_rss = self.engine("logical_restore", name, repository=source["dir"], database=db["name"],
                                           target=target, backup="latest", overrides=overrides or {},
                                           extra_env=extra_env)
        self.check_rows(target, db["rows"])
        self.drop_db(target)
        return dict(timed.fields(), engine_seconds=output.get("engine_seconds"), rss_kb=output["maxrss_self_kb"],
                    tree_rss_kb=tree_rss, settings=output["settings"], extra_env=extra_env)

    # -- physical ---------------------------------------------------------------------------

    def seed_basebackup(self, db, tag):
        out_dir = self.path("seed-base", tag)
        rmtree(out_dir)
        mkdir(os.path.dirname(out_dir))
        argv = [self.bin + "/pg_basebackup", "-h", self.cluster.host, "-p", str(self.cluster.port), "-U", "postgres",
                "-D", out_dir, "-Ft", "-z", "-P"]
        with Timed(self, [os.path.dirname(out_dir)]) as timed:
            rss = run_process_rss(argv, env=self.env, log_path=self.path("logs", "seed-base-%s.log" % tag))
        self.replace_latest(("seed_base", None), {"dir": out_dir})
        return dict(timed.fields(), size_bytes=tree_bytes(out_dir), tree_rss_kb=rss,
                    command="pg_basebackup -h HOST -p PORT -U postgres -D /backup/pg_backup -Ft -z -P")

    def coll_basebackup(self, db, tag, overrides=None, key="coll_base"):
        repo = self.path("repo-physical", "%s-%s" % (key, tag))
        rmtree(repo)
        name = "%s-%s" % (key, tag)
        with Timed(self, [repo, self.engine_tmp(name)]) as timed:
            output, tree_rss = self.engine("physical_backup", name, repository=repo, overrides=overrides or {})
        self.replace_latest((key, None), {"dir": repo, "artifact_dir": os.path.join(repo, output["artifact"])})
        return dict(timed.fields(), size_bytes=output["size"], engine_seconds=output.get("engine_seconds"),
                    rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"],
                    verified=output.get("verified"))

    def seed_extract(self, db, tag):
        source = self.latest.get(("seed_base", None))
        if not source:
            raise StepFailed("no seed base backup to extract")
        dest = self.path("restore", "seed-%s" % tag)
        rmtree(dest)
        mkdir(dest, mode=0o700)
        mkdir(os.path.join(dest, "pg_wal"), mode=0o700)
        logfile = self.path("logs", "seed-extract-%s.log" % tag)
        with Timed(self, [dest]) as timed:
            run_process(["tar", "-xzf", os.path.join(source["dir"], "base.tar.gz"), "-C", dest], log_path=logfile)
            run_process(["tar", "-xzf", os.path.join(source["dir"], "pg_wal.tar.gz"), "-C",
                         os.path.join(dest, "pg_wal")], log_path=logfile)
            run_process(["sync"])
        rmtree(dest)
        return dict(timed.fields(),
                    command="tar -xzf base.tar.gz -C DATADIR && tar -xzf pg_wal.tar.gz -C DATADIR/pg_wal && sync")

    def coll_extract(self, db, tag):
        source = self.latest.get(("coll_base", None))
        if not source:
            raise StepFailed("no collection base backup to extract")
        dest = self.path("restore", "coll-%s" % tag)
        rmtree(dest)
        mkdir(dest, mode=0o700)
        name = "coll-extract-%s" % tag
        with Timed(self, [dest, self.engine_tmp(name)]) as timed:
            output, tree_rss = self.engine("physical_extract", name, artifact_dir=source["artifact_dir"],
                                           destination=dest)
        rmtree(dest)
        return dict(timed.fields(), rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"])

    # -- pgBackRest -------------------------------------------------------------------------

    def setup_pgbackrest(self):
        if not shutil.which("pgbackrest"):
            raise StepFailed("pgbackrest is not installed (make venv installs it)")
        base = mkdir(self.path("pgbackrest"), owner="postgres", mode=0o700)
        for sub in ("repo", "log", "lock", "spool"):
            mkdir(os.path.join(base, sub), owner="postgres", mode=0o700)
        self.pgbackrest_options = {
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
        stanza = {"pg1-path": self.cluster.data_dir, "pg1-port": str(self.cluster.port),
                  "pg1-socket-path": self.cluster.socket_dir}
        self.pgbackrest_conf = os.path.join(base, "pgbackrest.conf")
        with open(self.pgbackrest_conf, "w") as handle:
            handle.write("[global]\n")
            handle.writelines("%s=%s\n" % item for item in self.pgbackrest_options.items())
            handle.write("\n[%s]\n" % STANZA)
            handle.writelines("%s=%s\n" % item for item in stanza.items())
        shutil.chown(self.pgbackrest_conf, "postgres", "postgres")
        self.pgbackrest_archive_command = "pgbackrest --config=%s --stanza=%s archive-push %%p" % (
            self.pgbackrest_conf, STANZA)
        self.set_archive_command(self.pgbackrest_archive_command)
        try:
            self.pgbackrest(["stanza-create"], "pgbackrest-setup")
            self.pgbackrest(["check"], "pgbackrest-setup")
        finally:
            self.set_archive_command("/bin/true")

    def set_archive_command(self, command):
        self.cluster.sql("ALTER SYSTEM SET archive_command = %s", (command,))
        self.cluster.sql("SELECT pg_reload_conf()")
        deadline = time.time() + 10
        while self.cluster.scalar("SHOW archive_command") != command and time.time() < deadline:
            time.sleep(0.05)

    def pgbackrest_argv(self, args):
        return ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=%s" % self.pgbackrest_conf,
                "--stanza=%s" % STANZA] + args

    def pgbackrest(self, args, log_name):
        return run_process(self.pgbackrest_argv(args), log_path=self.path("logs", log_name + ".log"))

    def pgbackrest_info(self):
        out = subprocess.run(self.pgbackrest_argv(["--output=json", "info"]), capture_output=True, text=True,
                             check=True).stdout
        return json.loads(out)[0]["backup"]

    def pgbackrest_backup(self, db, tag, compress_type):
        key = "pgbr_backup_" + compress_type
        args = ["--type=full", "--compress-type=%s" % compress_type, "backup"]
        self.set_archive_command(self.pgbackrest_archive_command)
        try:
            with Timed(self, [self.pgbackrest_options["repo1-path"]]) as timed:
                rss = self.pgbackrest(args, "%s-%s" % (key, tag))[1]
        finally:
            self.set_archive_command("/bin/true")
        backup = self.pgbackrest_info()[-1]
        self.replace_latest((key, None), {"label": backup["label"]}, cleanup=False)
        return dict(timed.fields(), size_bytes=backup["info"]["repository"]["size"], tree_rss_kb=rss,
                    backup_label=backup["label"], command="pgbackrest --stanza=%s %s" % (STANZA, " ".join(args)))

    def pgbackrest_restore(self, db, tag, compress_type):
        source = self.latest.get(("pgbr_backup_" + compress_type, None))
        if not source:
            raise StepFailed("no pgBackRest %s backup to restore" % compress_type)
        dest = self.path("restore", "pgbr-%s-%s" % (compress_type, tag))
        rmtree(dest)
        mkdir(dest, owner="postgres", mode=0o700)
        args = ["--set=%s" % source["label"], "--pg1-path=%s" % dest, "restore"]
        with Timed(self, [dest]) as timed:
            rss = self.pgbackrest(args, "pgbr-restore-%s-%s" % (compress_type, tag))[1]
        rmtree(dest)
        return dict(timed.fields(), tree_rss_kb=rss,
                    command="pgbackrest --stanza=%s --set=LABEL --pg1-path=DIR restore" % STANZA)

    def replace_latest(self, key, info, cleanup=True):
        previous = self.latest.get(key)
        if previous and cleanup:
            for name in ("dir",):
                if previous.get(name) and previous[name] != info.get(name):
                    rmtree(previous[name])
        self.latest[key] = info

    # -- running ------------------------------------------------------------------------------

    def measure(self, method, db, round_no, section):
        tag = "r%d-%s" % (round_no, re.sub(r"[^A-Za-z0-9]+", "", db["name"]))
        log("%s round %d: %s ..." % (db["name"], round_no, method.label))
        record = {"section": section, "method": method.key, "group": method.group, "label": method.label,
                  "baseline": method.baseline, "comparator": method.comparator, "round": round_no,
                  "database": db["name"], "database_bytes": db["size_bytes"],
                  "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        try:
            record.update(method.run(db, tag))
            size = (", %.1f MiB" % (record["size_bytes"] / MIB)) if record.get("size_bytes") else ""
            log("    %.1f s%s" % (record["seconds"], size))
        except Exception as exc:  # one broken method must not sink the whole run
            record["error"] = str(exc)[-2000:]
            record["traceback"] = traceback.format_exc()[-4000:]
            log("    FAILED: %s" % str(exc)[-500:])
        self.results.append(record)
        return record

    def run_rounds(self, methods, db, rounds, section):
        if self.args.only:
            methods = [m for m in methods if re.search(self.args.only, m.key)]
        for round_no in range(1, rounds + 1):
            for method in methods:
                self.measure(method, db, round_no, section)

    def main_methods(self):
        return [
            Method("seed_dump", "logical backup", "seed: pg_dump -F c -Z 9", self.seed_dump, baseline=True),
            Method("coll_dump", "logical backup", "collection pg_dump (defaults)", self.coll_dump),
            Method("floor_dump", "logical backup", "reference: pg_dump -F c -Z 0 -f /dev/null", self.floor_dump,
                   comparator=True),
            Method("seed_restore", "logical restore", "seed: createdb + pg_restore -d", self.seed_restore, baseline=True),
            Method("coll_restore", "logical restore", "collection pg_restore (defaults)", self.coll_restore),
            Method("coll_restore_serial", "logical restore", "collection pg_restore jobs=1 (serial)",
                   lambda db, tag: self.coll_restore(db, tag, {"jobs": 1}, key="coll_restore_serial"),
                   comparator=True),
            Method("seed_base", "physical backup", "seed: pg_basebackup -Ft -z -P", self.seed_basebackup, baseline=True),
            Method("coll_base", "physical backup", "collection pg_basebackup (defaults)", self.coll_basebackup),
            Method("pgbr_backup_gz", "physical backup", "pgBackRest full, gz (default)",
                   lambda db, tag: self.pgbackrest_backup(db, tag, "gz"), comparator=True),
            Method("pgbr_backup_zst", "physical backup", "pgBackRest full, zst",
                   lambda db, tag: self.pgbackrest_backup(db, tag, "zst"), comparator=True),
            Method("seed_extract", "physical restore", "seed backup: tar -xzf + sync", self.seed_extract, baseline=True),
            Method("coll_extract", "physical restore", "collection extract_backup + sync", self.coll_extract),
            Method("pgbr_restore_gz", "physical restore", "pgBackRest restore, gz",
                   lambda db, tag: self.pgbackrest_restore(db, tag, "gz"), comparator=True),
            Method("pgbr_restore_zst", "physical restore", "pgBackRest restore, zst",
                   lambda db, tag: self.pgbackrest_restore(db, tag, "zst"), comparator=True),
        ]

    def scale_methods(self):
        return [
            Method("coll_dump", "logical backup", "collection pg_dump (defaults)", self.coll_dump),
            Method("coll_restore", "logical restore", "collection pg_restore (defaults)", self.coll_restore),
        ]

    def explore_methods(self):
        m = []

        def dump(key, label, overrides):
            m.append(Method(key, "logical backup", label,
                            lambda db, tag: self.coll_dump(db, tag, overrides, key=key)))

        def restore(key, label, source_key, overrides, extra_env=None):
            m.append(Method(key, "logical restore", label,
                            lambda db, tag: self.coll_restore(db, tag, overrides, source_key=source_key, key=key,
                                                              extra_env=extra_env)))

        def base(key, label, overrides):
            m.append(Method(key, "physical backup", label,
                            lambda db, tag: self.coll_basebackup(db, tag, overrides, key=key)))

        m.append(Method("seed_dump", "logical backup", "seed: pg_dump -F c -Z 9", self.seed_dump, baseline=True))
        m.append(Method("floor_dump", "logical backup", "reference: pg_dump -F c -Z 0 -f /dev/null", self.floor_dump,
                        comparator=True))
        for level in (1, 3, 6):
            dump("x_zstd%d" % level, "custom, zstd:%d external -T0" % level, {"compression": "zstd:%d" % level})
        for level in (1, 6):
            dump("x_gzip%d" % level, "custom, gzip:%d in pg_dump" % level, {"compression": "gzip:%d" % level})
        dump("x_none", "custom, no compression", {"compression": "none"})
        for level in (1, 6):
            dump("x_dir_gzip%d" % level, "directory -j%d, gzip:%d" % (CORES, level),
                 {"format": "directory", "jobs": CORES, "compression": "gzip:%d" % level})
        m.append(Method("seed_restore", "logical restore", "seed: createdb + pg_restore -d", self.seed_restore,
                        baseline=True))
        restore("x_restore_j1", "zstd:3 custom, jobs=1 (serial pg_restore)", "x_zstd3", {"jobs": 1})
        restore("x_restore_j%d_server_mwm" % CORES, "zstd:3 custom, jobs=%d, maintenance_work_mem='' (server's)" % CORES,
                "x_zstd3", {"jobs": CORES, "maintenance_work_mem": ""})
        restore("x_restore_j%d" % CORES, "zstd:3 custom, jobs=%d (defaults: maintenance_work_mem=256MB, toast lz4)" % CORES, "x_zstd3",
                {"jobs": CORES})
        restore("x_restore_j%d_toast_server" % CORES, "zstd:3 custom, jobs=%d, toast_compression=server (pglz here)" % CORES,
                "x_zstd3", {"jobs": CORES, "toast_compression": "server"})
        restore("x_restore_j%d_1gb" % CORES, "zstd:3 custom, jobs=%d, maintenance_work_mem=1GB" % CORES, "x_zstd3",
                {"jobs": CORES, "maintenance_work_mem": "1GB"})
        restore("x_restore_dir_j%d" % CORES, "directory gzip:1, jobs=%d" % CORES, "x_dir_gzip1", {"jobs": CORES})
        m.append(Method("seed_base", "physical backup", "seed: pg_basebackup -Ft -z -P", self.seed_basebackup,
                        baseline=True))
        base("x_base_default", "tar server-zstd:level=3,workers=auto, CRC32C, verify (engine default)", {})
        base("x_base_noverify", "as the default, verify=false", {"verify": False})
        base("x_base_one_thread", "tar server-zstd:level=3,workers=0 (one thread)",
             {"compression": "server-zstd:level=3,workers=0"})
        base("x_base_sha256", "as the default, manifest_checksums=SHA256", {"manifest_checksums": "SHA256"})
        base("x_base_server_zstd1", "tar server-zstd:level=1,workers=auto", {"compression": "server-zstd:level=1"})
        base("x_base_client_zstd", "tar client-zstd (zstd in pg_basebackup)", {"compression": "client-zstd"})
        base("x_base_none", "tar uncompressed", {"compression": "none"})
        base("x_base_client_gzip", "tar client-gzip", {"compression": "client-gzip"})
        base("x_base_plain", "plain, verify (pg_verifybackup in place)", {"format": "plain", "compression": "none"})
        base("x_base_fetch", "as the default, wal_method=fetch", {"wal_method": "fetch"})
        base("x_base_spread", "as the default, checkpoint=spread", {"checkpoint": "spread"})
        m.append(Method("pgbr_backup_gz", "physical backup", "pgBackRest full, gz (default)",
                        lambda db, tag: self.pgbackrest_backup(db, tag, "gz"), comparator=True))
        m.append(Method("pgbr_backup_zst", "physical backup", "pgBackRest full, zst",
                        lambda db, tag: self.pgbackrest_backup(db, tag, "zst"), comparator=True))
        return m

    def cleanup_artifacts(self):
        for info in self.latest.values():
            if info.get("dir"):
                rmtree(info["dir"])
        self.latest = {}

    # -- Ansible overhead ---------------------------------------------------------------------

    def ansible_overhead(self, db):
        if not os.path.isdir(os.path.join(ROOT, "roles", "backup", "tasks")):
            return {"skipped": "roles/backup does not exist yet"}
        collections_root = import_collection()
        base = mkdir(self.path("role"))
        job = "todoapi-pgbackup-bench%d" % os.getpid()
        role_vars = {
            "pgbackup_databases": [db["name"]],
            "pgbackup_repository": os.path.join(base, "repo"),
            "pgbackup_db_host": self.cluster.host, "pgbackup_db_port": self.cluster.port,
            "pgbackup_password": self.cluster.password,
            "pgbackup_job_name": job, "pgbackup_scheduler": "cron",
            "pgbackup_config_dir": os.path.join(base, "etc"),
            "pgbackup_log_file": os.path.join(base, "backup.log"),
            "pgbackup_lock_file": os.path.join(base, "backup.lock"),
            "pgbackup_engine_dir": os.path.join(base, "engine"),
            "pgbackup_runner_path": os.path.join(base, "todoapi-pgbackup"),
            "pgbackup_splay_minutes": 30,
        }
        playbook = "\n".join([
            "- name: Converge the backup role (bench)",
            "  hosts: all",
            "  roles:",
            "    - role: todoapi.pgbackup.backup",
            ""])
        cleanup = "\n".join([
            "- name: Remove what the bench's converge scheduled",
            "  hosts: all",
            "  gather_facts: false",
            "  tasks:",
            "    - name: Remove the bench's cron entries",
            "      ansible.builtin.cron:",
            "        name: \"%s {{ item }}\"" % job,
            "        user: postgres",
            "        state: absent",
            "      loop: [backup, prune, verify]",
            "    - name: Remove the bench's logrotate snippet",
            "      ansible.builtin.file:",
            "        path: /etc/logrotate.d/%s" % job,
            "        state: absent",
            ""])
        runs = []
        try:
            for attempt in (1, 2):
                result, seconds = playbook_run(playbook, role_vars, collections_root, self.path("role"))
                runs.append({"seconds": round(seconds, 2), "rc": result.rc, "changed": result.stats.get("changed"),
                             "ok": result.stats.get("ok"), "tasks": len(result.tasks),
                             "changed_tasks": [t["task"] for t in result.tasks if t.get("changed")],
                             "slowest_tasks": task_durations(result.report)[:6]})
                log("ansible converge %d: %.1f s, rc %s, changed %s" % (attempt, seconds, result.rc,
                                                                        result.stats.get("changed")))
                if result.rc != 0:
                    runs[-1]["error"] = (result.stderr or result.stdout)[-1500:]
                    break
        finally:
            try:
                playbook_run(cleanup, {}, collections_root, self.path("role"))
            except Exception as exc:  # report, do not fail the bench
                log("cleanup of the converge failed: %s" % exc)
        return {"runs": runs, "forks": "default (5)", "hosts": 1}

    # -- top level ----------------------------------------------------------------------------

    def run(self):
        args = self.args
        started = time.monotonic()
        mkdir(self.work, mode=0o755)
        for sub in ("logs", "tmp"):
            mkdir(self.path(sub), mode=0o1777)
        report = {"started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "mode": "explore" if args.explore else "main", "size_mb": args.size_mb, "rounds": args.rounds,
                  "nice": args.nice,
                  "machine": machine_facts(self.work), "work_dir": self.work}
        self.setup_cluster()
        try:
            report["cluster"] = {"name": self.cluster.name, "port": self.cluster.port, "fsync": True,
                                 "settings": self.cluster_settings()}
            main_db = self.create_database(DB_NAME, args.size_mb)
            report["database"] = main_db
            self.setup_pgbackrest()
            report["pgbackrest"] = {"options": self.pgbackrest_options, "archive_command": self.pgbackrest_archive_command,
                                    "stanza": {"pg1-path": self.cluster.data_dir, "pg1-port": self.cluster.port}}
            report["engine_defaults"] = self.engine_defaults()
            report["cluster_bytes"] = self.cluster_size()
            if args.explore:
                self.run_rounds(self.explore_methods(), main_db, args.rounds, "explore")
                self.cleanup_artifacts()
            else:
                self.run_rounds(self.main_methods(), main_db, args.rounds, "main")
                self.cleanup_artifacts()
                report["scale_databases"] = []
                for size in args.sizes:
                    if abs(size - args.size_mb) < 1:
                        db = main_db
                    else:
                        db = self.create_database("%s_%dmb" % (DB_NAME, size), size)
                    report["scale_databases"].append(db)
                    self.run_rounds(self.scale_methods(), db, args.rounds, "scale")
                    self.cleanup_artifacts()
                    if db is not main_db:
                        self.drop_db(db["name"])
                if not args.no_ansible:
                    try:
                        report["ansible"] = self.ansible_overhead(main_db)
                    except Exception as exc:
                        report["ansible"] = {"error": str(exc)[-1500:]}
                        log("ansible converge failed: %s" % str(exc)[-500:])
        finally:
            report["caches_dropped"] = self.caches_dropped
            report["results"] = self.results
            report["total_seconds"] = round(time.monotonic() - started, 1)
            if not args.keep:
                self.cluster.drop()
                rmtree(self.work)
            else:
                log("kept cluster %s (port %s) and %s" % (self.cluster.name, self.cluster.port, self.work))
        return report

    def cluster_settings(self):
        names = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_level", "fsync", "synchronous_commit",
                 "full_page_writes", "maintenance_work_mem", "max_parallel_maintenance_workers", "wal_compression")
        return dict((name, self.cluster.scalar("SELECT current_setting(%s)", (name,))) for name in names)

    def engine_defaults(self):
        import_collection()
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup, restore as logical_restore
        from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
        return {
            "pg_dump": request_kwargs("pg_dump", logical_backup.LogicalBackupRequest),
            "pg_restore": request_kwargs("pg_restore", logical_restore.LogicalRestoreRequest),
            "pg_basebackup": request_kwargs("pg_basebackup", base_backup.PhysicalBackupRequest),
        }


def task_durations(report):
    """[(seconds, task name)] of a json-callback report, slowest first."""
    out = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            duration = task.get("task", {}).get("duration", {})
            try:
                start = datetime.datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
                end = datetime.datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            out.append((round((end - start).total_seconds(), 2), task.get("task", {}).get("name", "")))
    return sorted(out, reverse=True)


def playbook_run(playbook, extra_vars, collections_root, work_dir):
    """ansible-playbook on localhost (tests/lib/ansible_run's setup); returns (PlaybookResult, seconds)."""
    from tests.lib.ansible_run import PlaybookResult, playbook_argv, playbook_env, playbook_file
    argv = playbook_argv(playbook_file(playbook, work_dir), extra_vars, False, False, 0)
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=work_dir, env=playbook_env(collections_root, work_dir), capture_output=True,
                               text=True, timeout=1800, check=False)
    seconds = time.monotonic() - started
    return PlaybookResult(argv, completed.returncode, completed.stdout, completed.stderr), seconds


# ---------------------------------------------------------------------------------------------
# Summaries and docs/performance.md
# ---------------------------------------------------------------------------------------------

def summarize(results, section, database=None):
    """Per method (in first-run order): median/min/max time, median size, peaks."""
    rows, order = {}, []
    for record in results:
        if record["section"] != section or (database and record["database"] != database):
            continue
        key = (record["database"], record["method"])
        if key not in rows:
            order.append(key)
            rows[key] = {"method": record["method"], "label": record["label"], "group": record["group"],
                         "baseline": record["baseline"], "comparator": record.get("comparator"),
                         "database": record["database"], "database_bytes": record["database_bytes"],
                         "times": [], "sizes": [], "rss": [], "tree_rss": [], "peak_disk": [], "errors": [], "cpu": [],
                         "loads": [], "command": record.get("command"), "settings": record.get("settings")}
        row = rows[key]
        if record.get("error"):
            row["errors"].append(record["error"])
            continue
        row["times"].append(record["seconds"])
        row["loads"].append(record.get("loadavg_1m"))
        if record.get("cpu_client_seconds") is not None:
            row["cpu"].append(record["cpu_client_seconds"] + record.get("cpu_server_seconds", 0))
        for field, name in (("size_bytes", "sizes"), ("rss_kb", "rss"), ("tree_rss_kb", "tree_rss"),
                            ("peak_disk_bytes", "peak_disk")):
            if record.get(field) is not None:
                row[name].append(record[field])
    out = []
    for key in order:
        row = rows[key]
        row["time"] = median(row["times"])
        row["size"] = median(row["sizes"])
        row["cpu_median"] = median(row["cpu"])
        row["rss_max"] = max(row["rss"]) if row["rss"] else None
        row["tree_rss_max"] = max(row["tree_rss"]) if row["tree_rss"] else None
        row["peak_disk_max"] = max(row["peak_disk"]) if row["peak_disk"] else None
        out.append(row)
    baselines = dict((row["group"], row) for row in out if row["baseline"])
    for row in out:
        base = baselines.get(row["group"])
        row["time_ratio"] = row["time"] / base["time"] if base and base["time"] and row["time"] else None
        row["size_ratio"] = row["size"] / base["size"] if base and base.get("size") and row["size"] else None
    return out


def fmt(value, pattern="%.1f", empty="—"):
    return empty if value is None else pattern % value


def method_table(rows):
    lines = ["| Step | Method | Time s (median; all runs) | CPU s | Size MiB | MiB/s of DB | Time ÷ seed | Size ÷ seed "
             "| Peak RSS MiB: engine / largest process | Peak extra disk MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["time"] is None:
            lines.append("| %s | %s | failed: %s | | | | | | | |" % (
                row["group"], row["label"], (row["errors"] or ["?"])[0].replace("|", "/").replace("\n", " ")[:200]))
            continue
        runs = ", ".join("%.1f" % t for t in row["times"])
        rate = row["database_bytes"] / MIB / row["time"]
        label = ("**%s**" % row["label"]) if not row["baseline"] and not row["comparator"] else row["label"]
        lines.append("| %s | %s | %.1f (%s) | %s | %s | %.0f | %s | %s | %s / %s | %s |" % (
            row["group"], label, row["time"], runs, fmt(row["cpu_median"]), fmt(row["size"] and row["size"] / MIB), rate,
            fmt(row["time_ratio"], "%.2f"), fmt(row["size_ratio"], "%.2f"),
            fmt(row["rss_max"] and row["rss_max"] / 1024.0, "%.0f"),
            fmt(row["tree_rss_max"] and row["tree_rss_max"] / 1024.0, "%.0f"),
            fmt(row["peak_disk_max"] and row["peak_disk_max"] / MIB, "%.0f")))
    return lines


def find_row(rows, method):
    return next((row for row in rows if row["method"] == method), None)


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def targets(report, rows):
    out = []
    dump, seed_dump = find_row(rows, "coll_dump"), find_row(rows, "seed_dump")
    if dump and dump["time_ratio"] is not None:
        ok = dump["time_ratio"] <= TARGETS["logical_backup_time_ratio"] and \
            dump["size_ratio"] <= TARGETS["logical_backup_size_ratio"]
        out.append(("default logical backup ≤ 1/3 of the seed's time at ≤ 110 % of its size",
                    "%.2f × the time, %.2f × the size (%.1f s vs %.1f s)" % (
                        dump["time_ratio"], dump["size_ratio"], dump["time"], seed_dump["time"]), ok))
    for key in ("coll_restore",):
        row = find_row(rows, key)
        if row and row["time_ratio"] is not None:
            out.append(("%s ≤ 0.6 × the seed's restore" % row["label"], "%.2f × (%.1f s vs %.1f s)" % (
                row["time_ratio"], row["time"], find_row(rows, "seed_restore")["time"]),
                row["time_ratio"] <= TARGETS["logical_restore_time_ratio"]))
    base = find_row(rows, "coll_base")
    for key in ("pgbr_backup_gz", "pgbr_backup_zst"):
        other = find_row(rows, key)
        if base and other and base["time"] and other["time"]:
            out.append(("default physical backup no slower than %s" % other["label"], "%.1f s vs %.1f s (%.2f ×)" % (
                base["time"], other["time"], base["time"] / other["time"]), base["time"] <= other["time"]))
    rss = [row["rss_max"] for row in rows if row["rss_max"] is not None]
    if rss:
        out.append(("engine (module) process peak RSS < 100 MiB", "max %.0f MiB over all engine runs" % (max(rss) / 1024.0),
                    max(rss) / 1024.0 < TARGETS["engine_rss_mb"]))
    for key in ("coll_dump", "coll_base"):
        row = find_row(rows, key)
        if row and row["peak_disk_max"] is not None and row["size"]:
            out.append(("%s: no temporary copy larger than the artifact" % row["label"],
                        "peak extra disk %.0f MiB for a %.0f MiB artifact" % (row["peak_disk_max"] / MIB, row["size"] / MIB),
                        row["peak_disk_max"] <= row["size"] * 1.05 + 8 * MIB))
    runs = ((report.get("ansible") or {}).get("runs") or [])
    if len(runs) == 2 and runs[1]["rc"] == 0:
        out.append(("no-change converge of the backup role < 15 s", "%.1f s, changed=%s" % (
            runs[1]["seconds"], runs[1]["changed"]), runs[1]["seconds"] < TARGETS["ansible_converge_seconds"]))
    return out


def scale_lines(report):
    rows = summarize(report["results"], "scale")
    if not rows:
        return []
    by_method = {}
    for row in rows:
        if row["time"] is not None:
            by_method.setdefault(row["method"], []).append(row)
    lines = ["| Database | Size MiB | Default logical backup s | MiB/s | Default restore s | MiB/s |", "|---|---|---|---|---|---|"]
    dbs = sorted(set((row["database_bytes"], row["database"]) for row in rows))
    for size, name in dbs:
        dump = next((r for r in by_method.get("coll_dump", []) if r["database"] == name), None)
        rest = next((r for r in by_method.get("coll_restore", []) if r["database"] == name), None)
        lines.append("| %s | %.0f | %s | %s | %s | %s |" % (
            name, size / MIB, fmt(dump and dump["time"]), fmt(dump and size / MIB / dump["time"], "%.0f"),
            fmt(rest and rest["time"]), fmt(rest and size / MIB / rest["time"], "%.0f")))
    lines.append("")
    for method, title in (("coll_dump", "backup"), ("coll_restore", "restore")):
        points = [(r["database_bytes"] / MIB, r["time"]) for r in by_method.get(method, [])]
        if len(points) >= 2:
            fit = linear_fit(points)
            lines.append("- %s: time ≈ %.1f s + %.1f s per GiB (least squares over %d sizes; log-log slope %.2f, "
                         "1.0 = linear)." % (title.capitalize(), fit["intercept"], fit["slope"] * 1024, len(points),
                                             fit["loglog"]))
    return lines


def linear_fit(points):
    import math
    n = float(len(points))
    xs = [point[0] for point in points]
    ys = [point[1] for point in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs) or 1e-9
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mlx, mly = sum(lx) / n, sum(ly) / n
    loglog = sum((a - mlx) * (b - mly) for a, b in zip(lx, ly)) / (sum((a - mlx) ** 2 for a in lx) or 1e-9)
    return {"slope": slope, "intercept": my - slope * mx, "loglog": loglog}


def header_lines(report):
    m = report["machine"]
    db = report.get("database") or {}
    cluster_settings = (report.get("cluster") or {}).get("settings", {})
    lines = [
        "Generated by `%s` (%d MB) on %s (UTC) in %.1f min; raw data: `bench/results/%s`." % (
            "BENCH_EXPLORE=1 make bench" if report["mode"] == "explore" else "make bench", report["size_mb"],
            report["started_at"][:16].replace("T", " "), report["total_seconds"] / 60.0, report.get("results_file", "")),
        "",
        "- Machine: %d cores (%s), %.1f GiB RAM, %s, kernel %s" % (m["cores"], m["cpu"], m["ram_gib"], m["os"], m["kernel"]),
        "- Disk (`lsblk` NAME SIZE ROTA TYPE MODEL): `%s`; work directory on (`df`): `%s`" % (m["disk"], m["filesystem"]),
        "- %s; %s; %s" % (m["postgresql"], m["pgbackrest"], m["zstd"].replace("*", "").strip()),
        "- Database: %s, %.0f MiB (`pg_database_size`), rows %s; whole cluster %.0f MiB" % (
            db.get("name"), db.get("size_bytes", 0) / MIB, db.get("rows"), report.get("cluster_bytes", 0) / MIB),
        "- Cluster: fsync on, %s" % ", ".join("%s=%s" % kv for kv in sorted(cluster_settings.items())),
        "- Rounds: %d, methods alternated (A B C … A B C …); before every measurement `CHECKPOINT` and %s" % (
            report["rounds"], "`sync; echo 3 > /proc/sys/vm/drop_caches` (cold page cache)" if report.get("caches_dropped")
            else "NO page cache drop (not permitted: warm cache)"),
        "- 1-minute load average at the start of the measurements: %s (other work on the machine shows here); the "
        "bench, its child processes and its cluster ran at nice %s" % (load_range(report), report.get("nice", 0)),
    ]
    d = report.get("engine_defaults") or {}
    if d:
        lines.append("- Engine defaults measured (from the modules' documented defaults): pg_dump `%s`; pg_restore `%s`; "
                     "pg_basebackup `%s`" % (compact(d.get("pg_dump")), compact(d.get("pg_restore")),
                                             compact(d.get("pg_basebackup"))))
    pgbr = report.get("pgbackrest") or {}
    if pgbr:
        opts = dict(pgbr["options"])
        for key in ("log-path", "lock-path", "spool-path", "log-level-console", "log-level-file"):
            opts.pop(key, None)
        lines.append("- pgBackRest: `%s`, `--type=full`, `--compress-type=gz|zst` (default levels: gz 6, zst 3), "
                     "`archive_command='%s'` during its backups (`/bin/true` otherwise)" % (
                         " ".join("--%s=%s" % kv for kv in sorted(opts.items())), pgbr["archive_command"]))
    return lines


def compact(settings):
    return ", ".join("%s=%s" % (k, v) for k, v in sorted((settings or {}).items()) if v not in (None, [], "", {}))


def load_range(report):
    loads = [r.get("loadavg_1m") for r in report["results"] if r.get("loadavg_1m") is not None]
    return "%.2f–%.2f" % (min(loads), max(loads)) if loads else "n/a"


def main_section(report):
    rows = summarize(report["results"], "main")
    lines = header_lines(report) + ["", "### Results", ""] + method_table(rows)
    lines += ["", "Time ÷ seed compares with the seed's command of the same step (physical restore: extracting the",
              "seed's tarballs by hand). MiB/s is the database size divided by the time. Bold: the collection's defaults.",
              "", "### Targets", "", "| Target | Measured | Verdict |", "|---|---|---|"]
    for name, measured, ok in targets(report, rows):
        lines.append("| %s | %s | %s |" % (name, measured, verdict(ok)))
    ans = report.get("ansible") or {}
    lines += ["", "### Ansible overhead", ""]
    if ans.get("runs"):
        for number, run in enumerate(ans["runs"], 1):
            slowest = ", ".join("%s %.1f s" % (name.split(" : ", 1)[-1], seconds)
                                for seconds, name in (run.get("slowest_tasks") or [])[:3])
            values = (number, run["seconds"], run["rc"], run["tasks"], run["changed"], slowest)
            lines.append("- converge %d of `todoapi.pgbackup.backup` on localhost (facts gathered): %.1f s, "
                         "rc %s, %s tasks, changed=%s; slowest: %s" % values)
    else:
        lines.append("- not measured: %s" % (ans.get("skipped") or ans.get("error") or "skipped (--no-ansible)"))
    lines += ["", "### Scale", ""] + (scale_lines(report) or ["(not measured in this run)"])
    return lines


def explore_section(report):
    rows = summarize(report["results"], "explore")
    return header_lines(report) + [""] + method_table(rows) + [
        "", "Bold: the collection's engine with the module option(s) named in the label changed, everything else at its",
        "default. Time ÷ seed: against the seed's command of the same step."]


def update_docs(report, section_name, lines):
    begin, end = "<!-- bench:%s:begin -->" % section_name, "<!-- bench:%s:end -->" % section_name
    text = open(DOCS_FILE).read() if os.path.exists(DOCS_FILE) else \
        "# Performance\n\n<!-- bench:main:begin -->\n<!-- bench:main:end -->\n\n" \
        "<!-- bench:explore:begin -->\n<!-- bench:explore:end -->\n"
    block = begin + "\n" + "\n".join(lines) + "\n" + end
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(DOCS_FILE, "w") as handle:
        handle.write(text)


def print_summary(report):
    section = report["mode"]
    rows = summarize(report["results"], section)
    print("\n".join(method_table(rows)))
    if section == "main":
        print("")
        for name, measured, ok in targets(report, rows):
            print("%-70s %-50s %s" % (name, measured, verdict(ok).strip("*")))
        print("\n".join([""] + scale_lines(report)))
        for run in (report.get("ansible") or {}).get("runs", []):
            print("ansible converge: %.1f s, changed=%s" % (run["seconds"], run["changed"]))
    print("total: %.1f min" % (report["total_seconds"] / 60.0))


# ---------------------------------------------------------------------------------------------

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
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--no-ansible", action="store_true", help="skip the role converge timing")
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


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.engine_child:
        engine_child(args.engine_child)
        return 0
    if args.list:
        bench = Bench(args)
        for section, methods in (("main", bench.main_methods()), ("scale", bench.scale_methods()),
                                 ("explore", bench.explore_methods())):
            for method in methods:
                print("%-8s %-24s %s" % (section, method.key, method.label))
        return 0
    if args.render:
        with open(args.render) as handle:
            report = json.load(handle)
        current = machine_facts(os.path.dirname(os.path.abspath(args.render)))
        for key in ("disk", "filesystem"):  # facts an older version of this script failed to read
            if not report["machine"].get(key) or report["machine"][key].startswith("("):
                report["machine"][key] = current[key]
        update_docs(report, report["mode"], explore_section(report) if report["mode"] == "explore" else main_section(report))
        return 0
    if os.geteuid() != 0:
        sys.stderr.write("bench: must run as root\n")
        return 2
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    bench = Bench(args)
    report = bench.run()
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = "%s-%s-%dmb.json" % (time.strftime("%Y%m%dT%H%M%S"), report["mode"], args.size_mb)
    report["results_file"] = name
    with open(os.path.join(RESULTS_DIR, name), "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    if not args.no_docs:
        lines = explore_section(report) if args.explore else main_section(report)
        update_docs(report, report["mode"], lines)
        log("updated %s (section %s)" % (os.path.relpath(DOCS_FILE, ROOT), report["mode"]))
    print_summary(report)
    log("raw results: %s" % os.path.join(RESULTS_DIR, name))
    failures = [r for r in report["results"] if r.get("error")]
    return 1 if failures and len(failures) == len(report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
