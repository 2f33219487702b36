# -*- coding: utf-8 -*-
"""Every module on a repository that is a URL, through ansible-playbook, against real servers on
127.0.0.1 (moto_server for S3, Azurite for Azure Blob, OpenSSH sshd for SFTP) and real PostgreSQL.

Per back-end: pg_dump straight to the URL (once keeping a local copy, which is then deleted), and
from the URL alone backup_info -> backup_verify (restore level) -> backup_retention (dry run, then
for real) -> pg_restore, then dr_assess and backup_copy with the URL as source. Physical backups and PITR per
back-end (a local directory too): pg_basebackup to it, the WAL archived there, and a fresh cluster recovered to a
restore point from it alone by pitr_recovery (playbooks/pitr_restore.yml for S3). Then what must never go wrong: a download cut halfway leaves nothing
usable and the restore fails before the target is touched; wrong credentials fail naming the
cause, without the secret in the output.
"""

from __future__ import absolute_import, division, print_function

import glob
import json
import os
import re
import shutil
import uuid

import pytest
import requests

from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from tests.integration.test_wal_remote import Backend as WalBackend
from tests.integration.test_wal_remote import helper  # noqa: F401  # pylint: disable=unused-import
from tests.lib.ansible_run import REPO_ROOT
from tests.lib.archiving import postgres_dir, shared_dir, wait_archived
from tests.lib.cutting_proxy import CuttingProxy
from tests.lib.dbcompare import assert_same_data
from tests.lib.module_run import connection_args
from tests.lib.servers import AZURITE_KEY, S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, MotoServer, ToolMissing
from tests.lib.pgcluster import PgCluster
from tests.lib.servers import azurite, moto, sshd  # noqa: F401  # pylint: disable=unused-import
from tests.lib.tododb import create_todo_db

BACKENDS = ["s3", "azure", "sftp"]
KEEP_NEWEST_ONLY = dict(keep_last=1, daily_days=0, weekly_weeks=0, monthly_months=0)
SMOKE = 'SELECT COUNT(*) FROM "Users"'


class Backend(object):
    """A fresh, empty URL repository on one server: the module arguments that reach it, and an
    engine handle (open()) for looking at the storage behind the modules' back."""

    def __init__(self, name, url, args, engine_options, secret=None, server=None):
        self.name = name
        self.url = url
        self.module_args = args
        self.engine_options = engine_options
        self.secret = secret
        self.server = server

    def args(self, *dicts, **extra):
        merged = dict(self.module_args, repository=self.url)
        for more in dicts:
            merged.update(more)
        merged.update(extra)
        return merged

    def open(self):
        return factory.open_repository(self.url, **self.engine_options)


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def backend(request, workdir):
    if request.param == "local":
        return Backend("local", os.path.join(workdir, "repository"), {}, {})
    if request.param == "s3":
        pytest.importorskip("boto3")
        server = request.getfixturevalue("moto")
        url = "s3://%s/prod" % server.create_bucket()
        args = dict(s3_endpoint_url=server.endpoint, s3_region=S3_REGION, aws_access_key=S3_ACCESS_KEY,
                    aws_secret_key=S3_SECRET_KEY)
        return Backend("s3", url, args, server.options(), secret=S3_SECRET_KEY, server=server)
    if request.param == "azure":
        server = request.getfixturevalue("azurite")
        url = "azure://%s/prod" % server.create_container()
        return Backend("azure", url, dict(azure_connection_string=server.connection_string), server.options(),
                       secret=AZURITE_KEY, server=server)
    server = request.getfixturevalue("sshd")
    url = server.url(server.make_dir() + "/todoapi")
    args = dict(sftp_key_file=server.key_file, sftp_known_hosts=server.known_hosts, sftp_timeout=10)
    return Backend("sftp", url, args, server.options(), server=server)


