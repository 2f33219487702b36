# -*- coding: utf-8 -*-
"""``todoapi-pgbackup prune`` (plugins/module_utils/runner/commands/prune.py) with the retention engine."""

from __future__ import absolute_import, division, print_function

import json
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


def physical_backup(fake_backup, repo, day, start):
    backup_id = "202401%02dT020000Z_physical_main" % day
    manifest = fake_backup(repo, backup_id=backup_id, database="main", finished_at="2024-01-%02dT02:00:05.000000Z" % day)
    manifest.update(kind="physical", wal_start_segment=start)
    with open(os.path.join(repo, backup_id + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return backup_id


def test_a_repositorys_wal_archive_loses_only_the_wal_no_kept_base_backup_needs(tmp_path, write_config, log_lines,
                                                                                fake_backup):
    repo, archive = str(tmp_path / "repo"), tmp_path / "wal"
    archive.mkdir()
    names = ["0000000100000000000000%02X" % segno for segno in range(1, 9)] + ["00000002.history"]
    for name in names:
        (archive / name).write_bytes(b"wal")
    physical_backup(fake_backup, repo, 1, "000000010000000000000002")
    physical_backup(fake_backup, repo, 2, "000000010000000000000005")
    policy = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}
    config = write_config(repository=None, cluster_name="main", retention=policy,
                          repositories=[{"location": repo, "wal_archive": str(archive)}])
    assert cli.main(["--config", config, "prune", "--dry-run"]) == 0
    planned = [e for e in log_lines() if e["event"] == "prune_wal_ok"][-1]
    assert planned["removed"] == 4 and planned["oldest_needed"] == "000000010000000000000005" and planned["dry_run"]
    assert sorted(os.listdir(str(archive))) == sorted(names), "a dry run deletes nothing"
    assert cli.main(["--config", config, "prune"]) == 0
    assert sorted(os.listdir(str(archive))) == sorted(names[4:])
    assert cli.main(["--config", config, "prune"]) == 0
    assert [e for e in log_lines() if e["event"] == "prune_wal_ok"][-1]["removed"] == 0

    for name in os.listdir(repo):
        os.remove(os.path.join(repo, name))
    assert cli.main(["--config", config, "prune"]) == 0
    skipped = [e for e in log_lines() if e["event"] == "prune_wal_skipped"][-1]
    assert "no physical base backup is kept" in skipped["message"]
    assert sorted(os.listdir(str(archive))) == sorted(names[4:]), "no kept base backup: the archive is never emptied"


def test_a_missing_wal_archive_fails_the_repository_before_any_backup_is_deleted(tmp_path, write_config,
                                                                                 log_lines, fake_backup):
    repo = str(tmp_path / "repo")
    physical_backup(fake_backup, repo, 1, "000000010000000000000002")
    physical_backup(fake_backup, repo, 2, "000000010000000000000005")
    config = write_config(repository=None, cluster_name="main",
                          retention={"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1},
                          repositories=[{"location": repo, "wal_archive": str(tmp_path / "nowhere")}])
    assert cli.main(["--config", config, "prune"]) == 1
    assert [e for e in log_lines() if e["event"] == "prune_failed"]
    assert len([name for name in os.listdir(repo) if name.endswith(".manifest.json")]) == 2
