# -*- coding: utf-8 -*-
"""The DR report (RTO/RPO arithmetic, steps, Markdown, atomic files) and the read-only assessment, without PostgreSQL."""

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import dr
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import dr_report
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError

STARTED = "2024-01-06T14:00:00Z"
BACKUP = {"id": "20240106T020000Z_logical_TodoDb", "kind": "logical", "database": "TodoDb", "size": 10,
          "sha256": "ab", "finished_at": "2024-01-06T02:00:00.000000Z", "tables": {"public.Users": 3}}


def steps(*statuses):
    out = []
    for number, status in enumerate(statuses):
        out.append({"name": "step%d" % number, "started": "2024-01-06T14:%02d:00" % (number * 10),
                    "finished": "2024-01-06T14:%02d:00" % (number * 10 + 5), "status": status, "detail": "d|%d\nx" % number})
    return out


def test_success_rto_rpo_and_objectives():
    report = dr_report.build(steps("ok", "ok"), STARTED, finished_at="2024-01-06T14:30:00Z", backup=BACKUP,
                             expected_steps=["step0", "step1", "step2"])
    assert report["outcome"] == "succeeded"
    assert report["rto_seconds"] == 1800 and report["rto_met"] is True
    assert report["rpo_seconds"] == 12 * 3600 and report["rpo_met"] is True  # backup end -> start of the recovery
    assert [s["duration_seconds"] for s in report["steps"][:2]] == [300, 300]
    assert report["steps"][2] == {"name": "step2", "status": "not_run", "started": None, "finished": None,
                                  "duration_seconds": None, "detail": ""}


def test_rpo_sources_in_order_of_precedence():
    assert dr_report.build([], STARTED, backup=BACKUP, data_loss_seconds=42)["rpo_seconds"] == 42
    assert dr_report.build([], STARTED, backup=BACKUP, reference_time="2024-01-06T03:00:00Z")["rpo_seconds"] == 3600
    pitr = dr_report.build([], STARTED, backup=BACKUP, data_loss_seconds=42, recovery_point="2024-01-06 13:59:58.5+00")
    assert pitr["rpo_seconds"] == 1.5 and pitr["recovery_point"] == "2024-01-06T13:59:58.500000Z"
    missed = dr_report.build([], STARTED, backup=BACKUP, objectives={"rpo_hours": 1})
    assert missed["rpo_met"] is False and missed["objectives"] == {"rto_hours": 4.0, "rpo_hours": 1.0}


def test_a_logical_backups_data_is_from_its_start_a_physical_ones_from_its_end():
    # pg_dump's snapshot is taken when it starts: what was committed during a 10-minute dump is lost too.
    logical = dict(BACKUP, started_at="2024-01-06T01:50:00Z")
    assert manifests.data_as_of(logical) == "2024-01-06T01:50:00Z"
    assert dr_report.build([], STARTED, backup=logical)["rpo_seconds"] == 12 * 3600 + 600
    physical = dict(logical, kind="physical")
    assert manifests.data_as_of(physical) == BACKUP["finished_at"]
    assert dr_report.build([], STARTED, backup=physical)["rpo_seconds"] == 12 * 3600


def test_fencing_is_reported_and_a_pending_one_comes_first_in_the_follow_up():
    fencing = [{"host": "db1", "status": "pending", "detail": "unreachable; run dr_fence", "checked_at": "2024-01-06T14:20:00Z"},
               {"host": "db0", "status": "fenced", "detail": "NOLOGIN"}]
    report = dr_report.build(steps("ok"), STARTED, backup=BACKUP, fencing=fencing)
    assert [(f["host"], f["status"], f["checked_at"]) for f in report["fencing"]] == [
        ("db1", "pending", "2024-01-06T14:20:00.000000Z"), ("db0", "fenced", None)]
    assert report["follow_up"][0] == "Fence db1 before it comes back (status pending): unreachable; run dr_fence"
    assert len(report["follow_up"]) == len(dr_report.FOLLOW_UP) + 1
    markdown = dr_report.to_markdown(report)
    assert "## Fencing of the old servers" in markdown and "| db1 | **PENDING** |" in markdown
    assert "## Fencing" not in dr_report.to_markdown(dr_report.build([], STARTED, backup=BACKUP))
    with pytest.raises(PgBackupError, match="unknown status 'maybe'"):
        dr_report.build([], STARTED, fencing=[{"host": "db1", "status": "maybe"}])


