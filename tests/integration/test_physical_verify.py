# -*- coding: utf-8 -*-
"""Verification of tar-format base backups without extracting them, against real pg_basebackup output.

Every damage case rebuilds one tar of a real backup (or backup_manifest itself) and keeps the rest,
so the check has to find exactly that damage and name the file.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_request
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_names
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import verify
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.pgcluster import bindir_for

needs_crc32c = pytest.mark.skipif(not backup_manifest.crc32c_available(), reason="the crc32c Python module is not installed")


def spec_of(cluster):
    return ConnectionSpec(host=cluster.host, port=cluster.port, user="postgres", password=cluster.password)


def take(cluster, repo_path, **options):
    repo = LocalRepository(repo_path, owner="postgres")
    return repo, base_backup.backup(base_backup.PhysicalBackupRequest(repo, spec_of(cluster), **options))


@pytest.fixture
def base(pg, tmp_repo):
    """A fresh tar backup (default options) of the session cluster: (repo, manifest, artifact dir)."""
    pg.sql("SELECT pg_switch_wal()")
    repo, manifest = take(pg, tmp_repo)
    return repo, manifest, repo.artifact_path(manifest)


def read_tar(path):
    """[(TarInfo, data bytes or None)] of a (zstd-compressed) tar, in order."""
    if path.endswith(".zst"):
        raw = subprocess.run(["zstd", "-q", "-d", "-c", path], check=True, stdout=subprocess.PIPE).stdout
    else:
        with open(path, "rb") as handle:
            raw = handle.read()
    members = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar.getmembers():
            members.append((info, tar.extractfile(info).read() if info.isreg() else None))
    return members


def write_tar(path, members):
    """Write members back in pg_basebackup's form (ustar), compressed like the original."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    raw = buffer.getvalue()
    if path.endswith(".zst"):
        raw = subprocess.run(["zstd", "-q", "-c"], input=raw, check=True, stdout=subprocess.PIPE).stdout
    with open(path, "wb") as handle:
        handle.write(raw)


def rebuild(artifact, tar_name, change):
    path = os.path.join(artifact, tar_name)
    write_tar(path, change(read_tar(path)))


def relation_file(members, minimum=8192):
    """A relation file of base.tar (a catalog table of some database) that is at least ``minimum`` bytes."""
    for info, data in members:
        if info.name.startswith("base/") and data is not None and len(data) >= minimum:
            return info.name
    raise AssertionError("no relation file in base.tar")


def pg_algorithms(artifact):
    with open(os.path.join(artifact, "backup_manifest")) as handle:
        return sorted(set(f["Checksum-Algorithm"] for f in json.load(handle)["Files"]))


def verify_fails(artifact, match):
    with pytest.raises(PgBackupError, match=match) as failure:
        base_backup.verify_tar_backup(artifact)
    return failure.value


# Clean backups


@pytest.mark.parametrize("checksums", [pytest.param("CRC32C", marks=needs_crc32c), "SHA256"])
def test_clean_backup_verifies_with_crc32c_and_sha256(pg, tmp_repo, checksums):
    repo, manifest = take(pg, tmp_repo, manifest_checksums=checksums)
    artifact = repo.artifact_path(manifest)
    assert pg_algorithms(artifact) == [checksums]
    assert manifest["backup_manifest"]["checksum_algorithm"] == checksums
    verified = manifest["verified"]
    assert verified["backup_manifest"] is True and verified["method"] == "stream"
    assert verified["checksum_algorithms"] == [checksums]
    # Every file of backup_manifest but postgresql.auto.conf (pg_verifybackup ignores it) was read and matched.
    assert verified["files"] == manifest["backup_manifest"]["files"] - 1
    assert verified["wal_parsed"] is True and manifest["wal_start_segment"] in verified["wal_segments"]

    again = base_backup.verify_tar_backup(artifact)
    assert again["files"] == verified["files"] and again["backup_label"] == manifest["backup_label"]
    result = verify.verify_backup(repo, manifest, "structure")
    structure = result["checks"]["structure"]
    assert structure["method"] == "stream" and structure["checksum_algorithms"] == [checksums]
    assert verify.verification_state(repo, manifest["id"])["state"] == "verified"


