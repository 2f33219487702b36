# -*- coding: utf-8 -*-
"""WAL archive engine: durable, idempotent, never-overwriting archive_command; restore_command exit codes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_archive
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import wal as wal_cli

SEG = "000000010000000000000002"
MB = 1024 * 1024


def make_wal(directory, name=SEG, size=MB, seed=1):
    path = os.path.join(str(directory), name)
    block = (bytes([seed % 256]) * 4096) + os.urandom(4096)
    with open(path, "wb") as handle:
        handle.write((block * (size // len(block) + 1))[:size])
    return path


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture
def dirs(tmp_path):
    pg_wal = tmp_path / "pg_wal"
    archive = tmp_path / "archive"
    pg_wal.mkdir()
    archive.mkdir(mode=0o700)
    return str(pg_wal), str(archive)


def test_archive_copies_durably_and_privately(dirs, monkeypatch):
    pg_wal, archive = dirs
    source = make_wal(pg_wal)
    synced = []
    real_fsync = fsutil.fsync_path
    monkeypatch.setattr(fsutil, "fsync_path", lambda path: (synced.append(path), real_fsync(path)))
    result = wal_archive.archive_segment(source, SEG, archive)
    stored = os.path.join(archive, SEG)
    assert result["status"] == "archived" and result["path"] == stored
    assert read(stored) == read(source)
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert os.listdir(archive) == [SEG]  # no temp file left behind
    assert synced[-1] == archive  # the directory entry is made durable last
    assert any(os.path.basename(p).startswith(".tmp-" + SEG) for p in synced)  # the data before the rename


def test_rearchive_same_content_succeeds_different_content_fails_and_keeps_original(dirs):
    pg_wal, archive = dirs
    source = make_wal(pg_wal, seed=1)
    wal_archive.archive_segment(source, SEG, archive)
    original = read(os.path.join(archive, SEG))
    assert wal_archive.archive_segment(source, SEG, archive)["status"] == "already_archived"

    other = make_wal(os.path.join(pg_wal, ".."), name=SEG, seed=2)
    with pytest.raises(wal_archive.WalArchiveError, match="different content; refusing to overwrite"):
        wal_archive.archive_segment(other, SEG, archive)
    assert read(os.path.join(archive, SEG)) == original
    # also when the configured encoding changed since (plain stored, zstd requested now)
    with pytest.raises(wal_archive.WalArchiveError, match="different content"):
        wal_archive.archive_segment(other, SEG, archive, compress="zstd")
    assert wal_archive.archive_segment(source, SEG, archive, compress="zstd")["status"] == "already_archived"
    assert sorted(os.listdir(archive)) == [SEG]


def test_crash_leftovers_do_not_block_and_truncated_segments_are_refused(dirs):
    pg_wal, archive = dirs
    source = make_wal(pg_wal)
    with open(os.path.join(archive, ".tmp-%s.999" % SEG), "wb") as handle:
        handle.write(b"half written by a crashed attempt")
    assert wal_archive.archive_segment(source, SEG, archive)["status"] == "archived"
    with open(source, "r+b") as handle:
        handle.truncate(MB - 10)
    name = "000000010000000000000003"
    os.rename(source, os.path.join(pg_wal, name))
    with pytest.raises(wal_archive.WalArchiveError, match="impossible size"):
        wal_archive.archive_segment(os.path.join(pg_wal, name), name, archive)
    assert not os.path.exists(os.path.join(archive, name))


def test_race_with_another_archiver_is_detected_not_overwritten(dirs, monkeypatch):
    pg_wal, archive = dirs
    source = make_wal(pg_wal, seed=3)
    intruder = make_wal(os.path.join(pg_wal, ".."), name="intruder", seed=4)
    real_publish = wal_archive._publish

    def publish_after_someone_else(temp, final, replace):
        if not replace and not os.path.exists(final):
            shutil.copyfile(intruder, final)
        return real_publish(temp, final, replace)

    monkeypatch.setattr(wal_archive, "_publish", publish_after_someone_else)
    with pytest.raises(wal_archive.WalArchiveError, match="different content"):
        wal_archive.archive_segment(source, SEG, archive)
    assert read(os.path.join(archive, SEG)) == read(intruder)
    assert os.listdir(archive) == [SEG]


def test_missing_archive_dir_and_bad_names_fail(dirs):
    pg_wal, archive = dirs
    source = make_wal(pg_wal)
    with pytest.raises(wal_archive.WalArchiveError, match="does not exist"):
        wal_archive.archive_segment(source, SEG, archive + "-gone")
    with pytest.raises(wal_archive.WalArchiveError, match="not a WAL file name"):
        wal_archive.archive_segment(source, "../../etc/passwd", archive)


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd not installed")
def test_zstd_roundtrip_and_damage_aborts_recovery(dirs, capsys):
    pg_wal, archive = dirs
    source = make_wal(pg_wal)
    wal_archive.archive_segment(source, SEG, archive, compress="zstd")
    stored = os.path.join(archive, SEG + ".zst")
    assert os.listdir(archive) == [SEG + ".zst"] and os.path.getsize(stored) < MB
    target = os.path.join(pg_wal, "RECOVERYXLOG")
    assert wal_cli.main(["restore-wal", SEG, target, "--archive-dir", archive]) == 0
    assert read(target) == read(source)

    data = bytearray(read(stored))
    data[len(data) // 2] ^= 0xFF
    with open(stored, "wb") as handle:
        handle.write(bytes(data))
    os.unlink(target)
    capsys.readouterr()
    assert wal_cli.main(["restore-wal", SEG, target, "--archive-dir", archive]) == wal_cli.EXIT_ABORT_RECOVERY
    assert "damaged" in capsys.readouterr().err
    assert not os.path.exists(target) and [n for n in os.listdir(pg_wal) if "restore" in n] == []


def test_restore_absent_is_quiet_exit_1_but_missing_archive_is_loud(dirs, capsys):
    pg_wal, archive = dirs
    target = os.path.join(pg_wal, "RECOVERYHISTORY")
    assert wal_cli.main(["restore-wal", "00000002.history", target, "--archive-dir", archive]) == 1
    assert capsys.readouterr().err == ""
    assert not os.path.exists(target)
    assert wal_cli.main(["restore-wal", SEG, target, "--archive-dir", archive + "-unmounted"]) == 255
    assert "does not exist" in capsys.readouterr().err


def test_truncated_plain_segment_in_archive_aborts_recovery(dirs):
    pg_wal, archive = dirs
    wal_archive.archive_segment(make_wal(pg_wal), SEG, archive)
    with open(os.path.join(archive, SEG), "r+b") as handle:
        handle.truncate(MB // 2)
    with pytest.raises(wal_archive.WalArchiveError, match="truncated"):
        wal_archive.restore_segment(SEG, os.path.join(pg_wal, "RECOVERYXLOG"), archive)


@pytest.mark.skipif(not shutil.which("age") or not shutil.which("age-keygen"), reason="age not installed")
def test_age_encryption_roundtrip_idempotence_and_wrong_key(dirs, tmp_path):
    pg_wal, archive = dirs
    key = str(tmp_path / "key.txt")
    other_key = str(tmp_path / "other.txt")
    subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
    subprocess.run(["age-keygen", "-o", other_key], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True, text=True).stdout.strip()
    source = make_wal(pg_wal)
    wal_archive.archive_segment(source, SEG, archive, compress="zstd", recipients=[recipient])
    assert sorted(os.listdir(archive)) == [SEG + ".zst.age", SEG + ".zst.age.sha256"]
    # age output differs on every run, so idempotence relies on the plaintext checksum file
    assert wal_archive.archive_segment(source, SEG, archive, compress="zstd",
                                       recipients=[recipient])["status"] == "already_archived"
    target = os.path.join(pg_wal, "RECOVERYXLOG")
    wal_archive.restore_segment(SEG, target, archive, identity_file=key)
    assert read(target) == read(source)
    with pytest.raises(wal_archive.WalArchiveError, match="wrong key"):
        wal_archive.restore_segment(SEG, target, archive, identity_file=other_key)
    with pytest.raises(wal_archive.WalArchiveError, match="is encrypted with age and no identity"):
        wal_archive.restore_segment(SEG, target, archive)
    with pytest.raises(wal_archive.WalArchiveError, match="Identity file '.*missing.txt' does not exist"):
        wal_archive.restore_segment(SEG, target, archive, identity_file=str(tmp_path / "missing.txt"))


def test_cli_config_file_and_installed_wrapper(dirs, tmp_path):
    pg_wal, archive = dirs
    config = tmp_path / "wal.json"
    config.write_text('{"archive_dir": "%s", "compress": "zstd"}' % archive)
    source = make_wal(pg_wal)
    assert wal_cli.main(["archive-wal", source, SEG, "--config", str(config)]) == 0
    assert os.listdir(archive) == [SEG + ".zst"]
    assert wal_cli.main(["archive-wal", source, SEG, "--config", str(tmp_path / "absent.json")]) == 1

    # the layout the wal_archiving role installs: engine package + wrapper on the system python
    lib = tmp_path / "lib"
    utils = os.path.dirname(os.path.dirname(wal_archive.__file__))
    shutil.copytree(utils, str(lib / "todoapi_pgbackup_engine"), ignore=shutil.ignore_patterns("__pycache__", "ansible_module"))
    wrapper = tmp_path / "todoapi-pgbackup-wal"
    wrapper.write_text(wal_cli.wrapper_script(str(lib), python=sys.executable))
    wrapper.chmod(0o755)
    target = os.path.join(pg_wal, "RECOVERYXLOG")
    done = subprocess.run([str(wrapper), "restore-wal", SEG, target, "--archive-dir", archive], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert read(target) == read(source)
    absent = subprocess.run([str(wrapper), "restore-wal", "00000005.history", target, "--archive-dir", archive],
                            capture_output=True, check=False)
    assert (absent.returncode, absent.stderr) == (1, b"")


def test_cli_check_range_and_prune_report_json(dirs, capsys):
    pg_wal, archive = dirs
    third = "000000010000000000000003"
    for name in (SEG, "000000010000000000000004"):
        wal_archive.archive_segment(make_wal(pg_wal, name), name, archive)
    assert wal_cli.main(["check-range", "--archive-dir", archive, "--timeline", "1", "--start", SEG]) == wal_cli.EXIT_FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == [third] and report["last_contiguous"] == SEG
    assert wal_cli.main(["prune", "--archive-dir", archive, "--oldest-needed", third, "--dry-run"]) == wal_cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"removed": [SEG], "kept": 1, "dry_run": True}
    assert sorted(os.listdir(archive)) == [SEG, "000000010000000000000004"]
