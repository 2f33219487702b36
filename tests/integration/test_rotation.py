# -*- coding: utf-8 -*-
"""The least-privilege backup login (roles/backup_login) and the rotation of its password
(playbooks/rotate_backup_credentials.yml), against real PostgreSQL and the runner installed by
the backup role:

- the login can take logical backups (which restore) and base backups, and cannot write, run
  DDL, manage roles or read pg_authid;
- after a rotation the old password fails, the new one works, and a scheduled-style run of
  the runner takes a backup;
- a rotation whose proof backup fails (the repository is made unwritable) is rolled back: the
  previous password works on the server and is back in the passfile.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid

import psycopg2
import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import REPO_ROOT, run_playbook
from tests.lib.dbcompare import assert_same_data
from tests.lib.tododb import create_todo_db

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")

OS_USER = "postgres"
ROTATE_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rotate_backup_credentials.yml")
LOGIN_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: todoapi.pgbackup.backup_login
"""
BACKUP_ROLE_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: todoapi.pgbackup.backup
"""
# become_user postgres from root on localhost: pipelining avoids temp files postgres cannot read.
PLAYBOOK_ENV = {"ANSIBLE_PIPELINING": "1"}


class Setup(object):
    """What the module fixture built."""


def can_login(pg, user, password, dbname="postgres"):
    try:
        psycopg2.connect(host=pg.host, port=pg.port, user=user, password=password, dbname=dbname,
                         connect_timeout=5).close()
        return True
    except psycopg2.OperationalError as exc:
        assert "password authentication failed" in str(exc), exc
        return False


def passfile_password(path):
    with open(path) as handle:
        line = handle.read().strip()
    return line.split(":", 4)[4]


def run_runner(setup, command="backup"):
    return subprocess.run(["runuser", "-u", OS_USER, "--", setup.runner, "--config", setup.config_file, command],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def setup(pg, collections_root):
    suffix = uuid.uuid4().hex[:8]
    ctx = Setup()
    ctx.pg = pg
    ctx.base = tempfile.mkdtemp(prefix="pgbackup-rotate-")
    os.chmod(ctx.base, 0o755)
    ctx.login = "todoapi_backup_%s" % suffix
    ctx.password = "first-Pa55:word\\%s" % suffix  # ':' and '\' must survive the passfile escaping
    ctx.database = "TodoDb_rot_%s" % suffix
    ctx.repository = os.path.join(ctx.base, "repo")
    ctx.config_dir = os.path.join(ctx.base, "etc")
    ctx.config_file = os.path.join(ctx.config_dir, "config.json")
    ctx.passfile = os.path.join(ctx.config_dir, "pgpass")
    ctx.runner = os.path.join(ctx.base, "bin", "todoapi-pgbackup")
    ctx.storage_credentials = os.path.join(ctx.config_dir, "azure.credentials")
    os.makedirs(os.path.join(ctx.base, "bin"))
    os.makedirs(os.path.join(ctx.base, "log"))
    os.makedirs(os.path.join(ctx.base, "run"))
    shutil.chown(os.path.join(ctx.base, "run"), OS_USER, OS_USER)  # the lock file's directory
    ctx.login_vars = {
        "backup_login_name": ctx.login, "backup_login_password": ctx.password, "backup_login_physical": True,
        "backup_login_admin_become": False, "backup_login_admin_host": pg.host, "backup_login_admin_port": pg.port,
        "backup_login_admin_password": pg.password,
        # pg_hba.conf rules go to a copy: the session cluster's own file stays as the other tests expect it
        "backup_login_hba_sources": ["127.0.0.1/32"], "backup_login_hba_contype": "host",
        "backup_login_hba_file": os.path.join(ctx.base, "pg_hba.conf"),
    }
    shutil.copy(os.path.join(pg.conf_dir, "pg_hba.conf"), ctx.login_vars["backup_login_hba_file"])
    ctx.admin_vars = {"rotate_db_admin_become": False, "rotate_db_admin_host": pg.host,
                      "rotate_db_admin_port": pg.port, "rotate_db_admin_password": pg.password}
    create_todo_db(pg, dbname=ctx.database, size_mb=1)
    try:
        ctx.login_run = run_playbook(LOGIN_PLAYBOOK, extra_vars=ctx.login_vars, collections_root=collections_root)
        ctx.login_again = run_playbook(LOGIN_PLAYBOOK, extra_vars=ctx.login_vars, collections_root=collections_root)
        run_playbook(BACKUP_ROLE_PLAYBOOK, collections_root=collections_root, extra_vars={
            "pgbackup_install_packages": False, "pgbackup_logrotate_enabled": False, "pgbackup_scheduler": "none",
            "pgbackup_databases": [ctx.database], "pgbackup_repository": ctx.repository,
            "pgbackup_config_dir": ctx.config_dir, "pgbackup_log_file": os.path.join(ctx.base, "log", "backup.log"),
            "pgbackup_lock_file": os.path.join(ctx.base, "run", "run.lock"), "pgbackup_engine_dir": os.path.join(ctx.base, "lib"),
            "pgbackup_runner_path": ctx.runner, "pgbackup_systemd_unit_dir": os.path.join(ctx.base, "systemd"),
            "pgbackup_job_name": "pgbackup-rot-%s" % suffix, "pgbackup_db_host": pg.host, "pgbackup_db_port": pg.port,
            "pgbackup_db_user": ctx.login, "pgbackup_password": ctx.password, "pgbackup_retention": {},
        })
        with open(ctx.storage_credentials, "w") as handle:
            handle.write("old-storage-secret\n")
        os.chmod(ctx.storage_credentials, 0o600)
        shutil.chown(ctx.storage_credentials, OS_USER, OS_USER)
        yield ctx
    finally:
        pg.drop_database(ctx.database)
        pg.drop_database(ctx.database + "_restored")
        pg.sql('DROP OWNED BY "%s"' % ctx.login)
        pg.sql('DROP ROLE IF EXISTS "%s"' % ctx.login)
        shutil.rmtree(ctx.base, ignore_errors=True)


def connect_as_login(setup, password=None, dbname=None):
    return psycopg2.connect(host=setup.pg.host, port=setup.pg.port, user=setup.login,
                            password=password or setup.current_password, dbname=dbname or setup.database)


# The least-privilege login


def test_backup_login_has_exactly_the_backup_privileges(setup):
    setup.current_password = setup.password
    assert setup.login_run.stats["changed"] > 0
    assert setup.login_again.stats["changed"] == 0, [t["task"] for t in setup.login_again.tasks if t.get("changed")]
    assert setup.password not in setup.login_run.stdout + setup.login_run.stderr
    row = setup.pg.sql("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin, rolreplication, "
                       "rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = %s", (setup.login,))[0]
    assert row == (False, False, False, False, True, True, True)
    member_of = setup.pg.sql("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                             "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (setup.login,))
    assert member_of == [("pg_read_all_data",)]
    with open(setup.login_vars["backup_login_hba_file"]) as handle:
        rules = [line.split("#")[0].split() for line in handle if setup.login in line and not line.startswith("#")]
    assert sorted(rules) == sorted([
        ["host", "all", setup.login, "127.0.0.1/32", "scram-sha-256"],
        ["host", "replication", setup.login, "127.0.0.1/32", "scram-sha-256"]]), rules


def test_logical_backup_as_backup_login_restores(setup, tmp_repo):
    spec = ConnectionSpec(host=setup.pg.host, port=setup.pg.port, user=setup.login, password=setup.password)
    manifest = logical_backup.backup(logical_backup.LogicalBackupRequest(setup.database, LocalRepository(tmp_repo), spec))
    assert manifest["tables"]["public.Todos"] > 0 and "globals" in manifest["extra_files"]
    admin = ConnectionSpec(host=setup.pg.host, port=setup.pg.port, user=setup.pg.user, password=setup.pg.password)
    target = setup.database + "_restored"
    logical_restore.restore(logical_restore.LogicalRestoreRequest(
        LocalRepository(tmp_repo), admin, database=target, source_database=setup.database, backup=manifest["id"]))
    assert_same_data((setup.pg, setup.database), (setup.pg, target))
    setup.pg.drop_database(target)


@pytest.mark.parametrize("statement", [
    'INSERT INTO "Users" ("Email", "UserName", "PasswordHash", "CreatedAt") VALUES (\'x@y\', \'x\', \'x\', now())',
    'UPDATE "Todos" SET "Title" = \'pwned\'',
    'DELETE FROM "Todos"',
    'TRUNCATE "Todos"',
    "CREATE TABLE public.evil (id int)",
    "CREATE SCHEMA evil",
    'ALTER TABLE "Todos" ADD COLUMN evil int',
    "ALTER ROLE postgres PASSWORD 'evil'",
    "CREATE ROLE evil LOGIN",
    "CREATE DATABASE evil",
    "SELECT pg_read_file('postgresql.conf')",
    "COPY (SELECT 1) TO '/tmp/pgbackup-evil'",
])
def test_backup_login_cannot(setup, statement):
    conn = connect_as_login(setup, password=setup.password)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            with pytest.raises(psycopg2.Error) as caught:
                cursor.execute(statement)
        assert caught.value.pgcode in ("42501", "42P01") or "permission denied" in str(caught.value), caught.value
    finally:
        conn.close()


def test_backup_login_can_read_pg_authid(setup):
    """What pg_read_all_data really means: SELECT on every relation, catalogs included, so the
    SCRAM verifiers in pg_authid are readable (docs/least-privilege.md says so and what it implies)."""
    conn = connect_as_login(setup, password=setup.password)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (setup.login,))
            assert cursor.fetchone()[0].startswith("SCRAM-SHA-256$")
    finally:
        conn.close()


def test_physical_backup_with_replication(setup, tmp_repo):
    """REPLICATION is all pg_basebackup needs: a base backup taken as the login succeeds."""
    target = os.path.join(tmp_repo, "base")
    env = dict(os.environ, PGPASSWORD=setup.password)
    done = subprocess.run([setup.pg.tool("pg_basebackup"), "-h", setup.pg.host, "-p", str(setup.pg.port), "-U", setup.login,
                           "-D", target, "-Ft", "-X", "stream", "-c", "fast", "--no-sync"],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert os.path.getsize(os.path.join(target, "base.tar")) > 0

    base_backup = pytest.importorskip("ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.base_backup")
    spec = ConnectionSpec(host=setup.pg.host, port=setup.pg.port, user=setup.login, password=setup.password)
    manifest = base_backup.backup(base_backup.PhysicalBackupRequest(LocalRepository(tmp_repo), spec, verify=False))
    assert manifest["kind"] == "physical"
    LocalRepository(tmp_repo).verify_checksum(manifest)


# Rotation


def rotate(setup, collections_root, expect_failure=False, **extra):
    extra_vars = dict(setup.admin_vars, target_hosts="localhost", rotate_config_file=setup.config_file,
                      rotate_runner=setup.runner, **extra)
    return run_playbook(ROTATE_PLAYBOOK, extra_vars=extra_vars, collections_root=collections_root,
                        expect_failure=expect_failure, env=PLAYBOOK_ENV)


def test_rotation_old_password_fails_new_one_works(setup, collections_root):
    old = setup.password
    assert passfile_password(setup.passfile).replace("\\:", ":").replace("\\\\", "\\") == old
    before = len(LocalRepository(setup.repository).list())
    new_password_file = os.path.join(setup.base, "new-password")
    result = rotate(setup, collections_root, rotate_new_password_file=new_password_file,
                    rotate_storage_credential_files=[{"path": setup.storage_credentials, "content": "new-storage-secret\n"}])
    with open(new_password_file) as handle:
        new = handle.read().strip()
    assert len(new) == 32 and new != old
    assert new not in result.stdout + result.stderr and old not in result.stdout + result.stderr
    assert not can_login(setup.pg, setup.login, old)
    assert can_login(setup.pg, setup.login, new)
    assert passfile_password(setup.passfile) == new
    info = os.stat(setup.passfile)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == pwd.getpwnam(OS_USER).pw_uid
    with open(setup.storage_credentials) as handle:
        assert handle.read() == "new-storage-secret\n"
    assert stat.S_IMODE(os.stat(setup.storage_credentials).st_mode) == 0o600
    assert len(LocalRepository(setup.repository).list()) == before + 1, "the proof backup is missing"
    # the next scheduled run (as cron runs it) works with the new password
    done = run_runner(setup)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(LocalRepository(setup.repository).list()) == before + 2
    setup.current_password = new


def test_failed_rotation_keeps_the_previous_credentials(setup, collections_root):
    previous = setup.current_password
    attempted = "never-Active-%s" % uuid.uuid4().hex[:10]
    with open(setup.storage_credentials) as handle:
        previous_storage = handle.read()
    # The proof backup cannot write: the repository now belongs to root and is read-only for postgres.
    os.chown(setup.repository, 0, 0)
    os.chmod(setup.repository, 0o755)
    try:
        result = rotate(setup, collections_root, expect_failure=True, rotate_new_password=attempted,
                        rotate_storage_credential_files=[{"path": setup.storage_credentials, "content": "half-rotated\n"}])
    finally:
        shutil.chown(setup.repository, OS_USER, OS_USER)
        os.chmod(setup.repository, 0o700)
    message = result.task("Report the rollback")["msg"]
    assert "ROLLED BACK" in message and "logs in" in message and "localhost" in message
    assert attempted not in result.stdout and previous not in result.stdout
    assert can_login(setup.pg, setup.login, previous)
    assert not can_login(setup.pg, setup.login, attempted)
    assert passfile_password(setup.passfile) == previous
    with open(setup.storage_credentials) as handle:
        assert handle.read() == previous_storage
    done = run_runner(setup)
    assert done.returncode == 0, done.stdout + done.stderr


def test_simulated_failure_rehearses_the_rollback(setup, collections_root):
    previous = setup.current_password
    result = rotate(setup, collections_root, expect_failure=True, rotate_simulate_failure=True)
    assert "ROLLED BACK" in result.task("Report the rollback")["msg"]
    assert can_login(setup.pg, setup.login, previous)
    assert passfile_password(setup.passfile) == previous
    with open(setup.config_file) as handle:
        assert json.load(handle)["connection"]["user"] == setup.login


def test_a_password_with_colons_and_backslashes_is_rotated_to_and_rolled_back_to(setup, collections_root):
    """The rotation writes the passfile with pgpass_line and reads the previous password back with
    pgpass_entries: a rollback to a password full of ':' and '\\' must set exactly that password again."""
    tricky = "third:Pa55\\word:%s\\" % uuid.uuid4().hex[:6]
    escaped = "*:*:*:%s:%s\n" % (setup.login, tricky.replace("\\", "\\\\").replace(":", "\\:"))
    rotate(setup, collections_root, rotate_new_password=tricky)
    setup.current_password = tricky
    assert can_login(setup.pg, setup.login, tricky)
    with open(setup.passfile) as handle:
        assert handle.read() == escaped
    result = rotate(setup, collections_root, expect_failure=True, rotate_simulate_failure=True)
    assert "ROLLED BACK" in result.task("Report the rollback")["msg"]
    assert "BUT A LOGIN WITH IT FAILED" not in result.task("Report the rollback")["msg"]
    assert can_login(setup.pg, setup.login, tricky)
    with open(setup.passfile) as handle:
        assert handle.read() == escaped
    done = run_runner(setup)
    assert done.returncode == 0, done.stdout + done.stderr