@needs_crc32c
def test_default_is_crc32c_with_zstd_workers(base):
    repo, manifest, artifact = base
    assert pg_algorithms(artifact) == ["CRC32C"]
    compression = dict(manifest["compression"])
    wal_tar = compression.pop("wal_tar")
    assert compression == {"method": "zstd", "location": "server", "level": 1, "workers": os.cpu_count(),
                           "applied": "applied_by_pg_basebackup"}
    # server-side zstd leaves the streamed WAL uncompressed: the engine compressed it the same way, and what is
    # stored decompresses to what was streamed
    assert sorted(os.listdir(artifact)) == ["backup_manifest", "base.tar.zst", "pg_wal.tar.zst"]
    assert (wal_tar["file"], wal_tar["applied"], wal_tar["method"], wal_tar["level"]) == ("pg_wal.tar.zst", "engine", "zstd", 1)
    streamed = subprocess.run(["zstd", "-q", "-d", "-c", os.path.join(artifact, "pg_wal.tar.zst")], check=True,
                              stdout=subprocess.PIPE).stdout
    assert len(streamed) == wal_tar["bytes_before"] >= manifest["wal_segment_size"] > 10 * wal_tar["bytes"]


def test_pg_verifybackup_agrees_with_the_stream_check(base):
    """Same verdict as PostgreSQL's own tool on an extracted copy (the old way), for the same backup."""
    repo, manifest, artifact = base
    scratch = tempfile.mkdtemp(prefix="pgbackup-extract-")
    try:
        base_backup.extract_backup(artifact, scratch)
        base_backup.verify_data_directory(scratch, os.path.join(artifact, "backup_manifest"), None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base_backup.verify_tar_backup(artifact)


# Damage, one kind at a time


def test_one_flipped_byte_fails_naming_the_file(base):
    repo, manifest, artifact = base
    damaged = {}

    def flip(members):
        damaged["name"] = name = relation_file(members)
        out = []
        for info, data in members:
            if info.name == name:
                data = data[:4000] + bytes([data[4000] ^ 0x01]) + data[4001:]
            out.append((info, data))
        return out

    rebuild(artifact, "base.tar.zst", flip)
    error = verify_fails(artifact, "checksum mismatch for '%s'" % damaged["name"])
    assert "base.tar.zst: checksum mismatch for '%s' (%s " % (damaged["name"], manifest["backup_manifest"]["checksum_algorithm"]) \
        in error.message
    assert "1 problem" in error.message and "Do not restore this backup" in error.hint


def test_missing_file_fails_naming_it(base):
    repo, manifest, artifact = base
    gone = {}

    def drop(members):
        gone["name"] = relation_file(members)
        return [(info, data) for info, data in members if info.name != gone["name"]]

    rebuild(artifact, "base.tar.zst", drop)
    verify_fails(artifact, "'%s' is listed in backup_manifest but is not in the backup" % gone["name"])


def test_unexpected_extra_file_fails_naming_it(base):
    repo, manifest, artifact = base

    def add(members):
        extra = tarfile.TarInfo("base/1/999999")
        extra.mode, extra.mtime = 0o600, int(time.time())
        return members + [(extra, b"\0" * 8192)]

    rebuild(artifact, "base.tar.zst", add)
    verify_fails(artifact, r"base.tar.zst: 'base/1/999999' is in the backup but not in backup_manifest")


def test_ignored_files_may_differ_or_be_added(base):
    """pg_verifybackup's ignore list: postgresql.auto.conf, recovery.signal, standby.signal, pg_wal/."""
    repo, manifest, artifact = base

    def change(members):
        out = []
        for info, data in members:
            if info.name == "postgresql.auto.conf":
                data = data + b"primary_conninfo = 'host=elsewhere'\n"
            out.append((info, data))
        for name in ("standby.signal", "recovery.signal", "pg_wal/somefile"):
            extra = tarfile.TarInfo(name)
            extra.mode = 0o600
            out.append((extra, b""))
        return out

    rebuild(artifact, "base.tar.zst", change)
    base_backup.verify_tar_backup(artifact)


def test_wrong_size_fails_naming_the_file(base):
    repo, manifest, artifact = base

    def grow(members):
        return [(info, data + b"x" if info.name == "PG_VERSION" else data) for info, data in members]

    rebuild(artifact, "base.tar.zst", grow)
    verify_fails(artifact, r"'PG_VERSION' has 4 bytes, backup_manifest says 3")


def test_missing_wal_fails_naming_the_segment(base):
    repo, manifest, artifact = base
    rebuild(artifact, "pg_wal.tar.zst", lambda members: [(i, d) for i, d in members if i.name.startswith("archive_status")])
    needed = "WAL segment %s, needed for timeline 1 from %s" % (manifest["wal_start_segment"], manifest["start_lsn"])
    error = verify_fails(artifact, needed)
    assert "is not in the backup" in error.message


def test_damaged_wal_fails_in_pg_waldump(base):
    repo, manifest, artifact = base
    start = wal_names.parse_lsn(manifest["start_lsn"]) % manifest["wal_segment_size"]

    def damage(members):
        # The first record of the range (and what follows it on its page): its CRC cannot match any more.
        return [(i, d[:start + 24] + bytes(b ^ 0xFF for b in d[start + 24:start + 200]) + d[start + 200:]
                 if i.name == manifest["wal_start_segment"] else d) for i, d in members]

    rebuild(artifact, "pg_wal.tar.zst", damage)
    verify_fails(artifact, r"the WAL the backup needs \(timeline 1 from %s to %s\) does not parse: pg_waldump"
                 % (manifest["start_lsn"], manifest["end_lsn"]))


def test_altered_backup_manifest_fails(base):
    repo, manifest, artifact = base
    path = os.path.join(artifact, "backup_manifest")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write(text.replace('"Path": "PG_VERSION", "Size": 3', '"Path": "PG_VERSION", "Size": 4', 1))
    verify_fails(artifact, "backup_manifest does not match its own checksum")


def test_truncated_archive_fails(base):
    repo, manifest, artifact = base
    path = os.path.join(artifact, "base.tar.zst")
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    verify_fails(artifact, r"base.tar.zst: cannot be decompressed: zstd")


def test_structure_level_names_the_damaged_file(base):
    """Through backup_verify's engine: the repository checksum is made to agree, so that only
    the check against backup_manifest can find the damage."""
    repo, manifest, artifact = base
    rebuild(artifact, "base.tar.zst", lambda members: [(i, d + b"!" if i.name == "PG_VERSION" else d) for i, d in members])
    manifest = dict(manifest, sha256=fsutil.sha256_tree(artifact), size=fsutil.artifact_size(artifact))
    fsutil.write_json_atomic(repo.manifest_path(manifest["id"]), manifest)
    with pytest.raises(PgBackupError, match="does not match its backup_manifest.*'PG_VERSION' has 4 bytes") as failure:
        verify.verify_backup(repo, manifest, "structure")
    assert failure.value.details["failed_level"] == "structure"
    assert verify.verification_state(repo, manifest["id"])["state"] == "failed"


# Disk use


def tree_bytes(path):
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class PeakWatch(threading.Thread):
    """Polls the size of directories (and remembers every file name seen) until stopped."""

    def __init__(self, *paths):
        super(PeakWatch, self).__init__(daemon=True)
        self.paths = paths
        self.peak = 0
        self.names = set()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.peak = max(self.peak, sum(tree_bytes(p) for p in self.paths))
            for path in self.paths:
                for root, dirs, files in os.walk(path):
                    self.names.update(files)
            time.sleep(0.005)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join()


def test_verification_writes_only_the_needed_wal(base):
    repo, manifest, artifact = base
    work = tempfile.mkdtemp(prefix="pgbackup-verify-work-")
    try:
        with PeakWatch(work) as watch:
            result = base_backup.verify_tar_backup(artifact, work_dir=work)
        assert os.listdir(work) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wal_tar = manifest["compression"]["wal_tar"]["bytes_before"]  # pg_wal.tar as streamed, before the engine compressed it
    assert watch.peak <= len(result["wal_segments"]) * manifest["wal_segment_size"] <= wal_tar
    assert watch.names <= set(result["wal_segments"]), "only WAL segments are written, nothing of the data directory"


def test_backup_never_holds_more_than_its_artifact_plus_wal(pg, tmp_repo):
    with PeakWatch(tmp_repo) as watch:
        repo, manifest = take(pg, tmp_repo)
    wal_tar = manifest["compression"]["wal_tar"]["bytes_before"]  # pg_wal.tar as streamed
    extra = watch.peak - manifest["size"]
    assert extra <= wal_tar + 1024 * 1024, "peak %d bytes for a %d byte artifact" % (watch.peak, manifest["size"])
    assert "PG_VERSION" not in watch.names and "pg_control" not in watch.names


# Fallbacks


def test_without_crc32c_auto_asks_for_sha256_and_crc32c_backups_are_extracted(pg, tmp_repo, monkeypatch):
    monkeypatch.setattr(backup_manifest, "_crc32c", None)
    assert base_backup_request.manifest_checksum_algorithm("auto") == "SHA256"
    repo, manifest = take(pg, tmp_repo, manifest_checksums="CRC32C")
    assert manifest["verified"]["method"] == "extract+pg_verifybackup"
    assert "python3-crc32c" in manifest["verified"]["note"]
    work = tempfile.mkdtemp(prefix="pgbackup-verify-work-")
    try:
        result = base_backup.verify_tar_backup(repo.artifact_path(manifest), work_dir=work)
        assert result["method"] == "extract+pg_verifybackup" and os.listdir(work) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)


