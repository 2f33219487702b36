# -*- coding: utf-8 -*-
"""core/host_files.py: one process makes files, directories and cron entries what a role wants - atomic writes
with owner and mode set before the rename, check mode that changes nothing, cron entries exactly as
ansible.builtin.cron writes them."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import host_files
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def want(path, state="file", mode="0640", content=None, **extra):
    entry = {"path": str(path), "state": state, "owner": USER, "group": GROUP, "mode": mode,
             "content": None if content is None else content.encode(), "keep_existing": False}
    entry.update(extra)
    return entry


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def test_first_run_creates_in_order_then_nothing_changes(tmp_path):
    wanted = [want(tmp_path / "a" / "b", "directory", "0750"), want(tmp_path / "a" / "b" / "config.json", content="{}\n"),
              want(tmp_path / "a" / "b" / "log", "touch", "0600")]
    first = host_files.converge(wanted)
    assert first["changed"] and first["paths"] == {str(tmp_path / "a" / "b"): ["created"],
                                                   str(tmp_path / "a" / "b" / "config.json"): ["created"],
                                                   str(tmp_path / "a" / "b" / "log"): ["created"]}
    assert mode_of(tmp_path / "a") == 0o750 and mode_of(tmp_path / "a" / "b") == 0o750  # created parents too
    assert (tmp_path / "a" / "b" / "config.json").read_bytes() == b"{}\n" and mode_of(tmp_path / "a" / "b" / "config.json") == 0o640
    assert mode_of(tmp_path / "a" / "b" / "log") == 0o600
    assert host_files.converge(wanted) == {"changed": False, "paths": {}, "cron": [], "files": [], "diff": []}


def test_content_mode_and_owner_are_fixed_and_touch_never_truncates(tmp_path):
    (tmp_path / "config.json").write_text("old\n")
    os.chmod(tmp_path / "config.json", 0o644)
    (tmp_path / "log").write_text("kept\n")
    os.chmod(tmp_path / "log", 0o644)
    result = host_files.converge([want(tmp_path / "config.json", content="new\n"), want(tmp_path / "log", "touch")])
    assert result["paths"] == {str(tmp_path / "config.json"): ["content", "mode"], str(tmp_path / "log"): ["mode"]}
    assert (tmp_path / "config.json").read_text() == "new\n" and mode_of(tmp_path / "config.json") == 0o640
    assert (tmp_path / "log").read_text() == "kept\n" and mode_of(tmp_path / "log") == 0o640


def test_a_write_replaces_the_file_by_rename_with_its_mode_set_before(tmp_path, monkeypatch):
    target = tmp_path / "pgpass"
    target.write_text("old\n")
    old_inode = os.stat(str(target)).st_ino
    seen = []
    real_rename = os.rename

    def rename(source, dest):
        seen.append((os.path.dirname(source), mode_of(source), open(source).read()))
        return real_rename(source, dest)

    monkeypatch.setattr(os, "rename", rename)
    host_files.converge([want(target, mode="0600", content="secret\n", secret=True)])
    assert seen == [(str(tmp_path), 0o600, "secret\n")]  # a temporary file in the same directory, already 0600
    assert os.stat(str(target)).st_ino != old_inode and target.read_text() == "secret\n"
    assert os.listdir(str(tmp_path)) == ["pgpass"]


def test_check_mode_reports_and_changes_nothing(tmp_path):
    (tmp_path / "config.json").write_text("old\n")
    os.chmod(tmp_path / "config.json", 0o640)
    wanted = [want(tmp_path / "dir", "directory", "0700"), want(tmp_path / "config.json", content="new\n"),
              want(tmp_path / "gone", "absent")]
    result = host_files.converge(wanted, check_mode=True)
    assert result["changed"] and result["paths"] == {str(tmp_path / "dir"): ["created"], str(tmp_path / "config.json"): ["content"]}
    assert sorted(os.listdir(str(tmp_path))) == ["config.json"] and (tmp_path / "config.json").read_text() == "old\n"
    content_diff = result["diff"][1]
    assert content_diff["before"].endswith("old\n") and content_diff["after"].endswith("new\n")


def test_a_secret_is_never_in_the_diff(tmp_path):
    (tmp_path / "pgpass").write_text("*:*:*:u:old-password\n")
    result = host_files.converge([want(tmp_path / "pgpass", mode="0600", content="*:*:*:u:new-password\n", secret=True)])
    assert "password" not in repr(result) and host_files.SECRET in result["diff"][0]["after"]


def test_existing_directories_keep_their_owner_and_mode_when_asked(tmp_path):
    (tmp_path / "log").mkdir()
    os.chmod(tmp_path / "log", 0o775)
    wanted = [want(tmp_path / "log", "directory", "0755", keep_existing=True), want(tmp_path / "lock", "directory", "0755", keep_existing=True)]
    assert host_files.converge(wanted)["paths"] == {str(tmp_path / "lock"): ["created"]}
    assert mode_of(tmp_path / "log") == 0o775 and mode_of(tmp_path / "lock") == 0o755


def test_absent_removes_a_file_and_refuses_the_wrong_type(tmp_path):
    (tmp_path / "pgpass").write_text("x")
    assert host_files.converge([want(tmp_path / "pgpass", "absent")])["paths"] == {str(tmp_path / "pgpass"): ["removed"]}
    assert not (tmp_path / "pgpass").exists()
    (tmp_path / "config.json").mkdir()
    with pytest.raises(PgBackupError, match="not a regular file"):
        host_files.converge([want(tmp_path / "config.json", content="{}")])
    with pytest.raises(PgBackupError, match="OS user 'no-such-user-x'"):
        host_files.converge([dict(want(tmp_path / "f", content=""), owner="no-such-user-x")])


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_owner_and_group_are_set(tmp_path):
    result = host_files.converge([dict(want(tmp_path / "config.json", content="{}\n"), owner="nobody", group="nogroup")])
    info = os.stat(str(tmp_path / "config.json"))
    assert result["paths"][str(tmp_path / "config.json")] == ["created"]
    assert (info.st_uid, info.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert host_files.converge([dict(want(tmp_path / "config.json", content="{}\n"), owner=USER, group=GROUP)])["paths"] == {
        str(tmp_path / "config.json"): ["owner"]}


def cron(name, job, state="present", minute="0", hour="*"):
    return {"name": name, "state": state, "minute": minute, "hour": hour, "day": "*", "month": "*", "weekday": "*", "job": job}


def ansible_cron_module():
    """ansible.builtin.cron's own code, loaded from the installed ansible-core's file: ansible-test units puts a copy
    of ansible without its modules first on the path."""
    path = str(importlib.metadata.distribution("ansible-core").locate_file("ansible/modules/cron.py"))
    spec = importlib.util.spec_from_file_location("ansible_builtin_cron_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_cron_edit(lines, entry):
    """What ansible.builtin.cron's main() does to the lines for one entry (its CronTab methods, no crontab read)."""
    crontab_class = ansible_cron_module().CronTab
    crontab = crontab_class.__new__(crontab_class)
    crontab.lines, crontab.ansible = list(lines), "#Ansible: "
    if entry["state"] == "absent":
        if crontab.find_job(entry["name"]):
            crontab.remove_job(entry["name"])
        return crontab.lines
    job = host_files.cron_line(entry)
    old = crontab.find_job(entry["name"], job)
    if not old:
        crontab.add_job(entry["name"], job)
    elif old[1] != job or len(old) > 2:
        crontab.update_job(entry["name"], job)
    return crontab.lines


