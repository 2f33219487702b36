# -*- coding: utf-8 -*-
"""The WAL archive on S3 (moto_server), Azure Blob (Azurite) and SFTP (OpenSSH sshd), written by a real
PostgreSQL 15 cluster through ``todoapi-pgbackup-wal archive-wal`` and read back by ``restore-wal``:

- a stream of segments archived (asynchronous mode) and a PITR on a second, fresh cluster whose only
  source of WAL is the remote archive; range check and pruning on the remote archive;
- the synchronous mode's promises on every back-end: an existing object with other content is never
  replaced, a damaged object stops recovery (exit 255), an upload killed half-way leaves nothing a
  restore could read;
- the service going down: archive_command fails, PostgreSQL keeps the segment and archiving catches up
  once the service is back;
- role wal_archiving with an s3:// URL: the secret only in a 0600 credentials file.

The helper runs as PostgreSQL runs it: OS user postgres, the system Python (/usr/bin/python3) and the
engine installed as role wal_archiving installs it. That Python has boto3 (python3-boto3) but not
azure-storage-blob or paramiko on this test machine, so the wrapper also looks in the test venv's
site-packages (the same CPython 3.11): the packages a host would install.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import pwd
import shutil
import signal
import site
import subprocess
import time
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.base_backup_tar import extract_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import install_wal_tool, postgres_dir, shared_dir, wait_archived
from tests.lib.engine import spec_of
from tests.lib.pgcluster import PgCluster
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, MotoServer
from tests.lib.servers import azurite, moto, sshd  # noqa: F401  # pylint: disable=unused-import
from tests.lib.tododb import create_todo_db

BACKENDS = ["s3", "azure", "sftp"]
SEGMENT_MB = 16
MB = 1024 * 1024
READS_BEFORE_UPLOAD = {"s3": 2, "azure": 2, "sftp": 1}


# -- the helper, installed for OS user postgres --------------------------------------------------


def install_helper(base):
    """install_wal_tool's engine + wrapper, the wrapper also seeing the venv's site-packages."""
    wrapper = install_wal_tool(base)
    with open(wrapper) as handle:
        text = handle.read()
    venv_site = [path for path in site.getsitepackages() if path.endswith("site-packages")][0]
    text = text.replace("sys.path.insert(0, ", "sys.path.append(%r)\nsys.path.insert(0, " % venv_site, 1)
    with open(wrapper, "w") as handle:
        handle.write(text)
    return wrapper


def postgres_file(path, text, mode=0o600):
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    shutil.chown(path, "postgres", "postgres")
    return path


def run_helper(wrapper, *args, **kwargs):
    """The helper as PostgreSQL runs it (OS user postgres); returns the CompletedProcess."""
    return subprocess.run(["runuser", "-u", "postgres", "--", wrapper] + list(args), capture_output=True, text=True,
                          timeout=kwargs.get("timeout", 120), check=False)


# -- one remote archive per back-end -------------------------------------------------------------


class Backend(object):
    """A fresh archive location on one back-end: its URL, config files and raw access for checks."""

    def __init__(self, kind, server, base):
        self.kind, self.server, self.base = kind, server, base
        self.prefix = "wal-%s" % uuid.uuid4().hex[:8]
        if kind == "s3":
            self.bucket = server.create_bucket()
            self.url = "s3://%s/%s" % (self.bucket, self.prefix)
            self.options = {"s3_endpoint_url": server.endpoint, "s3_region": S3_REGION}
            secret = "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (S3_ACCESS_KEY, S3_SECRET_KEY)
        elif kind == "azure":
            self.container = server.create_container()
            self.url = "azure://%s/%s" % (self.container, self.prefix)
            self.options = {}
            secret = server.connection_string + "\n"
        else:
            self.root = os.path.join(server.make_dir(), self.prefix)
            os.mkdir(self.root, 0o700)
            shutil.chown(self.root, server.user, server.user)
            self.url = server.url(self.root)
            known_hosts = os.path.join(base, "known_hosts")
            shutil.copy(server.known_hosts, known_hosts)
            os.chmod(known_hosts, 0o644)
            self.options = {"sftp_known_hosts": known_hosts, "sftp_timeout": 10}
            with open(server.key_file) as handle:
                secret = handle.read()
        self.credentials = postgres_file(os.path.join(base, "credentials-%s" % self.prefix), secret)

    def config(self, name, **settings):
        """A helper config file (0600, postgres) for this archive."""
        data = {"archive_url": self.url, "storage_options": self.options, "credentials_file": self.credentials,
                "compress": "zstd"}
        data.update(settings)
        return postgres_file(os.path.join(self.base, name), json.dumps(data))

    def names(self):
        """Every stored name below the archive (work files included)."""
        if self.kind == "s3":
            listed = self.server.client().list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + "/")
            return sorted(item["Key"][len(self.prefix) + 1:] for item in listed.get("Contents") or [])
        if self.kind == "azure":
            return [name[len(self.prefix) + 1:] for name in self.server.blob_names(self.container, self.prefix + "/")]
        return sorted(os.listdir(self.root))

    def read(self, name):
        if self.kind == "s3":
            return self.server.client().get_object(Bucket=self.bucket, Key="%s/%s" % (self.prefix, name))["Body"].read()
        if self.kind == "azure":
            blob = self.server.service().get_blob_client(self.container, "%s/%s" % (self.prefix, name))
            return blob.download_blob().readall()
        with open(os.path.join(self.root, name), "rb") as handle:
            return handle.read()

    def damage(self, name):
        """Flip one byte of a stored file in the middle, keeping its metadata (bit rot, a bad disk, a bad copy)."""
        data = bytearray(self.read(name))
        data[len(data) // 2] ^= 0xFF
        key = "%s/%s" % (self.prefix, name)
        if self.kind == "s3":
            client = self.server.client()
            metadata = client.head_object(Bucket=self.bucket, Key=key)["Metadata"]
            client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), Metadata=metadata)
        elif self.kind == "azure":
            blob = self.server.service().get_blob_client(self.container, key)
            metadata = blob.get_blob_properties().metadata
            blob.upload_blob(bytes(data), overwrite=True, metadata=metadata)
        else:
            with open(os.path.join(self.root, name), "r+b") as handle:
                handle.write(bytes(data))


@pytest.fixture(scope="module")
def helper():
    base = shared_dir("pgbackup-walremote-")
    try:
        yield base, install_helper(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def backend_for(request, kind, base):
    server = request.getfixturevalue({"s3": "moto", "azure": "azurite", "sftp": "sshd"}[kind])
    return Backend(kind, server, base)


# -- a cluster archiving into each back-end, asynchronously ---------------------------------------


class Source(object):
    pass


def mark(cluster, phase):
    cluster.sql("INSERT INTO marks (phase) VALUES (%s)", (phase,), dbname="TodoDb")


def phases(cluster):
    return set(row[0] for row in cluster.sql("SELECT DISTINCT phase FROM marks", dbname="TodoDb"))


def fill_segments(cluster, count):
    """About ``count`` segments of real WAL (rows, then a switch after each)."""
    for _round in range(count):
        cluster.sql("INSERT INTO filler SELECT g, md5(random()::text) || repeat('x', 200) FROM generate_series(1, 40000) g",
                    dbname="TodoDb")
        cluster.sql("SELECT pg_switch_wal()")


@pytest.fixture(scope="module", params=BACKENDS)
def source(request, helper):
    base, wrapper = helper
    src = Source()
    src.kind, src.wrapper = request.param, wrapper
    src.backend = backend_for(request, src.kind, base)
    src.spool = postgres_dir(base, "spool-%s" % src.backend.prefix)
    src.config = src.backend.config("archive-%s.json" % src.backend.prefix, spool_dir=src.spool, process_max=3)
    src.repo_dir = postgres_dir(base, "repo-%s" % src.backend.prefix)
    command = "%s archive-wal %%p %%f --config %s --async" % (wrapper, src.config)
    src.cluster = PgCluster.create(extra_conf={"archive_mode": "on", "archive_command": command, "archive_timeout": 5})
    try:
        create_todo_db(src.cluster, dbname="TodoDb", size_mb=1)
        src.cluster.sql("CREATE TABLE marks (phase text NOT NULL); CREATE TABLE filler (id int, payload text)",
                        dbname="TodoDb")
        mark(src.cluster, "before_backup")
        src.backup = base_backup.backup(base_backup.PhysicalBackupRequest(LocalRepository(src.repo_dir),
                                                                          spec_of(src.cluster)))
        fill_segments(src.cluster, 6)
        mark(src.cluster, "before_point")
        src.cluster.sql("SELECT pg_create_restore_point('remote-pitr')")
        mark(src.cluster, "after_point")
        src.last = wait_archived(src.cluster, timeout=120)
        yield src
    finally:
        src.cluster.drop()


def test_a_stream_of_segments_lands_in_the_remote_archive(source):
    stored = source.backend.names()
    segments = [name for name in stored if len(name) == 24 + len(".zst") and name.endswith(".zst")]
    assert len(segments) >= 7 and source.last + ".zst" in stored
    assert not [name for name in stored if name.startswith(".tmp-")]
    archiver = source.cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
    assert archiver[0] >= 7 and archiver[1] == 0
    # the foreground consumed every acknowledgement it waited for; the pusher logged no failure
    assert not [name for name in os.listdir(source.spool) if name.endswith(".error")]
    assert os.path.isfile(os.path.join(source.spool, "pusher.lock"))


def test_pitr_on_a_fresh_cluster_from_the_remote_archive_alone(source):
    """A second cluster that never saw the archive: the base backup, restore_command and the URL."""
    restore_config = source.backend.config("restore-%s.json" % source.backend.prefix)
    target = PgCluster.create()
    try:
        target.stop()
        shutil.rmtree(target.data_dir)
        os.mkdir(target.data_dir, 0o700)
        extract_backup(LocalRepository(source.repo_dir).artifact_path(source.backup), target.data_dir)
        for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            if os.path.exists(os.path.join(target.data_dir, leftover)):
                os.unlink(os.path.join(target.data_dir, leftover))
        open(os.path.join(target.data_dir, "recovery.signal"), "w").close()
        subprocess.run(["chown", "-R", "postgres:postgres", target.data_dir], check=True)
        target.write_harness_conf(extra_conf={
            "restore_command": "%s restore-wal %%f %%p --config %s" % (source.wrapper, restore_config),
            "recovery_target_name": "remote-pitr", "recovery_target_action": "promote"})
        target.start()
        target.password = source.cluster.password
        deadline = time.time() + 120
        while target.scalar("SELECT pg_is_in_recovery()"):
            assert time.time() < deadline, target.log_tail()
            time.sleep(0.3)
        assert phases(target) == {"before_backup", "before_point"}
        assert target.scalar("SELECT count(*) FROM filler", dbname="TodoDb") == 6 * 40000
        with open(target.log_file) as handle:
            log = handle.read()
        assert log.count("restored log file") >= 6, log[-3000:]
        assert "recovery stopping at restore point \"remote-pitr\"" in log
    finally:
        target.drop()


def test_range_check_and_prune_work_on_the_remote_archive(source):
    config = source.config
    start = source.backup["wal_start_segment"]
    checked = run_helper(source.wrapper, "check-range", "--config", config, "--timeline", "1", "--start", start)
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["complete"] and report["last"] >= source.last
    before = source.backend.names()
    older = [name for name in before if name[:24] < start and not name.endswith(".history")]
    assert older, before  # the segments written before the base backup
    dry = run_helper(source.wrapper, "prune", "--config", config, "--oldest-needed", start, "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["removed"] == sorted(older)
    assert source.backend.names() == before
    pruned = run_helper(source.wrapper, "prune", "--config", config, "--oldest-needed", start)
    assert pruned.returncode == 0, pruned.stderr
    assert source.backend.names() == sorted(set(before) - set(older))
    typo = run_helper(source.wrapper, "prune", "--config", config, "--oldest-needed", "0000000100000000000000FF")
    assert typo.returncode == 1 and "refusing to prune" in typo.stderr


# -- the synchronous mode's promises, per back-end -------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request, helper):
    return backend_for(request, request.param, helper[0])


def segment_file(base, name, size=SEGMENT_MB * MB, seed=None):
    path = os.path.join(base, "pg_wal-%s" % uuid.uuid4().hex[:8], name)
    os.makedirs(os.path.dirname(path))
    block = os.urandom(64 * 1024) if seed is None else bytes([seed]) * 64 * 1024
    with open(path, "wb") as handle:
        for _block in range(size // len(block)):
            handle.write(block)
    shutil.chown(os.path.dirname(path), "postgres", "postgres")
    shutil.chown(path, "postgres", "postgres")
    return path


def test_an_archived_segment_is_never_replaced(backend, helper):
    base, wrapper = helper
    config = backend.config("sync-%s.json" % backend.prefix)
    name = "000000010000000000000010"
    first = segment_file(base, name)
    assert run_helper(wrapper, "archive-wal", first, name, "--config", config).returncode == 0
    stored = backend.read(name + ".zst")
    again = run_helper(wrapper, "archive-wal", first, name, "--config", config)
    assert again.returncode == 0, again.stderr  # PostgreSQL re-archives after a crash: same content is success
    other = segment_file(base, name)
    refused = run_helper(wrapper, "archive-wal", other, name, "--config", config)
    assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
    assert backend.read(name + ".zst") == stored
    assert run_helper(wrapper, "archive-wal", other, name, "--config", config, "--compress", "none").returncode == 1
    assert [n for n in backend.names() if not n.endswith(".meta")] == [name + ".zst"]


def test_a_damaged_object_stops_recovery(backend, helper):
    base, wrapper = helper
    config = backend.config("damage-%s.json" % backend.prefix, compress="none")
    name = "000000010000000000000020"
    source = segment_file(base, name, size=MB)
    assert run_helper(wrapper, "archive-wal", source, name, "--config", config).returncode == 0
    target_dir = postgres_dir(base, "restore-%s" % uuid.uuid4().hex[:8])
    target = os.path.join(target_dir, "RECOVERYXLOG")
    fine = run_helper(wrapper, "restore-wal", name, target, "--config", config)
    assert fine.returncode == 0, fine.stderr
    with open(source, "rb") as a, open(target, "rb") as b:
        assert a.read() == b.read()
    os.unlink(target)
    backend.damage(name)
    damaged = run_helper(wrapper, "restore-wal", name, target, "--config", config)
    assert damaged.returncode == 255 and "does not match its checksum" in damaged.stderr
    assert os.listdir(target_dir) == []  # nothing PostgreSQL could take for the segment
    missing = run_helper(wrapper, "restore-wal", "000000010000000000000021", target, "--config", config)
    assert (missing.returncode, missing.stderr) == (1, "")


def test_an_upload_killed_half_way_is_never_visible(backend, helper):
    base, wrapper = helper
    config = backend.config("kill-%s.json" % backend.prefix, compress="none")
    name = "000000010000000000000030"
    size = 256 * MB
    source = segment_file(base, name, size=size)
    process = subprocess.Popen(["runuser", "-u", "postgres", "--", wrapper, "archive-wal", source, name, "--config", config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    helper_pid = None
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        helper_pid = helper_pid or child_pid(process.pid)
        # the helper reads the file for its checksum, on S3 and Azure once more for the checksums the service
        # checks (SFTP checksums while sending), then while sending it: interrupt it a quarter into the upload
        if helper_pid and bytes_read(helper_pid) > (READS_BEFORE_UPLOAD[backend.kind] + 0.25) * size:
            break
        time.sleep(0.01)
    assert helper_pid and process.poll() is None, "the upload ended before it could be interrupted"
    os.kill(helper_pid, signal.SIGKILL)
    process.wait(30)
    assert process.returncode != 0
    assert [n for n in backend.names() if not n.startswith(".tmp-")] == []  # SFTP keeps its work file, never the name
    target = os.path.join(postgres_dir(base, "restore-%s" % uuid.uuid4().hex[:8]), "RECOVERYXLOG")
    assert run_helper(wrapper, "restore-wal", name, target, "--config", config).returncode == 1
    assert not os.path.exists(target)
    done = run_helper(wrapper, "archive-wal", source, name, "--config", config)  # PostgreSQL's retry
    assert done.returncode == 0, done.stderr
    assert name in backend.names()


def child_pid(pid):
    """The helper's python process below runuser."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            children = handle.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def bytes_read(pid):
    """What a process has read so far with read() (files, pipes)."""
    try:
        with open("/proc/%d/io" % pid) as handle:
            return int(dict(line.split(": ") for line in handle.read().splitlines())["rchar"])
    except (OSError, KeyError):
        return 0


