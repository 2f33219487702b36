# -*- coding: utf-8 -*-
"""playbooks/dr_restore.yml plays a real disaster on this machine.

A source cluster with a generated TodoDb serves a stand-in application; a backup is taken; more
data is written (and will be lost); the source cluster is destroyed (immediate stop, dropped). The
playbook then provisions a NEW cluster (another name and port, standing for the new host; package
installs skipped), restores the newest backup that verifies, checks it, rewrites the application's
connection string, restarts the application and writes the DR report. Checked: the data equals the
source's at backup time, the application is healthy on the new server, the report's RTO/RPO, and the
backup repository is byte-identical afterwards. A second test corrupts the only backup: the recovery
stops at the assessment, creates nothing, and still writes a report naming the failed step. Then the same
recovery from an Azure (Azurite), SFTP (OpenSSH sshd) and S3 (moto, through the deprecated dr_s3) repository
alone, the local copy deleted: the target downloads the backup itself, and no secret reaches the output.
"""

from __future__ import absolute_import, division, print_function

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import glob

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import REPO_ROOT, run_playbook
from tests.lib.archiving import archiving_conf, install_wal_tool, postgres_dir, wait_archived
from tests.lib.dbcompare import assert_same_data, table_fingerprints
from tests.lib.dr_local import PLAYBOOK_ENV, new_local_server_vars, storage_python
from tests.lib.pgcluster import PgCluster, drop_cluster, find_free_port, next_cluster_name
from tests.lib.servers import AZURITE_KEY, S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from tests.lib.servers import azurite, moto, sshd  # noqa: F401  # pylint: disable=unused-import
from tests.lib.standin_app import StandinApp
from tests.lib.tododb import create_todo_db

DR_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "dr_restore.yml")
DR_TASK = "todoapi.pgbackup.disaster_recovery : %s"  # how the play output names the role's tasks
BACKUP_ROLE = os.path.join(REPO_ROOT, "roles", "backup", "tasks", "main.yml")
ADMIN_PASSWORD = "dr-Admin-Secret-31"
APP_PASSWORD = "dr-App;Secret=42"  # ';' and '=' must survive the Npgsql connection string
STEPS = ["assess", "prepare", "restore", "verify", "application"]
SOURCE_DB_MB = 4

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (clusters, become postgres)")


