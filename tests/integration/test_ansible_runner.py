# -*- coding: utf-8 -*-
"""Playbooks run unchanged under ansible-runner (what AWX / automation controller uses),
with every input given as extra vars, as a job template with a survey would."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)


def runner_job(private_dir, collections_root, playbook, extra_vars):
    """Lay out an ansible-runner private data dir like AWX does, run it, return (rc, events text)."""
    for sub in ("env", "inventory", "project"):
        os.makedirs(os.path.join(private_dir, sub), exist_ok=True)
    with open(os.path.join(private_dir, "inventory", "hosts"), "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    with open(os.path.join(private_dir, "env", "extravars"), "w") as handle:
        json.dump(extra_vars, handle)
    with open(os.path.join(private_dir, "env", "envvars"), "w") as handle:
        json.dump({"ANSIBLE_COLLECTIONS_PATH": collections_root, "ANSIBLE_NOCOLOR": "1"}, handle)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run([os.path.join(BIN, "ansible-runner"), "run", private_dir, "-p", playbook],
                          env=env, capture_output=True, text=True, check=False, timeout=900)
    return done.returncode, done.stdout + done.stderr


def test_demo_playbook_runs_under_ansible_runner_with_extra_vars(tmp_path, todo_db, collections_root):
    cluster = todo_db.cluster
    extra = {"pg_host": cluster.host, "pg_port": cluster.port, "pg_password": cluster.password,
             "database": todo_db.name, "backup_repository": str(tmp_path / "repo")}
    rc, output = runner_job(str(tmp_path / "job"), collections_root, "todoapi.pgbackup.demo", extra)
    assert rc == 0, output
    assert "rows restored" in output
    status = (tmp_path / "job" / "artifacts")
    assert any(p.name == "status" and p.read_text() == "successful" for p in status.rglob("status"))


def test_backup_now_runs_under_ansible_runner_with_role_variable_names(tmp_path, todo_db, collections_root):
    cluster = todo_db.cluster
    repo = tmp_path / "repo"
    extra = {"target_hosts": "localhost", "pgbackup_become": False, "pgbackup_databases": [todo_db.name],
             "pgbackup_repository": str(repo), "pgbackup_db_host": cluster.host, "pgbackup_db_port": cluster.port,
             "pgbackup_password": cluster.password}
    rc, output = runner_job(str(tmp_path / "job"), collections_root, "todoapi.pgbackup.backup_now", extra)
    assert rc == 0, output
    assert any(name.endswith(".manifest.json") for name in os.listdir(str(repo)))
    assert cluster.password not in output
