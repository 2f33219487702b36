# -*- coding: utf-8 -*-
"""Facts about the machine the numbers were measured on (printed at the top of every docs section)."""

from __future__ import absolute_import, division, print_function

import os
import platform
import re
import subprocess
import sys

from harness.common import CORES


def command_output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _first_field(path, prefix, parse):
    """parse(line) of the first line of path starting with prefix; "" if there is none or it cannot be read."""
    try:
        with open(path) as handle:
            return next((parse(line) for line in handle if line.startswith(prefix)), "")
    except (OSError, ValueError):
        return ""


def _disk(source):
    """lsblk's description of the block device behind source, with its driver."""
    if not source.startswith("/dev/"):
        return ""
    disk = " ".join(command_output(["lsblk", "-ndo", "NAME,SIZE,ROTA,TYPE,MODEL", source]).split())
    name = re.sub(r"[0-9]+$", "", os.path.basename(source)) if not source.startswith("/dev/nvme") else \
        re.sub(r"p[0-9]+$", "", os.path.basename(source))
    driver = os.path.join("/sys/block", name, "device", "driver")
    if os.path.islink(driver):
        disk += " (driver %s)" % os.path.basename(os.readlink(driver))
    return disk


def machine_facts(work_dir):
    cpu = _first_field("/proc/cpuinfo", "model name", lambda line: line.split(":", 1)[1].strip())
    mem_kb = _first_field("/proc/meminfo", "MemTotal", lambda line: int(line.split()[1])) or 0
    os_name = _first_field("/etc/os-release", "PRETTY_NAME", lambda line: line.split("=", 1)[1].strip().strip('"'))
    fs = command_output(["df", "-h", "--output=source,fstype,size,avail,target", work_dir]).splitlines()[1:]
    fs = " ".join(fs[0].split()) if fs else ""
    disk = _disk(fs.split()[0] if fs else "")
    return {
        "cores": CORES, "cpu": cpu, "ram_gib": round(mem_kb / 1024.0 / 1024.0, 1), "os": os_name,
        "kernel": platform.release(), "filesystem": fs, "disk": disk or "(not found)",
        "postgresql": command_output(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        "pgbackrest": command_output(["pgbackrest", "version"]),
        "zstd": command_output(["zstd", "--version"]),
        "python": platform.python_version(),
        "ansible": (command_output([os.path.join(os.path.dirname(sys.executable), "ansible"), "--version"])
                    .splitlines() or [""])[0],
    }
