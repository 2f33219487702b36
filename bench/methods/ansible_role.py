# -*- coding: utf-8 -*-
"""Ansible overhead: converging the backup role twice on localhost (the second run is the no-change cost), and the
floor any converge pays on this machine: a play that gathers facts and runs one module."""

from __future__ import absolute_import, division, print_function

import datetime
import os
import resource
import subprocess
import time

from harness.common import log, mkdir
from harness.paths import ROOT, import_collection

CONVERGE = """\
- name: Converge the backup role (bench)
  hosts: all
  roles:
    - role: todoapi.pgbackup.backup
"""
FLOOR = """\
- name: Floor of a converge (bench)
  hosts: all
  tasks:
    - name: One module run on the host
      ansible.builtin.ping:
"""
CLEANUP = """\
- name: Remove what the bench's converge scheduled
  hosts: all
  gather_facts: false
  tasks:
    - name: Remove the bench's cron entries
      ansible.builtin.cron:
        name: "{job} {{{{ item }}}}"
        user: postgres
        state: absent
      loop: [backup, prune, verify]
    - name: Remove the bench's logrotate snippet
      ansible.builtin.file:
        path: /etc/logrotate.d/{job}
        state: absent
"""


def role_vars(workspace, db, base, job):
    """Role variables that keep the converge private to the bench: its own paths, job name and cron scheduler."""
    cluster = workspace.cluster
    return {
        "pgbackup_databases": [db["name"]],
        "pgbackup_repository": os.path.join(base, "repo"),
        "pgbackup_db_host": cluster.host, "pgbackup_db_port": cluster.port,
        "pgbackup_password": cluster.password,
        "pgbackup_job_name": job, "pgbackup_scheduler": "cron",
        "pgbackup_config_dir": os.path.join(base, "etc"),
        "pgbackup_log_file": os.path.join(base, "backup.log"),
        "pgbackup_lock_file": os.path.join(base, "backup.lock"),
        "pgbackup_engine_dir": os.path.join(base, "engine"),
        "pgbackup_runner_path": os.path.join(base, "todoapi-pgbackup"),
        "pgbackup_splay_minutes": 30,
    }


def ansible_overhead(workspace, db):
    if not os.path.isdir(os.path.join(ROOT, "roles", "backup", "tasks")):
        return {"skipped": "roles/backup does not exist yet"}
    collections_root = import_collection()
    work_dir = workspace.path("role")
    base = mkdir(work_dir)
    job = "todoapi-pgbackup-bench%d" % os.getpid()
    extra_vars = role_vars(workspace, db, base, job)
    runs, floor = [], None
    try:
        for attempt in (1, 2):
            result, seconds, cpu = playbook_run(CONVERGE, extra_vars, collections_root, work_dir)
            runs.append(_converge_record(result, seconds, cpu))
            log("ansible converge %d: %.1f s (%.1f CPU s), rc %s, changed %s" % (attempt, seconds, cpu, result.rc,
                                                                                 result.stats.get("changed")))
            if result.rc != 0:
                runs[-1]["error"] = (result.stderr or result.stdout)[-1500:]
                break
        result, seconds, cpu = playbook_run(FLOOR, {}, collections_root, work_dir)
        floor = _converge_record(result, seconds, cpu)
        log("ansible floor (facts + one module): %.1f s (%.1f CPU s), rc %s" % (seconds, cpu, result.rc))
    finally:
        try:
            playbook_run(CLEANUP.format(job=job), {}, collections_root, work_dir)
        except Exception as exc:  # report, do not fail the bench
            log("cleanup of the converge failed: %s" % exc)
    return {"runs": runs, "floor": floor, "forks": "default (5)", "hosts": 1}


def _converge_record(result, seconds, cpu):
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "rc": result.rc,
            "changed": result.stats.get("changed"), "ok": result.stats.get("ok"), "tasks": len(result.tasks),
            "changed_tasks": [t["task"] for t in result.tasks if t.get("changed")],
            "slowest_tasks": task_durations(result.report)[:6]}


def task_durations(report, in_order=False):
    """[(seconds, task name)] of a json-callback report, slowest first (``in_order``: in the order they ran)."""
    out = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            duration = task.get("task", {}).get("duration", {})
            try:
                start = datetime.datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
                end = datetime.datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            out.append((round((end - start).total_seconds(), 2), task.get("task", {}).get("name", "")))
    return out if in_order else sorted(out, reverse=True)


def playbook_run(playbook, extra_vars, collections_root, work_dir, env=None):
    """ansible-playbook on localhost (tests/lib/ansible_run's setup; ``env`` added to its environment);
    returns (PlaybookResult, seconds, CPU seconds).

    CPU seconds: user + system time of ansible-playbook and every process it waited for (its workers and the
    modules they ran); other load on the machine stretches the wall time much more than this."""
    from tests.lib.ansible_run import PlaybookResult, playbook_argv, playbook_env, playbook_file
    argv = playbook_argv(playbook_file(playbook, work_dir), extra_vars, False, False, 0)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=work_dir, env=playbook_env(collections_root, work_dir, env), capture_output=True,
                               text=True, timeout=3600, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return PlaybookResult(argv, completed.returncode, completed.stdout, completed.stderr), seconds, cpu
