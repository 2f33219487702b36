# -*- coding: utf-8 -*-
"""The runner with a list of repositories, one of them remote (S3 on moto, Azure on Azurite, SFTP on
a real sshd): backup copies into every repository, list/verify/restore take --repository, prune
applies each repository's own policy (and cleans its WAL archive in S3), and a remote first repository gets its backups through the
state directory. Real PostgreSQL, real servers; each remote repository's secrets only in its 0600
credentials file."""

from __future__ import absolute_import, division, print_function

import hashlib
import io
import json
import os
import uuid
from contextlib import redirect_stdout

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_remote
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli, repositories
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import check_config
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib import servers
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from tests.lib.tododb import todo_row_counts

moto, azurite, sshd = servers.moto, servers.azurite, servers.sshd  # the servers' fixtures, for this module

KEEP_LAST = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0}


def secret_file(path, text):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return str(path)


def s3_repository(server, tmp_path):
    credentials = secret_file(tmp_path / "s3.credentials", "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                              % (S3_ACCESS_KEY, S3_SECRET_KEY))
    return {"location": "s3://%s/db01" % server.create_bucket(), "credentials_file": credentials,
            "options": {"endpoint_url": server.endpoint, "region": S3_REGION}}, S3_SECRET_KEY


def azure_repository(server, tmp_path):
    credentials = secret_file(tmp_path / "azure.credentials", server.connection_string + "\n")
    return {"location": "azure://%s/db01" % server.create_container(), "credentials_file": credentials,
            "options": {"max_attempts": 2, "retry_backoff": 0.2}}, server.key


def sftp_repository(server, tmp_path):
    return {"location": server.url(server.make_dir()), "credentials_file": server.key_file,
            "options": {"known_hosts": server.known_hosts, "timeout": 10}}, None


# back-end -> (fixture of its server, its repository entry)
REMOTES = {"s3": ("moto", s3_repository), "azure": ("azurite", azure_repository), "sftp": ("sshd", sftp_repository)}


@pytest.fixture(params=sorted(REMOTES))
def remote(request, tmp_path):
    """(entry, secret) of a remote repository on a real server; the secret must never reach the config or log."""
    server_fixture, repository = REMOTES[request.param]
    entry, secret = repository(request.getfixturevalue(server_fixture), tmp_path)
    return dict(entry, name="offsite"), secret


@pytest.fixture
def runner(pg, tmp_path):
    """runner(repositories, *argv) -> (exit status, stdout): the runner in this process, as root, with a
    config below tmp_path whose password is only in a 0600 passfile."""
    passfile = secret_file(tmp_path / "pgpass", "*:*:*:%s:%s\n" % (pg.user, pg.password))
    state = tmp_path / "state"

    def run(config_repositories, *argv, **overrides):
        config = dict({"name": "remote-test", "repositories": config_repositories, "owner": "postgres",
                       "connection": {"host": pg.host, "port": pg.port, "user": pg.user, "passfile": passfile},
                       "log_file": str(tmp_path / "backup.log"), "lock_file": str(tmp_path / "run.lock"),
                       "state_dir": str(state), "lock_wait_seconds": 0}, **overrides)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        out = io.StringIO()
        with redirect_stdout(out):
            code = cli.main(["--config", str(path), "--quiet"] + list(argv))
        return code, out.getvalue()
    run.log = tmp_path / "backup.log"
    run.state = state
    return run


def events(path, name):
    with open(str(path)) as handle:
        return [event for event in map(json.loads, handle) if event["event"] == name]


def listed(runner, entries, selector):
    code, out = runner(entries, "list", "--json", "--repository", selector)
    assert code == 0, out
    return [backup["id"] for backup in json.loads(out)["backups"]]


def test_every_command_on_a_remote_repository(runner, remote, todo_db, tmp_repo, tmp_path):
    entry, secret = remote
    entries = [{"name": "local", "location": tmp_repo, "retention": dict(KEEP_LAST, keep_last=1)},
               dict(entry, retention=dict(KEEP_LAST, keep_last=2))]
    for attempt in range(3):
        assert runner(entries, "backup", databases=[todo_db.name])[0] == 0, runner.log.read_text()
    local_ids = listed(runner, entries, "local")
    assert len(local_ids) == 3 and listed(runner, entries, "offsite") == local_ids == listed(runner, entries, "2")
    assert len(events(runner.log, "copy_ok")) == 3

    code, _out = runner(entries, "verify", "--repository", "offsite", "--level", "structure", databases=[todo_db.name])
    assert code == 0, runner.log.read_text()
    verified = events(runner.log, "verify_ok")[-1]
    assert verified["repository"] == "offsite" and verified["backup_id"] == local_ids[-1]
    opened = repositories.open_entry(check_config({"repositories": entries})["repositories"][1])
    record = opened.read_sidecar(local_ids[-1], "verify")
    assert record["history"][-1]["outcome"] == "passed" and record["history"][-1]["level"] == "structure", \
        "the record of a remote backup's verification is kept in that repository"

    code, _out = runner(entries, "prune", "--dry-run", databases=[todo_db.name])
    assert code == 0, runner.log.read_text()
    would = [(e["repository"], e["backup_id"]) for e in events(runner.log, "prune_would_delete")]
    assert would == [("local", local_ids[0]), ("local", local_ids[1]), ("offsite", local_ids[0])]
    assert runner(entries, "prune", databases=[todo_db.name])[0] == 0, runner.log.read_text()
    assert listed(runner, entries, "local") == local_ids[2:] and listed(runner, entries, "offsite") == local_ids[1:]

    target = "%s_from_offsite" % todo_db.name
    try:
        code, _out = runner(entries, "restore", "--repository", "offsite", "--backup", local_ids[1], "--database", target,
                            databases=[todo_db.name])
        assert code == 0, runner.log.read_text()
        assert todo_row_counts(todo_db.cluster, target) == todo_db.row_counts
    finally:
        todo_db.cluster.drop_database(target)
    assert os.listdir(str(runner.state / "work")) == [], "downloads are removed after use"
    text = runner.log.read_text() + (tmp_path / "config.json").read_text()
    assert secret is None or secret not in text


def test_a_remote_first_repository_gets_its_backups_through_the_state_directory(runner, moto, todo_db, tmp_path):
    entry, _secret = s3_repository(moto, tmp_path)
    entries = [dict(entry, name="s3")]
    assert runner(entries, "backup", databases=[todo_db.name])[0] == 0, runner.log.read_text()
    assert len(listed(runner, entries, "s3")) == 1
    assert os.listdir(str(runner.state / "work")) == [], "nothing stays in the scratch repository"


def test_status_of_a_remote_first_repository(runner, moto, todo_db, tmp_path):
    """status sizes a remote backup from the storage's listing (an artifact missing there would be 'empty')."""
    entry, _secret = s3_repository(moto, tmp_path)
    entries = [dict(entry, name="s3")]
    assert runner(entries, "backup", databases=[todo_db.name])[0] == 0, runner.log.read_text()
    code, out = runner(entries, "status", "--json", databases=[todo_db.name], max_age_hours=1)
    report = json.loads(out)
    assert report["status"]["repository"] == entry["location"]
    assert code == 0 and report["problem_codes"] == [], out
    [backup] = report["status"]["backups"]
    assert backup["file_state"] == "ok" and backup["actual_size"] == backup["size"] > 0, backup


def test_a_copy_that_fails_fails_the_run_but_keeps_the_local_backup(runner, todo_db, tmp_repo, tmp_path):
    unreachable = {"name": "nowhere", "location": "sftp://backup@127.0.0.1:1/srv/%s" % uuid.uuid4().hex,
                   "credentials_file": secret_file(tmp_path / "key", "not a key\n"), "options": {"timeout": 2}}
    entries = [tmp_repo, unreachable]
    assert runner(entries, "backup", databases=[todo_db.name])[0] == 1
    failed = events(runner.log, "copy_failed")
    assert [e["repository"] for e in failed] == ["nowhere"] and len(listed(runner, entries, "1")) == 1


def fake_physical(repo_dir, day, start):
    """A complete (checksummed) physical backup manifest + artifact in a local directory."""
    backup_id = "202401%02dT020000Z_physical_remote-test" % day
    data = ("base backup %s" % backup_id).encode()
    os.makedirs(repo_dir, exist_ok=True)
    with open(os.path.join(repo_dir, backup_id + ".tar"), "wb") as handle:
        handle.write(data)
    manifest = {"manifest_version": 1, "id": backup_id, "kind": "physical", "database": "remote-test",
                "artifact": backup_id + ".tar", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "started_at": "2024-01-%02dT02:00:00.000000Z" % day, "finished_at": "2024-01-%02dT02:00:05.000000Z" % day,
                "wal_start_segment": start}
    with open(os.path.join(repo_dir, backup_id + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return manifest


def test_prune_cleans_a_wal_archive_in_s3_with_the_repositorys_credentials(runner, moto, tmp_path):
    entry, _secret = s3_repository(moto, tmp_path)
    entry.update(name="s3", retention=dict(KEEP_LAST, keep_last=1), wal_archive=entry["location"] + "-wal")
    local = str(tmp_path / "made")
    normal = check_config({"repositories": [entry]})["repositories"][0]
    target = repositories.open_entry(normal)
    for day, start in ((1, "000000010000000000000002"), (2, "000000010000000000000005")):
        transfer.copy_backup(fake_physical(local, day, start), LocalRepository(local), target)
    archive = repositories.open_wal_archive(normal)
    names = ["0000000100000000000000%02X" % segno for segno in range(1, 8)]
    for name in names:
        segment = tmp_path / name
        segment.write_bytes(os.urandom(16) * 65536)  # 1 MiB, the smallest segment size
        wal_remote.archive_segment(str(segment), name, archive)

    code, out = runner([entry], "prune", "--dry-run")
    assert code == 0, out
    assert events(runner.log, "prune_wal_ok")[-1]["removed"] == 4 and len(archive.entries()) >= len(names)
    code, out = runner([entry], "prune")
    assert code == 0, out
    assert sorted(name for name in archive.entries() if len(name) == 24) == names[4:]
    assert [e["backup_id"] for e in events(runner.log, "prune_deleted")] == ["20240101T020000Z_physical_remote-test"]
