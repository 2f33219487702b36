# -*- coding: utf-8 -*-
"""Losing a whole host (issue 17, item 3), on the lab, over SSH as the non-root lab user.

db1 runs TodoDb; app1 runs the stand-in application, which commits a row every WRITE_EVERY seconds
and writes down each commit only once PostgreSQL acknowledged it. db1's runner backs up into its
local directory and over SFTP into backup1 (the push shape). Then db1 is lost whole, mid-workload
(cable out, every process killed, PostgreSQL's and the backups' directories deleted) and
playbooks/dr_restore.yml rebuilds TodoDb on new1 from backup1 (dr_source sftp://backup1/..., downloaded by new1
itself with its own key: the backup goes from the backup host to the target, not through the controller),
re-points app1 and writes the report.
Checked: the commits acknowledged before the backup's snapshot are all on new1, those lost were all
acknowledged after it (the real RPO, in commits), the report's data-loss window is the time since
the backup, the application writes to new1 afterwards, and db1's fencing is "pending".

Then db1 comes back (empty, then with a running server) and dr_fence.yml fences it: the application's
role cannot log in, writes are refused, the application's commits all land on new1. Last, the same
loss with dr_method=pitr from S3: an S3-compatible server (moto_server) runs inside backup1 on its lab
address, db1 archives its WAL there (archive_timeout 2 s) and puts a base backup there, new1 reads both
from it itself (s3:// with dr_storage): only the commits of the last archive_timeout are lost.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import tempfile
import time

import boto3
import psycopg2
import pytest

from tests.lib.ansible_run import REPO_ROOT
from tests.lib.lab import hostfs, running_lab
from tests.lib.lab.shapes import venv_site_packages
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from tests.lib.standin_app import WRITE_SQL
from tests.lib.tododb import create_todo_db

DR_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "dr_restore.yml")
FENCE_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "dr_fence.yml")
STANDIN = os.path.join(REPO_ROOT, "tests", "lib", "standin_app.py")
PYTHON = "/usr/bin/python3"  # the hosts' Python (python3-psycopg2, python3-paramiko)
ADMIN_PASSWORD = "lab-Admin-Secret-17"
APP_PASSWORD = "lab-App-Secret-17"
PLAY_ENV = {"ANSIBLE_PIPELINING": "1"}
WRITE_EVERY = 0.05  # seconds between the workload's commits
APP_PORT = 5000
APP_SETTINGS = "/etc/todoapi/appsettings.json"
APP_ACKS = "/var/log/todoapi/acks"
SFTP_REPOSITORY = "/var/backups/todoapi-db1"  # on backup1
LOCAL_REPOSITORY = "/var/backups/todoapi"  # on db1, lost with it
KEY_ON_DB1 = "/etc/todoapi-pgbackup/backup1.key"
KNOWN_HOSTS_ON_DB1 = "/etc/todoapi-pgbackup/backup1.known_hosts"
KEY_ON_NEW1 = "/etc/todoapi-pgbackup/dr-backup1.key"
KNOWN_HOSTS_ON_NEW1 = "/etc/todoapi-pgbackup/dr-backup1.known_hosts"
REPORT_DIR = "/var/log/todoapi-dr"

SETUP = """
- name: backup1 keeps db1's backups in a directory the lab user writes over SFTP
  hosts: backup1
  gather_facts: false
  become: true
  tasks:
    - name: Create the repository directory
      ansible.builtin.file:
        path: {sftp_repository}
        state: directory
        owner: pgbackup-lab
        mode: "0700"

- name: db1 serves TodoDb and backs it up locally and to backup1
  hosts: db1
  gather_facts: false
  become: true
  tasks:
    - name: PostgreSQL 15 cluster main with the application's role
      ansible.builtin.include_role:
        name: todoapi.pgbackup.postgresql_server
    - name: The SFTP key and backup1's host key, for the backup user
      ansible.builtin.copy:
        src: "{{{{ item.src }}}}"
        dest: "{{{{ item.dest }}}}"
        owner: postgres
        group: postgres
        mode: "0600"
      loop:
        - {{src: "{key}", dest: {key_on_db1}}}
        - {{src: "{known_hosts}", dest: {known_hosts_on_db1}}}
    - name: The runner, repositories local and sftp://backup1 (no schedule; the test runs it as cron would)
      ansible.builtin.include_role:
        name: todoapi.pgbackup.backup