@pytest.mark.parametrize("lines", [
    [],
    ["MAILTO=x", "#Ansible: job backup", "0 2 * * * old backup", "#Ansible: job prune", "5 3 * * * run prune", "# mine"],
    ["#Ansible: job backup", "0 * * * * run backup", "#Ansible: job backup", "9 9 * * * second"],
    ["0 * * * * run backup", "#Ansible: job prune"],
])
def test_cron_edits_are_the_ones_ansible_cron_makes(lines):
    edits = [cron("job backup", "run backup"), cron("job prune", None, "absent"), cron("job verify", "run verify", minute="7")]
    ours, theirs = list(lines), list(lines)
    for entry in edits + edits:  # a first converge, then a second one
        ours, theirs = host_files._set_entry(ours, entry), ansible_cron_edit(theirs, entry)
        assert ours == theirs, entry["name"]
    if lines != ["0 * * * * run backup", "#Ansible: job prune"]:  # that one cron too edits again each time
        assert [host_files._set_entry(ours, entry) for entry in edits] == [ours] * 3


@pytest.fixture
def cron_user():
    if os.geteuid() != 0 or not shutil.which("crontab"):
        pytest.skip("needs root and a crontab program")
    name = "hf%s" % uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    yield name
    subprocess.run(["crontab", "-r", "-u", name], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["userdel", name], check=True)


def test_an_old_style_crontab_converges_without_duplicates(cron_user):
    old = "MAILTO=''\n#Ansible: job backup\n5 1 * * * old command\n#Ansible: job prune\n0 3 * * * prune\n"
    subprocess.run(["crontab", "-u", cron_user, "-"], input=old, universal_newlines=True, check=True)
    spec = {"user": cron_user, "entries": [cron("job backup", "new command"), cron("job prune", None, "absent")]}
    assert host_files.converge([], cron=spec, check_mode=True)["cron"] == ["job backup", "job prune"]
    assert host_files.read_crontab(cron_user) == old
    result = host_files.converge([], cron=spec)
    assert result["cron"] == ["job backup", "job prune"] and result["diff"][0]["after"] == "MAILTO=''\n#Ansible: job backup\n0 * * * * new command\n"
    assert host_files.read_crontab(cron_user) == "MAILTO=''\n#Ansible: job backup\n0 * * * * new command\n"
    assert host_files.converge([], cron=spec) == {"changed": False, "paths": {}, "cron": [], "files": [], "diff": []}


def test_list_files_reports_matching_regular_files(tmp_path):
    for name in ("job-backup.timer", "job-backup.service", "other.timer", ".job-hidden.timer"):
        (tmp_path / name).write_text("")
    (tmp_path / "job-dir.timer").mkdir()
    found = host_files.converge([], list_files={"dir": str(tmp_path), "patterns": ["job-*.service", "job-*.timer"]})
    assert found["files"] == [str(tmp_path / "job-backup.service"), str(tmp_path / "job-backup.timer")] and not found["changed"]
