# -*- coding: utf-8 -*-
"""The built collection tarball installs into a fresh collections path and its playbooks run
from there, with nothing else from the checkout."""

from __future__ import absolute_import, division, print_function

import glob
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def installed_collection(tmp_path_factory):
    work = tmp_path_factory.mktemp("release")
    subprocess.run(["make", "-C", REPO_ROOT, "build"], check=True, capture_output=True)
    tarballs = glob.glob(os.path.join(REPO_ROOT, "build", "todoapi-pgbackup-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    collections = str(work / "collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", collections,
                    tarballs[0]], check=True, capture_output=True)
    installed = os.path.join(collections, "ansible_collections", "todoapi", "pgbackup")
    assert os.path.isfile(os.path.join(installed, "MANIFEST.json"))
    assert not os.path.exists(os.path.join(installed, ".venv")) and not os.path.exists(os.path.join(installed, "build"))
    return collections


def run_installed_playbook(collections, playbook, extra_vars, cwd):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1")
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", json.dumps(dict(extra_vars, ansible_python_interpreter=sys.executable)), playbook]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_tarball_playbook_runs_from_installed_collection(installed_collection, todo_db, tmp_path):
    cluster = todo_db.cluster
    extra = {"pg_host": cluster.host, "pg_port": cluster.port, "pg_password": cluster.password,
             "database": todo_db.name, "backup_repository": str(tmp_path / "repo")}
    done = run_installed_playbook(installed_collection, "todoapi.pgbackup.demo", extra, str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rows restored" in done.stdout
    assert os.path.realpath(REPO_ROOT) not in done.stdout  # ran from the installed copy


def test_module_docs_render_from_installed_collection(installed_collection):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=installed_collection)
    listing = subprocess.run([os.path.join(BIN, "ansible-doc"), "-l", "todoapi.pgbackup"], env=env,
                             capture_output=True, text=True, check=True).stdout
    for module in ("pg_dump", "pg_restore"):
        assert "todoapi.pgbackup.%s" % module in listing
