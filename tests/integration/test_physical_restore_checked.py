# -*- coding: utf-8 -*-
"""A full tar-format base backup restored in one pass: extracted and checked against backup_manifest while
it is written (base_backup_extract), then pg_verifybackup --skip-checksums; real pg_basebackup output.

The restored directory must be the same, byte for byte and mode for mode, as what ``tar -x`` makes of the
same archives; damage must stop the restore naming the file.
"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import stat
import tarfile
import tempfile

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from tests.integration.test_physical_verify import rebuild, relation_file, take


@pytest.fixture(scope="module")
def backup(pg):
    """One default tar backup (zstd, CRC32C or SHA256) for the module's tests, which damage copies of it."""
    repo_dir = tempfile.mkdtemp(prefix="pgbackup-restore-checked-")
    os.chmod(repo_dir, 0o755)
    pg.sql("SELECT pg_switch_wal()")
    repo, manifest = take(pg, repo_dir)
    yield repo, manifest
    shutil.rmtree(repo_dir, ignore_errors=True)


@pytest.fixture
def scratch():
    path = tempfile.mkdtemp(prefix="pgbackup-restore-into-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def new_dir(parent, name):
    path = os.path.join(parent, name)
    os.mkdir(path, 0o700)
    return path


def tree(root):
    """{relative path: (kind, mode, size, sha256 or link target)} of everything below root."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", None, None, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode), None, None)
            else:
                found[rel] = ("file", stat.S_IMODE(info.st_mode), info.st_size, fsutil.sha256_file(path))
    return found


def damaged_copy(repo, manifest, parent):
    """A copy of the backup's artifact to damage, as a repository of its own."""
    copy = os.path.join(parent, "repo")
    shutil.copytree(repo.path, copy)
    return type(repo)(copy, owner="postgres")


def test_restore_checks_while_extracting_and_is_bit_exact(backup, scratch):
    repo, manifest = backup
    artifact = repo.artifact_path(manifest)
    restored = new_dir(scratch, "restored")
    result = base_backup.restore_into(repo, [manifest], restored)
    assert result["method"] == "extract"
    assert result["checked_while_extracting"] is (backup_manifest.crc32c_available()
                                                  or manifest["backup_manifest"]["checksum_algorithm"] != "CRC32C")
    by_tar = new_dir(scratch, "by_tar")
    base_backup.extract_backup(artifact, by_tar)
    assert tree(restored) == tree(by_tar)
    assert os.path.isfile(os.path.join(restored, "pg_wal", manifest["wal_start_segment"]))


def test_flipped_byte_stops_the_restore_naming_the_file(backup, scratch):
    repo = damaged_copy(*backup, parent=scratch)
    manifest = repo.load(backup[1]["id"])
    damaged = {}

    def flip(members):
        damaged["name"] = name = relation_file(members)
        return [(info, data[:100] + bytes([data[100] ^ 0x01]) + data[101:] if info.name == name else data)
                for info, data in members]

    rebuild(repo.artifact_path(manifest), "base.tar.zst", flip)
    with pytest.raises(PgBackupError, match="checksum mismatch for '%s'" % damaged["name"]) as failure:
        base_backup.restore_into(repo, [manifest], new_dir(scratch, "restored"))
    assert "Do not restore this backup" in failure.value.hint


def test_damaged_compressed_part_is_caught(backup, scratch):
    repo = damaged_copy(*backup, parent=scratch)
    manifest = repo.load(backup[1]["id"])
    path = os.path.join(repo.artifact_path(manifest), "base.tar.zst")
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        handle.write(b"\xff" * 64)
    with pytest.raises(PgBackupError, match=r"base.tar.zst") as failure:
        base_backup.restore_into(repo, [manifest], new_dir(scratch, "restored"))
    assert "does not match its backup_manifest" in failure.value.message


def test_member_written_through_a_link_of_the_archive_is_refused(backup, scratch):
    repo = damaged_copy(*backup, parent=scratch)
    manifest = repo.load(backup[1]["id"])
    outside = new_dir(scratch, "outside")

    def add(members):
        link = tarfile.TarInfo("escape")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, outside, 0o777
        payload = tarfile.TarInfo("escape/planted")
        payload.mode = 0o600
        return members[:1] + [(link, None), (payload, b"x")] + members[1:]

    rebuild(repo.artifact_path(manifest), "base.tar.zst", add)
    with pytest.raises(PgBackupError, match="through the symbolic link 'escape'"):
        base_backup.restore_into(repo, [manifest], new_dir(scratch, "restored"))
    assert os.listdir(outside) == []


def test_without_crc32c_a_crc32c_backup_is_checked_by_pg_verifybackup(backup, scratch, monkeypatch):
    repo, manifest = backup
    if manifest["backup_manifest"]["checksum_algorithm"] != "CRC32C":
        pytest.skip("the backup has SHA256 checksums (no crc32c module here)")
    monkeypatch.setattr(backup_manifest, "crc32c_available", lambda: False)
    result = base_backup.restore_into(repo, [manifest], new_dir(scratch, "restored"))
    assert result["checked_while_extracting"] is False


def test_sync_filesystem_uses_syncfs_and_falls_back_to_fsync(scratch, monkeypatch):
    with open(os.path.join(scratch, "f"), "w") as handle:
        handle.write("x")
    assert fsutil.sync_filesystem(scratch) == "syncfs"
    with pytest.raises(OSError):
        fsutil.sync_filesystem(os.path.join(scratch, "missing"))
    monkeypatch.setattr(fsutil, "_libc_syncfs", lambda: None)
    assert fsutil.sync_filesystem(scratch) == "fsync"


def test_backup_checksum_computed_while_verifying_equals_a_fresh_read(backup):
    """The repository manifest's sha256 of a new backup comes from the bytes the check read (no second read)."""
    repo, manifest = backup
    artifact = repo.artifact_path(manifest)
    assert manifest["sha256"] == fsutil.sha256_tree(artifact)
    digests = {}
    base_backup.verify_tar_backup(artifact, digests=digests)
    tars = sorted(name for name in os.listdir(artifact) if ".tar" in name)
    assert sorted(digests) == tars
    assert all(digests[name] == fsutil.sha256_file(os.path.join(artifact, name)) for name in tars)


def test_member_replacing_a_link_of_the_archive_is_refused(backup, scratch):
    """A directory entry with the name of a link the archive made must not chmod (or fill) the link's target."""
    repo = damaged_copy(*backup, parent=scratch)
    manifest = repo.load(backup[1]["id"])
    outside = new_dir(scratch, "outside")
    os.chmod(outside, 0o700)

    def add(members):
        link = tarfile.TarInfo("escape")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, outside, 0o777
        again = tarfile.TarInfo("escape")
        again.type, again.mode = tarfile.DIRTYPE, 0o777
        return members[:1] + [(link, None), (again, None)] + members[1:]

    rebuild(repo.artifact_path(manifest), "base.tar.zst", add)
    with pytest.raises(PgBackupError, match="through the symbolic link 'escape'"):
        base_backup.restore_into(repo, [manifest], new_dir(scratch, "restored"))
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o700