def test_failed_step_fails_the_outcome_and_the_rto():
    report = dr_report.build(steps("ok", "failed"), STARTED, finished_at="2024-01-06T14:20:00Z")
    assert report["outcome"] == "failed" and report["failed_steps"] == ["step1"]
    assert report["rto_met"] is False and report["rpo_seconds"] is None and report["rpo_met"] is None
    assert report["error"] == "d|1\nx"
    markdown = dr_report.to_markdown(report)
    assert "FAILED" in markdown and "## What failed" in markdown and "d\\|1 x" in markdown


def test_bad_input_is_a_clear_error():
    with pytest.raises(PgBackupError, match="unknown status"):
        dr_report.build([{"name": "a", "status": "maybe"}], STARTED)
    with pytest.raises(PgBackupError, match="not an ISO 8601 time"):
        dr_report.build([{"name": "a", "started": "yesterday"}], STARTED)
    with pytest.raises(PgBackupError, match="start time is missing"):
        dr_report.build([], "")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    report = dr_report.build(steps("ok"), STARTED, backup=BACKUP)
    md_path, json_path = dr_report.write(report, str(tmp_path / "reports"))
    assert os.path.basename(md_path) == "dr-report-20240106T140000Z.md"
    assert json.load(open(json_path))["backup"]["id"] == BACKUP["id"]
    assert "| RTO" in open(md_path).read()
    assert sorted(os.listdir(str(tmp_path / "reports"))) == ["dr-report-20240106T140000Z.json", "dr-report-20240106T140000Z.md"]
    assert oct(os.stat(md_path).st_mode & 0o777) == "0o640"


def write_backup(repo, backup_id, finished_at, payload=b"data"):
    artifact = backup_id + ".dump"
    with open(os.path.join(repo, artifact), "wb") as handle:
        handle.write(payload)
    manifest = {"id": backup_id, "kind": "logical", "database": "TodoDb", "artifact": artifact, "size": len(payload),
                "sha256": fsutil.sha256_file(os.path.join(repo, artifact)), "started_at": finished_at,
                "finished_at": finished_at}
    with open(os.path.join(repo, backup_id + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)


def test_assess_skips_damaged_newer_backups_and_writes_nothing(tmp_path):
    repo = str(tmp_path)
    write_backup(repo, "20240105T020000Z_logical_TodoDb", "2024-01-05T02:00:00Z")
    write_backup(repo, "20240106T020000Z_logical_TodoDb", "2024-01-06T02:00:00Z")
    with open(os.path.join(repo, "20240106T020000Z_logical_TodoDb.dump"), "wb") as handle:
        handle.write(b"dat4")  # same size, other bytes
    before = sorted(os.listdir(repo))
    result = dr.assess(repo, "TodoDb", level="checksum", now=manifests.parse_time("2024-01-06T14:00:00Z"))
    assert result["backup"]["id"] == "20240105T020000Z_logical_TodoDb"
    assert result["skipped_newer"] == ["20240106T020000Z_logical_TodoDb"]
    assert result["data_loss_seconds"] == 36 * 3600
    assert sorted(os.listdir(repo)) == before


def test_assess_fails_naming_each_backup_when_none_verifies(tmp_path):
    repo = str(tmp_path)
    write_backup(repo, "20240106T020000Z_logical_TodoDb", "2024-01-06T02:00:00Z")
    os.truncate(os.path.join(repo, "20240106T020000Z_logical_TodoDb.dump"), 1)
    with pytest.raises(PgBackupError, match=r"None of the 1 backup\(s\).*20240106T020000Z_logical_TodoDb") as caught:
        dr.assess(repo, "TodoDb", level="checksum")
    assert caught.value.details["candidates"][0]["usable"] is False
    with pytest.raises(PgBackupError, match="does not exist or is not mounted"):
        dr.assess(str(tmp_path / "missing"), "TodoDb")