def repository_state(path):
    """{relative path: sha256} of every file below path (what 'byte-identical' is checked against)."""
    state = {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                state[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return state


def backup_with_runner(collections_root, cluster, database, repository, work_dir):
    """Install the backup role's on-host runner below work_dir (no schedule) and run it as postgres, like cron would."""
    base = os.path.join(work_dir, "runner")
    os.makedirs(os.path.join(base, "run"))
    os.chmod(work_dir, 0o755)
    os.chmod(base, 0o755)
    shutil.chown(os.path.join(base, "run"), "postgres", "postgres")
    runner = os.path.join(base, "bin", "todoapi-pgbackup")
    config_dir = os.path.join(base, "etc")
    extra_vars = {
        "pgbackup_install_packages": False, "pgbackup_logrotate_enabled": False, "pgbackup_scheduler": "none",
        "pgbackup_databases": [database], "pgbackup_repository": repository, "pgbackup_config_dir": config_dir,
        "pgbackup_log_file": os.path.join(base, "backup.log"), "pgbackup_lock_file": os.path.join(base, "run", "lock"),
        "pgbackup_engine_dir": os.path.join(base, "lib"), "pgbackup_runner_path": runner,
        "pgbackup_systemd_unit_dir": os.path.join(base, "systemd"), "pgbackup_job_name": "dr-test-%d" % os.getpid(),
        "pgbackup_db_host": cluster.host, "pgbackup_db_port": cluster.port, "pgbackup_db_user": cluster.user,
        "pgbackup_password": cluster.password,
    }
    os.makedirs(os.path.join(base, "bin"))
    run_playbook("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: todoapi.pgbackup.backup\n",
                 extra_vars=extra_vars, collections_root=collections_root, env=PLAYBOOK_ENV)
    done = subprocess.run(["runuser", "-u", "postgres", "--", runner, "--config", os.path.join(config_dir, "config.json"),
                           "backup"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, "runner backup failed:\n%s\n%s" % (done.stdout, done.stderr)
    return LocalRepository(repository).resolve("latest", database=database)


def backup_with_engine(cluster, database, repository):
    spec = ConnectionSpec(host=cluster.host, port=cluster.port, user=cluster.user, password=cluster.password)
    return logical_backup.backup(logical_backup.LogicalBackupRequest(database, LocalRepository(repository), spec))


@pytest.fixture
def work_dir():
    path = tempfile.mkdtemp(prefix="pgbackup-dr-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def new_host():
    """Cluster name and port the playbook's postgresql_server role creates (dropped afterwards, with
    the data directory a point-in-time recovery moved aside)."""
    name, port = next_cluster_name(15), find_free_port()
    try:
        yield name, port
    finally:
        drop_cluster(15, name)
        for leftover in glob.glob("/var/lib/postgresql/15/%s.*-pitr-*" % name):
            shutil.rmtree(leftover, ignore_errors=True)


def dr_vars(repository, work_dir, new_host, app=None, **overrides):
    values = new_local_server_vars(repository, "TodoDb", new_host, work_dir, ADMIN_PASSWORD, APP_PASSWORD)
    values.update({
        "dr_jobs": 2,
        # Test speed: no fsync in the throwaway cluster, not started at boot.
        "postgresql_server_initdb_options": ["--data-checksums", "--no-sync"],
        "postgresql_server_settings": {"fsync": "off"},
        "postgresql_server_start_at_boot": False,
    })
    if app is not None:
        values.update({
            "dr_app_manager": "command",
            "dr_app_stop_command": app.command_line("stop"),
            "dr_app_start_command": app.command_line("start"),
            "dr_app_health_command": app.command_line("health"),
            "dr_app_health_retries": 15,
            "dr_app_health_delay": 1,
            "dr_app_connection_file": app.settings,
            "dr_app_connection_format": "appsettings_json",
        })
    values.update(overrides)
    return values


def read_report(report_dir):
    names = sorted(os.listdir(report_dir))
    md = [n for n in names if n.endswith(".md")]
    js = [n for n in names if n.endswith(".json")]
    assert len(md) == 1 and len(js) == 1, names
    assert md[0][:-3] == js[0][:-5] and md[0].startswith("dr-report-"), names
    with open(os.path.join(report_dir, js[0])) as handle:
        report = json.load(handle)
    with open(os.path.join(report_dir, md[0])) as handle:
        markdown = handle.read()
    return report, markdown


def test_dr_rebuilds_lost_server_and_reconnects_the_app(collections_root, work_dir, new_host, tmp_repo):
    source = PgCluster.create()
    app = StandinApp(work_dir, find_free_port())
    try:
        create_todo_db(source, dbname="TodoDb", size_mb=SOURCE_DB_MB)
        app.write_settings(source.host, source.port, "TodoDb", source.user, source.password)
        app.start()
        assert app.health()[0] == 200

        if os.path.exists(BACKUP_ROLE):
            manifest = backup_with_runner(collections_root, source, "TodoDb", tmp_repo, work_dir)
        else:
            manifest = backup_with_engine(source, "TodoDb", tmp_repo)
        at_backup = table_fingerprints(source, "TodoDb")
        # Written after the backup: this is the data the disaster loses (inside the RPO).
        source.sql('INSERT INTO "Users" ("Email", "UserName", "PasswordHash", "CreatedAt") '
                   "VALUES ('late@example.com', 'late', 'x', now())", dbname="TodoDb")
        repository_before = repository_state(tmp_repo)
        backup_done = time.time()

        # The disaster: the server dies and its data is gone.
        source.stop(mode="immediate")
        source.drop()
        assert app.health()[0] == 503

        started = time.time()
        # after_swap: the plain indexes are built and the keys validated once the database is in place (the
        # default, during, is what the other DR runs and the bench's drill use)
        result = run_playbook(DR_PLAYBOOK, extra_vars=dict(dr_vars(tmp_repo, work_dir, new_host, app),
                                                           dr_validate_foreign_keys="after_swap",
                                                           dr_build_indexes="after_swap"),
                              collections_root=collections_root, env=PLAYBOOK_ENV)
        wall = time.time() - started
        restored = result.task("todoapi.pgbackup.restore : Restore the whole database")
        assert len(restored["validated_foreign_keys"]) == 3, restored
        assert '"IX_Categories_UserId"' in [index["index"] for index in restored["built_indexes"]], restored
        assert 0 < restored["usable_after_seconds"] <= restored["checks_finished_after_seconds"]

        # The data is what the source held at backup time.
        name, port = new_host
        new = PgCluster(15, name, port, password=ADMIN_PASSWORD)
        assert_same_data(at_backup, (new, "TodoDb"))
        # The application was pointed at the new server, restarted, and is healthy there, as its own role.
        with open(app.settings) as handle:
            settings = json.load(handle)
        assert settings["Logging"]["LogLevel"]["Default"] == "Information", "other settings must be kept"
        connection = settings["ConnectionStrings"]["DefaultConnection"]
        assert connection == 'Host=127.0.0.1;Port=%d;Database=TodoDb;Username=todoapi_app;Password="%s"' % (
            port, APP_PASSWORD)
        code, body = app.health()
        assert code == 200 and body["users"] == at_backup["public.Users"]["rows"], body
        # The backups were only read.
        assert repository_state(tmp_repo) == repository_before

        report, markdown = read_report(os.path.join(work_dir, "reports"))
        assert report["outcome"] == "succeeded" and report["failed_steps"] == []
        assert [s["name"] for s in report["steps"]] == STEPS
        assert all(s["status"] == "ok" and s["duration_seconds"] >= 0 for s in report["steps"]), report["steps"]
        assert report["backup"]["id"] == manifest["id"]
        assert 0 < report["rto_seconds"] <= wall
        # The steps account for the RTO but for Ansible's own time between them (five include_tasks: ~1 s idle,
        # 10 s of a 154 s RTO at load 15 on 2 cores).
        gaps = report["rto_seconds"] - sum(s["duration_seconds"] for s in report["steps"])
        assert 0 <= gaps < max(5, 0.1 * report["rto_seconds"]), (gaps, report["steps"])
        # RPO: from the backup's end to the start of the recovery.
        assert 0 < report["rpo_seconds"] <= time.time() - backup_done + 60
        assert report["rto_met"] is True and report["rpo_met"] is True
        assert report["objectives"] == {"rto_hours": 4.0, "rpo_hours": 24.0}
        assert "SUCCEEDED" in markdown and manifest["id"] in markdown and "| RTO" in markdown
        summary = result.task(DR_TASK % "Summary")["msg"]
        assert "SUCCEEDED" in summary and "RTO" in summary
        # The start command's words and output are in the play's output (a no-op would show here).
        shown = result.task("todoapi.pgbackup.restore : Show what the command ran and printed (start)")["results"]
        assert [r["item"]["item"] for r in shown] == ["localhost"], shown
        assert '"start"' in shown[0]["msg"] and "exited 0" in shown[0]["msg"] and "started (pid" in shown[0]["msg"], shown
        print("\nDR drill: RTO %.1f s, RPO %.1f s, steps %s" % (
            report["rto_seconds"], report["rpo_seconds"],
            ", ".join("%s %.1f s" % (s["name"], s["duration_seconds"]) for s in report["steps"])))
    finally:
        app.stop()
        source.drop()


def test_dr_stops_at_assess_when_the_only_backup_is_corrupt(collections_root, pg, todo_db, tmp_repo, work_dir, new_host):
    manifest = backup_with_engine(pg, todo_db.name, tmp_repo)
    artifact = os.path.join(tmp_repo, manifest["artifact"])
    with open(artifact, "r+b") as handle:  # one flipped byte, same size: only the checksum can tell
        handle.seek(manifest["size"] // 2)
        byte = handle.read(1)
        handle.seek(manifest["size"] // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    repository_before = repository_state(tmp_repo)

    result = run_playbook(DR_PLAYBOOK, extra_vars=dr_vars(tmp_repo, work_dir, new_host, dr_database=todo_db.name),
                          collections_root=collections_root, env=PLAYBOOK_ENV, expect_failure=True)

    failed = result.task(DR_TASK % "Fail the play when the recovery failed")
    assert "DISASTER RECOVERY FAILED at step 'assess'" in failed["msg"]
    assert "None of the 1 backup(s)" in failed["msg"] and "Checksum mismatch" in failed["msg"], failed["msg"]
    name, _port = new_host
    assert not os.path.exists("/etc/postgresql/15/%s" % name), "nothing may be provisioned after a failed assessment"
    assert repository_state(tmp_repo) == repository_before

    report, markdown = read_report(os.path.join(work_dir, "reports"))
    assert report["outcome"] == "failed" and report["failed_steps"] == ["assess"]
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("assess", "failed")] + [
        (name, "not_run") for name in STEPS[1:]]
    assert "Checksum mismatch" in report["steps"][0]["detail"]
    # No backup chosen: the RPO is not measured, and every output says so the same way (docs/dr.md).
    assert report["backup"] is None and report["rpo_seconds"] is None and report["rpo_met"] is None
    assert report["rto_met"] is False
    assert "FAILED" in markdown and "## What failed" in markdown and "unknown (no backup selected)" in markdown
    assert "RPO unknown" in result.task(DR_TASK % "Summary")["msg"]
    assert result.task(DR_TASK % "Publish the result (AWX job artifacts)")["ansible_stats"]["data"]["dr_rpo_seconds"] is None


def test_dr_says_why_postgres_cannot_run_the_python(collections_root, pg, todo_db, tmp_repo, work_dir, new_host):
    """The target's Python must be runnable by OS user postgres (docs/dr.md): the test venv's is not (it
    lives under /root). The recovery stops at the first task run as postgres and says why."""
    probe = subprocess.run(["runuser", "-u", "postgres", "--", sys.executable, "-c", "pass"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip("postgres can run %s here" % sys.executable)
    backup_with_engine(pg, todo_db.name, tmp_repo)

    result = run_playbook(DR_PLAYBOOK, extra_vars=dr_vars(tmp_repo, work_dir, new_host, dr_database=todo_db.name,
                                                          ansible_python_interpreter=sys.executable),
                          collections_root=collections_root, env=PLAYBOOK_ENV, expect_failure=True)

    failed = result.task(DR_TASK % "Fail the play when the recovery failed")["msg"]
    assert "FAILED at step 'prepare': Set listen_addresses:" in failed and "Permission denied" in failed, failed
    report, _markdown = read_report(os.path.join(work_dir, "reports"))
    assert report["failed_steps"] == ["prepare"] and "Permission denied" in report["error"], report["error"]


def test_dr_pitr_replays_the_wal_archive_into_the_new_server(collections_root, work_dir, new_host):
    os.chmod(work_dir, 0o755)
    wal_command = install_wal_tool(os.path.join(work_dir, "wal-helper"))
    archive = postgres_dir(work_dir, "wal-archive")
    repository = postgres_dir(work_dir, "base-backups")
    source = PgCluster.create(extra_conf=archiving_conf(wal_command, archive, archive_timeout=5))
    try:
        create_todo_db(source, dbname="TodoDb", size_mb=1)
        spec = ConnectionSpec(host=source.host, port=source.port, user=source.user, password=source.password)
        base = base_backup.backup(base_backup.PhysicalBackupRequest(LocalRepository(repository), spec))
        # Written after the base backup: only WAL replay brings these back.
        source.sql('INSERT INTO "Users" ("Email", "UserName", "PasswordHash", "CreatedAt") '
                   "VALUES ('after-base@example.com', 'after-base', 'x', now())", dbname="TodoDb")
        source.sql('DELETE FROM "Todos" WHERE "Id" % 7 = 0', dbname="TodoDb")
        wait_archived(source)
        at_disaster = table_fingerprints(source, "TodoDb")
        sources_before = (repository_state(repository), repository_state(archive))
        source.stop(mode="immediate")
        source.drop()

        result = run_playbook(DR_PLAYBOOK, extra_vars=dr_vars(repository, work_dir, new_host, dr_method="pitr",
                                                              dr_wal_archive=archive, dr_wal_command=wal_command,
                                                              dr_install_wal_helper=False),
                              collections_root=collections_root, env=PLAYBOOK_ENV)
        # pitr_recovery wrote the new server's listen_addresses before its first start: nothing to change, no restart
        assert result.task("todoapi.pgbackup.postgresql_server : Set listen_addresses")["changed"] is False
        assert not [task["task"] for task in result.tasks if "Restart PostgreSQL" in task["task"]], result.task_names()

        name, port = new_host
        new = PgCluster(15, name, port, password=ADMIN_PASSWORD)
        assert_same_data(at_disaster, (new, "TodoDb"))
        assert new.scalar("SHOW listen_addresses") == "127.0.0.1"
        assert new.scalar("SHOW archive_mode") == "off", "the recovered server must not write into the source archive"
        assert (repository_state(repository), repository_state(archive)) == sources_before

        report, _markdown = read_report(os.path.join(work_dir, "reports"))
        assert report["outcome"] == "succeeded", report
        assert [(s["name"], s["status"]) for s in report["steps"]] == [
            ("assess", "ok"), ("prepare", "ok"), ("restore", "ok"), ("verify", "ok"), ("application", "skipped")]
        assert report["backup"]["id"] == base["id"] and report["recovery_point"]
        # RPO: from the last replayed transaction to the start of the recovery, i.e. seconds, not a day.
        assert 0 <= report["rpo_seconds"] < 120 and report["rpo_met"] is True
        print("\nPITR DR drill: RTO %.1f s, RPO %.1f s, steps %s" % (
            report["rto_seconds"], report["rpo_seconds"],
            ", ".join("%s %.1f s" % (s["name"], s["duration_seconds"] or 0) for s in report["steps"])))
    finally:
        source.drop()


def remote_repository(request, scheme):
    """(URL, the storage options dr_storage takes, engine options, secret) of an empty repository on a local server."""
    if scheme == "azure":
        server = request.getfixturevalue("azurite")
        url = "azure://%s/prod" % server.create_container()
        return url, dict(azure_connection_string=server.connection_string), server.options(), AZURITE_KEY
    if scheme == "sftp":
        server = request.getfixturevalue("sshd")
        url = server.url(server.make_dir() + "/todoapi")
        return url, dict(sftp_key_file=server.key_file, sftp_known_hosts=server.known_hosts), server.options(), None
    server = request.getfixturevalue("moto")
    url = "s3://%s/prod" % server.create_bucket()
    storage = dict(s3_endpoint_url=server.endpoint, s3_region=S3_REGION, aws_access_key=S3_ACCESS_KEY,
                   aws_secret_key=S3_SECRET_KEY)
    return url, storage, server.options(), S3_SECRET_KEY


@pytest.mark.parametrize("scheme", ["azure", "sftp", "s3"])
def test_dr_restores_from_a_remote_repository_alone(request, scheme, collections_root, pg, todo_db, tmp_repo, work_dir,
                                                    new_host):
    os.chmod(work_dir, 0o755)  # postgres restores from the download below it
    manifest = backup_with_engine(pg, todo_db.name, tmp_repo)
    at_backup = table_fingerprints(pg, todo_db.name)
    url, storage, engine_options, secret = remote_repository(request, scheme)
    remote = factory.open_repository(url, **engine_options)
    transfer.copy_backup(manifest, LocalRepository(tmp_repo), remote)
    shutil.rmtree(tmp_repo)  # only the remote copy is left
    stored_before = sorted(remote.names())
    # s3 through the deprecated dr_s3 (merged over dr_storage, with a warning), the others through dr_storage
    given = {"dr_s3": storage} if scheme == "s3" else {"dr_storage": storage}
    extra = dr_vars(url, work_dir, new_host, dr_database=todo_db.name,
                    ansible_python_interpreter=storage_python(work_dir), **given)

    result = run_playbook(DR_PLAYBOOK, extra_vars=extra, collections_root=collections_root, env=PLAYBOOK_ENV)

    name, port = new_host
    assert_same_data(at_backup, (PgCluster(15, name, port, password=ADMIN_PASSWORD), todo_db.name))
    assessed = result.task(DR_TASK % "Find the newest backup that verifies (read-only)")
    assert assessed["downloaded"] and assessed["backup"]["id"] == manifest["id"], assessed
    assert assessed["repository"] == os.path.join(extra["dr_work_dir"], "repository")
    report, _markdown = read_report(os.path.join(work_dir, "reports"))
    assert report["outcome"] == "succeeded" and report["backup"]["id"] == manifest["id"]
    assert sorted(remote.names()) == stored_before, "the source repository is only read"
    if secret:
        assert secret not in result.stdout and secret not in result.stderr, "a secret was printed"
    warned = result.task(DR_TASK % "Warn about deprecated variable names")
    assert list(warned["used"]) == (["dr_s3"] if scheme == "s3" else []), warned


@pytest.mark.parametrize("to_time", [False, True], ids=["latest", "target_time"])
def test_dr_pitr_from_a_remote_repository_and_a_remote_wal_archive(to_time, sshd, collections_root, work_dir, new_host):
    """dr_method=pitr on a host that never saw the backups or the WAL: base backup and WAL archive both on an SFTP
    server (the backup host), written there by the helper as role wal_archiving configures it. To the end of the
    archive (from the base backup dr_assess downloaded), or to dr_recovery_target_time (pitr_recovery reads the URL
    and picks the base backup itself): the change after that time is not replayed."""
    from tests.integration.test_wal_remote import Backend as WalBackend, install_helper
    os.chmod(work_dir, 0o755)
    wrapper = install_helper(os.path.join(work_dir, "wal-helper"))
    wal = WalBackend("sftp", sshd, postgres_dir(work_dir, "wal-config"))
    command = "%s archive-wal %%p %%f --config %s" % (wrapper, wal.config("archive.json"))
    url = sshd.url(sshd.make_dir() + "/base")
    local = postgres_dir(work_dir, "base-backups")
    source = PgCluster.create(extra_conf={"archive_mode": "on", "archive_command": command, "archive_timeout": "5"})
    try:
        create_todo_db(source, dbname="TodoDb", size_mb=1)
        spec = ConnectionSpec(host=source.host, port=source.port, user=source.user, password=source.password)
        base = base_backup.backup(base_backup.PhysicalBackupRequest(LocalRepository(local), spec))
        transfer.copy_backup(base, LocalRepository(local), factory.open_repository(url, **sshd.options()))
        shutil.rmtree(local)
        # Written after the base backup: only the remote WAL brings these back.
        source.sql('INSERT INTO "Users" ("Email", "UserName", "PasswordHash", "CreatedAt") '
                   "VALUES ('after-base@example.com', 'after-base', 'x', now())", dbname="TodoDb")
        at_target = table_fingerprints(source, "TodoDb")
        time.sleep(1.1)
        target_time = datetime.datetime.now(datetime.timezone.utc).isoformat()
        time.sleep(1.1)
        source.sql('DELETE FROM "Todos" WHERE "Id" % 5 = 0', dbname="TodoDb")
        wait_archived(source, timeout=120)
        at_disaster = table_fingerprints(source, "TodoDb")
        assert at_disaster != at_target
        wal_before = wal.names()
        source.stop(mode="immediate")
        source.drop()

        storage = dict(sftp_key_file=sshd.key_file, sftp_known_hosts=sshd.known_hosts)
        result = run_playbook(DR_PLAYBOOK, extra_vars=dr_vars(url, work_dir, new_host, dr_method="pitr",
                                                              dr_wal_archive=wal.url, dr_storage=storage,
                                                              dr_wal_command=wrapper, dr_install_wal_helper=False,
                                                              dr_recovery_target_time=target_time if to_time else ""),
                              collections_root=collections_root, env=PLAYBOOK_ENV)

        name, port = new_host
        assert_same_data(at_target if to_time else at_disaster, (PgCluster(15, name, port, password=ADMIN_PASSWORD),
                                                                 "TodoDb"))
        recovered = result.task(DR_TASK % "Recover the cluster from the base backup and the WAL archive")["recovery"]
        assert recovered["backup_id"] == base["id"] and recovered["wal_download"]["url"] == wal.url
        assert wal.names() == wal_before, "the source WAL archive is only read"
        assert not [n for n in os.listdir(os.path.join(work_dir, "dr-work")) if n != "repository"], "downloads left"
        report, _markdown = read_report(os.path.join(work_dir, "reports"))
        assert report["outcome"] == "succeeded" and report["backup"]["id"] == base["id"], report
        assert 0 <= report["rpo_seconds"] < 300
    finally:
        source.drop()


def test_dr_refuses_a_url_source_with_a_backup_host(collections_root, work_dir, new_host):
    extra = dr_vars("sftp://pgbackup@backup1/var/backups/todoapi", work_dir, new_host, dr_backup_host="localhost2",
                    dr_storage={"sftp_timeout": 5, "sftp_key": "typo"})
    result = run_playbook(DR_PLAYBOOK, extra_vars=extra, collections_root=collections_root, env=PLAYBOOK_ENV,
                          expect_failure=True)
    failed = result.task(DR_TASK % "Fail the play when the recovery failed")["msg"]
    assert "FAILED at step 'assess'" in failed and "dr_backup_host and dr_source_mount" in failed, failed
    assert "got: ['sftp_timeout', 'sftp_key']" in failed or "got: ['sftp_key', 'sftp_timeout']" in failed, failed
    assert not os.path.exists("/etc/postgresql/15/%s" % new_host[0]), "nothing may be provisioned"


def test_assess_downloads_the_newest_good_backup_from_s3(pg, todo_db, tmp_repo, work_dir):
    """An s3:// source: the newest backup in the bucket is damaged, the one before is downloaded to the
    new server's work directory and chosen; the bucket is left as it was."""
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import dr
    from tests.lib.servers import MotoServer, ToolMissing
    try:
        server = MotoServer.start()
    except ToolMissing as exc:
        pytest.skip(str(exc))
    try:
        bucket = server.create_bucket()
        url = "s3://%s/db1" % bucket
        target = factory.open_repository(url, **server.options())
        local = LocalRepository(tmp_repo)
        older = backup_with_engine(pg, todo_db.name, tmp_repo)
        newer = backup_with_engine(pg, todo_db.name, tmp_repo)
        for manifest in (older, newer):
            transfer.copy_backup(manifest, local, target)
        client = server.client()
        client.put_object(Bucket=bucket, Key="db1/" + newer["artifact"], Body=b"\0" * newer["size"])
        objects_before = sorted((o["Key"], o["ETag"]) for o in client.list_objects_v2(Bucket=bucket)["Contents"])

        download_to = os.path.join(work_dir, "download")
        result = dr.assess(url, todo_db.name, download_to=download_to, s3_options=server.options())

        assert result["backup"]["id"] == older["id"] and result["skipped_newer"] == [newer["id"]]
        assert result["downloaded"] and result["repository"] == download_to
        assert LocalRepository(download_to).verify_checksum(LocalRepository(download_to).load(older["id"]))
        assert sorted((o["Key"], o["ETag"]) for o in client.list_objects_v2(Bucket=bucket)["Contents"]) == objects_before
    finally:
        server.stop()
