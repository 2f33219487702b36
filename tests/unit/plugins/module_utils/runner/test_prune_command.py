# -*- coding: utf-8 -*-
"""``todoapi-pgbackup prune`` (plugins/module_utils/runner/commands/prune.py) with the retention engine."""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli


def test_prune_without_policy(write_config, log_lines):
    assert cli.main(["--config", write_config(), "prune"]) == 0
    assert log_lines()[-2]["event"] == "prune_skipped"
    assert cli.main(["--config", write_config(retention={}), "prune"]) == 0
    assert log_lines()[-2]["event"] == "prune_skipped", "an empty policy keeps everything"


def test_prune_dry_run_with_the_retention_engine(tmp_path, write_config, log_lines, fake_backup):
    repo = str(tmp_path / "repo")
    for day in range(1, 6):
        fake_backup(repo, backup_id="202401%02dT020000Z_logical_TodoDb" % day,
                    finished_at="2024-01-%02dT02:00:05.000000Z" % day)
    config = write_config(retention={"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 2})
    assert cli.main(["--config", config, "prune", "--dry-run"]) == 0
    prunable = [e["backup_id"] for e in log_lines() if e["event"] == "prune_would_delete"]
    assert len(prunable) == 3 and len(os.listdir(repo)) == 10, "a dry run deletes nothing"
    assert not [e for e in log_lines() if e["event"].startswith("backup_")], \
        "prune events must not look like backup runs to the monitoring (status.read_run_log)"
    assert cli.main(["--config", config, "prune"]) == 0
    assert sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json")) == [
        "20240104T020000Z_logical_TodoDb.manifest.json", "20240105T020000Z_logical_TodoDb.manifest.json"]


def test_each_repository_is_pruned_by_its_own_policy_and_a_dry_run_says_where(tmp_path, write_config, log_lines, fake_backup):
    local, offsite, forever = (str(tmp_path / name) for name in ("local", "offsite", "forever"))
    for repo in (local, offsite, forever):
        for day in range(1, 6):
            fake_backup(repo, backup_id="202401%02dT020000Z_logical_TodoDb" % day,
                        finished_at="2024-01-%02dT02:00:05.000000Z" % day)
    keep = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0}
    config = write_config(repository=None, retention=dict(keep, keep_last=1), repositories=[
        {"name": "local", "location": local},
        {"name": "offsite", "location": offsite, "retention": dict(keep, keep_last=4)},
        {"name": "forever", "location": forever, "retention": {}}])
    assert cli.main(["--config", config, "prune", "--dry-run"]) == 0
    would = [(e["repository"], e["backup_id"]) for e in log_lines() if e["event"] == "prune_would_delete"]
    assert [repo for repo, _id in would] == ["local"] * 4 + ["offsite"]
    assert ("offsite", "20240101T020000Z_logical_TodoDb") in would
    assert [e["repository"] for e in log_lines() if e["event"] == "prune_skipped"] == ["forever"]
    assert all(len(os.listdir(repo)) == 10 for repo in (local, offsite, forever)), "a dry run deletes nothing"
    assert cli.main(["--config", config, "prune"]) == 0
    manifests = dict((repo, sorted(n for n in os.listdir(repo) if n.endswith(".manifest.json")))
                     for repo in (local, offsite, forever))
    assert manifests[local] == ["20240105T020000Z_logical_TodoDb.manifest.json"]
    assert len(manifests[offsite]) == 4 and len(manifests[forever]) == 5


def test_a_repository_that_cannot_be_pruned_does_not_spare_the_others(tmp_path, write_config, log_lines, fake_backup):
    local = str(tmp_path / "local")
    for day in (1, 2):
        fake_backup(local, backup_id="202401%02dT020000Z_logical_TodoDb" % day,
                    finished_at="2024-01-%02dT02:00:05.000000Z" % day)
    policy = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}
    config = write_config(repository=None, retention=policy, repositories=[
        {"name": "gone", "location": str(tmp_path / "unmounted")}, {"name": "local", "location": local}])
    assert cli.main(["--config", config, "prune"]) == 1
    failed = [e for e in log_lines() if e["event"] == "prune_failed"]
    assert [e["repository"] for e in failed] == ["gone"] and "does not exist" in failed[0]["error"]
    assert sorted(n for n in os.listdir(local) if n.endswith(".manifest.json")) == [
        "20240102T020000Z_logical_TodoDb.manifest.json"]