REFUSING_PG_BASEBACKUP = """#!/bin/sh
# pg_basebackup whose server "cannot" compress with zstd workers, as with a libzstd without threads.
for arg in "$@"; do
  case "$arg" in
    --compress=*workers=*)
      echo "pg_basebackup: error: could not initiate base backup: ERROR:  could not set compression worker count to 2: Unsupported parameter" >&2
      exit 1;;
  esac
done
echo "$@" >> "$(dirname "$0")/calls"
exec %s/pg_basebackup "$@"
"""


@contextlib.contextmanager
def wrapped_pg_basebackup(script_template):
    """A pg_bin_dir whose pg_basebackup is a script around the real one (pg_verifybackup and
    pg_waldump are the real ones)."""
    path = tempfile.mkdtemp(prefix="pgbackup-fake-bin-")
    real = bindir_for(15)
    script = os.path.join(path, "pg_basebackup")
    with open(script, "w") as handle:
        handle.write(script_template % real)
    os.chmod(script, stat.S_IRWXU)
    for tool in ("pg_verifybackup", "pg_waldump"):
        os.symlink(os.path.join(real, tool), os.path.join(path, tool))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def refusing_bin_dir():
    with wrapped_pg_basebackup(REFUSING_PG_BASEBACKUP) as path:
        yield path


