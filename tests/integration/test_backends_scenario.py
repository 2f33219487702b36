# -*- coding: utf-8 -*-
"""One integration scenario on every storage back-end: backup -> copy -> list -> verify ->
restore -> prune, against real servers on 127.0.0.1 (a second local directory as NFS stand-in,
moto_server for S3, Azurite for Azure Blob, OpenSSH sshd for SFTP) and real PostgreSQL.

Then what only some back-ends can get wrong: Azure authentication, missing containers and
interrupted transfers; SFTP unknown/changed host keys and refused keys; directory-format
artifacts. Every failure must name its cause, leave no manifest behind and leave the local
backup untouched.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import tempfile
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import verify
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.azure_blob import AzureRepository
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.sftp import SftpRepository
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.backups import synthetic_backup, tree_state
from tests.lib.dbcompare import assert_same_data
from tests.lib.engine import spec_of
from tests.lib.servers import AzuriteServer, azurite, moto, sshd  # noqa: F401  # pylint: disable=unused-import
from tests.lib.tododb import create_todo_db

BACKENDS = ["local", "s3", "azure", "sftp"]
KEEP_NEWEST_ONLY = {"keep_last": 1, "daily_days": 0, "weekly_weeks": 0, "monthly_months": 0}


@pytest.fixture(scope="module")
def source(pg):
    """Two real backups (older, newer) of a small Todo database in a local repository."""
    name = "TodoDb_be_%s" % uuid.uuid4().hex[:8]
    create_todo_db(pg, dbname=name, size_mb=1)
    path = tempfile.mkdtemp(prefix="pgbackup-besrc-")
    repo = LocalRepository(path)
    try:
        older = logical_backup.backup(logical_backup.LogicalBackupRequest(name, repo, spec_of(pg)))
        pg.sql('UPDATE "Todos" SET "Title" = "Title" || \' (edited)\' WHERE "Id" % 7 = 0', dbname=name)
        newer = logical_backup.backup(logical_backup.LogicalBackupRequest(name, repo, spec_of(pg)))
        yield repo, name, older, newer
    finally:
        shutil.rmtree(path, ignore_errors=True)
        pg.drop_database(name)


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="pgbackup-bework-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Target(object):
    """A fresh, empty repository on one back-end: url + the options open_repository() needs."""

    def __init__(self, url, options, cleanup=None):
        self.url = url
        self.options = options
        self.cleanup = cleanup

    def open(self):
        return factory.open_repository(self.url, owner="postgres", **self.options)


@pytest.fixture
def target(request, workdir):
    backend = request.param
    if backend == "local":
        yield Target(os.path.join(workdir, "nfs", "todoapi"), {})
    elif backend == "s3":
        pytest.importorskip("boto3")
        server = request.getfixturevalue("moto")
        bucket = server.create_bucket()
        yield Target("s3://%s/prod" % bucket, server.options())
    elif backend == "azure":
        server = request.getfixturevalue("azurite")
        container = server.create_container()
        yield Target("azure://%s/prod" % container, server.options())
    else:
        server = request.getfixturevalue("sshd")
        yield Target(server.url(server.make_dir() + "/todoapi"), server.options())


def restore_and_compare(pg, repo, manifest, database, restored):
    request = logical_restore.LogicalRestoreRequest(repo, spec_of(pg), database=restored, source_database=database,
                                                    backup=manifest["id"])
    result = logical_restore.restore(request)
    assert result["tables"] == manifest["tables"]


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_backup_copy_list_verify_restore_prune(pg, source, target, workdir):
    local, database, older, newer = source
    before = tree_state(local.path)
    repo = target.open()

    # copy (both backups; the second copy of the same backup changes nothing)
    for manifest in (older, newer):
        result = transfer.copy_to_targets(manifest, local, [target.url], owner="postgres", s3_options=target.options)[0]
        assert result["changed"] and result["verified"] and result["target"] == factory.describe_location(repo)
    assert transfer.copy_backup(newer, local, repo)["changed"] is False

    # list / resolve / verify
    assert [m["id"] for m in repo.list(database=database, kind="logical")] == [older["id"], newer["id"]]
    assert repo.list(database="OtherDb") == []
    latest = repo.resolve("latest", database=database)
    assert latest["id"] == newer["id"] and latest["sha256"] == newer["sha256"]
    assert repo.resolve(newer["id"])["tables"] == newer["tables"]
    verified = verify.verify_backup(repo, latest, "checksum")
    assert verified["verified"] and verified["checks"]["checksum"]["sha256"] == newer["sha256"]
    assert verify.verification_state(repo, newer["id"]) is not None, "the verify sidecar was not stored in %s" % repo.url

    # restore from the copy alone (remote: download into a new local repository first)
    restored = "Restored %s %s" % (target.url.split(":")[0][:5], uuid.uuid4().hex[:6])
    try:
        if isinstance(repo, LocalRepository):
            restore_from = repo
        else:
            restore_from = LocalRepository(os.path.join(workdir, "restore"))
            assert repo.download(latest, restore_from)["id"] == newer["id"]
            assert not [n for n in os.listdir(restore_from.path) if n.startswith(".tmp-")]
        restore_and_compare(pg, restore_from, newer, database, restored)
        assert_same_data((pg, database), (pg, restored))
    finally:
        pg.drop_database(restored)

    # prune: the GFS engine on the copy keeps the newest and deletes the older backup
    pruned = retention.apply_retention(repo, KEEP_NEWEST_ONLY, database=database)
    assert [entry["id"] for entry in pruned["deleted"]] == [older["id"]]
    assert [m["id"] for m in repo.list(database=database)] == [newer["id"]]
    repo.verify_checksum(repo.load(newer["id"]))
    with pytest.raises(PgBackupError, match="was not found"):
        repo.load(older["id"])
    assert tree_state(local.path) == before, "the source repository was modified"


# Directory-format artifacts (one file per table) travel file by file.


@pytest.mark.parametrize("suffix", [".dir", ".base"], ids=["pg_dump-directory", "base-backup"])
@pytest.mark.parametrize("target", ["s3", "azure", "sftp"], indirect=True)
def test_directory_format_round_trip(target, workdir, suffix):
    """Directory artifacts: pg_dump's directory format (<id>.dir/) and base backups (<id>.base/)."""
    source_path = os.path.join(workdir, "src")
    backup_id = "20240107T020000Z_logical_Dir"
    artifact = os.path.join(source_path, backup_id + suffix)
    os.makedirs(os.path.join(artifact, "sub"))
    for name, size in (("toc.dat", 1000), ("3001.dat.gz", 70000), ("sub/extra.dat", 5)):
        with open(os.path.join(artifact, name), "wb") as handle:
            handle.write(os.urandom(size))
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
    manifest = {"id": backup_id, "kind": "logical", "database": "Dir", "artifact": backup_id + suffix, "size": 71005,
                "sha256": fsutil.sha256_tree(artifact), "started_at": "2024-01-07T02:00:00.000000Z",
                "finished_at": "2024-01-07T02:00:01.000000Z", "extra_files": {}}
    with open(os.path.join(source_path, backup_id + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    repo = target.open()
    assert transfer.copy_backup(manifest, LocalRepository(source_path), repo)["changed"]
    assert repo.verify_checksum(manifest) == manifest["sha256"]
    local = LocalRepository(os.path.join(workdir, "back"))
    repo.download(repo.resolve("latest"), local)
    assert fsutil.sha256_tree(os.path.join(local.path, backup_id + suffix)) == manifest["sha256"]
    assert repo.artifact_size(manifest) == manifest["size"]
    repo.delete(manifest)
    assert repo.list() == [] and repo._tree(backup_id) == {}


# Azure Blob: credentials, containers, interruptions


def test_azure_wrong_key_is_named_and_nothing_is_written(azurite, workdir):
    manifest = synthetic_backup(workdir, 1024)
    container = azurite.create_container()
    wrong = azurite.connection_string_for(key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==")
    repo = factory.open_repository("azure://%s/p" % container, azure_connection_string=wrong, azure_max_attempts=1)
    before = tree_state(workdir)
    with pytest.raises(PgBackupError) as caught:
        transfer.copy_backup(manifest, LocalRepository(workdir), repo)
    assert "Azure Storage refused the credentials" in caught.value.message
    assert "d3Jvbmct" not in str(caught.value)
    assert tree_state(workdir) == before
    assert azurite.blob_names(container) == []


def test_azure_missing_container_and_no_credentials(azurite, workdir, monkeypatch):
    manifest = synthetic_backup(workdir, 1024)
    repo = factory.open_repository("azure://no-such-container/p", **azurite.options())
    with pytest.raises(PgBackupError, match="Azure container 'no-such-container' does not exist"):
        transfer.copy_backup(manifest, LocalRepository(workdir), repo)
    assert not repo.exists()
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT", raising=False)
    with pytest.raises(PgBackupError, match="No Azure Storage credentials were found"):
        factory.open_repository("azure://c0ntainer/p")
    with pytest.raises(PgBackupError, match="not a valid Azure Blob repository URL"):
        factory.open_repository("azure://Bad_Container/p", **azurite.options())
    # credentials from the environment and from a credentials file (what the runner uses)
    container = azurite.create_container()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    assert transfer.copy_backup(manifest, LocalRepository(workdir), factory.open_repository("azure://%s/env" % container))["changed"]
    credentials = os.path.join(workdir, "azure.credentials")
    with open(credentials, "w") as handle:
        handle.write("# rotated by playbooks/rotate_backup_credentials.yml\n%s\n" % azurite.connection_string)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    os.chmod(credentials, 0o644)
    with pytest.raises(PgBackupError, match="has mode 0644: group or others may read it"):
        factory.open_repository("azure://%s/env" % container, azure_credentials_file=credentials)
    os.chmod(credentials, 0o600)
    from_file = factory.open_repository("azure://%s/env" % container, azure_credentials_file=credentials)
    assert [m["id"] for m in from_file.list()] == [manifest["id"]]


def test_azure_upload_interrupted_leaves_no_blob(azurite, workdir):
    manifest = synthetic_backup(workdir, 5 * 1024 * 1024)
    container = azurite.create_container()
    repo = factory.open_repository("azure://%s/int" % container, **azurite.options(azure_chunk_size_mb=1,
                                                                                   azure_max_concurrency=1))
    before = tree_state(workdir)
    sent = []

    def cut_the_line(count):
        sent.append(count)
        if sum(sent) > 2 * 1024 * 1024:
            raise IOError("network cable pulled")

    with pytest.raises(PgBackupError, match="was interrupted") as caught:
        transfer.copy_backup(manifest, LocalRepository(workdir), repo, progress=cut_the_line)
    assert "network cable pulled" in caught.value.message and "local backup was not touched" in caught.value.hint
    assert tree_state(workdir) == before
    assert azurite.blob_names(container) == [] and repo.list() == []


def test_azure_server_dies_mid_upload(workdir):
    pytest.importorskip("azure.storage.blob")
    try:
        server = AzuriteServer.start()
    except Exception as exc:  # ToolMissing
        pytest.skip(str(exc))
    try:
        container = server.create_container()
        manifest = synthetic_backup(workdir, 6 * 1024 * 1024)
        repo = factory.open_repository("azure://%s/dies" % container, **server.options(azure_chunk_size_mb=1,
                                                                                       azure_max_concurrency=1))
        before = tree_state(workdir)
        sent = []

        def kill_server(count):
            sent.append(count)
            if sum(sent) > 2 * 1024 * 1024:
                server.kill()

        with pytest.raises(PgBackupError, match="(Cannot reach Azure Blob endpoint|was interrupted)") as caught:
            transfer.copy_backup(manifest, LocalRepository(workdir), repo, progress=kill_server)
        assert "local backup was not touched" in caught.value.hint
        assert tree_state(workdir) == before
    finally:
        server.stop()


def test_azure_corrupted_blob_is_detected(azurite, workdir):
    manifest = synthetic_backup(workdir, 300000)
    container = azurite.create_container()
    repo = factory.open_repository("azure://%s/c" % container, **azurite.options())
    transfer.copy_backup(manifest, LocalRepository(workdir), repo)
    blob = azurite.service().get_blob_client(container, "c/" + manifest["artifact"])
    assert blob.get_blob_properties().metadata["sha256"] == manifest["sha256"]
    blob.upload_blob(b"\0" * manifest["size"], overwrite=True)
    with pytest.raises(PgBackupError, match="Checksum mismatch"):
        repo.verify_checksum(manifest)
    with pytest.raises(PgBackupError, match="No usable backup"):
        repo.resolve("latest")
    # copying again replaces the damaged copy
    assert transfer.copy_backup(manifest, LocalRepository(workdir), repo)["changed"]
    repo.verify_checksum(manifest)


# SFTP: host keys, client keys, permissions


def test_sftp_unknown_and_changed_host_keys_are_refused(sshd, workdir):
    manifest = synthetic_backup(workdir, 1024)
    path = sshd.make_dir()
    empty_known_hosts = os.path.join(workdir, "known_hosts_empty")
    open(empty_known_hosts, "w").close()
    repo = factory.open_repository(sshd.url(path), **sshd.options(sftp_known_hosts=empty_known_hosts))
    with pytest.raises(PgBackupError, match="is not in '%s': refusing to connect to an unknown host" % empty_known_hosts):
        transfer.copy_backup(manifest, LocalRepository(workdir), repo)

    other_key = os.path.join(workdir, "other_host_key")
    os.system("ssh-keygen -q -t ed25519 -N '' -f %s" % other_key)
    with open(other_key + ".pub") as handle:
        key_type, key_data = handle.read().split()[:2]
    wrong_known_hosts = os.path.join(workdir, "known_hosts_wrong")
    with open(wrong_known_hosts, "w") as handle:
        handle.write("[127.0.0.1]:%d %s %s\n" % (sshd.port, key_type, key_data))
    repo = factory.open_repository(sshd.url(path), **sshd.options(sftp_known_hosts=wrong_known_hosts))
    with pytest.raises(PgBackupError, match="does not match the one in") as caught:
        repo.list()
    assert "intercepting" in caught.value.hint
    with pytest.raises(PgBackupError, match="known_hosts file '/nonexistent/known_hosts' cannot be read"):
        factory.open_repository(sshd.url(path), **sshd.options(sftp_known_hosts="/nonexistent/known_hosts")).list()
    assert os.listdir(path) == []


def test_sftp_refused_key_unreachable_server_and_bad_urls(sshd, workdir):
    manifest = synthetic_backup(workdir, 1024)
    path = sshd.make_dir()
    stranger = os.path.join(workdir, "stranger_key")
    os.system("ssh-keygen -q -t ed25519 -N '' -f %s" % stranger)
    repo = factory.open_repository(sshd.url(path), **sshd.options(sftp_key_file=stranger))
    with pytest.raises(PgBackupError, match="refused the SSH key of user '%s'" % sshd.user):
        transfer.copy_backup(manifest, LocalRepository(workdir), repo)
    from tests.lib.pgcluster import find_free_port
    closed = "sftp://%s@127.0.0.1:%d%s" % (sshd.user, find_free_port(), path)
    with pytest.raises(PgBackupError, match="Cannot reach SFTP server 127.0.0.1"):
        factory.open_repository(closed, **sshd.options()).list()
    for bad in ("sftp://127.0.0.1/x", "sftp://u@127.0.0.1/relative/../x", "sftp://u:pw@127.0.0.1/x", "sftp://u@h:99999/x"):
        with pytest.raises(PgBackupError, match="not a valid SFTP repository URL") as caught:
            factory.open_repository(bad)
        assert ":pw@" not in str(caught.value)


def test_sftp_permission_denied_and_interrupted_upload(sshd, workdir):
    manifest = synthetic_backup(workdir, 3 * 1024 * 1024)
    before = tree_state(workdir)
    locked = sshd.make_dir(mode=0o500)
    repo = factory.open_repository(sshd.url(locked), **sshd.options())
    with pytest.raises(PgBackupError, match="Permission denied by SFTP server"):
        transfer.copy_backup(manifest, LocalRepository(workdir), repo)

    path = sshd.make_dir()
    repo = factory.open_repository(sshd.url(path), **sshd.options())
    sent = []

    def cut_the_line(count):
        sent.append(count)
        if sum(sent) > 1024 * 1024:
            repo.ssh.get_transport().close()  # the TCP connection drops mid-transfer

    with pytest.raises(PgBackupError, match="(was interrupted|Cannot reach SFTP server)"):
        transfer.copy_backup(manifest, LocalRepository(workdir), repo, progress=cut_the_line)
    assert tree_state(workdir) == before
    assert [name for name in os.listdir(path) if not name.startswith(".tmp-")] == []
    assert repo.list() == []  # reconnects by itself
    assert transfer.copy_backup(manifest, LocalRepository(workdir), repo)["changed"]
    assert sorted(os.listdir(path)) == sorted([manifest["artifact"], manifest["id"] + ".manifest.json"])


def test_repository_types_and_check_mode(sshd, azurite, workdir):
    manifest = synthetic_backup(workdir, 2048)
    container = azurite.create_container()
    options = dict(azurite.options(), **sshd.options())
    path = sshd.make_dir()
    targets = ["azure://%s/x" % container, sshd.url(path + "/created-by-the-copy")]  # check mode must not need it
    assert isinstance(factory.open_repository(targets[0], **options), AzureRepository)
    assert isinstance(factory.open_repository(targets[1], **options), SftpRepository)
    planned = transfer.copy_to_targets(manifest, LocalRepository(workdir), targets, s3_options=options, check_mode=True)
    assert [p["changed"] for p in planned] == [True, True] and os.listdir(path) == []
    done = transfer.copy_to_targets(manifest, LocalRepository(workdir), targets, s3_options=options)
    assert [d["changed"] for d in done] == [True, True]
    planned = transfer.copy_to_targets(manifest, LocalRepository(workdir), targets, s3_options=options, check_mode=True)
    assert [p["changed"] for p in planned] == [False, False]


def test_remote_to_remote_goes_through_a_temporary_local_copy(sshd, azurite, workdir):
    """Azure -> SFTP: downloaded (verified) into a private directory below work_dir, uploaded, removed."""
    manifest = synthetic_backup(workdir, 300000)
    container = azurite.create_container()
    source = factory.open_repository("azure://%s/x" % container, **azurite.options())
    transfer.copy_backup(manifest, LocalRepository(workdir), source)
    path = sshd.make_dir()
    target = factory.open_repository(sshd.url(path), **sshd.options())
    scratch = os.path.join(workdir, "scratch")
    os.mkdir(scratch)
    result = transfer.copy_backup(manifest, source, target, work_dir=scratch)
    assert result["changed"] and result["verified"] and result["target"] == target.url
    assert target.verify_checksum(target.load(manifest["id"])) == manifest["sha256"]
    assert os.listdir(scratch) == [], "the temporary local copy was not removed"
    # a damaged source is never spread: its download fails its checksum and nothing reaches the target
    blob = azurite.service().get_blob_client(container, "x/" + manifest["artifact"])
    blob.upload_blob(b"\0" * manifest["size"], overwrite=True)
    other = factory.open_repository(sshd.url(sshd.make_dir()), **sshd.options())
    with pytest.raises(PgBackupError, match="Checksum mismatch for .* downloaded from"):
        transfer.copy_backup(manifest, source, other, work_dir=scratch)
    assert other.list() == [] and os.listdir(scratch) == []
