# -*- coding: utf-8 -*-
"""Secrets never leak: the database password, the S3 secret key and the age private key must not
show up in any process's command line or environment (what ``ps`` and /proc show) while a
backup, an S3 copy and an encrypted restore run, nor in Ansible output at -vvv, the runner's
log, manifests or sidecars. Files are private: artifacts 0600, directories 0700, lock and log
files not world-writable."""

from __future__ import absolute_import, division, print_function

import os
import stat
import subprocess
import uuid

import pytest

from tests.integration.faults.faultlib import files_containing, find_secrets, runner_argv, runner_env, write_runner_config
from tests.lib.dbcompare import assert_same_data
from tests.lib.module_run import connection_args, run_module
from tests.lib.procscan import ProcScanner
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, MotoServer, ToolMissing

pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def moto():
    try:
        server = MotoServer.start()
    except ToolMissing as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def age_key(tmp_path):
    path = str(tmp_path / "restore.key")
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    with open(path) as handle:
        secret = [line.strip() for line in handle if line.startswith("AGE-SECRET-KEY-")][0]
    recipient = subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True, text=True).stdout.strip()
    return {"path": path, "secret": secret, "recipient": recipient}


def test_no_secret_in_processes_outputs_logs_or_manifests(ansible_playbook, pg, todo_db, tmp_repo, tmp_path, moto,
                                                          age_key, scratch_db, collections_root):
    bucket = moto.create_bucket()
    wrong_password = "wrong-%s" % uuid.uuid4().hex
    secrets = [pg.password, S3_SECRET_KEY, age_key["secret"], wrong_password]
    login = connection_args(pg)
    runs = []

    with ProcScanner(secrets) as scanner:
        task, run = run_module(ansible_playbook, "todoapi.pgbackup.pg_dump",
                               dict(login, database=todo_db.name, repository=tmp_repo,
                                    encrypt_recipients=[age_key["recipient"]]), verbosity=3)
        runs.append(run)
        backup = task["backup"]
        task, run = run_module(ansible_playbook, "todoapi.pgbackup.backup_copy",
                               dict(repository=tmp_repo, database=todo_db.name, copy_to=["s3://%s/prod" % bucket],
                                    s3_endpoint_url=moto.endpoint, s3_region=S3_REGION, aws_access_key=S3_ACCESS_KEY,
                                    aws_secret_key=S3_SECRET_KEY), verbosity=3)
        runs.append(run)
        assert task["results"][0]["verified"] is True
        task, run = run_module(ansible_playbook, "todoapi.pgbackup.pg_restore",
                               dict(login, repository=tmp_repo, source_database=todo_db.name, database=scratch_db,
                                    identity_file=age_key["path"], jobs=2), verbosity=3)
        runs.append(run)
        # A failure is printed in full at -vvv too: the (wrong) password must still not be.
        task, run = run_module(ansible_playbook, "todoapi.pgbackup.pg_dump",
                               dict(login, password=wrong_password, database=todo_db.name, repository=tmp_repo),
                               expect_failure=True, verbosity=3)
        runs.append(run)
        assert "Authentication failed" in task["msg"]
        # The runner, as cron starts it: password only in its passfile.
        config, settings = write_runner_config(str(tmp_path), pg, [todo_db.name], tmp_repo)
        done = subprocess.run(runner_argv(config, "backup"), env=runner_env(collections_root), capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    assert_same_data((pg, todo_db.name), (pg, scratch_db))
    # The scan saw the children it was meant to watch, and found no secret in any process.
    assert {"pg_dump", "pg_restore", "age", "zstd"} <= scanner.seen, sorted(scanner.seen)
    assert scanner.hits == [], scanner.hits
    # The tools that log in get a private passfile; no child gets PGPASSWORD or AWS secrets in its environment.
    dumps = [env for name, argv, env in scanner.children.values() if name == "pg_dump" and any(
        arg.startswith(b"--snapshot=") for arg in argv)]
    assert dumps and all(any(var.startswith(b"PGPASSFILE=") for var in env) for env in dumps)
    assert not [(name, var.split(b"=")[0]) for name, argv, env in scanner.children.values() for var in env
                if var.startswith((b"PGPASSWORD=", b"AWS_SECRET_ACCESS_KEY=", b"AWS_SESSION_TOKEN="))]

    for run in runs:
        assert "-vvv" in run.argv
        assert find_secrets(run.stdout + run.stderr, secrets) == [], run.describe()[:2000]
    assert find_secrets(done.stdout + done.stderr, secrets) == []
    assert files_containing(tmp_repo, secrets) == {}
    with open(settings["log_file"]) as handle:
        assert find_secrets(handle.read(), secrets) == []
    client = moto.client()
    for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
        if item["Key"].endswith(".json"):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8")
            assert find_secrets(body, secrets) == [], item["Key"]

    # Private files: artifacts and manifests 0600, directories 0700; lock and log not world-writable.
    assert stat.S_IMODE(os.stat(tmp_repo).st_mode) == 0o700
    for name in os.listdir(tmp_repo):
        mode = stat.S_IMODE(os.stat(os.path.join(tmp_repo, name)).st_mode)
        assert mode == 0o600, "%s has mode %o" % (name, mode)
    assert backup["encryption"]["recipients"] == [age_key["recipient"]]
    for path in (settings["lock_file"], settings["log_file"]):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert not mode & 0o022, "%s has mode %o" % (path, mode)
