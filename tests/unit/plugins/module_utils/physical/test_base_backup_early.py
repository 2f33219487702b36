# -*- coding: utf-8 -*-
"""base.tar read while pg_basebackup writes it (base_backup_early), with a thread as the writer."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import subprocess
import threading
import time

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_early as early_mod
from tests.unit.plugins.module_utils.physical.test_backup_manifest import make_manifest, make_tar

LABEL = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
MEMBERS = [("backup_label", LABEL), ("base", None), ("PG_VERSION", b"15\n"), ("base/1/1259", os.urandom(300000)),
           ("pg_wal", None)]
FILES = [(name, data, "SHA256") for name, data in MEMBERS if data is not None]


class Writer(object):
    """Writes ``raw`` to ``path`` in pieces, pausing between them, as pg_basebackup appends to base.tar."""

    def __init__(self, path, raw, pieces=7, pause=0.03, delay=0.05):
        self.running = True
        self.thread = threading.Thread(target=self._write, args=(path, raw, pieces, pause, delay))
        self.thread.start()

    def _write(self, path, raw, pieces, pause, delay):
        try:
            time.sleep(delay)  # the file does not exist at first (the checkpoint)
            if path is None:
                return
            step = len(raw) // pieces + 1
            with open(path, "wb") as handle:
                for start in range(0, len(raw), step):
                    handle.write(raw[start:start + step])
                    handle.flush()
                    time.sleep(pause)
        finally:
            self.running = False

    def follow(self, directory, algorithm="SHA256"):
        read = early_mod.follow_base_tar(str(directory), lambda: self.running, algorithm)
        self.thread.join()
        return read


def zstd(raw):
    return subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout


def replayed(read, files=None):
    check = backup_manifest.ManifestCheck(backup_manifest.BackupManifest(make_manifest(files or FILES)))
    read.replay(check, read.name)
    check.finish()
    return check


def test_growing_file_is_read_whole_as_it_is_written(tmp_path):
    raw = os.urandom(3 * 1024 * 1024 + 5)
    path = str(tmp_path / "grows")
    open(path, "wb").close()
    writer = Writer(path, raw, delay=0)
    state = {}
    got = b"".join(early_mod.growing_chunks(path, lambda: writer.running, state, poll=0.01))
    writer.thread.join()
    assert got == raw and state["read"] == len(raw) and state["complete"] is True


def test_compressed_base_tar_read_while_written_replays_like_a_second_read(tmp_path):
    raw = zstd(make_tar(MEMBERS))
    read = Writer(str(tmp_path / "base.tar.zst"), raw).follow(tmp_path)
    assert read.usable and read.failure is None and read.name == "base.tar.zst"
    assert read.sha256 == hashlib.sha256(raw).hexdigest() and read.backup_label == LABEL.decode()
    check = replayed(read)
    assert check.problems == [] and check.files_checked == 3 and check.bytes_checked == sum(len(data) for name, data, algorithm in FILES)


def test_replay_reports_damage_as_the_stream_check_does(tmp_path):
    damaged = [(name, b"16\n" if name == "PG_VERSION" else data) for name, data in MEMBERS] + [("../escape", b"x")]
    read = Writer(str(tmp_path / "base.tar"), make_tar(damaged)).follow(tmp_path)
    assert read.usable
    assert replayed(read).problems == [
        "base.tar: checksum mismatch for 'PG_VERSION' (SHA256 %s, backup_manifest says %s)"
        % (hashlib.sha256(b"16\n").hexdigest(), hashlib.sha256(b"15\n").hexdigest()),
        "base.tar: '../escape' has a path outside the data directory"]


def test_what_does_not_provably_cover_the_file_is_unusable(tmp_path):
    assert Writer(None, b"").follow(tmp_path) is None  # pg_basebackup exited before writing base.tar

    truncated = Writer(str(tmp_path / "base.tar"), make_tar(MEMBERS)[:5000]).follow(tmp_path)
    assert not truncated.usable and "truncated" in truncated.failure

    os.remove(str(tmp_path / "base.tar"))
    read = Writer(str(tmp_path / "base.tar"), make_tar(MEMBERS)).follow(tmp_path)
    assert read.usable
    with open(read.path, "ab") as handle:  # written after the reader finished: not covered
        handle.write(b"\0" * 512)
    assert not read.usable

    os.remove(read.path)
    fetched = Writer(str(tmp_path / "base.tar"), make_tar(MEMBERS + [("pg_wal/000000010000000000000002", b"w")]))
    wal_inside = fetched.follow(tmp_path)
    assert not wal_inside.usable and "pg_wal/000000010000000000000002" in wal_inside.failure


def test_records_are_used_only_with_the_manifests_algorithm(tmp_path):
    read = Writer(str(tmp_path / "base.tar"), make_tar(MEMBERS)).follow(tmp_path, algorithm="SHA512")
    assert read.usable
    manifest = backup_manifest.BackupManifest(make_manifest(FILES))
    assert not read.matches(manifest)
    assert read.matches(backup_manifest.BackupManifest(make_manifest([(n, d, "SHA512") for n, d, algorithm in FILES])))
    assert read.matches(backup_manifest.BackupManifest(make_manifest([(n, d, "NONE") for n, d, algorithm in FILES])))
