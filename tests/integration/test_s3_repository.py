# -*- coding: utf-8 -*-
"""S3 repository and backup copies against a real S3-compatible HTTP server (moto_server on
127.0.0.1) and real PostgreSQL: copy, list, verify, download and restore; and every way a copy
can fail, each with a clear message, no manifest on the target and the local backup untouched."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError   # noqa: E402

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import s3
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError   # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository   # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.s3 import S3Repository   # noqa: E402
from tests.lib.backups import synthetic_backup, tree_state   # noqa: E402
from tests.lib.dbcompare import assert_same_data   # noqa: E402
from tests.lib.engine import spec_of   # noqa: E402
from tests.lib.pgcluster import find_free_port   # noqa: E402
from tests.lib.tododb import create_todo_db   # noqa: E402

ACCESS_KEY = "AKIAPGBACKUPTEST0001"
SECRET_KEY = "s3cr3t-Never-Logged-7f3a9c"
REGION = "us-east-1"
MOTO_SERVER = os.path.join(os.path.dirname(sys.executable), "moto_server")


def start_moto(port):
    log = tempfile.NamedTemporaryFile(prefix="pgbackup-moto-", suffix=".log", delete=False)
    process = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    with open(log.name) as handle:
        raise RuntimeError("moto_server did not start:\n" + handle.read())


def stop_moto(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3-compatible HTTP server on a free 127.0.0.1 port for this module."""
    port = find_free_port()
    process = start_moto(port)
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        stop_moto(process)


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY)


@pytest.fixture
def bucket(s3_endpoint):
    name = "pgbackup-%s" % uuid.uuid4().hex[:12]
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents") or []:
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