def test_refused_workers_fall_back_to_one_thread_when_auto(pg, tmp_repo, refusing_bin_dir):
    repo, manifest = take(pg, tmp_repo, pg_bin_dir=refusing_bin_dir)
    assert manifest["compression"]["workers"] == 0
    assert manifest["compression"]["workers_refused"] == os.cpu_count()
    assert manifest["verified"]["backup_manifest"] is True
    with open(os.path.join(refusing_bin_dir, "calls")) as handle:
        calls = handle.read()
    assert "--compress=server-zstd:1" in calls and "workers" not in calls
    assert [n for n in os.listdir(tmp_repo) if n.startswith(".tmp-")] == []


def test_refused_workers_asked_for_by_number_fail_clearly(pg, tmp_repo, refusing_bin_dir):
    with pytest.raises(PgBackupError, match="refused zstd compression with 2 workers") as failure:
        take(pg, tmp_repo, pg_bin_dir=refusing_bin_dir, compression="server-zstd:level=3,workers=2")
    assert "workers=0" in failure.value.hint
    assert LocalRepository(tmp_repo).list() == []


# Tablespaces


def test_tablespace_tar_is_checked_under_pg_tblspc(fresh_pg, tmp_repo):
    location = tempfile.mkdtemp(prefix="pgbackup-tblspc-")
    shutil.chown(location, "postgres", "postgres")
    try:
        fresh_pg.sql("CREATE TABLESPACE extra LOCATION '%s'" % location)
        fresh_pg.sql("CREATE TABLE on_extra (id int) TABLESPACE extra")
        fresh_pg.sql("INSERT INTO on_extra SELECT generate_series(1, 10000)")
        oid = fresh_pg.scalar("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'")
        repo, manifest = take(fresh_pg, tmp_repo)
        artifact = repo.artifact_path(manifest)
        assert "%s.tar.zst" % oid in os.listdir(artifact)
        assert manifest["verified"]["tars"] == ["base.tar.zst", "%s.tar.zst" % oid, "pg_wal.tar.zst"]

        name = {}

        def flip(members):
            name["file"] = next(i.name for i, d in members if d and len(d) >= 8192)
            return [(i, d[:100] + bytes([d[100] ^ 1]) + d[101:] if i.name == name["file"] else d) for i, d in members]

        rebuild(artifact, "%s.tar.zst" % oid, flip)
        verify_fails(artifact, r"%s.tar.zst: checksum mismatch for 'pg_tblspc/%s/%s'" % (oid, oid, name["file"]))
    finally:
        fresh_pg.sql("DROP TABLE IF EXISTS on_extra")
        fresh_pg.sql("DROP TABLESPACE IF EXISTS extra")
        shutil.rmtree(location, ignore_errors=True)


