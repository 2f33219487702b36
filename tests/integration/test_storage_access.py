# -*- coding: utf-8 -*-
"""Who may read backups and the secrets around them: modes and owners of the repository, its
files and sidecars, the runner's config, passfile and log (installed by the backup role), the
SFTP private key and Azure credentials files, on every back-end that has owners and modes:
a local repository, a second local directory (NFS stand-in) and an SFTP server (checked
through paramiko's stat, as the server sees them).
"""

from __future__ import absolute_import, division, print_function

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import transfer
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import run_playbook
from tests.lib.engine import spec_of
from tests.lib.servers import sshd  # noqa: F401  # pylint: disable=unused-import
from tests.lib.tododb import create_todo_db

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")

OS_USER = "postgres"
ROLE_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: todoapi.pgbackup.backup
"""


def mode_owner(path):
    info = os.stat(path)
    return stat.S_IMODE(info.st_mode), pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name


def assert_private_repository(path, owner=OS_USER):
    """Directory 0700, every file 0600 and every subdirectory 0700, all owned by ``owner``; no temp files."""
    assert mode_owner(path)[:2] == (0o700, owner), path
    for root, dirs, files in os.walk(path):
        for name in dirs:
            assert mode_owner(os.path.join(root, name))[:2] == (0o700, owner), os.path.join(root, name)
        for name in files:
            assert not name.startswith(".tmp-"), name
            assert mode_owner(os.path.join(root, name))[:2] == (0o600, owner), os.path.join(root, name)


@pytest.fixture(scope="module")
def backups(pg):
    """A custom-format and a directory-format backup in a repository the engine created itself."""
    name = "TodoDb_acl_%s" % uuid.uuid4().hex[:8]
    create_todo_db(pg, dbname=name, size_mb=1)
    base = tempfile.mkdtemp(prefix="pgbackup-acl-")
    repo = LocalRepository(os.path.join(base, "repo", "todoapi"), owner=OS_USER)
    try:
        custom = logical_backup.backup(logical_backup.LogicalBackupRequest(name, repo, spec_of(pg)))
        request = logical_backup.LogicalBackupRequest(name, repo, spec_of(pg), fmt="directory", compression="gzip:6")
        directory = logical_backup.backup(request)
        repo.write_sidecar(custom["id"], "verify", {"history": []})
        yield base, repo, custom, directory
    finally:
        shutil.rmtree(base, ignore_errors=True)
        pg.drop_database(name)


def test_local_repository_is_private(backups):
    base, repo, custom, directory = backups
    assert_private_repository(repo.path)
    assert os.path.isdir(os.path.join(repo.path, directory["artifact"]))
    assert os.path.exists(os.path.join(repo.path, custom["id"] + ".verify.json"))


def test_nfs_copy_is_private(backups):
    base, repo, custom, directory = backups
    nfs = os.path.join(base, "nfs", "mount", "todoapi")  # parents created too
    transfer.copy_to_targets(custom, repo, [nfs], owner=OS_USER)
    transfer.copy_to_targets(directory, repo, [nfs], owner=OS_USER)
    assert_private_repository(nfs)
    copy = LocalRepository(nfs, owner=OS_USER)
    copy.write_sidecar(custom["id"], "verify", {"history": []})
    assert mode_owner(os.path.join(nfs, custom["id"] + ".verify.json"))[:2] == (0o600, OS_USER)


def test_sftp_copy_is_private_on_the_server(backups, sshd):
    base, repo, custom, directory = backups
    parent = sshd.make_dir()
    url = sshd.url(parent + "/nested/todoapi")
    sftp = factory.open_repository(url, **sshd.options())
    for manifest in (custom, directory):
        assert transfer.copy_backup(manifest, repo, sftp)["verified"]
    sftp.write_sidecar(custom["id"], "verify", {"history": []})
    uid = sshd.account.pw_uid

    def check(name, expected_mode):
        info = sftp.stat(name)
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (expected_mode, uid), (name, oct(info.st_mode), info.st_uid)

    check("", 0o700)
    for name in sftp._top_names():
        assert not name.startswith(".tmp-"), name
        check(name, 0o700 if name == directory["artifact"] else 0o600)
    for name in sftp._tree(directory["artifact"] + "/"):
        check(name, 0o600)
    parent_info = sftp._connect().stat(parent + "/nested")
    assert stat.S_IMODE(parent_info.st_mode) == 0o700


def test_sftp_key_must_be_private(backups, sshd, tmp_path):
    base, repo, custom, directory = backups
    key = str(tmp_path / "id_ed25519")
    shutil.copy(sshd.key_file, key)
    os.chmod(key, 0o644)
    sftp = factory.open_repository(sshd.url(sshd.make_dir()), **sshd.options(sftp_key_file=key))
    with pytest.raises(PgBackupError, match="SSH private key file '%s' has mode 0644" % key):
        sftp.list()
    os.chmod(key, 0o600)
    assert sftp.list() == []


@pytest.fixture(scope="module")
def installed(pg, backups, collections_root):
    """The backup role converged into a temporary tree (no scheduler), plus one run of its runner."""
    base = tempfile.mkdtemp(prefix="pgbackup-aclrole-")
    os.chmod(base, 0o755)
    suffix = uuid.uuid4().hex[:8]
    run_dir = os.path.join(base, "run")
    os.makedirs(run_dir)
    shutil.chown(run_dir, OS_USER, OS_USER)
    os.makedirs(os.path.join(base, "log"))
    os.makedirs(os.path.join(base, "bin"))
    paths = dict(repository=os.path.join(base, "repo"), config_dir=os.path.join(base, "etc"),
                 log_file=os.path.join(base, "log", "todoapi_backup.log"), runner=os.path.join(base, "bin", "todoapi-pgbackup"))
    database = "TodoDb_aclr_%s" % suffix
    create_todo_db(pg, dbname=database, size_mb=1)
    try:
        run_playbook(ROLE_PLAYBOOK, collections_root=collections_root, extra_vars={
            "pgbackup_install_packages": False, "pgbackup_logrotate_enabled": False, "pgbackup_scheduler": "none",
            "pgbackup_databases": [database], "pgbackup_repository": paths["repository"],
            "pgbackup_config_dir": paths["config_dir"], "pgbackup_log_file": paths["log_file"],
            "pgbackup_lock_file": os.path.join(run_dir, "lock"), "pgbackup_engine_dir": os.path.join(base, "lib"),
            "pgbackup_runner_path": paths["runner"], "pgbackup_systemd_unit_dir": os.path.join(base, "systemd"),
            "pgbackup_job_name": "pgbackup-acl-%s" % suffix, "pgbackup_db_host": pg.host, "pgbackup_db_port": pg.port,
            "pgbackup_db_user": pg.user, "pgbackup_password": pg.password,
        })
        done = subprocess.run(["runuser", "-u", OS_USER, "--", paths["runner"], "--config",
                               os.path.join(paths["config_dir"], "config.json"), "backup"],
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        yield paths
    finally:
        pg.drop_database(database)
        shutil.rmtree(base, ignore_errors=True)


def test_runner_files_modes_and_owners(installed):
    config_dir = installed["config_dir"]
    assert mode_owner(config_dir) == (0o750, "root", OS_USER)
    assert mode_owner(os.path.join(config_dir, "config.json")) == (0o640, "root", OS_USER)
    assert mode_owner(os.path.join(config_dir, "pgpass"))[:2] == (0o600, OS_USER)
    log_mode, log_owner, log_group = mode_owner(installed["log_file"])
    assert log_mode & 0o007 == 0 and log_owner == OS_USER, oct(log_mode)
    runner_mode, runner_owner, runner_group = mode_owner(installed["runner"])
    assert runner_owner == "root" and runner_mode & 0o022 == 0, "others could replace the runner"
    assert_private_repository(installed["repository"])
    assert len(os.listdir(installed["repository"])) >= 2  # the backup the runner took