"""

NEW1_ACCESS = """
- name: new1 reads backup1 over SFTP itself (its key and backup1's host key)
  hosts: new1
  gather_facts: false
  become: true
  tasks:
    - name: Copy them
      ansible.builtin.copy:
        src: "{{{{ item.src }}}}"
        dest: "{{{{ item.dest }}}}"
        mode: "0600"
      loop:
        - {{src: "{key}", dest: {key_on_new1}}}
        - {{src: "{known_hosts}", dest: {known_hosts_on_new1}}}
"""

BACKUP = """
- name: The scheduled backup, run now
  hosts: db1
  gather_facts: false
  become: true
  become_user: postgres
  tasks:
    - name: Run the runner's backup
      ansible.builtin.command: /usr/local/bin/todoapi-pgbackup backup
      changed_when: true
"""


def server_vars(lab):
    return {
        "ansible_python_interpreter": PYTHON,
        "postgresql_server_install_packages": False,
        "postgresql_server_service_manager": "pg_ctlcluster",
        "postgresql_server_start_at_boot": False,
        "postgresql_server_initdb_options": ["--data-checksums", "--no-sync"],
        "postgresql_server_app_networks": [str(lab.network)],
        "postgresql_server_app_password": APP_PASSWORD,
        "postgresql_server_admin_password": ADMIN_PASSWORD,
        "postgresql_server_hba_rules": [{"contype": "host", "databases": "all", "users": "postgres",
                                         "source": "%s/32" % lab.controller, "method": "scram-sha-256"}],
    }


def backup_vars(lab):
    return {
        "pgbackup_install_packages": False, "pgbackup_scheduler": "none", "pgbackup_logrotate_enabled": False,
        "pgbackup_retention": {},
        "pgbackup_repositories": [
            {"location": LOCAL_REPOSITORY, "name": "local"},
            {"location": "sftp://pgbackup-lab@backup1%s" % SFTP_REPOSITORY, "name": "backup1",
             "credentials_file": KEY_ON_DB1, "options": {"known_hosts": KNOWN_HOSTS_ON_DB1, "timeout": 10}},
        ],
    }


def connect(lab, host, user="postgres", password=ADMIN_PASSWORD, dbname="TodoDb"):
    return psycopg2.connect(host=str(lab.address(host)), port=5432, user=user, password=password, dbname=dbname,
                            connect_timeout=5)


def tokens_on(lab, host):
    """The workload's tokens in host's TodoDb (read as the application, as its owners would check)."""
    connection = connect(lab, host, user="todoapi_app", password=APP_PASSWORD)
    try:
        with connection.cursor() as cursor:
            cursor.execute("""SELECT "UserName" FROM "Users" WHERE "Email" LIKE '%@workload.invalid'""")
            return set(row[0] for row in cursor.fetchall())
    finally:
        connection.close()


class Workload(object):
    """The stand-in application on app1 (its own settings file, pid, log and list of acknowledged commits)."""

    def __init__(self, lab):
        self.lab = lab

    def command(self, action):
        argv = [PYTHON, STANDIN, action]
        if action == "start":
            return argv + ["--settings", APP_SETTINGS, "--port", str(APP_PORT), "--pidfile", "/run/todoapi.pid",
                           "--log", "/var/log/todoapi/app.log", "--write-every", str(WRITE_EVERY), "--acks", APP_ACKS]
        if action == "health":
            return argv + ["--port", str(APP_PORT)]
        return argv + ["--pidfile", "/run/todoapi.pid"]

    def start_on(self, host):
        settings = {"Logging": {"LogLevel": {"Default": "Information"}},
                    "ConnectionStrings": {"DefaultConnection": "Host=%s;Port=5432;Database=TodoDb;Username=todoapi_app;"
                                                               "Password=%s" % (self.lab.address(host), APP_PASSWORD)}}
        self.lab.run("app1", ["mkdir", "-p", "/etc/todoapi", "/var/log/todoapi"])
        self.lab.run("app1", ["tee", APP_SETTINGS], input_text=json.dumps(settings))
        self.lab.run("app1", self.command("start"))

    def acks(self):
        """[(token, acknowledged at)] in order (none yet: the writer opens the file just after the app started)."""
        path = self.lab.host_path("app1", APP_ACKS)
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            return [(token, float(at)) for token, at in (line.split() for line in handle if line.strip())]

    def wait_for_acks(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            acks = self.acks()
            if len(acks) >= count:
                return acks
            time.sleep(0.1)
        raise AssertionError("the workload acknowledged only %d commits in %ds; its log:\n%s" % (
            len(self.acks()), timeout, self.log()))

    def log(self):
        with open(self.lab.host_path("app1", "/var/log/todoapi/app.log")) as handle:
            return handle.read()[-3000:]

    def stop(self):
        self.lab.run("app1", self.command("stop"), check=False)


@pytest.fixture(scope="module")
def lab(collections_root):
    """This module loses db1 for good (disks deleted): it runs on a lab of its own, so the tests after it find the
    session's lab with every host."""
    yield from running_lab(collections_root)


@pytest.fixture(scope="module")
def primary(lab):
    """db1 with a small TodoDb under a running workload from app1; its runner deployed (no backup yet)."""
    extra = dict(server_vars(lab), **backup_vars(lab))
    lab.playbook(SETUP.format(sftp_repository=SFTP_REPOSITORY, key=lab.private_key, key_on_db1=KEY_ON_DB1,
                              known_hosts=lab.known_hosts, known_hosts_on_db1=KNOWN_HOSTS_ON_DB1)
                 + NEW1_ACCESS.format(key=lab.private_key, key_on_new1=KEY_ON_NEW1, known_hosts=lab.known_hosts,
                                      known_hosts_on_new1=KNOWN_HOSTS_ON_NEW1),
                 extra_vars=extra, env=PLAY_ENV)
    create_todo_db({"host": str(lab.address("db1")), "port": 5432, "user": "postgres", "password": ADMIN_PASSWORD},
                   size_mb=1)
    workload = Workload(lab)
    workload.start_on("db1")
    workload.wait_for_acks(20)
    try:
        yield workload
    finally:
        workload.stop()


def dr_vars(lab, workload, incident_time, **overrides):
    values = {
        "ansible_python_interpreter": PYTHON,
        "dr_target": "new1",
        # new1 downloads the backup from backup1 over SFTP itself: no copy through the controller.
        "dr_source": "sftp://pgbackup-lab@backup1%s" % SFTP_REPOSITORY,
        "dr_storage": {"sftp_key_file": KEY_ON_NEW1, "sftp_known_hosts": KNOWN_HOSTS_ON_NEW1, "sftp_timeout": 10},
        "dr_install_packages": False,
        "dr_service_manager": "pg_ctlcluster",
        "dr_app_networks": [str(lab.network)],
        "dr_admin_password": ADMIN_PASSWORD,
        "dr_app_password": APP_PASSWORD,
        "dr_incident_time": incident_time,
        "dr_app_hosts": ["app1"],
        "dr_app_manager": "command",
        "dr_app_stop_command": " ".join(workload.command("stop")),
        "dr_app_start_command": " ".join(workload.command("start")),
        "dr_app_health_command": " ".join(workload.command("health")),
        "dr_app_health_retries": 15,
        "dr_app_health_delay": 1,
        "dr_app_connection_file": APP_SETTINGS,
        # Test speed: no fsync in the new cluster (the RPO is decided before it exists).
        "postgresql_server_initdb_options": ["--data-checksums", "--no-sync"],
        "postgresql_server_settings": {"fsync": "off"},
        "postgresql_server_start_at_boot": False,
    }
    values.update(overrides)
    return values


def read_report(lab, host):
    directory = lab.host_path(host, REPORT_DIR)
    names = sorted(name for name in os.listdir(directory) if name.endswith(".json"))
    with open(os.path.join(directory, names[-1])) as handle:
        return json.load(handle)


def iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (".%03dZ" % int((seconds % 1) * 1000))


@pytest.fixture(scope="module")
def disaster(lab, primary):
    """A backup mid-workload, more commits, then db1 lost whole and dr_restore.yml on new1 (db1 to be fenced)."""
    workload = primary
    outcome = {"backup_started": time.time()}
    lab.playbook(BACKUP, env=PLAY_ENV)
    outcome["backup_done"] = time.time()
    names = [name for name in os.listdir(lab.host_path("backup1", SFTP_REPOSITORY)) if name.endswith(".manifest.json")]
    assert len(names) == 1, "the backup did not reach backup1 over SFTP: %s" % names
    with open(os.path.join(lab.host_path("backup1", SFTP_REPOSITORY), names[0])) as handle:
        outcome["manifest"] = json.load(handle)
    time.sleep(3)  # the workload goes on after the backup: these commits are acknowledged, then lost

    outcome["lost_at"] = time.time()
    lab.lose("db1")
    outcome["acked"] = workload.acks()
    assert not os.listdir(lab.host_path("db1", "/var/lib/postgresql"))
    assert not os.listdir(lab.host_path("db1", "/var/backups"))

    started = time.time()
    outcome["result"] = lab.playbook(DR_PLAYBOOK, extra_vars=dr_vars(lab, workload, iso(outcome["lost_at"]),
                                                                     dr_fence_hosts=["db1"]), env=PLAY_ENV)
    outcome["wall"] = time.time() - started
    outcome["report"] = read_report(lab, "new1")
    return outcome


def test_rpo_counted_in_acknowledged_commits_after_losing_db1(lab, primary, disaster):
    report, acked = disaster["report"], disaster["acked"]
    assert report["outcome"] == "succeeded", report
    assert report["backup"]["id"] == disaster["manifest"]["id"]

    # RPO against what the application was told: everything acknowledged before the backup's
    # snapshot is on new1; what is missing was all acknowledged after it.
    on_new1 = tokens_on(lab, "new1")
    lost = [(token, at) for token, at in acked if token not in on_new1]
    kept_times = [at for token, at in acked if token in on_new1]
    assert lost, "nothing was lost although the workload ran after the backup"
    assert all(at > disaster["backup_started"] for _token, at in lost), "a commit acknowledged before the backup was lost"
    assert max(kept_times) < disaster["backup_done"]
    # The report's data-loss window runs from the backup's snapshot to the incident: it covers every lost commit.
    lost_at = disaster["lost_at"]
    lost_window = lost_at - min(at for _token, at in lost)
    print("\nlab DR logical: %d of %d acknowledged commits lost, over %.1f s (backup %.1f-%.1f s before the loss); "
          "report RPO %.1f s, RTO %.1f s (play %.1f s); steps %s; load %s" % (
              len(lost), len(acked), lost_window, lost_at - disaster["backup_started"], lost_at - disaster["backup_done"],
              report["rpo_seconds"], report["rto_seconds"], disaster["wall"],
              ", ".join("%s %.1f s" % (s["name"], s["duration_seconds"] or 0) for s in report["steps"]),
              open("/proc/loadavg").read().split()[:3]))
    assert lost_window <= report["rpo_seconds"] + 0.5, (lost_window, report["rpo_seconds"])
    assert report["rpo_seconds"] <= lost_at - disaster["backup_started"] + 0.5

    # db1 did not answer: its fencing is pending, with the command to run.
    assert [(f["host"], f["status"]) for f in report["fencing"]] == [("db1", "pending")], report["fencing"]
    assert "todoapi.pgbackup.dr_fence -e dr_fence_hosts=db1" in report["fencing"][0]["detail"]
    assert report["follow_up"][0].startswith("Fence db1 before it comes back")

    # The application was re-pointed: its new commits land on new1.
    after = primary.wait_for_acks(len(acked) + 20)
    assert {token for token, _at in after[len(acked):]} <= tokens_on(lab, "new1")
    with open(lab.host_path("app1", APP_SETTINGS)) as handle:
        assert "Host=%s;" % lab.address("new1") in handle.read()


def test_db1_back_on_the_network_takes_no_writes(lab, primary, disaster):
    # db1 comes back: first as the empty host it is (its disks were deleted), nothing there for the application.
    lab.reconnect("db1")
    with pytest.raises(psycopg2.OperationalError):
        connect(lab, "db1")
    # Then as after a partition rather than a disk loss: a running server that would still let the application
    # in (made again here, since the test deleted its disks). The fencing the report asked for closes it.
    lab.playbook(SETUP.format(sftp_repository=SFTP_REPOSITORY, key=lab.private_key, key_on_db1=KEY_ON_DB1,
                              known_hosts=lab.known_hosts, known_hosts_on_db1=KNOWN_HOSTS_ON_DB1),
                 extra_vars=dict(server_vars(lab), **backup_vars(lab)), limit="db1", env=PLAY_ENV)
    create_todo_db({"host": str(lab.address("db1")), "port": 5432, "user": "postgres", "password": ADMIN_PASSWORD},
                   size_mb=0.1)
    tokens_on(lab, "db1")  # the application could log in and write there

    result = lab.playbook(FENCE_PLAYBOOK, extra_vars={"dr_fence_hosts": ["db1"]}, env=PLAY_ENV)
    fencing = result.host_results("Publish the result (AWX job artifacts)")["localhost"]["ansible_stats"]["data"]["dr_fencing"]
    assert [(f["host"], f["status"]) for f in fencing] == [("db1", "fenced")], fencing
    assert "NOLOGIN" in fencing[0]["detail"]

    with pytest.raises(psycopg2.OperationalError, match="not permitted to log in"):
        tokens_on(lab, "db1")
    admin = connect(lab, "db1")
    try:
        with admin.cursor() as cursor:
            cursor.execute("SHOW default_transaction_read_only")
            assert cursor.fetchone()[0] == "on"
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cursor.execute(WRITE_SQL, ("fenced", "fenced"))
    finally:
        admin.close()
    with open(lab.host_path("db1", "/etc/postgresql/15/main/start.conf")) as handle:
        assert handle.read().strip().splitlines()[-1] == "manual"

    # Meanwhile the application writes to new1 only.
    count = len(primary.acks())
    newer = {token for token, _at in primary.wait_for_acks(count + 10)[count:]}
    assert newer <= tokens_on(lab, "new1")
    admin = connect(lab, "db1")
    try:
        with admin.cursor() as cursor:
            cursor.execute("""SELECT count(*) FROM "Users" WHERE "Email" LIKE '%@workload.invalid'""")
            assert cursor.fetchone()[0] == 0
    finally:
        admin.close()


S3_PORT = 9000  # moto's port in backup1's own network namespace
S3_BUCKET = "todoapi-db1"
BASE_PREFIX = "s3://%s/base" % S3_BUCKET
WAL_PREFIX = "s3://%s/wal" % S3_BUCKET
ARCHIVE_TIMEOUT = 2  # seconds: bounds what archiving can lose

PITR_SETUP = """
- name: db1 archives its WAL to the object store on backup1
  hosts: db1
  gather_facts: false
  become: true
  tasks:
    - name: WAL archiving (role wal_archiving, archive_url s3:// on backup1)
      ansible.builtin.include_role:
        name: todoapi.pgbackup.wal_archiving
"""


def base_backup_play(repository, storage):
    """A play that takes a base backup of db1 straight into ``repository`` (a URL on backup1) with the module's
    storage options ``storage``."""
    task = dict(storage, repository=repository, work_dir="/var/lib/postgresql")
    return json.dumps([{"name": "A base backup of db1, straight to backup1", "hosts": "db1", "gather_facts": False,
                        "become": True, "become_user": "postgres",
                        "tasks": [{"name": "Take it", "todoapi.pgbackup.pg_basebackup": task}]}])


class LabS3(object):
    """An S3-compatible server (moto_server from the test venv) running INSIDE backup1: its network namespace,
    bound to backup1's lab address, so db1 and new1 reach it over the lab network as they would an object store
    on the backup host. Started in the background (its start-up overlaps the plays), stopped by stop()."""

    def __init__(self, lab, host="backup1"):
        self.lab = lab
        self.endpoint = "http://%s:%d" % (lab.address(host), S3_PORT)
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="pgbackup-lab-s3-"), "moto.log")
        # The host's own Python (the venv's interpreter lives under /root, which each host has empty) with the
        # venv's packages (moto), the same CPython 3.11.
        env = dict(hostfs.HOST_ENV, PYTHONPATH=venv_site_packages())
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(lab.enter_argv(host) + [PYTHON, "-c", "from moto.server import main; main()",
                                                                    "-H", str(lab.address(host)), "-p", str(S3_PORT)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)

    def client(self, timeout=60):
        """A boto3 client once the server answers (from the controller, over the lab bridge)."""
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION, aws_access_key_id=S3_ACCESS_KEY,
                              aws_secret_access_key=S3_SECRET_KEY)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.list_buckets()
                return client
            except Exception:  # not listening yet
                if self.process.poll() is not None or time.monotonic() > deadline:
                    with open(self.log_path) as handle:
                        raise AssertionError("moto_server on backup1 did not answer:\n" + handle.read()[-2000:])
                time.sleep(0.2)

    def storage(self):
        """The storage options (dr_storage, pg_basebackup's) of this server, secrets included."""
        return {"s3_endpoint_url": self.endpoint, "s3_region": S3_REGION, "aws_access_key": S3_ACCESS_KEY,
                "aws_secret_key": S3_SECRET_KEY}

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(os.path.dirname(self.log_path), ignore_errors=True)