# -- the service goes down ----------------------------------------------------------------------------


def test_archiving_fails_while_s3_is_down_and_catches_up_after(helper):
    base, wrapper = helper
    server = MotoServer.start()
    try:
        backend = Backend("s3", server, base)
        spool = postgres_dir(base, "spool-%s" % backend.prefix)
        config = backend.config("down-%s.json" % backend.prefix, spool_dir=spool, **{"async": True})
        command = "%s archive-wal %%p %%f --config %s" % (wrapper, config)
        with PgCluster.create(extra_conf={"archive_mode": "on", "archive_command": command}) as cluster:
            wait_archived(cluster, timeout=60)
            port = server.port
            server.kill()
            cluster.sql("SELECT pg_create_restore_point('down')")
            held = cluster.scalar("SELECT pg_walfile_name(pg_switch_wal())")
            deadline = time.time() + 60
            while not cluster.scalar("SELECT failed_count FROM pg_stat_archiver"):
                assert time.time() < deadline, cluster.log_tail()
                time.sleep(0.5)
            assert cluster.scalar("SELECT last_failed_wal FROM pg_stat_archiver") == held
            status = os.path.join(cluster.data_dir, "pg_wal", "archive_status", held + ".ready")
            assert os.path.exists(status) and os.path.exists(os.path.join(cluster.data_dir, "pg_wal", held))
            assert "Cannot reach S3 endpoint" in cluster.log_tail(200)
            server.stop()
            server = MotoServer.start(port=port)
            server.client().create_bucket(Bucket=backend.bucket)
            backend.server = server
            deadline = time.time() + 120
            while cluster.scalar("SELECT coalesce(last_archived_wal >= %s, false) FROM pg_stat_archiver", (held,)) is False:
                assert time.time() < deadline, cluster.log_tail()
                time.sleep(0.5)
            assert held + ".zst" in backend.names()
    finally:
        server.stop()


