# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run on the host by the backup role (python3 -, this file on stdin followed by ``main(<spec as JSON>)``):
find out in one process which of the role's files, directories and cron entries differ from what the
role's tasks would make of them, so that a converge with nothing to change runs none of those tasks.

The spec (JSON):
    paths:   [{"path", "type": "directory" | "file", "owner", "group", "mode": "0640", "sha1": optional}]
             differs when missing, of another type, owner, group or mode, or (sha1 given) of other content:
             exactly what ansible.builtin.file / copy / template compare.
    exists:  [path, ...]: the ones that do not exist (the role creates only missing ones of these).
    absent:  [path, ...]: the ones that exist (the role removes them).
    crontab: {"user": OS user, "entries": {name: job line, or null for an entry that must be absent}} or null:
             a name differs when ansible.builtin.cron would change it (its "#Ansible: <name>" header and line).
    units:   {"dir", "patterns": [glob]}: the regular files of dir whose name matches a pattern (what
             ansible.builtin.find with these patterns finds), e.g. the systemd units of the job name.

Prints one JSON object: {"differ": [path], "missing": [path], "present": [path], "cron_differ": [name], "units": [path],
"reasons": [text]}.
Nothing is changed; no content is printed (the passfile is among the paths).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys

CRON_HEADER = "#Ansible: "


def sha1_of(path):
    """The checksum ansible.builtin.copy compares; the files compared are the role's own small ones."""
    with open(path, "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()


def name_of(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def path_difference(want):
    """Why the path differs from ``want`` (None when it does not)."""
    path = want["path"]
    try:
        info = os.lstat(path)
    except OSError:
        return "missing"
    is_dir = stat.S_ISDIR(info.st_mode)
    if is_dir != (want["type"] == "directory") or not (is_dir or stat.S_ISREG(info.st_mode)):
        return "not a %s" % want["type"]
    owner, group = name_of(pwd.getpwuid, info.st_uid), name_of(grp.getgrgid, info.st_gid)
    if (owner, group) != (want["owner"], want["group"]):
        return "owner %s:%s" % (owner, group)
    if stat.S_IMODE(info.st_mode) != int(want["mode"], 8):
        return "mode %04o" % stat.S_IMODE(info.st_mode)
    if want.get("sha1") and sha1_of(path) != want["sha1"]:
        return "content"
    return None


def crontab_lines(user):
    """The user's crontab; none without a crontab program (then there is no entry to remove either)."""
    try:
        done = subprocess.run(["crontab", "-l", "-u", user], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
    except OSError:
        return []
    return done.stdout.splitlines() if done.returncode == 0 else []


def cron_job_line(lines, name):
    """The line ansible.builtin.cron finds for ``name`` by its header (its find_job), None without one."""
    comment = None
    for line in lines:
        if comment is not None:
            if comment == name:
                return line
            comment = None
        elif line.startswith(CRON_HEADER):
            comment = line[len(CRON_HEADER):]
    return None


def cron_differences(spec):
    if not spec:
        return []
    lines = crontab_lines(spec["user"])
    return sorted(name for name, job in spec["entries"].items() if cron_job_line(lines, name) != job)


def matching_files(spec):
    if not spec:
        return []
    try:
        names = sorted(os.listdir(spec["dir"]))
    except OSError:
        return []
    paths = [os.path.join(spec["dir"], name) for name in names if not name.startswith(".")
             and any(fnmatch.fnmatch(name, pattern) for pattern in spec["patterns"])]
    return [path for path in paths if stat.S_ISREG(os.lstat(path).st_mode)]


def main(spec):
    spec = json.loads(spec)
    differ, reasons = [], []
    for want in spec.get("paths", []):
        reason = path_difference(want)
        if reason:
            differ.append(want["path"])
            reasons.append("%s: %s" % (want["path"], reason))
    missing = [path for path in spec.get("exists", []) if not os.path.lexists(path)]
    present = [path for path in spec.get("absent", []) if os.path.lexists(path)]
    cron = cron_differences(spec.get("crontab"))
    reasons.extend("cron entry %s" % name for name in cron)
    json.dump({"differ": differ, "missing": missing, "present": present, "cron_differ": cron, "units": matching_files(spec.get("units")),
               "reasons": reasons}, sys.stdout)
    sys.stdout.write("\n")