@pytest.fixture(scope="module")
def backup1_s3(lab):
    server = LabS3(lab)
    try:
        yield server
    finally:
        server.stop()


def test_pitr_from_wal_pushed_to_backup1_loses_at_most_archive_timeout(lab, primary, backup1_s3):
    """db1 again (empty), archiving its WAL to the object store on backup1 (S3, archive_timeout 2 s), a base backup
    there; db1 lost whole mid-workload; dr_method=pitr on an empty new1, which reads base backup and WAL from the
    object store itself (s3:// with dr_storage), nothing through the controller."""
    workload = primary
    workload.stop()
    lab.lose("db1")
    lab.reconnect("db1")
    lab.run("new1", ["pg_dropcluster", "--stop", "15", "main"], check=False)  # new1 empty again (after the logical DR)
    backup1_s3.client().create_bucket(Bucket=S3_BUCKET)  # before the archiving role checks a segment arrives
    extra = dict(server_vars(lab), **backup_vars(lab))
    extra.update({"wal_archiving_archive_url": WAL_PREFIX,
                  "wal_archiving_storage_options": {"s3_endpoint_url": backup1_s3.endpoint, "s3_region": S3_REGION},
                  "wal_archiving_credentials": "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (
                      S3_ACCESS_KEY, S3_SECRET_KEY),
                  "wal_archiving_archive_timeout": "%ds" % ARCHIVE_TIMEOUT,
                  "wal_archiving_spool_dir": "/var/lib/postgresql/wal-spool",  # /var/spool is the machine's
                  "wal_archiving_login_host": "127.0.0.1", "wal_archiving_login_password": ADMIN_PASSWORD})
    lab.playbook(SETUP.format(sftp_repository=SFTP_REPOSITORY, key=lab.private_key, key_on_db1=KEY_ON_DB1,
                              known_hosts=lab.known_hosts, known_hosts_on_db1=KNOWN_HOSTS_ON_DB1)
                 + PITR_SETUP,
                 extra_vars=extra, env=PLAY_ENV)
    create_todo_db({"host": str(lab.address("db1")), "port": 5432, "user": "postgres", "password": ADMIN_PASSWORD},
                   size_mb=1)
    before = len(workload.acks())
    workload.start_on("db1")
    storage = backup1_s3.storage()
    lab.playbook(base_backup_play(BASE_PREFIX, storage), env=PLAY_ENV)
    workload.wait_for_acks(before + 20)
    time.sleep(4 * ARCHIVE_TIMEOUT)  # commits after the base backup: only the archived WAL brings them back

    lost_at = time.time()
    lab.lose("db1")
    acked = workload.acks()[before:]
    started = time.time()
    lab.playbook(DR_PLAYBOOK, extra_vars=dr_vars(
        lab, workload, iso(lost_at), dr_method="pitr", dr_source=BASE_PREFIX, dr_wal_archive=WAL_PREFIX,
        dr_storage=storage, dr_fence_hosts=["db1"]), env=PLAY_ENV)
    wall = time.time() - started
    report = read_report(lab, "new1")
    assert report["outcome"] == "succeeded" and report["context"]["method"] == "pitr", report

    on_new1 = tokens_on(lab, "new1")
    lost = [(token, at) for token, at in acked if token not in on_new1]
    kept = [at for token, at in acked if token in on_new1]
    lost_window = (lost_at - min(at for _token, at in lost)) if lost else 0.0
    print("\nlab DR pitr: %d of %d acknowledged commits lost, over %.1f s (archive_timeout %d s); newest kept %.1f s "
          "before the loss; report RPO %.1f s, RTO %.1f s (play %.1f s); steps %s; load %s" % (
              len(lost), len(acked), lost_window, ARCHIVE_TIMEOUT, lost_at - max(kept), report["rpo_seconds"],
              report["rto_seconds"], wall, ", ".join("%s %.1f s" % (s["name"], s["duration_seconds"] or 0)
                                                     for s in report["steps"]),
              open("/proc/loadavg").read().split()[:3]))
    # Only the tail is lost: everything acknowledged before the last archive_timeout (plus the push) is back.
    assert all(at > lost_at - ARCHIVE_TIMEOUT - 3 for _token, at in lost), (lost_window, ARCHIVE_TIMEOUT)
    assert lost_window <= report["rpo_seconds"] + 0.5, (lost_window, report["rpo_seconds"])
    assert [(f["host"], f["status"]) for f in report["fencing"]] == [("db1", "pending")]
    count = len(workload.acks())
    newer = {token for token, _at in workload.wait_for_acks(count + 10)[count:]}
    assert newer <= tokens_on(lab, "new1")
