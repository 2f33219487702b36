# -*- coding: utf-8 -*-
"""The engine child process: one engine call the way a module makes it, reporting its resources.

Started as ``bench.py --engine-child SPEC_JSON`` by methods/collection.py. It also imports
ansible.module_utils.basic, as an AnsiballZ module process does, so its peak RSS is the module's.
"""

from __future__ import absolute_import, division, print_function

import importlib
import json
import os
import resource
import time

from harness.paths import import_collection
from methods.engine_request import request_kwargs


def _load_engine():
    import_collection()
    importlib.import_module("ansible.module_utils.basic")  # an AnsiballZ module process imports it too
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil, pgconn
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import local as repository
    return {"pgconn": pgconn, "logical_backup": logical_backup, "logical_restore": logical_restore,
            "base_backup": base_backup, "repository": repository, "fsutil": fsutil}


def _logical_backup(engine, spec, repo, connection):
    module = engine["logical_backup"]
    kwargs = request_kwargs("pg_dump", module.LogicalBackupRequest, spec.get("overrides"))
    manifest = module.backup(module.LogicalBackupRequest(spec["database"], repo, connection, **kwargs))
    extra = sum(entry.get("size", 0) for entry in (manifest.get("extra_files") or {}).values())
    return dict(settings=kwargs, id=manifest["id"], artifact=manifest["artifact"], size=manifest["size"] + extra,
                artifact_size=manifest["size"], compression=manifest["compression"], format=manifest["format"],
                engine_seconds=manifest.get("duration_seconds"))


def _logical_restore(engine, spec, repo, connection):
    module = engine["logical_restore"]
    kwargs = request_kwargs("pg_restore", module.LogicalRestoreRequest, spec.get("overrides"))
    result = module.restore(module.LogicalRestoreRequest(
        repo, connection, database=spec["target"], backup=spec.get("backup", "latest"),
        source_database=spec["database"], **kwargs))
    return dict(settings=kwargs, mode=result.get("mode"), engine_seconds=result.get("duration_seconds"),
                tables=result.get("tables"), usable_after_seconds=result.get("usable_after_seconds"),
                checks_finished_after_seconds=result.get("checks_finished_after_seconds"),
                validated_foreign_keys=result.get("validated_foreign_keys"), built_indexes=result.get("built_indexes"))


def _physical_backup(engine, spec, repo, connection):
    module = engine["base_backup"]
    kwargs = request_kwargs("pg_basebackup", module.PhysicalBackupRequest, spec.get("overrides"))
    manifest = module.backup(module.PhysicalBackupRequest(repo, connection, **kwargs))
    return dict(settings=kwargs, id=manifest["id"], artifact=manifest["artifact"], size=manifest["size"],
                compression=manifest["compression"], engine_seconds=manifest.get("duration_seconds"),
                verified=manifest.get("verified"), backup_type=manifest.get("backup_type"), chain=manifest.get("chain"))


def _physical_restore(engine, spec, repo, connection):
    """What pitr_recovery does before it starts the server: the backup's chain into a data directory, verified,
    made durable (one syncfs of its file system, fsutil.sync_filesystem)."""
    chain = engine["base_backup"].chain_of(repo, repo.load(spec["backup"]))
    result = engine["base_backup"].restore_into(repo, chain, spec["destination"], spec.get("pg_bin_dir"))
    clock = time.monotonic()
    result["synced_by"] = engine["fsutil"].sync_filesystem(spec["destination"])
    result.setdefault("seconds", {})["sync"] = round(time.monotonic() - clock, 3)
    return dict(result, settings={"function": "base_backup_restore.restore_into + fsutil.sync_filesystem",
                                  "chain": len(chain)})


ACTIONS = {"logical_backup": _logical_backup, "logical_restore": _logical_restore,
           "physical_backup": _physical_backup,
           "physical_restore": _physical_restore}


def engine_child(spec_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    engine = _load_engine()
    connection = engine["pgconn"].ConnectionSpec(host=spec["host"], port=spec["port"], user=spec["user"],
                                                 password=os.environ.get("BENCH_PGPASSWORD"))
    repo = engine["repository"].LocalRepository(spec["repository"], owner="postgres") if spec.get("repository") else None
    action = spec["action"]
    if action not in ACTIONS:
        raise SystemExit("unknown action %r" % action)
    output = {"action": action}
    clock = time.monotonic()
    output.update(ACTIONS[action](engine, spec, repo, connection))
    output["wall_in_process"] = round(time.monotonic() - clock, 3)
    output["maxrss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    output["maxrss_children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(spec["result_file"], "w") as handle:
        json.dump(output, handle, default=str)
