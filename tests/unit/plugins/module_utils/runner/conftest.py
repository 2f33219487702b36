# -*- coding: utf-8 -*-
"""What the runner's unit tests share: a config file, the JSON event log and backups as the engine writes them."""

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil


@pytest.fixture
def write_config(tmp_path):
    """write_config(**overrides) -> path of a runner config below tmp_path (None drops a key)."""
    def write(**overrides):
        config = {"repository": str(tmp_path / "repo"), "databases": ["TodoDb"], "log_file": str(tmp_path / "backup.log"),
                  "lock_file": str(tmp_path / "run.lock"), "lock_wait_seconds": 5, "state_dir": str(tmp_path / "state")}
        config.update(overrides)
        config = dict((key, value) for key, value in config.items() if value is not None)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return str(path)
    return write


@pytest.fixture
def log_lines(tmp_path):
    """log_lines() -> the events in tmp_path/backup.log, oldest first."""
    def read():
        path = tmp_path / "backup.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return read


@pytest.fixture
def fake_backup():
    """fake_backup(repo_dir, ...) -> manifest of a complete backup (artifact + manifest) as the engine writes it."""
    def write(repo_dir, backup_id="20240106T020000Z_logical_TodoDb", database="TodoDb", payload=b"dump bytes",
              finished_at="2024-01-06T02:00:05.000000Z"):
        os.makedirs(repo_dir, exist_ok=True)
        artifact = backup_id + ".dump.zst"
        with open(os.path.join(repo_dir, artifact), "wb") as handle:
            handle.write(payload)
        manifest = {"id": backup_id, "kind": "logical", "database": database, "artifact": artifact,
                    "size": len(payload), "sha256": fsutil.sha256_file(os.path.join(repo_dir, artifact)),
                    "started_at": "2024-01-06T02:00:00.000000Z", "finished_at": finished_at, "format": "custom",
                    "compression": {"method": "zstd", "level": 3, "applied": "external"}, "encryption": None,
                    "tables": {"public.Todos": 3}}
        with open(os.path.join(repo_dir, backup_id + ".manifest.json"), "w") as handle:
            json.dump(manifest, handle)
        return manifest
    return write