def playbook(*tasks):
    """One play; each task is (name, module, args[, task keywords]); args are JSON, valid YAML."""
    lines = ["- name: Remote repository", "  hosts: all", "  gather_facts: false", "  tasks:"]
    for task in tasks:
        name, module, args = task[:3]
        lines += ["    - name: %s" % name, "      %s: %s" % (module, json.dumps(args))]
        for key, value in (task[3] if len(task) > 3 else {}).items():
            lines.append("      %s: %s" % (key, json.dumps(value)))
    return "\n".join(lines) + "\n"


def assert_secret_not_shown(run, secret):
    if secret:
        assert secret not in run.stdout and secret not in run.stderr, "a secret was printed"


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_every_operation_from_the_url_alone(backend, pg, todo_db, ansible_playbook, workdir):
    login, database = connection_args(pg), todo_db.name
    local_copy = os.path.join(workdir, "local-repository")
    scratch = os.path.join(workdir, "scratch")
    os.mkdir(scratch)

    # pg_dump straight to the URL: taken in the work directory, uploaded, proven, the local copy removed
    # (the first one kept with keep_local_copy). Two in a row get distinct ids even within one second.
    dumped = ansible_playbook(playbook(
        ("backup preview", "todoapi.pgbackup.pg_dump", backend.args(login, database=database, work_dir=scratch),
         {"check_mode": True}),
        ("first backup", "todoapi.pgbackup.pg_dump", backend.args(login, database=database, work_dir=local_copy,
                                                                  keep_local_copy=True)),
        ("second backup", "todoapi.pgbackup.pg_dump", backend.args(login, database=database, work_dir=scratch))))
    first, second = dumped.task("first backup")["backup"], dumped.task("second backup")["backup"]
    preview = dumped.task("backup preview")["backup"]
    assert preview["repository"] == backend.open().url and preview["work_dir"].startswith(scratch)
    assert first["id"] != second["id"]
    assert first["path"] == "%s/%s" % (backend.open().url, first["artifact"])
    assert first["local_path"] == os.path.join(local_copy, first["artifact"]) and os.path.isfile(first["local_path"])
    assert "local_path" not in second and os.listdir(scratch) == [], "the temporary local copy was not removed"
    assert [m["id"] for m in backend.open().list(database=database)] == [first["id"], second["id"]]
    assert_secret_not_shown(dumped, backend.secret)

    shutil.rmtree(local_copy)  # from here on, the URL alone
    disaster, copied = os.path.join(workdir, "dr"), os.path.join(workdir, "copied")
    restored = "Restored_%s_%s" % (backend.name, uuid.uuid4().hex[:6])
    try:
        run = ansible_playbook(playbook(
            ("info", "todoapi.pgbackup.backup_info", backend.args(database=database)),
            ("verify preview", "todoapi.pgbackup.backup_verify", backend.args(login, database=database, level="restore"),
             {"check_mode": True}),
            ("verify", "todoapi.pgbackup.backup_verify", backend.args(login, database=database, level="restore",
                                                                      work_dir=scratch, smoke_queries=[SMOKE])),
            ("prune preview", "todoapi.pgbackup.backup_retention", backend.args(KEEP_NEWEST_ONLY, database=database),
             {"check_mode": True}),
            ("prune", "todoapi.pgbackup.backup_retention", backend.args(KEEP_NEWEST_ONLY, database=database)),
            ("restore preview", "todoapi.pgbackup.pg_restore", backend.args(login, source_database=database,
                                                                            database=restored), {"check_mode": True}),
            ("restore", "todoapi.pgbackup.pg_restore", backend.args(login, source_database=database, database=restored,
                                                                    work_dir=scratch)),
            ("assess preview", "todoapi.pgbackup.dr_assess", backend.args(database=database, download_to=disaster),
             {"check_mode": True}),
            ("assess", "todoapi.pgbackup.dr_assess", backend.args(database=database, download_to=disaster)),
            ("copy back", "todoapi.pgbackup.backup_copy", backend.args(database=database, copy_to=[copied]))))
        assert_secret_not_shown(run, backend.secret)

        info = run.task("info")
        assert info["ok"], info["health"]
        assert [(b["id"], b["file_state"]) for b in info["backups"]] == [(first["id"], "ok"), (second["id"], "ok")]
        assert info["latest"][database]["id"] == second["id"]

        assert run.task("verify preview")["backup_id"] == second["id"] and not run.task("verify preview")["verified"]
        assert run.task("restore preview")["backup"]["id"] == second["id"]
        verified = run.task("verify")
        assert verified["verified"] and verified["backup_id"] == second["id"] and verified["level"] == "restore"
        assert verified["details"]["restore"]["tables"] == second["tables"]
        assert verified["details"]["restore"]["smoke_queries"]

        preview, pruned = run.task("prune preview"), run.task("prune")
        assert [entry["id"] for entry in preview["deleted"]] == [first["id"]]
        assert [entry["id"] for entry in pruned["deleted"]] == [first["id"]]
        assert [entry["id"] for entry in pruned["kept"]] == [second["id"]]

        done = run.task("restore")
        assert done["backup"]["id"] == second["id"] and done["tables"] == second["tables"]
        assert_same_data((pg, database), (pg, restored))

        preview, assessed = run.task("assess preview"), run.task("assess")
        assert [c["id"] for c in preview["candidates"]] == [second["id"]] and not preview["changed"]
        assert assessed["backup"]["id"] == second["id"] and assessed["downloaded"] and assessed["level"] == "structure"
        assert assessed["repository"] == disaster and os.path.isfile(os.path.join(disaster, second["artifact"]))

        copy = run.task("copy back")
        assert [(r["target"], r["changed"], r["verified"]) for r in copy["results"]] == [(copied, True, True)]
        assert os.path.isfile(os.path.join(copied, second["id"] + ".manifest.json"))
    finally:
        pg.drop_database(restored)

    remote = backend.open()
    assert [m["id"] for m in remote.list()] == [second["id"]]
    assert remote._tree(first["id"] + ".") == {}, "files of the pruned backup are left"
    record = remote.read_sidecar(second["id"], "verify")
    assert record["history"][-1]["outcome"] == "passed" and record["history"][-1]["level"] == "restore"
    assert os.listdir(scratch) == [], "a download was left in the work directory"


