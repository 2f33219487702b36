# -*- coding: utf-8 -*-
"""This collection's engine, run in a child process exactly as its modules run it (see engine_child.py)."""

from __future__ import absolute_import, division, print_function

import json
import os
import sys

from harness.common import rmtree
from harness.paths import ENTRY_POINT
from harness.processes import run_process_rss
from harness.timing import Timed


class CollectionMethods(object):
    """Logical dump/restore and physical base backup/extract through the engine, with the modules' defaults."""

    def __init__(self, workspace):
        self.ws = workspace

    def engine(self, action, tmp_name, **spec):
        """Run one engine call in a child process (inside a Timed block); returns (child output, tree RSS kB)."""
        ws = self.ws
        spec.update(action=action, host=ws.cluster.host, port=ws.cluster.port, user=ws.cluster.user)
        tmp_dir = ws.tmp_dir(tmp_name)
        spec_file = ws.path("tmp", tmp_name + ".spec.json")
        spec["result_file"] = ws.path("tmp", tmp_name + ".result.json")
        env = dict(ws.engine_env, TMPDIR=tmp_dir)
        env.update(spec.pop("extra_env", None) or {})
        with open(spec_file, "w") as handle:
            json.dump(spec, handle)
        argv = [sys.executable, ENTRY_POINT, "--engine-child", spec_file]
        tree_rss = run_process_rss(argv, env=env, log_path=ws.path("logs", tmp_name + ".log"))
        with open(spec["result_file"]) as handle:
            output = json.load(handle)
        return output, tree_rss

    def _backup(self, action, repo_kind, key, tag, **spec):
        """One engine backup into a new repository under repo_kind/; returns (repository, Timed, output, tree RSS)."""
        ws = self.ws
        name = "%s-%s" % (key, tag)
        repo = ws.path(repo_kind, name)
        rmtree(repo)
        with Timed(ws, [repo, ws.tmp_dir(name)]) as timed:
            output, tree_rss = self.engine(action, name, repository=repo, **spec)
        return repo, timed, output, tree_rss

    def dump(self, db, tag, overrides=None, key="coll_dump"):
        repo, timed, output, tree_rss = self._backup("logical_backup", "repo-logical", key, tag, database=db["name"],
                                                     overrides=overrides or {})
        self.ws.replace_latest((key, db["name"]), {"dir": repo, "id": output["id"], "format": output["format"]})
        return dict(timed.fields(), size_bytes=output["size"], engine_seconds=output.get("engine_seconds"),
                    rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"],
                    compression=output["compression"])

    def restore(self, db, tag, overrides=None, source_key="coll_dump", key="coll_restore", extra_env=None):
        """Restores into a new database name: the module's normal path (staging database, row checks, rename)."""
        ws = self.ws
        source = ws.latest_artifact((source_key, db["name"]), "%s backup to restore" % source_key)
        target = "%s_collrestore" % db["name"]
        ws.drop_db(target)
        name = "%s-%s" % (key, tag)
        with Timed(ws, [source["dir"], ws.tmp_dir(name)]) as timed:
            output, tree_rss = self.engine("logical_restore", name, repository=source["dir"], database=db["name"],
                                           target=target, backup="latest", overrides=overrides or {},
                                           extra_env=extra_env)
        ws.check_rows(target, db["rows"])
        ws.drop_db(target)
        return dict(timed.fields(), engine_seconds=output.get("engine_seconds"), rss_kb=output["maxrss_self_kb"],
                    tree_rss_kb=tree_rss, settings=output["settings"], extra_env=extra_env,
                    validated_foreign_keys=output.get("validated_foreign_keys"), built_indexes=output.get("built_indexes"),
                    **time_to_usable(timed.seconds, output))

    def basebackup(self, db, tag, overrides=None, key="coll_base"):
        repo, timed, output, tree_rss = self._backup("physical_backup", "repo-physical", key, tag,
                                                     overrides=overrides or {})
        self.ws.replace_latest((key, None), {"dir": repo, "artifact_dir": os.path.join(repo, output["artifact"]),
                                             "id": output["id"]})
        return dict(timed.fields(), size_bytes=output["size"], engine_seconds=output.get("engine_seconds"),
                    rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"],
                    verified=output.get("verified"))

    def extract(self, db, tag):
        """What pitr_recovery does with the backup before it starts the server (restore_into: extracted and
        checked against backup_manifest, pg_verifybackup; then one syncfs), as pgBackRest's restore checks and
        syncs what it writes."""
        ws = self.ws
        source = ws.latest_artifact(("coll_base", None), "collection base backup to restore")
        dest = ws.restore_dir("coll-%s" % tag)
        name = "coll-extract-%s" % tag
        with Timed(ws, [dest, ws.tmp_dir(name)]) as timed:
            output, tree_rss = self.engine("physical_restore", name, repository=source["dir"], backup=source["id"],
                                           destination=dest)
        rmtree(dest)
        return dict(timed.fields(), rss_kb=output["maxrss_self_kb"], tree_rss_kb=tree_rss, settings=output["settings"],
                    checked_while_extracting=output.get("checked_while_extracting"), synced_by=output.get("synced_by"))


def time_to_usable(wall_seconds, output):
    """{usable_seconds, checks_finished_seconds}: the run's wall time up to the moment the restored database was
    in place, and up to the end of its last check. The restore reports both from its own start; what the process
    did outside the restore (starting Python, imports: before it, almost all of it) counts, as for the module."""
    engine = output.get("engine_seconds")
    if engine is None or output.get("usable_after_seconds") is None:
        return {}
    return {"usable_seconds": round(wall_seconds - (engine - output["usable_after_seconds"]), 3),
            "checks_finished_seconds": round(wall_seconds - (engine - output["checks_finished_after_seconds"]), 3)}