# -- role wal_archiving with a remote archive ------------------------------------------------------

PIPELINING = {"ANSIBLE_PIPELINING": "1"}
ROLE_PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: todoapi.pgbackup.wal_archiving
"""


def test_role_archives_to_s3_with_the_secret_in_a_private_file(helper, moto, collections_root):
    base, _wrapper = helper
    bucket = moto.create_bucket()
    etc = os.path.join(base, "etc-%s" % uuid.uuid4().hex[:8])
    with PgCluster.create() as cluster:
        instance = "15-%s" % cluster.name
        extra = {
            # the check task runs as postgres, who cannot run the test venv's Python (under /root); module
            # code then goes to that Python on stdin (pipelining): no temp file must be readable by postgres
            "ansible_python_interpreter": "/usr/bin/python3",
            "wal_archiving_pg_version": 15, "wal_archiving_cluster_name": cluster.name,
            "wal_archiving_login_host": "127.0.0.1", "wal_archiving_port": cluster.port,
            "wal_archiving_login_password": cluster.password,
            "wal_archiving_archive_url": "s3://%s/wal/%s" % (bucket, instance),
            "wal_archiving_storage_options": {"s3_endpoint_url": moto.endpoint, "s3_region": S3_REGION},
            "wal_archiving_credentials": "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (
                S3_ACCESS_KEY, S3_SECRET_KEY),
            "wal_archiving_config_dir": etc,
            "wal_archiving_spool_dir": os.path.join(base, "role-spool-%s" % instance),
            "wal_archiving_engine_dir": os.path.join(base, "role-lib"),
            "wal_archiving_wrapper_path": os.path.join(base, "role-bin", "todoapi-pgbackup-wal"),
        }
        os.makedirs(os.path.join(base, "role-bin"), 0o755, exist_ok=True)
        run = run_playbook(ROLE_PLAY, extra_vars=extra, collections_root=collections_root, env=PIPELINING)
        assert run.task("todoapi.pgbackup.wal_archiving : Wait until PostgreSQL reports the segment archived")[
            "query_result"][0]["done"]
        config = os.path.join(etc, "wal-%s.json" % instance)
        credentials = os.path.join(etc, "wal-%s.credentials" % instance)
        command = cluster.scalar("SHOW archive_command")
        assert command == "%s archive-wal %%p %%f --config %s" % (extra["wal_archiving_wrapper_path"], config)
        for path in (config, credentials):
            info = os.stat(path)
            assert (oct(info.st_mode & 0o777), info.st_uid) == ("0o600", pwd.getpwnam("postgres").pw_uid)
        with open(config) as handle:
            settings = json.load(handle)
        assert settings["credentials_file"] == credentials and settings["async"] is True
        with open(os.path.join(cluster.data_dir, "postgresql.auto.conf")) as handle:
            auto_conf = handle.read()
        for text in (json.dumps(settings), auto_conf, command):
            assert S3_SECRET_KEY not in text
        listed = moto.client().list_objects_v2(Bucket=bucket, Prefix="wal/%s/" % instance).get("Contents") or []
        assert [item["Key"] for item in listed if item["Key"].endswith(".zst")]
        again = run_playbook(ROLE_PLAY, extra_vars=extra, collections_root=collections_root, env=PIPELINING)
        assert again.stats["changed"] == 0, [t["task"] for t in again.tasks if t.get("changed")]


def test_role_pushes_asynchronously_into_a_directory_when_asked(helper, collections_root):
    base, _wrapper = helper
    archive = postgres_dir(base, "role-archive-%s" % uuid.uuid4().hex[:8])
    etc = os.path.join(base, "etc-%s" % uuid.uuid4().hex[:8])
    with PgCluster.create() as cluster:
        instance = "15-%s" % cluster.name
        extra = {
            "ansible_python_interpreter": "/usr/bin/python3",  # see the S3 role test
            "wal_archiving_pg_version": 15, "wal_archiving_cluster_name": cluster.name,
            "wal_archiving_login_host": "127.0.0.1", "wal_archiving_port": cluster.port,
            "wal_archiving_login_password": cluster.password, "wal_archiving_archive_dir": archive,
            "wal_archiving_async": True, "wal_archiving_config_dir": etc,
            "wal_archiving_spool_dir": os.path.join(base, "role-spool-%s" % instance),
            "wal_archiving_engine_dir": os.path.join(base, "role-lib"),
            "wal_archiving_wrapper_path": os.path.join(base, "role-bin", "todoapi-pgbackup-wal"),
        }
        os.makedirs(os.path.join(base, "role-bin"), 0o755, exist_ok=True)
        run_playbook(ROLE_PLAY, extra_vars=extra, collections_root=collections_root, env=PIPELINING)
        config = os.path.join(etc, "wal-%s.json" % instance)
        assert cluster.scalar("SHOW archive_command") == "%s archive-wal %%p %%f --config %s" % (
            extra["wal_archiving_wrapper_path"], config)
        with open(config) as handle:
            settings = json.load(handle)
        assert settings["archive_dir"] == archive and settings["async"] is True and "archive_url" not in settings
        fill_segments_into(cluster, 4)
        last = wait_archived(cluster, timeout=120)
        assert last + ".zst" in os.listdir(archive)
        assert os.path.exists(os.path.join(extra["wal_archiving_spool_dir"], "pusher.lock"))


def fill_segments_into(cluster, count):
    cluster.sql("CREATE TABLE IF NOT EXISTS filler (id int, payload text)")
    for _round in range(count):
        cluster.sql("INSERT INTO filler SELECT g, md5(random()::text) FROM generate_series(1, 20000) g")
        cluster.sql("SELECT pg_switch_wal()")
