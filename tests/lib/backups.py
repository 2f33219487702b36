# -*- coding: utf-8 -*-
"""Backups made without a database, for transfer and storage tests."""

from __future__ import absolute_import, division, print_function

import hashlib
import json
import os


def synthetic_backup(repo_path, size, backup_id="20240106T020000Z_logical_Big"):
    """A manifest + random (incompressible) artifact: big enough for multipart uploads without a big database."""
    data = os.urandom(size)
    artifact = backup_id + ".dump.zst"
    with open(os.path.join(repo_path, artifact), "wb") as handle:
        handle.write(data)
    manifest = {"id": backup_id, "kind": "logical", "database": "Big", "artifact": artifact, "size": size,
                "sha256": hashlib.sha256(data).hexdigest(), "started_at": "2024-01-06T02:00:00.000000Z",
                "finished_at": "2024-01-06T02:00:09.000000Z", "extra_files": {}}
    with open(os.path.join(repo_path, backup_id + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return manifest


def tree_state(path):
    """Every file below ``path`` with size, mtime and sha256: proves the local copy was not touched."""
    state = {}
    for root, dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            info = os.stat(full)
            state[os.path.relpath(full, path)] = (info.st_size, info.st_mtime_ns, digest)
    return state
