# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server PITR recovers into (a Debian cluster through pg_ctlcluster, or a data directory through
pg_ctl): stop, start, run SQL over the Unix socket, read its log, and wait until recovery ended
and it was promoted.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess
import time

from ..core.errors import PgBackupError

SOCKET_DIR = "/var/run/postgresql"
RECOVERY_ENDED_EARLY = "recovery ended before configured recovery target was reached"


class TargetServer(object):
    """A Debian cluster (pg_ctlcluster) or a plain data directory (pg_ctl)."""

    def __init__(self, request, bin_dir):
        self.request = request
        self.bin_dir = bin_dir
        self.owner = request.owner
        self._starter = None  # pg_ctlcluster start, running in the background (start)
        if request.mode == "debian":
            self.conf_dir = "/etc/postgresql/%s/%s" % (request.cluster_version, request.cluster_name)
            if not os.path.isdir(self.conf_dir):
                raise PgBackupError("Debian cluster %s/%s does not exist (no %s)." % (
                    request.cluster_version, request.cluster_name, self.conf_dir),
                    hint="Create it with pg_createcluster (the data directory is replaced by the recovery).")
            self.data_dir = self._conf_value("data_directory") or "/var/lib/postgresql/%s/%s" % (
                request.cluster_version, request.cluster_name)
            self.port = int(self._conf_value("port") or 5432)
            self.log_file = "/var/log/postgresql/postgresql-%s-%s.log" % (request.cluster_version, request.cluster_name)
        else:
            self.conf_dir = None
            self.data_dir = request.data_dir
            self.port = request.port
            self.log_file = os.path.join(self.data_dir, "pitr-server.log")

    def describe(self):
        if self.request.mode == "debian":
            return "cluster %s/%s" % (self.request.cluster_version, self.request.cluster_name)
        return "server in %s" % self.data_dir

    def _conf_value(self, key):
        completed = subprocess.run(["pg_conftool", "-s", self.request.cluster_version, self.request.cluster_name,
                                    "show", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        value = completed.stdout.decode("utf-8", "replace").strip()
        return value.strip("'") if completed.returncode == 0 and value else None

    def is_running(self):
        if self.request.mode == "debian":
            argv = ["pg_ctlcluster", self.request.cluster_version, self.request.cluster_name, "status"]
            return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0
        if not os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            return False
        argv = self._as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "status"])
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0

    def _as_owner(self, argv):
        if os.geteuid() == 0 and self.owner != "root":
            return ["runuser", "-u", self.owner, "--"] + argv
        return argv

    def stop(self):
        if self.request.mode == "debian":
            argv = ["pg_ctlcluster", self.request.cluster_version, self.request.cluster_name, "stop", "-m", "fast"]
        else:
            argv = self._as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-m", "fast", "-w", "stop"])
        _run(argv, "stopping the %s" % self.describe())

    def start(self):
        """Start without waiting for the end of recovery (wait_for_promotion polls for that).

        Debian's pg_ctlcluster (or the systemd unit it hands the start to) runs in the background: once the server
        is up it still probes it with psql every 0.5 s until three probes in a row agree (2 s and more), a wait the
        promotion's own polling does not need, and which fails anyway while a long recovery keeps the server
        "starting up". What it printed is read only when the server stops (starter_output)."""
        if self.request.mode == "debian":
            argv = ["pg_ctlcluster", self.request.cluster_version, self.request.cluster_name, "start"]
            self._starter = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT)
            return
        argv = self._as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-W",
                               "start"])
        _run(argv, "starting the %s" % self.describe())

    def starter_output(self, timeout=60):
        """What the background pg_ctlcluster printed, once it ended (empty when there was none or it still runs)."""
        if self._starter is None:
            return ""
        try:
            output = self._starter.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            return ""
        return output.decode("utf-8", "replace")

    def log_size(self):
        try:
            return os.path.getsize(self.log_file)
        except OSError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def socket_dir(self):
        """Where the running server put its Unix socket: postmaster.pid's fifth line (the first of its
        unix_socket_directories), which a server outside Debian's layout sets to its own; else Debian's."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                lines = handle.read().splitlines()
        except OSError:
            return SOCKET_DIR
        return lines[4].strip() if len(lines) > 4 and lines[4].strip().startswith("/") else SOCKET_DIR

    def sql(self, statement):
        """Run one statement over the Unix socket as the OS owner (peer authentication)."""
        argv = self._as_owner([os.path.join(self.bin_dir, "psql"), "-X", "-A", "-t", "-q", "-h", self.socket_dir(),
                               "-p", str(self.port), "-d", "postgres", "-U", self.owner, "-c", statement])
        completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=60,
                                   env=dict(os.environ, PGCONNECT_TIMEOUT="5", PGAPPNAME="todoapi-pgbackup-pitr"))
        if completed.returncode != 0:
            return None, completed.stderr.decode("utf-8", "replace").strip()
        return completed.stdout.decode("utf-8", "replace").strip(), None


def _run(argv, what):
    completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        raise PgBackupError("%s failed: %s" % (what[0].upper() + what[1:],
                                               completed.stdout.decode("utf-8", "replace").strip()[-2000:]))
    return completed.stdout.decode("utf-8", "replace")


def _fatal_lines(log):
    """FATAL/PANIC lines of the server itself (not the 'starting up' answers to our own polling)."""
    return [line for line in log.splitlines() if re.search(r"\b(FATAL|PANIC):", line)
            and "the database system is" not in line]


def wait_for_promotion(request, server, log_offset):
    started = time.monotonic()
    deadline = started + request.timeout
    last_error = None
    while True:
        log = server.log_since(log_offset)
        if _fatal_lines(log) or "startup process" in log and "exited with exit code" in log:
            raise recovery_failure(request, log)
        row, last_error = server.sql("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()")
        if row:
            in_recovery, replay_time = row.split("|")[:2]
            if in_recovery == "f":
                return describe_result(server, log_offset, replay_time)
        if time.monotonic() - started > 5 and not server.is_running():
            raise recovery_failure(request, server.log_since(log_offset) or server.starter_output())
        if time.monotonic() > deadline:
            raise PgBackupError("The %s did not finish recovery within %d s (last error: %s)." % (
                server.describe(), request.timeout, last_error or "none"),
                hint="It keeps recovering; watch its log (%s) and raise 'timeout' for big archives." % server.log_file)
        time.sleep(0.3)


def recovery_failure(request, log):
    tail = "\n".join(line for line in log.splitlines() if "LOG:" in line or "FATAL" in line or "ERROR" in line)[-1500:]
    if RECOVERY_ENDED_EARLY in log:
        return PgBackupError("Recovery ended before reaching the target %s: the archived WAL ends earlier. Log: %s" % (
            request.describe_target(), tail), hint="Use an earlier target or target latest.")
    return PgBackupError("The server stopped during recovery. Log: %s" % (tail or "(empty)"),
                         hint="Fix the cause shown in the log; the extracted data directory is left as it is.")


def describe_result(server, log_offset, replay_time):
    row = server.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), pg_current_wal_lsn(), "
                     "pg_last_xact_replay_timestamp()")[0]
    timeline_hex, current_lsn, replay = (row or "||").split("|")[:3]
    log = server.log_since(log_offset)
    stop = re.findall(r"LOG:\s+(recovery stopping [^\n]*)", log)
    last_tx = re.findall(r"last completed transaction was at log time ([^\n]*)", log)
    return {
        "promoted": True,
        "timeline": int(timeline_hex, 16) if timeline_hex else None,
        "current_lsn": current_lsn or None,
        "last_replay_timestamp": replay or replay_time or None,
        "last_completed_transaction": last_tx[-1].strip() if last_tx else None,
        "recovery_stop": stop[-1].strip() if stop else None,
        "reached": [line for line in re.findall(r"LOG:\s+(.*)", log) if "recovery" in line or "timeline" in line][-8:],
    }
