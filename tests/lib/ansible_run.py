# -*- coding: utf-8 -*-
"""Run real ansible-playbook against localhost with this repository as collection todoapi.pgbackup.

    from tests.lib.ansible_run import run_playbook

    result = run_playbook(PLAYBOOK_TEXT, extra_vars={"db": "TodoDb"})
    assert result.task("Dump the database")["changed"]

ansible-playbook is taken from the same bin dir as sys.executable (the venv), the
play runs with ``-i localhost, -c local`` and ``ansible_python_interpreter`` set to
sys.executable, and stdout is produced by the ansible.posix.json callback so the
per-task host results can be parsed.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTION_NAMESPACE = "todoapi"
COLLECTION_NAME = "pgbackup"
DEFAULT_COLLECTIONS_PATHS = ("~/.ansible/collections", "/usr/share/ansible/collections")
JSON_CALLBACK = "ansible.posix.json"
HOST = "localhost"


def make_collection_root(base_dir=None, repo_root=REPO_ROOT):
    """Create <base>/ansible_collections/todoapi/pgbackup -> repo_root; return <base>.

    <base> is a fresh temporary directory unless base_dir is given (re-used if the link is already there).
    """
    base_dir = base_dir or tempfile.mkdtemp(prefix="pgbackup-collections-")
    namespace_dir = os.path.join(base_dir, "ansible_collections", COLLECTION_NAMESPACE)
    os.makedirs(namespace_dir, exist_ok=True)
    link = os.path.join(namespace_dir, COLLECTION_NAME)
    if not os.path.islink(link):
        os.symlink(repo_root, link)
    return base_dir


def ansible_bin(name):
    """Path of an ansible CLI next to the running interpreter (the venv's bin dir)."""
    return os.path.join(os.path.dirname(sys.executable), name)


class TaskResult(dict):
    """One task's result on localhost, plus "task" (name) and "play" (name) keys."""


class PlaybookResult(object):
    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.report = parse_json_report(stdout)
        self.tasks = task_results(self.report)
        self.stats = self.report.get("stats", {}).get(HOST, {})

    @property
    def failed(self):
        return self.rc != 0

    def task(self, name):
        """Host result of the last task called name (KeyError listing the task names if absent)."""
        for result in reversed(self.tasks):
            if result["task"] == name:
                return result
        raise KeyError("no task %r; tasks run: %s" % (name, [result["task"] for result in self.tasks]))

    def task_names(self):
        return [result["task"] for result in self.tasks]

    def describe(self):
        return "command: %s\nrc=%s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            " ".join(self.argv), self.rc, self.stdout, self.stderr)


def parse_json_report(stdout):
    """The JSON document printed by the json callback ({} when there is none, e.g. on syntax errors)."""
    decoder = json.JSONDecoder()
    for start in json_start_offsets(stdout):
        try:
            report = decoder.raw_decode(stdout, start)[0]
        except ValueError:
            continue
        if isinstance(report, dict) and "plays" in report:
            return report
    return {}


def json_start_offsets(text):
    """Offsets of lines starting with '{' (the callback's document starts at the beginning of a line)."""
    offset = 0
    for line in text.splitlines(True):
        if line.startswith("{"):
            yield offset
        offset += len(line)


def task_results(report):
    """Flatten plays/tasks of a json-callback report into TaskResult dicts for localhost."""
    results = []
    for play in report.get("plays", []):
        play_name = play.get("play", {}).get("name", "")
        for task in play.get("tasks", []):
            host_result = task.get("hosts", {}).get(HOST)
            if host_result is None:
                continue
            result = TaskResult(host_result)
            result["task"] = task.get("task", {}).get("name", "")
            result["play"] = play_name
            results.append(result)
    return results


def playbook_file(playbook, work_dir):
    """Path of the playbook: playbook itself if it is an existing file, else YAML text written to work_dir."""
    if "\n" not in playbook and os.path.isfile(playbook):
        return os.path.abspath(playbook)
    path = os.path.join(work_dir, "playbook.yml")
    with open(path, "w") as handle:
        handle.write(playbook)
    return path


def playbook_env(collections_root, work_dir, extra_env=None):
    paths = [collections_root] + [os.path.expanduser(p) for p in DEFAULT_COLLECTIONS_PATHS]
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": ":".join(paths),
        "ANSIBLE_STDOUT_CALLBACK": JSON_CALLBACK,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": os.path.join(work_dir, "ansible-local-tmp"),
        "ANSIBLE_REMOTE_TEMP": os.path.join(work_dir, "ansible-remote-tmp"),
    })
    env.update(extra_env or {})
    return env


def playbook_argv(path, extra_vars, check, diff, verbosity):
    all_vars = {"ansible_python_interpreter": sys.executable}
    all_vars.update(extra_vars or {})
    argv = [ansible_bin("ansible-playbook"), "-i", "%s," % HOST, "-c", "local", "-e", json.dumps(all_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    return argv + [path]


def run_playbook(playbook, extra_vars=None, check=False, diff=False, expect_failure=False, verbosity=0,
                 collections_root=None, env=None, timeout=1800):
    """Run ansible-playbook; return PlaybookResult.

    playbook: YAML text or a path to a playbook file. Raises AssertionError (with
    stdout/stderr) when the run failed and expect_failure is False, or succeeded
    and expect_failure is True. env adds/overrides environment variables.
    """
    collections_root = collections_root or make_collection_root()
    with tempfile.TemporaryDirectory(prefix="pgbackup-playbook-") as work_dir:
        argv = playbook_argv(playbook_file(playbook, work_dir), extra_vars, check, diff, verbosity)
        completed = subprocess.run(argv, cwd=work_dir, env=playbook_env(collections_root, work_dir, env),
                                   capture_output=True, text=True, timeout=timeout, check=False)
    result = PlaybookResult(argv, completed.returncode, completed.stdout, completed.stderr)
    if result.failed != bool(expect_failure):
        expectation = "to fail" if expect_failure else "to succeed"
        raise AssertionError("expected ansible-playbook %s\n%s" % (expectation, result.describe()))
    return result
