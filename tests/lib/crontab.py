# -*- coding: utf-8 -*-
"""The crontab of an OS user as the roles write it (``#Ansible: <name>`` + the job line): read the
entries of one job name, run one the way cron does, remove them again; and a play that applies roles
to localhost, for the tests that converge the backup and monitoring roles."""

from __future__ import absolute_import, division, print_function

import os
import shutil
import subprocess

import pytest

OS_USER = "postgres"
# What converging the roles and running their cron jobs needs.
needs_root_and_cron = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("crontab") or not shutil.which("runuser"),
                                         reason="needs root, crontab and runuser")


def roles_play(*roles):
    """A playbook applying ``roles`` to localhost (variables come as extra vars)."""
    return "- hosts: localhost\n  gather_facts: false\n  roles:\n" + "".join("    - role: %s\n" % role for role in roles)


def crontab_text(user=OS_USER):
    done = subprocess.run(["crontab", "-l", "-u", user], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def cron_entries(job_name, user=OS_USER):
    """{job: (schedule, command)} of the entries named '<job_name> <job>' ('#Ansible: ...' + next line)."""
    entries = {}
    lines = crontab_text(user).splitlines()
    for index, line in enumerate(lines):
        prefix = "#Ansible: %s " % job_name
        if line.startswith(prefix) and index + 1 < len(lines):
            fields = lines[index + 1].split(None, 5)
            entries[line[len(prefix):]] = (" ".join(fields[:5]), fields[5])
    return entries


def remove_cron_entries(job_name, user=OS_USER):
    lines = crontab_text(user).splitlines()
    kept, skip_next = [], False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if line.startswith("#Ansible: %s " % job_name):
            skip_next = True
            continue
        kept.append(line)
    if kept == lines:
        return
    if any(line.strip() for line in kept):
        subprocess.run(["crontab", "-u", user, "-"], input="\n".join(kept) + "\n", text=True, check=True)
    else:
        subprocess.run(["crontab", "-r", "-u", user], check=False)


def run_as(command, user=OS_USER, timeout=300):
    """``command`` through sh as ``user``, as cron runs a job line."""
    return subprocess.run(["runuser", "-u", user, "--", "sh", "-c", command], capture_output=True, text=True,
                          timeout=timeout, check=False)
