# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import os
import subprocess
import tarfile

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_tar

LABEL = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: nightly\n"


def write_tar(path, members):
    """A tar as pg_basebackup writes one: ustar members in the given order."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name, prefix", [
    ("base.tar", ""), ("base.tar.zst", ""), ("pg_wal.tar.gz", "pg_wal"), ("16385.tar.lz4", "pg_tblspc/16385"),
    ("extra.tar", None), ("16385.tar.bz2", None),
])
def test_member_prefix_places_each_tar_in_the_data_directory(name, prefix):
    assert base_backup_tar.member_prefix(name) == prefix


def test_tar_members_lists_only_tars(tmp_path):
    for name in ("base.tar.zst", "pg_wal.tar.zst", "backup_manifest", ".base.tar.swp"):
        (tmp_path / name).write_bytes(b"")
    assert base_backup_tar.tar_members(str(tmp_path)) == ["base.tar.zst", "pg_wal.tar.zst"]


def test_backup_label_is_read_from_base_tar_and_the_extraction_matches(tmp_path):
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    write_tar(str(artifact / "base.tar"), [("backup_label", LABEL.encode()), ("PG_VERSION", b"15\n")])
    write_tar(str(artifact / "pg_wal.tar"), [("000000010000000000000002", b"\0" * 512)])
    subprocess.run(["gzip", str(artifact / "pg_wal.tar")], check=True)
    assert base_backup_tar.read_backup_label(str(artifact)) == LABEL

    data_dir = tmp_path / "data"
    base_backup_tar.extract_backup(str(artifact), str(data_dir))
    assert base_backup_tar.read_directory_backup_label(str(data_dir)) == LABEL
    assert (data_dir / "PG_VERSION").read_bytes() == b"15\n"
    assert (data_dir / "pg_wal" / "000000010000000000000002").stat().st_size == 512
    assert base_backup_tar.read_directory_backup_label(str(tmp_path)) is None


def test_extraction_refuses_what_it_cannot_restore(tmp_path):
    (tmp_path / "pg_wal.tar").write_bytes(b"")
    with pytest.raises(PgBackupError, match="has no base.tar"):
        base_backup_tar.extract_backup(str(tmp_path), str(tmp_path / "data"))
    write_tar(str(tmp_path / "base.tar"), [("PG_VERSION", b"15\n")])
    write_tar(str(tmp_path / "16385.tar"), [("PG_15_202209061", b"")])
    with pytest.raises(PgBackupError, match=r"tablespace archives \(16385.tar\)"):
        base_backup_tar.extract_backup(str(tmp_path), str(tmp_path / "data"))
    assert not os.path.exists(str(tmp_path / "data"))