AFTER_PG_BASEBACKUP = """#!/bin/sh
# The real pg_basebackup, then %(what)s
dir=""; previous=""
for arg in "$@"; do
  [ "$previous" = "-D" ] && dir="$arg"
  previous="$arg"
done
%%s/pg_basebackup "$@" || exit $?
%(then)s
exit 0
"""
DAMAGING_PG_BASEBACKUP = AFTER_PG_BASEBACKUP % {
    "what": "pg_wal.tar cut short: as if the disk had lost its end.",
    "then": '[ -n "$dir" ] && [ -f "$dir/pg_wal.tar" ] && truncate -s 4096 "$dir/pg_wal.tar"'}


def test_a_backup_that_does_not_verify_is_not_published(pg, tmp_repo):
    with wrapped_pg_basebackup(DAMAGING_PG_BASEBACKUP) as bin_dir:
        with pytest.raises(PgBackupError, match="does not verify, so it was not published: .*pg_wal.tar.zst ends in the "
                                                "middle of '0000000") as failure:
            take(pg, tmp_repo, pg_bin_dir=bin_dir)
        assert "WAL segment" in failure.value.message and failure.value.details["problems"]
    assert LocalRepository(tmp_repo).list() == [] and os.listdir(tmp_repo) == []


# base.tar was read as it was written (base_backup_early): the check must see that the file is no longer what it
# read, and read it again.
CUTTING_PG_BASEBACKUP = AFTER_PG_BASEBACKUP % {
    "what": "base.tar.zst cut short while this writer still runs.",
    "then": 'sleep 0.3; [ -n "$dir" ] && [ -f "$dir/base.tar.zst" ] && truncate -s 65536 "$dir/base.tar.zst"'}


def test_base_tar_changed_after_it_was_read_while_written_is_checked_again(pg, tmp_repo):
    with wrapped_pg_basebackup(CUTTING_PG_BASEBACKUP) as bin_dir:
        with pytest.raises(PgBackupError, match="does not verify, so it was not published: .*base.tar.zst") as failure:
            take(pg, tmp_repo, pg_bin_dir=bin_dir)
        assert failure.value.details["problems"]
    assert LocalRepository(tmp_repo).list() == [] and os.listdir(tmp_repo) == []
