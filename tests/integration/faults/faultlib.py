# -*- coding: utf-8 -*-
"""Helpers of the fault-injection suite (tests/integration/faults): repository snapshots,
process hunting under /proc, a pause point inside a running backup, tmpfs mounts and secrets
in files (the /proc scanner for secrets is tests/lib/procscan.py's ProcScanner).

    from tests.integration.faults.faultlib import repo_snapshot, descendants, paused_dump
"""

from __future__ import absolute_import, division, print_function

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.engine import spec_of
from tests.lib.procscan import all_pids, proc_stat, proc_state

TMP_PREFIX = ".tmp-"


# Connections and backups


def take_backup(cluster, database, repo_path, **options):
    """A logical backup through the engine; returns its manifest."""
    request = logical_backup.LogicalBackupRequest(database, LocalRepository(repo_path, owner="postgres"),
                                                  spec_of(cluster), **options)
    return logical_backup.backup(request)


# Repository state


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def repo_snapshot(path):
    """{relative path: sha256} of every file below ``path`` (directory artifacts included)."""
    state = {}
    for root, dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            state[os.path.relpath(full, path)] = _sha256(full)
    return state


def assert_earlier_backups_intact(before, path, allow_new=False, allow_tmp=False):
    """Every file that was there is still there with the same sha256. Nothing new, unless
    ``allow_new`` (complete backups, never a ``.tmp-`` leftover) or ``allow_tmp`` (only the
    ``.tmp-`` work files of a run that was killed and could not clean up)."""
    after = repo_snapshot(path)
    lost = sorted(name for name in before if name not in after)
    changed = sorted(name for name in before if name in after and after[name] != before[name])
    new = sorted(name for name in after if name not in before)
    assert not lost, "files of earlier backups were deleted: %s" % lost
    assert not changed, "files of earlier backups were modified: %s" % changed
    if allow_tmp:
        assert all(n.split(os.sep)[0].startswith(TMP_PREFIX) for n in new), "new files besides work files: %s" % new
    elif allow_new:
        assert not [n for n in new if n.split(os.sep)[0].startswith(TMP_PREFIX)], "work files left behind: %s" % new
    else:
        assert not new, "the failed run left files behind: %s" % new
    return after


def temp_entries(path):
    return sorted(name for name in os.listdir(path) if name.startswith(TMP_PREFIX))


def manifest_ids(path):
    return sorted(name[:-len(".manifest.json")] for name in os.listdir(path) if name.endswith(".manifest.json")
                  and not name.startswith(TMP_PREFIX))


def rewrite_manifest(repo_path, backup_id, **changes):
    path = os.path.join(repo_path, backup_id + ".manifest.json")
    with open(path) as handle:
        manifest = json.load(handle)
    manifest.update(changes)
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return manifest


# Processes


def descendants(root_pid):
    """[(pid, comm)] of every process below ``root_pid``."""
    children = {}
    for pid in all_pids():
        info = proc_stat(pid)
        if info:
            children.setdefault(info[1], []).append((pid, info[0]))
    found, queue = [], [root_pid]
    while queue:
        for pid, comm in children.get(queue.pop(), []):
            found.append((pid, comm))
            queue.append(pid)
    return found


def wait_for_descendant(name, root_pid=None, timeout=60, condition=None, interval=0.005):
    """Pid of the first process called ``name`` below ``root_pid`` (default: this test process),
    once ``condition()`` (optional) is true as well."""
    root_pid = root_pid or os.getpid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, comm in descendants(root_pid):
            if comm == name and (condition is None or condition()):
                return pid
        time.sleep(interval)
    raise AssertionError("no process %r appeared below pid %d within %ss" % (name, root_pid, timeout))


def kill_and_reap(pids, timeout=10):
    """SIGKILL these (our own) processes and wait until they are gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(proc_stat(pid) and proc_state(pid) != "Z" for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_until_gone(pids, timeout=5):
    """True once none of ``pids`` is alive (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(proc_state(pid) not in (None, "Z") for pid in pids):
            return True
        time.sleep(0.05)
    return False


class BackgroundCall(object):
    """Run ``function(*args)`` in a thread; ``result()`` returns its value or re-raises its exception."""

    def __init__(self, function, *args, **kwargs):
        self.value = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(function, args, kwargs))
        self.thread.daemon = True
        self.thread.start()

    def _run(self, function, args, kwargs):
        try:
            self.value = function(*args, **kwargs)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def result(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the background call did not finish within %ss" % timeout
        if self.error is not None:
            raise self.error
        return self.value


@contextlib.contextmanager
def paused_dump(monkeypatch, after_bytes=1):
    """Hold a logical backup in the middle of its stream: once ``after_bytes`` of the artifact
    are written, the engine's reader stops (pg_dump then blocks on its full pipe, connection
    and snapshot open) until the test sets ``resume``. Yields (streaming, resume) events.

    Only the reading side is held; the fault itself (SIGKILL, restart, DROP DATABASE) is real.
    """
    streaming, resume = threading.Event(), threading.Event()
    original = logical_backup._stream_to_file

    class HeldPipeline(object):
        def __init__(self, pipeline):
            self.pipeline = pipeline

        def stdout_chunks(self):
            written = 0
            for chunk in self.pipeline.stdout_chunks():
                yield chunk
                written += len(chunk)
                if written >= after_bytes and not streaming.is_set():
                    streaming.set()
                    assert resume.wait(120), "the test never resumed the held backup"

    def held(pipeline, path):
        return original(HeldPipeline(pipeline), path)

    monkeypatch.setattr(logical_backup, "_stream_to_file", held)
    try:
        yield streaming, resume
    finally:
        resume.set()


# Mounts


@contextlib.contextmanager
def tmpfs(path, size, mode="0700"):
    """Mount a small tmpfs at ``path`` (created if needed); unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=%s" % (size, mode), "tmpfs", path],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        import pytest
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True, check=False)


# The runner (todoapi-pgbackup) as its own process

RUNNER_CODE = "import sys; from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli; sys.exit(cli.main())"


def runner_argv(config_path, *args):
    return [sys.executable, "-c", RUNNER_CODE, "--config", config_path] + list(args)


def runner_env(collections_root):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([collections_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("PGPASSWORD", None)
    return env


def write_runner_config(directory, cluster, databases, repository, **overrides):
    """A runner config (password only in a 0600 passfile, as the backup role writes it)."""
    passfile = os.path.join(directory, "pgpass")
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("*:*:*:%s:%s\n" % (cluster.user, cluster.password))
    config = {"repository": repository, "owner": "postgres", "databases": list(databases),
              "connection": {"host": cluster.host, "port": cluster.port, "user": cluster.user, "passfile": passfile},
              "log_file": os.path.join(directory, "backup.log"), "lock_file": os.path.join(directory, "run.lock"),
              "lock_wait_seconds": 0}
    config.update(overrides)
    path = os.path.join(directory, "config.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path, config


def log_events(path):
    if not os.path.exists(path):
        return []
    events = []
    with open(path) as handle:
        for line in handle:
            if line.strip():
                events.append(json.loads(line))
    return events


# Secrets in /proc


def find_secrets(text, secrets):
    """The secrets (shortened) that occur in ``text``."""
    return [secret[:6] + "..." for secret in secrets if secret and secret in text]


def files_containing(path, secrets):
    """{relative path: [secrets]} for files below ``path`` that contain a secret."""
    found = {}
    for root, dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                with open(full, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            hits = [s[:6] + "..." for s in secrets if s and s.encode("utf-8") in data]
            if hits:
                found[os.path.relpath(full, path)] = hits
    return found