# A download that breaks off halfway


def through_proxy(backend, port, workdir):
    """The module arguments that reach ``backend`` through a proxy on ``port``."""
    if backend.name == "s3":
        return backend.args(s3_endpoint_url="http://127.0.0.1:%d" % port)
    known_hosts = os.path.join(workdir, "known_hosts_proxy")
    with open(known_hosts, "w") as handle:
        handle.write(backend.server.host_key_line.replace(":%d " % backend.server.port, ":%d " % port, 1) + "\n")
    url = re.sub(r"@127\.0\.0\.1:\d+/", "@127.0.0.1:%d/" % port, backend.url)
    return backend.args(repository=url, sftp_known_hosts=known_hosts)


@pytest.mark.parametrize("backend", ["s3", "sftp"], indirect=True)
def test_a_download_cut_halfway_leaves_nothing_usable(backend, pg, todo_db, ansible_playbook, workdir):
    login, database = connection_args(pg), todo_db.name
    scratch = os.path.join(workdir, "scratch")
    os.mkdir(scratch)
    taken = ansible_playbook(playbook(("backup", "todoapi.pgbackup.pg_dump", backend.args(login, database=database))))
    backup = taken.task("backup")["backup"]
    restored = "Cut_%s_%s" % (backend.name, uuid.uuid4().hex[:6])
    upstream = backend.server.port
    with CuttingProxy(upstream, cut_after=backup["size"] // 2) as proxy:
        failed = ansible_playbook(playbook(
            ("restore", "todoapi.pgbackup.pg_restore", dict(through_proxy(backend, proxy.port, workdir), **dict(
                login, source_database=database, database=restored, work_dir=scratch)))),
            expect_failure=True).task("restore")
    assert proxy.cuts >= 1, "the proxy never cut a transfer: the test proves nothing"
    assert failed["failed"]
    assert re.search(r"^Download of backup '%s' from .* failed: The connection to (S3 endpoint|SFTP server) .* was "
                     r"interrupted while trying to download" % backup["id"], failed["msg"]), failed["msg"]
    assert "the partial download was removed" in failed["hint"]
    assert os.listdir(scratch) == [], "a partial download was left behind"
    assert not pg.database_exists(restored), "the restore touched the target"
    backend.open().verify_checksum(backend.open().load(backup["id"]))  # the remote backup itself is intact


# Wrong credentials


def s3_with_authentication(workdir):
    """A moto_server that checks signatures (its IAM knows one user), and that user's key."""
    try:
        server = MotoServer.start()
    except ToolMissing as exc:
        pytest.skip(str(exc))
    import boto3
    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name=S3_REGION, aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    iam.create_user(UserName="backup")
    iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="backup")["AccessKey"]
    bucket = server.create_bucket()
    requests.post(server.endpoint + "/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    return server, bucket, key["AccessKeyId"]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_wrong_credentials_fail_naming_the_cause(backend, ansible_playbook, workdir):
    server = None
    if backend.name == "s3":
        server, bucket, access_key = s3_with_authentication(workdir)
        url, secret = "s3://%s/prod" % bucket, "wr0ng-Secret-%s" % uuid.uuid4().hex[:8]
        args = dict(repository=url, s3_endpoint_url=server.endpoint, s3_region=S3_REGION, aws_access_key=access_key,
                    aws_secret_key=secret)
        expected = r"Access denied by S3 \((SignatureDoesNotMatch|403)\)"
    elif backend.name == "azure":
        secret = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
        args = dict(repository=backend.url, azure_connection_string=backend.server.connection_string_for(key=secret))
        expected = r"Azure Storage refused the credentials"
    else:
        stranger = os.path.join(workdir, "stranger_key")
        os.system("ssh-keygen -q -t ed25519 -N '' -f %s" % stranger)
        secret = None
        args = backend.args(sftp_key_file=stranger)
        expected = r"refused the SSH key of user '%s'" % backend.server.user
    try:
        run = ansible_playbook(playbook(("info", "todoapi.pgbackup.backup_info", args)), expect_failure=True)
    finally:
        if server is not None:
            server.stop()
    failed = run.task("info")
    assert failed["failed"] and re.search(expected, failed["msg"]), failed["msg"]
    assert failed["hint"], "the failure does not say what to do"
    assert_secret_not_shown(run, secret)


# Physical backups and point-in-time recovery, the base backups and the WAL archive on one back-end


def archiving_into(backend, base, wrapper):
    """(archive location for pitr_recovery's archive_dir, archive_command, test_wal_remote.Backend or None) of a fresh
    WAL archive on ``backend``'s storage: a directory for the local back-end, else a URL with the helper's config
    (what role wal_archiving writes for wal_archiving_archive_url)."""
    if backend.name == "local":
        archive = postgres_dir(base, "archive-%s" % uuid.uuid4().hex[:8])
        return archive, "%s archive-wal %%p %%f --archive-dir %s --compress zstd" % (wrapper, archive), None
    wal = WalBackend(backend.name, backend.server, base)
    return wal.url, "%s archive-wal %%p %%f --config %s" % (wrapper, wal.config("archive-%s.json" % wal.prefix)), wal


def marks(cluster):
    return set(row[0] for row in cluster.sql("SELECT phase FROM marks", dbname="TodoDb"))


@pytest.mark.parametrize("backend", ["local"] + BACKENDS, indirect=True)
def test_physical_backup_and_pitr_from_the_back_end_alone(backend, helper, ansible_playbook, workdir):
    """pg_basebackup to the back-end, the WAL archived there, then a fresh cluster recovered to a restore point
    from there alone (no local copy of either) by pitr_recovery - by playbooks/pitr_restore.yml for S3."""
    base, wrapper = helper  # todoapi-pgbackup-wal as role wal_archiving installs it, run by PostgreSQL as postgres
    scratch = shared_dir("pgbackup-pitr-work-")  # the recovering server reads the downloaded WAL there
    archive, command, wal = archiving_into(backend, base, wrapper)
    source = PgCluster.create(extra_conf={"archive_mode": "on", "archive_command": command})
    target = None
    try:
        create_todo_db(source, dbname="TodoDb", size_mb=1)
        source.sql("CREATE TABLE marks (phase text NOT NULL); INSERT INTO marks VALUES ('before_backup')",
                   dbname="TodoDb")
        taken = ansible_playbook(playbook(
            ("base backup", "todoapi.pgbackup.pg_basebackup", backend.args(connection_args(source), work_dir=scratch))))
        backup = taken.task("base backup")["backup"]
        assert backup["path"] == backend.open().artifact_path(backup)
        assert os.listdir(scratch) == [], "the local copy of the base backup was not removed"
        assert_secret_not_shown(taken, backend.secret)
        users = source.scalar('SELECT count(*) FROM "Users"', dbname="TodoDb")
        source.sql("INSERT INTO marks VALUES ('before_point')", dbname="TodoDb")
        source.sql("SELECT pg_create_restore_point('before-bad-deploy')")
        source.sql("INSERT INTO marks VALUES ('after_point'); DELETE FROM \"Todos\"", dbname="TodoDb")
        wait_archived(source, timeout=120)
        source.stop()  # the primary is lost: from here on, the back-end alone

        target = PgCluster.create()
        recovery = dict(backend.args(archive_dir=archive, work_dir=scratch), cluster_version="15",
                        cluster_name=target.name, target_name="before-bad-deploy", stop_server=True,
                        wal_command=wrapper, timeout=120)
        if backend.name == "s3":
            run = ansible_playbook(os.path.join(REPO_ROOT, "playbooks", "pitr_restore.yml"), extra_vars={
                "pgbackup_repository": backend.url, "wal_archiving_archive_url": archive,
                "pitr_storage_options": backend.module_args, "pitr_work_dir": scratch, "pitr_cluster_name": target.name,
                "pitr_target_name": "before-bad-deploy", "pitr_stop_server": True,
                "wal_archiving_wrapper_path": wrapper, "pitr_timeout": 120})
            plan, done = run.task("Plan the recovery (changes nothing)")["recovery"], run.task("Recover")["recovery"]
        else:
            run = ansible_playbook(playbook(("plan", "todoapi.pgbackup.pitr_recovery", recovery, {"check_mode": True}),
                                            ("recover", "todoapi.pgbackup.pitr_recovery", recovery)))
            plan, done = run.task("plan")["recovery"], run.task("recover")["recovery"]
        assert_secret_not_shown(run, backend.secret)
        assert plan["backup_id"] == backup["id"] and plan["wal"]["complete"]
        assert done["backup_id"] == backup["id"] and "restore point" in done["recovery_stop"]
        if backend.name == "local":
            assert done["wal_download"] is None
        else:
            assert done["wal_download"]["url"] == archive and done["wal_download"]["files"] >= 2
        assert os.listdir(scratch) == [], "a download was left in the work directory"
        target.password = source.password
        target.wait_until_ready()
        assert marks(target) == {"before_backup", "before_point"}
        assert target.scalar('SELECT count(*) FROM "Users"', dbname="TodoDb") == users
        assert target.scalar('SELECT count(*) FROM "Todos"', dbname="TodoDb") > 0
        if wal is not None:  # a damaged segment in the remote archive: refused while downloading, nothing used
            wal.damage(sorted(n for n in wal.names() if len(n) == 28 and n.endswith(".zst"))[-1])
            refused = ansible_playbook(playbook(("plan", "todoapi.pgbackup.pitr_recovery", recovery)), check=True,
                                       expect_failure=True).task("plan")
            assert refused["failed"] and refused["msg"].startswith("Download of the WAL archive '%s' failed" % archive)
            assert "nothing was changed" in refused["hint"] and os.listdir(scratch) == []
    finally:
        source.drop()
        shutil.rmtree(scratch, ignore_errors=True)
        if target is not None:
            for leftover in glob.glob(target.data_dir + ".pre-pitr-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            target.drop()
