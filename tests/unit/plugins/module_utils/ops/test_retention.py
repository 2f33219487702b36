# -*- coding: utf-8 -*-
"""GFS retention (plugins/module_utils/retention.py) on fake repositories: real manifests, tiny artifacts."""

from __future__ import absolute_import, division, print_function

import datetime
import hashlib
import json
import os
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

UTC = datetime.timezone.utc
NOW = datetime.datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)  # a Saturday, ISO week 2024-W24


def write_file(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return {"artifact": os.path.basename(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make_backup(repo_path, finished, database="TodoDb", kind="logical", globals_=True, backup_id=None):
    """A complete backup as the engine publishes it: artifact (+ globals extra file), then the manifest."""
    backup_id = backup_id or manifests.new_backup_id(kind, database, finished)
    artifact = write_file(os.path.join(repo_path, backup_id + ".dump.zst"), ("dump of %s" % backup_id).encode())
    manifest = {
        "manifest_version": 1, "id": backup_id, "kind": kind, "database": database,
        "artifact": artifact["artifact"], "size": artifact["size"], "sha256": artifact["sha256"],
        "started_at": manifests.isoformat(finished - datetime.timedelta(minutes=3)),
        "finished_at": manifests.isoformat(finished),
        "extra_files": {},
    }
    if globals_:
        manifest["extra_files"]["globals"] = write_file(
            os.path.join(repo_path, backup_id + ".globals.sql.zst"), b"CREATE ROLE app;")
    with open(os.path.join(repo_path, backup_id + manifests.MANIFEST_SUFFIX), "w") as handle:
        json.dump(manifest, handle)
    return manifest


def corrupt(repo_path, manifest):
    path = os.path.join(repo_path, manifest["artifact"])
    with open(path, "r+b") as handle:
        handle.write(b"X")  # same size, different sha256


def daily_series(repo_path, days, end=NOW, hour=2, **kwargs):
    """One backup per UTC day at hour:00, the last on end's date; returns manifests oldest first."""
    last = end.replace(hour=hour, minute=0, second=0, microsecond=0)
    return [make_backup(repo_path, last - datetime.timedelta(days=back), **kwargs) for back in range(days - 1, -1, -1)]


def ids(entries):
    return sorted(entry["id"] for entry in entries)


def day_of(backup_id):
    return backup_id[:8]


def listing(repo_path):
    return sorted(os.listdir(repo_path))


def at(day_text, hour=2):
    return datetime.datetime.strptime(day_text, "%Y-%m-%d").replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def repo(tmp_path):
    return str(tmp_path)


def run(repo_path, policy=None, **kwargs):
    kwargs.setdefault("now", NOW)
    return retention.apply_retention(LocalRepository(repo_path), policy or {}, **kwargs)


# The survivors of 400 daily backups (2023-05-13 .. 2024-06-15) on 2024-06-15 with the default
# policy, worked out by hand from a calendar:
EXPECTED_DAILY = ["202405%02d" % day for day in range(17, 32)] + ["202406%02d" % day for day in range(1, 16)]
# newest (Sunday) of ISO weeks 2024-W11 .. W19, outside the daily window (W20..W24 are inside it)
EXPECTED_WEEKLY = ["20240324", "20240331", "20240407", "20240414", "20240421", "20240428", "20240505", "20240512"]
# last day of 2023-07 .. 2024-05 (2024-03-31 is also a weekly one, May 31 and June 15 are daily)
EXPECTED_MONTHLY = ["20230731", "20230831", "20230930", "20231031", "20231130", "20231231", "20240131", "20240229",
                    "20240331", "20240430"]


def test_default_policy_on_400_daily_backups_keeps_exactly_the_gfs_set(repo):
    series = daily_series(repo, 400)
    assert day_of(series[0]["id"]) == "20230513" and day_of(series[-1]["id"]) == "20240615"

    result = run(repo)

    kept_days = sorted(day_of(backup_id) for backup_id in ids(result["kept"]))
    assert kept_days == sorted(set(EXPECTED_DAILY + EXPECTED_WEEKLY + EXPECTED_MONTHLY))
    assert len(kept_days) == 30 + 8 + 9
    assert len(result["deleted"]) == 400 - len(kept_days)
    assert result["policy"] == {"daily_days": 30, "weekly_weeks": 13, "monthly_months": 12, "keep_last": 1}
    reasons = dict((day_of(entry["id"]), entry["reasons"]) for entry in result["kept"])
    assert any(reason.startswith("weekly: newest of ISO week 2024-W12") for reason in reasons["20240324"])
    assert any(reason.startswith("monthly: newest of 2023-07") for reason in reasons["20230731"])
    assert any(reason.startswith("daily:") for reason in reasons["20240517"])
    assert "newest backup that verifies (never deleted)" in reasons["20240615"]
    # nothing older than the monthly window, and the files of deleted backups are gone
    assert all(day >= "20230701" for day in kept_days)
    left = listing(repo)
    assert len(left) == len(kept_days) * 3
    for entry in result["deleted"]:
        assert not [name for name in left if name.startswith(entry["id"] + ".")]
    for entry in result["kept"]:
        assert entry["id"] + ".manifest.json" in left and entry["id"] + ".dump.zst" in left


def test_second_run_deletes_nothing_and_keeps_the_same(repo):
    daily_series(repo, 120)
    first = run(repo)
    assert first["deleted"]
    second = run(repo)
    assert second["deleted"] == []
    assert ids(second["kept"]) == ids(first["kept"])


def test_dry_run_lists_the_same_deletions_and_deletes_nothing(repo):
    daily_series(repo, 120)
    before = listing(repo)
    planned = run(repo, dry_run=True)
    assert planned["dry_run"] is True
    assert listing(repo) == before
    assert planned["deleted"] and all(entry["reason"].startswith("outside policy") for entry in planned["deleted"])
    real = run(repo)
    assert ids(real["deleted"]) == ids(planned["deleted"])
    assert ids(real["kept"]) == ids(planned["kept"])


def test_custom_counts(repo):
    daily_series(repo, 60)
    result = run(repo, {"daily_days": 7, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 0})
    assert sorted(day_of(i) for i in ids(result["kept"])) == ["202406%02d" % day for day in range(9, 16)]


def test_keep_last_keeps_the_n_newest_even_when_old(repo):
    series = [make_backup(repo, at("2020-01-%02d" % day)) for day in range(1, 8)]
    result = run(repo, {"keep_last": 3})
    assert ids(result["kept"]) == sorted(m["id"] for m in series[-3:])
    # 2020 is far outside every window: only keep_last (and newest-verified) keep anything


def test_newest_verified_backup_is_never_deleted_even_if_old_and_keep_last_is_zero(repo):
    old = [make_backup(repo, at("2021-03-%02d" % day)) for day in (1, 2, 3)]
    result = run(repo, {"keep_last": 0})
    assert ids(result["kept"]) == [old[-1]["id"]]
    assert result["kept"][0]["reasons"] == ["newest backup that verifies (never deleted)"]
    assert ids(result["deleted"]) == sorted(m["id"] for m in old[:2])


def test_corrupted_newest_backup_does_not_let_the_last_good_one_go(repo):
    good = [make_backup(repo, at("2022-01-%02d" % day)) for day in (10, 11)]
    bad = make_backup(repo, at("2022-01-12"))
    corrupt(repo, bad)
    result = run(repo)
    kept = dict((entry["id"], entry["reasons"]) for entry in result["kept"])
    assert sorted(kept) == sorted([bad["id"], good[1]["id"]])
    assert kept[bad["id"]] == ["keep_last: one of the 1 newest"]
    assert kept[good[1]["id"]] == ["newest backup that verifies (never deleted)"]
    assert ids(result["deleted"]) == [good[0]["id"]]


def test_only_failed_recent_backups_keep_the_last_good_one(repo):
    """Recent backups exist but none verifies (checksum, or a failed verify sidecar): the old good one stays."""
    last_good = make_backup(repo, at("2024-01-01"))
    older = make_backup(repo, at("2023-12-01"))
    recent = [make_backup(repo, NOW - datetime.timedelta(days=back)) for back in (3, 2, 1)]
    corrupt(repo, recent[0])
    os.unlink(os.path.join(repo, recent[1]["extra_files"]["globals"]["artifact"]))  # an extra file is missing
    LocalRepository(repo).write_sidecar(recent[2]["id"], "verify", {"backup_id": recent[2]["id"], "history": [
        {"outcome": "passed", "level": "checksum"}, {"outcome": "failed", "level": "restore", "error": "row counts"}]})
    result = run(repo, {"daily_days": 7, "weekly_weeks": 0, "monthly_months": 0})
    kept = dict((entry["id"], entry["reasons"]) for entry in result["kept"])
    assert sorted(kept) == sorted([last_good["id"]] + [m["id"] for m in recent])
    assert kept[last_good["id"]] == ["newest backup that verifies (never deleted)"]
    assert ids(result["deleted"]) == [older["id"]]


def test_a_group_where_nothing_verifies_loses_nothing(repo):
    broken = [make_backup(repo, at("2020-05-%02d" % day)) for day in (1, 2, 3)]
    for manifest in broken:
        corrupt(repo, manifest)
    result = run(repo)
    assert result["deleted"] == []
    assert ids(result["kept"]) == sorted(m["id"] for m in broken)
    assert all(any("verifies: nothing of this group is deleted" in r for r in e["reasons"]) for e in result["kept"])


def test_verified_override(repo):
    old = [make_backup(repo, at("2021-03-%02d" % day)) for day in (1, 2, 3)]
    result = run(repo, {"keep_last": 0}, verified={old[0]["id"]: True})
    assert ids(result["kept"]) == [old[0]["id"]]
    result = run(repo, {"keep_last": 0}, dry_run=True, verified=lambda manifest: True)
    assert ids(result["kept"]) == [old[0]["id"]]


def test_future_dated_backups_are_kept_and_never_cost_a_good_one(repo):
    """A backup 'finished' two days from now (clock skew) must not take keep_last / newest-verified."""
    old = [make_backup(repo, at("2022-02-%02d" % day)) for day in (1, 2)]
    future = make_backup(repo, NOW + datetime.timedelta(days=2))
    result = run(repo)
    kept = dict((entry["id"], entry["reasons"]) for entry in result["kept"])
    assert sorted(kept) == sorted([future["id"], old[1]["id"]])
    assert kept[future["id"]][0].startswith("future-dated:") and len(kept[future["id"]]) == 1
    assert "newest backup that verifies (never deleted)" in kept[old[1]["id"]]
    assert "keep_last: one of the 1 newest" in kept[old[1]["id"]]
    assert ids(result["deleted"]) == [old[0]["id"]]


def test_future_dated_backup_does_not_replace_the_week_or_month_newest(repo):
    """Skew of a few hours: same ISO week and month as now; the real newest of the week still counts."""
    today = make_backup(repo, NOW - datetime.timedelta(hours=2))
    earlier_this_week = make_backup(repo, NOW - datetime.timedelta(days=4))
    ahead = make_backup(repo, NOW + datetime.timedelta(hours=3))
    result = run(repo, {"daily_days": 0, "weekly_weeks": 1, "monthly_months": 0, "keep_last": 0})
    kept = dict((entry["id"], entry["reasons"]) for entry in result["kept"])
    assert sorted(kept) == sorted([today["id"], ahead["id"]])
    assert any(reason.startswith("weekly:") for reason in kept[today["id"]])
    assert ids(result["deleted"]) == [earlier_this_week["id"]]


def test_temp_files_and_unpublished_artifacts_are_never_touched(repo):
    daily_series(repo, 100)
    stale = os.path.join(repo, ".tmp-20240101T020000Z_logical_TodoDb.dump.zst")
    fresh = os.path.join(repo, ".tmp-20240615T020000Z_logical_TodoDb.dump.zst")
    no_manifest = os.path.join(repo, "20230101T020000Z_logical_TodoDb.dump.zst")
    for path in (stale, fresh, no_manifest):
        write_file(path, b"partial")
    two_days_ago = time.time() - 48 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    os.utime(no_manifest, (two_days_ago, two_days_ago))

    result = run(repo, now=None)  # real clock: the stale file is judged by its mtime against now
    assert result["deleted"]
    for path in (stale, fresh, no_manifest):
        assert os.path.exists(path)
    assert [entry["name"] for entry in result["stale_temp"]] == [os.path.basename(stale)]


def test_damaged_manifest_is_reported_and_left_alone(repo):
    daily_series(repo, 40)
    damaged = os.path.join(repo, "20200101T020000Z_logical_TodoDb.manifest.json")
    with open(damaged, "w") as handle:
        handle.write("{not json")
    result = run(repo)
    assert os.path.exists(damaged)
    assert any("not valid JSON" in problem for problem in result["problems"])


def test_deleting_removes_artifact_extra_files_and_sidecars_together(repo):
    old = make_backup(repo, at("2020-01-01"))
    make_backup(repo, at("2020-01-02"))
    LocalRepository(repo).write_sidecar(old["id"], "verify", {"ok": True})
    result = run(repo)
    assert ids(result["deleted"]) == [old["id"]]
    assert not [name for name in listing(repo) if name.startswith(old["id"])]


def test_groups_per_database_and_kind_are_independent(repo):
    for database in ("TodoDb", "Other"):
        for kind in ("logical", "physical"):
            make_backup(repo, at("2020-01-01"), database=database, kind=kind)
            make_backup(repo, at("2020-01-02"), database=database, kind=kind)
    # a new TodoDb logical backup must not make the other groups' newest deletable
    make_backup(repo, NOW - datetime.timedelta(hours=1))
    result = run(repo)
    kept = [(e["database"], e["kind"], day_of(e["id"])) for e in result["kept"]]
    assert sorted(kept) == sorted([("Other", "logical", "20200102"), ("Other", "physical", "20200102"),
                                   ("TodoDb", "physical", "20200102"), ("TodoDb", "logical", "20240615")])
    assert len(result["deleted"]) == 5


def test_database_and_kind_filters_leave_other_groups_alone(repo):
    for database in ("TodoDb", "Other"):
        for kind in ("logical", "physical"):
            for day in (1, 2, 3):
                make_backup(repo, at("2020-01-%02d" % day), database=database, kind=kind)
    result = run(repo, database="TodoDb", kind="physical")
    assert [(e["database"], e["kind"]) for e in result["deleted"]] == [("TodoDb", "physical")] * 2
    assert len(listing(repo)) == (12 - 2) * 3
    result = run(repo, kind="all")
    assert len(result["deleted"]) == 6


def with_wal_start(repo_path, manifest, segment):
    manifest.update(wal_start_segment=segment)
    with open(os.path.join(repo_path, manifest["id"] + manifests.MANIFEST_SUFFIX), "w") as handle:
        json.dump(manifest, handle)
    return manifest


def test_wal_is_kept_from_the_start_of_a_kept_chains_full_backup(repo, tmp_path):
    full = with_wal_start(repo, make_backup(repo, at("2024-06-10"), kind="physical"), "000000010000000000000003")
    incr = with_wal_start(repo, make_backup(repo, at("2024-06-11"), kind="physical"), "000000010000000000000006")
    archive = tmp_path / "wal"
    archive.mkdir()
    for segno in range(1, 9):
        (archive / ("0000000100000000000000%02X" % segno)).write_bytes(b"wal")
    kept_as_chain = {"kept": [{"id": incr["id"], "kind": "physical", "chain": [full["id"], incr["id"]]}]}
    report = retention.prune_wal_for_kept(kept_as_chain, LocalRepository(repo), str(archive), dry_run=True)
    assert (report["oldest_needed"], report["oldest_backup"]) == ("000000010000000000000003", full["id"])
    assert report["removed"] == ["000000010000000000000001", "000000010000000000000002"] and report["dry_run"]
    assert len(os.listdir(str(archive))) == 8
    alone = retention.prune_wal_for_kept({"kept": [{"id": incr["id"], "kind": "physical"}]}, LocalRepository(repo),
                                         str(archive))
    assert alone["oldest_needed"] == "000000010000000000000006" and len(alone["removed"]) == 5
    assert sorted(os.listdir(str(archive))) == ["0000000100000000000000%02X" % segno for segno in (6, 7, 8)]
    logical_only = retention.prune_wal_for_kept({"kept": [{"id": "x", "kind": "logical"}]}, LocalRepository(repo),
                                                str(archive))
    assert logical_only["removed"] == [] and logical_only["oldest_needed"] is None and logical_only["reason"]


def test_a_kept_base_backup_without_its_wal_start_stops_the_wal_cleanup(repo, tmp_path):
    backup = make_backup(repo, at("2024-06-10"), kind="physical")
    archive = tmp_path / "wal"
    archive.mkdir()
    (archive / "000000010000000000000001").write_bytes(b"wal")
    report = retention.prune_wal_for_kept({"kept": [{"id": backup["id"], "kind": "physical"}]}, LocalRepository(repo),
                                          str(archive))
    assert report["removed"] == [] and "no wal_start_segment" in report["reason"]
    assert os.listdir(str(archive)) == ["000000010000000000000001"]


@pytest.mark.parametrize("policy", [{"daily_days": -1}, {"weekly_weeks": "x"}, {"keep_last": True}, {"yearly": 3}])
def test_bad_policy_is_refused_before_anything_is_deleted(repo, policy):
    daily_series(repo, 40)
    before = listing(repo)
    with pytest.raises(PgBackupError):
        run(repo, policy)
    assert listing(repo) == before


def test_missing_repository_and_bad_kind_are_errors(tmp_path, repo):
    with pytest.raises(PgBackupError, match="does not exist"):
        run(str(tmp_path / "nope"))
    with pytest.raises(PgBackupError, match="Unknown backup kind"):
        run(repo, kind="incremental")


def test_policy_defaults_and_string_numbers():
    assert retention.normalize_policy(None) == retention.DEFAULT_POLICY
    assert retention.normalize_policy({"daily_days": "7", "keep_last": None})["daily_days"] == 7


@pytest.mark.parametrize("record, failed", [
    (None, False), ({}, False), ({"history": []}, False),
    ({"history": [{"outcome": "failed"}, {"outcome": "passed"}]}, False),
    ({"history": [{"outcome": "passed"}, {"outcome": "failed"}]}, True),
    ({"ok": False}, True), ({"ok": True}, False), ({"status": "FAILED"}, True), ({"status": "ok"}, False),
])
def test_verify_sidecar_shapes(record, failed):
    assert retention.sidecar_says_failed(record) is failed


def test_passed_verify_sidecar_does_not_hide_a_corrupted_artifact(repo):
    good = make_backup(repo, at("2022-01-01"))
    bad = make_backup(repo, at("2022-01-02"))
    LocalRepository(repo).write_sidecar(bad["id"], "verify", {"history": [{"outcome": "passed"}]})
    corrupt(repo, bad)
    result = run(repo, {"keep_last": 0})
    assert ids(result["kept"]) == [good["id"]]
    assert ids(result["deleted"]) == [bad["id"]]