def s3_options(endpoint, **extra):
    options = dict(endpoint_url=endpoint, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    options.update(extra)
    return options


def keys_in(endpoint, bucket_name, prefix=""):
    client = s3_client(endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket_name, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents") or []]
    return sorted(keys)


def take_backup(cluster, database, repo_path, **options):
    request = logical_backup.LogicalBackupRequest(database, LocalRepository(repo_path), spec_of(cluster), **options)
    return logical_backup.backup(request)


@pytest.fixture(scope="module")
def source(pg):
    """A real backup of a small Todo database in a local repository, shared by the failure tests."""
    name = "TodoDb_s3_%s" % uuid.uuid4().hex[:8]
    create_todo_db(pg, dbname=name, size_mb=2)
    path = tempfile.mkdtemp(prefix="pgbackup-s3src-")
    try:
        manifest = take_backup(pg, name, path)
        yield LocalRepository(path), manifest
    finally:
        shutil.rmtree(path, ignore_errors=True)
        pg.drop_database(name)


@pytest.fixture
def other_dir():
    path = tempfile.mkdtemp(prefix="pgbackup-nfs-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def restored_db(pg):
    name = "Restored from S3 %s" % uuid.uuid4().hex[:6]
    yield name
    pg.drop_database(name)


# Happy paths


def test_copy_to_s3_and_second_path_then_restore_from_s3(pg, todo_db, tmp_repo, bucket, s3_endpoint, other_dir, restored_db):
    manifest = take_backup(pg, todo_db.name, tmp_repo)
    assert "globals" in manifest["extra_files"]
    s3 = factory.open_repository("s3://%s/prod/todo" % bucket, **s3_options(s3_endpoint))
    nfs = factory.open_repository(other_dir, owner="postgres")
    assert isinstance(s3, S3Repository) and isinstance(nfs, LocalRepository)

    results = transfer.copy_to_targets(manifest, LocalRepository(tmp_repo), [s3.url, other_dir], owner="postgres",
                                       s3_options=s3_options(s3_endpoint))
    assert [r["changed"] for r in results] == [True, True] and all(r["verified"] for r in results)
    assert results[0]["artifact"] == "s3://%s/prod/todo/%s" % (bucket, manifest["artifact"])

    # Same layout as the local repository, under the prefix.
    expected = sorted("prod/todo/" + name for name in os.listdir(tmp_repo))
    assert keys_in(s3_endpoint, bucket) == expected
    assert sorted(os.listdir(other_dir)) == sorted(os.listdir(tmp_repo))
    for name in os.listdir(other_dir):
        info = os.stat(os.path.join(other_dir, name))
        assert oct(info.st_mode & 0o777) == "0o600" and info.st_uid == __import__("pwd").getpwnam("postgres").pw_uid
    assert nfs.verify_checksum(nfs.load(manifest["id"])) == manifest["sha256"]

    # List / resolve / verify in S3.
    assert [m["id"] for m in s3.list(database=todo_db.name, kind="logical")] == [manifest["id"]]
    assert s3.list(database="OtherDb") == []
    latest = s3.resolve("latest", database=todo_db.name)
    assert latest == json.loads(json.dumps(manifest))
    assert s3.resolve(manifest["id"])["sha256"] == manifest["sha256"]
    assert s3.verify_checksum(latest) == manifest["sha256"]

    # A second copy finds the verified copies and does nothing.
    again = transfer.copy_to_targets(manifest, LocalRepository(tmp_repo), [s3.url, other_dir], owner="postgres",
                                     s3_options=s3_options(s3_endpoint))
    assert [r["changed"] for r in again] == [False, False]

    # Disaster: the local repository is gone; restore from S3 into a new database.
    shutil.rmtree(tmp_repo)
    work = tempfile.mkdtemp(prefix="pgbackup-restorework-")
    try:
        local = LocalRepository(work)
        downloaded = s3.download(latest, local)
        assert downloaded["id"] == manifest["id"]
        assert not [n for n in os.listdir(work) if n.startswith(".tmp-")]
        local.verify_checksum(local.load(manifest["id"]))
        request = logical_restore.LogicalRestoreRequest(local, spec_of(pg), database=restored_db,
                                                        source_database=todo_db.name, backup=manifest["id"])
        result = logical_restore.restore(request)
        assert result["tables"] == manifest["tables"]
        assert_same_data((pg, todo_db.name), (pg, restored_db))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_directory_format_copies_each_file_and_restores(pg, todo_db, tmp_repo, bucket, s3_endpoint, restored_db):
    manifest = take_backup(pg, todo_db.name, tmp_repo, fmt="directory", jobs=2, compression="gzip:6")
    s3 = factory.open_repository("s3://%s" % bucket, **s3_options(s3_endpoint))
    result = transfer.copy_backup(manifest, LocalRepository(tmp_repo), s3)
    assert result["changed"] and result["verified"]
    dir_files = sorted(os.path.relpath(os.path.join(root, f), os.path.join(tmp_repo, manifest["artifact"]))
                       for root, dirs, files in os.walk(os.path.join(tmp_repo, manifest["artifact"])) for f in files)
    assert "toc.dat" in dir_files
    assert keys_in(s3_endpoint, bucket, manifest["artifact"] + "/") == [manifest["artifact"] + "/" + f for f in dir_files]
    s3.verify_checksum(manifest)

    work = tempfile.mkdtemp(prefix="pgbackup-restorework-")
    try:
        local = LocalRepository(work)
        s3.download(s3.resolve("latest", database=todo_db.name), local)
        request = logical_restore.LogicalRestoreRequest(local, spec_of(pg), database=restored_db,
                                                        source_database=todo_db.name, jobs=2)
        assert logical_restore.restore(request)["tables"] == manifest["tables"]
        assert_same_data((pg, todo_db.name), (pg, restored_db))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # One file of the directory altered remotely: the tree checksum no longer matches.
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key=manifest["artifact"] + "/toc.dat", Body=b"tampered")
    with pytest.raises(PgBackupError, match="(has \\d+ bytes|Checksum mismatch)"):
        s3.verify_checksum(manifest)


def test_multipart_upload_with_sse_sidecars_and_delete(tmp_repo, bucket, s3_endpoint):
    manifest = synthetic_backup(tmp_repo, 12 * 1024 * 1024 + 123)
    s3 = factory.open_repository("s3://%s/mp" % bucket, **s3_options(s3_endpoint, sse="AES256", chunk_size_mb=5))
    seen = []
    transfer.copy_backup(manifest, LocalRepository(tmp_repo), s3, progress=seen.append)
    assert sum(seen) == manifest["size"]
    client = s3_client(s3_endpoint)
    head = client.head_object(Bucket=bucket, Key="mp/" + manifest["artifact"])
    assert head["ContentLength"] == manifest["size"]
    assert head["ETag"].strip('"').endswith("-3")  # three 5 MiB parts: a real multipart upload
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == manifest["sha256"]
    assert client.head_object(Bucket=bucket, Key="mp/%s.manifest.json" % manifest["id"])["ServerSideEncryption"] == "AES256"
    s3.verify_checksum(manifest)

    s3.write_sidecar(manifest["id"], "verification", {"ok": True})
    assert s3.read_sidecar(manifest["id"], "verification") == {"ok": True}
    assert s3.read_sidecar(manifest["id"], "nothing") is None

    s3.delete(manifest)
    assert s3.list() == [] and keys_in(s3_endpoint, bucket) == []


def test_credentials_from_environment_and_secrets_never_shown(tmp_repo, bucket, s3_endpoint, monkeypatch):
    manifest = synthetic_backup(tmp_repo, 1000)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    s3 = factory.open_repository("s3://%s/env" % bucket, endpoint_url=s3_endpoint)
    transfer.copy_backup(manifest, LocalRepository(tmp_repo), s3)
    assert [m["id"] for m in s3.list()] == [manifest["id"]]
    explicit = factory.open_repository("s3://missing-bucket-%s" % uuid.uuid4().hex[:6], **s3_options(s3_endpoint))
    assert SECRET_KEY not in repr(explicit) and SECRET_KEY not in repr(vars(explicit))
    with pytest.raises(PgBackupError) as failure:
        transfer.copy_backup(manifest, LocalRepository(tmp_repo), explicit)
    assert SECRET_KEY not in str(failure.value) and ACCESS_KEY not in str(failure.value)
    with pytest.raises(PgBackupError, match="Only one of the S3 access key and secret key"):
        factory.open_repository("s3://%s" % bucket, endpoint_url=s3_endpoint, access_key=ACCESS_KEY)


# Failures: clear message, no manifest on the target, local copy untouched


def assert_failed_copy(source_repo, manifest, target, pattern):
    before = tree_state(source_repo.path)
    with pytest.raises(PgBackupError, match=pattern) as failure:
        transfer.copy_backup(manifest, source_repo, target)
    assert tree_state(source_repo.path) == before
    return failure.value


def test_unreachable_endpoint(source):
    repo, manifest = source
    closed = "http://127.0.0.1:%d" % find_free_port()
    target = factory.open_repository("s3://pgbackup-any/x", **s3_options(closed))
    started = time.monotonic()
    error = assert_failed_copy(repo, manifest, target, "Cannot reach S3 endpoint http://127.0.0.1:\\d+")
    assert "s3_endpoint_url" in error.hint
    assert time.monotonic() - started < 30


def test_no_such_bucket(source, s3_endpoint):
    repo, manifest = source
    target = factory.open_repository("s3://no-such-bucket-%s/x" % uuid.uuid4().hex[:6], **s3_options(s3_endpoint))
    error = assert_failed_copy(repo, manifest, target, "S3 bucket 'no-such-bucket-[0-9a-f]+' does not exist")
    assert "Create the bucket" in error.hint


def test_access_denied_is_named(source, s3_endpoint, bucket):
    """moto accepts any credentials, so the S3 answer is the one AWS gives for a denied request."""
    target = factory.open_repository("s3://%s/x" % bucket, **s3_options(s3_endpoint))
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    error = target._error(denied, "upload to", "a.dump")
    assert error.message.startswith("Access denied by S3 (AccessDenied) while trying to upload to 's3://%s/x/a.dump'" % bucket)
    assert "s3:PutObject" in error.hint


def test_upload_interrupted_leaves_no_manifest_and_no_objects(tmp_repo, bucket, s3_endpoint):
    manifest = synthetic_backup(tmp_repo, 11 * 1024 * 1024)
    target = factory.open_repository("s3://%s/int" % bucket, **s3_options(s3_endpoint, chunk_size_mb=5))
    before = tree_state(tmp_repo)
    sent = []

    def cut_the_line(count):
        sent.append(count)
        if sum(sent) > 6 * 1024 * 1024:
            raise IOError("network cable pulled")

    # botocore reports a failure while sending the body as a closed connection.
    with pytest.raises(PgBackupError, match="The connection to S3 endpoint http://127.0.0.1:\\d+ was interrupted while "
                                            "trying to upload to 's3://%s/int/%s'" % (bucket, manifest["artifact"])):
        transfer.copy_backup(manifest, LocalRepository(tmp_repo), target, progress=cut_the_line)
    assert tree_state(tmp_repo) == before
    assert keys_in(s3_endpoint, bucket) == []
    assert s3_client(s3_endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert target.list() == []


def test_server_dies_mid_upload(tmp_repo, bucket):
    """A real interruption: the S3 server process is killed during a multipart upload."""
    port = find_free_port()
    process = start_moto(port)
    endpoint = "http://127.0.0.1:%d" % port
    try:
        s3_client(endpoint).create_bucket(Bucket=bucket)
        manifest = synthetic_backup(tmp_repo, 16 * 1024 * 1024)
        target = factory.open_repository("s3://%s/dies" % bucket, **s3_options(endpoint, chunk_size_mb=5))
        before = tree_state(tmp_repo)
        sent = []

        def kill_server(count):
            sent.append(count)
            if sum(sent) > 5 * 1024 * 1024 and process.poll() is None:
                process.kill()

        with pytest.raises(PgBackupError, match="(Cannot reach S3 endpoint|was interrupted)"):
            transfer.copy_backup(manifest, LocalRepository(tmp_repo), target, progress=kill_server)
        assert tree_state(tmp_repo) == before
    finally:
        stop_moto(process)


def test_mismatch_after_upload_removes_the_copy(source, bucket, s3_endpoint, monkeypatch):
    """The bytes stored differ from the ones sent (e.g. a broken proxy): caught by the re-read."""
    repo, manifest = source
    target = factory.open_repository("s3://%s/mm" % bucket, **s3_options(s3_endpoint))
    original_upload = s3.S3Repository._upload_file

    def upload_then_corrupt(self, path, name, sha256=None, progress=None):
        original_upload(self, path, name, sha256, progress)
        if name == manifest["artifact"]:
            size = os.path.getsize(path)
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=b"\0" * size)

    monkeypatch.setattr(s3.S3Repository, "_upload_file", upload_then_corrupt)
    error = assert_failed_copy(repo, manifest, target, "^Checksum mismatch after upload: Checksum mismatch for '%s'"
                               % manifest["artifact"])
    assert "no manifest was written" in error.hint
    assert keys_in(s3_endpoint, bucket) == []


def test_altered_or_deleted_remote_objects(source, bucket, s3_endpoint, other_dir):
    repo, manifest = source
    prefix = "dmg/"
    s3 = factory.open_repository("s3://%s/dmg" % bucket, **s3_options(s3_endpoint))
    transfer.copy_backup(manifest, repo, s3)
    client = s3_client(s3_endpoint)
    key = prefix + manifest["artifact"]
    original = client.get_object(Bucket=bucket, Key=key)["Body"].read()

    # Same size, different bytes.
    client.put_object(Bucket=bucket, Key=key, Body=bytes(reversed(original)))
    with pytest.raises(PgBackupError, match="Checksum mismatch for '%s'" % manifest["artifact"]):
        s3.verify_checksum(manifest)
    with pytest.raises(PgBackupError, match="No usable backup of database .* \\(1 failed their checksum\\)"):
        s3.resolve("latest", database=manifest["database"])
    local = LocalRepository(other_dir)
    with pytest.raises(PgBackupError, match="Checksum mismatch"):
        s3.download(manifest, local)
    assert os.listdir(other_dir) == []  # nothing half-downloaded, no manifest

    # Truncated.
    client.put_object(Bucket=bucket, Key=key, Body=original[:100])
    with pytest.raises(PgBackupError, match="has 100 bytes .* manifest says %d" % manifest["size"]):
        s3.verify_checksum(manifest)

    # Deleted artifact.
    client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(PgBackupError, match="File '%s' of backup '%s' is missing" % (manifest["artifact"], manifest["id"])):
        s3.verify_checksum(manifest)

    # Copying again repairs the remote copy.
    assert transfer.copy_backup(manifest, repo, s3)["changed"] is True
    s3.verify_checksum(manifest)

    # Deleted manifest: no longer a backup.
    client.delete_object(Bucket=bucket, Key=prefix + manifest["id"] + ".manifest.json")
    assert s3.list() == []
    with pytest.raises(PgBackupError, match="Backup '%s' was not found" % manifest["id"]):
        s3.resolve(manifest["id"])


def test_damaged_source_is_not_copied(tmp_repo, bucket, s3_endpoint, other_dir):
    manifest = synthetic_backup(tmp_repo, 2048)
    with open(os.path.join(tmp_repo, manifest["artifact"]), "r+b") as handle:
        handle.write(b"X")
    s3 = factory.open_repository("s3://%s" % bucket, **s3_options(s3_endpoint))
    for target in (s3, LocalRepository(other_dir)):
        with pytest.raises(PgBackupError, match="fails its checksum, so it was not copied"):
            transfer.copy_backup(manifest, LocalRepository(tmp_repo), target)
    assert keys_in(s3_endpoint, bucket) == [] and os.listdir(other_dir) == []


def test_different_backup_with_the_same_id_is_never_overwritten(tmp_repo, bucket, s3_endpoint, other_dir):
    s3 = factory.open_repository("s3://%s/shared" % bucket, **s3_options(s3_endpoint))
    first = synthetic_backup(tmp_repo, 4096)
    transfer.copy_backup(first, LocalRepository(tmp_repo), s3)
    transfer.copy_backup(first, LocalRepository(tmp_repo), LocalRepository(other_dir))
    other_host = tempfile.mkdtemp(prefix="pgbackup-otherhost-")
    try:
        second = synthetic_backup(other_host, 4096)  # same id, other bytes (another server, same second)
        for target in (s3, LocalRepository(other_dir)):
            with pytest.raises(PgBackupError, match="already holds a different backup with the id '%s'" % first["id"]):
                transfer.copy_backup(second, LocalRepository(other_host), target)
        with pytest.raises(PgBackupError, match="already holds a different backup"):
            s3.download(first, LocalRepository(other_host))
    finally:
        shutil.rmtree(other_host, ignore_errors=True)
    s3.verify_checksum(first)
    LocalRepository(other_dir).verify_checksum(first)


def test_one_failing_target_does_not_stop_the_others(source, bucket, s3_endpoint, other_dir):
    repo, manifest = source
    targets = ["s3://no-such-bucket-%s" % uuid.uuid4().hex[:6], other_dir]
    with pytest.raises(PgBackupError, match="failed for 1 of 2 target") as failure:
        transfer.copy_to_targets(manifest, repo, targets, s3_options=s3_options(s3_endpoint))
    results = failure.value.details["results"]
    assert results[0]["failed"] and "does not exist" in results[0]["msg"]
    assert results[1]["changed"] and os.path.exists(os.path.join(other_dir, manifest["id"] + ".manifest.json"))


# The module


def run_backup_copy(ansible_playbook, args, check=False, expect_failure=False):
    playbook = "\n".join([
        "- name: Copy a backup",
        "  hosts: all",
        "  gather_facts: false",
        "  tasks:",
        "    - name: copy",
        "      todoapi.pgbackup.backup_copy: %s" % json.dumps(args),
        ""])
    result = ansible_playbook(playbook, check=check, expect_failure=expect_failure)
    return result.task("copy"), result


def test_backup_copy_module(ansible_playbook, source, bucket, s3_endpoint, other_dir):
    repo, manifest = source
    url = "s3://%s/module" % bucket
    args = {"repository": repo.path, "database": manifest["database"], "copy_to": [url, other_dir],
            "s3_endpoint_url": s3_endpoint, "s3_region": REGION, "aws_access_key": ACCESS_KEY,
            "aws_secret_key": SECRET_KEY, "s3_sse": "AES256"}

    planned = run_backup_copy(ansible_playbook, args, check=True)[0]
    assert planned["changed"] and [r["changed"] for r in planned["results"]] == [True, True]
    assert keys_in(s3_endpoint, bucket) == [] and os.listdir(other_dir) == []

    task, run = run_backup_copy(ansible_playbook, args)
    assert task["changed"] and task["backup"]["id"] == manifest["id"]
    assert [r["target"] for r in task["results"]] == [url, other_dir]
    assert all(r["verified"] for r in task["results"])
    assert SECRET_KEY not in run.stdout and SECRET_KEY not in run.stderr
    assert "module/%s.manifest.json" % manifest["id"] in keys_in(s3_endpoint, bucket)

    task = run_backup_copy(ansible_playbook, dict(args, backup=manifest["id"]))[0]
    assert task["changed"] is False

    failed, run = run_backup_copy(ansible_playbook, dict(args, copy_to=["s3://no-such-bucket-%s" % uuid.uuid4().hex[:6]]),
                                  expect_failure=True)
    assert "does not exist" in failed["msg"] and failed["results"][0]["failed"]
    assert SECRET_KEY not in run.stdout
