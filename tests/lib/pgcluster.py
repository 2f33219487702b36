# -*- coding: utf-8 -*-
"""Throwaway PostgreSQL clusters for tests, built on Debian's postgresql-common.

Plain Python (no pytest) so ad-hoc scripts and benchmarks can use it too::

    from tests.lib.pgcluster import PgCluster

    with PgCluster.create() as cluster:
        cluster.create_database("TodoDb")
        print(cluster.scalar("SELECT version()"))

Every cluster is named ``<HARNESS_PREFIX><pid>_<counter>`` so that
``cleanup_stale_clusters()`` can recognise clusters left behind by a test
process that died, without touching clusters of runs that are still alive.
Needs root (``pg_createcluster``, ``runuser -u postgres``).
"""

from __future__ import absolute_import, division, print_function

import itertools
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time

import psycopg2
from psycopg2 import sql as pgsql

HARNESS_PREFIX = "tpgh"
DEFAULT_VERSION = 15
OS_USER = "postgres"
SOCKET_DIR = "/var/run/postgresql"
CONF_FILE_NAME = "90-test-harness.conf"
STARTUP_TIMEOUT = 60

_counter = itertools.count(1)
_counter_lock = threading.Lock()


class PgClusterError(RuntimeError):
    """A pg_createcluster/pg_ctlcluster/psql step failed."""


def bindir_for(version):
    return "/usr/lib/postgresql/%s/bin" % version


def find_free_port():
    """Ask the kernel for a currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_command(argv, input_text=None, check=True, timeout=300):
    """Run argv, return CompletedProcess; raise PgClusterError with its output on failure."""
    completed = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    if check and completed.returncode != 0:
        raise PgClusterError("command failed (rc=%s): %s\nstdout:\n%s\nstderr:\n%s"
                             % (completed.returncode, " ".join(argv), completed.stdout, completed.stderr))
    return completed


def format_conf_value(value):
    """Render a Python value as a postgresql.conf value."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'%s'" % str(value).replace("'", "''")


def list_clusters():
    """Return [(version, name, port, status)] from ``pg_lsclusters -h``."""
    if not shutil.which("pg_lsclusters"):
        return []
    output = run_command(["pg_lsclusters", "-h"]).stdout
    clusters = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            clusters.append((fields[0], fields[1], int(fields[2]), fields[3]))
    return clusters


def process_is_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def harness_owner_pid(name, prefix=HARNESS_PREFIX):
    """PID encoded in a harness cluster name, or None if the name is not ours."""
    match = re.match(r"^%s(\d+)_\d+$" % re.escape(prefix), name)
    return int(match.group(1)) if match else None


def drop_cluster(version, name):
    """pg_dropcluster --stop; never raises if the cluster is already gone."""
    run_command(["pg_dropcluster", "--stop", str(version), name], check=False)
    for leftover in ("/etc/postgresql/%s/%s" % (version, name), "/var/lib/postgresql/%s/%s" % (version, name)):
        shutil.rmtree(leftover, ignore_errors=True)


def cleanup_stale_clusters(prefix=HARNESS_PREFIX):
    """Drop harness clusters whose creating process no longer exists. Returns the dropped names."""
    dropped = []
    for version, name, _port, _status in list_clusters():
        owner = harness_owner_pid(name, prefix)
        if owner is None or process_is_alive(owner):
            continue
        drop_cluster(version, name)
        dropped.append("%s/%s" % (version, name))
    return dropped


def next_cluster_name(version):
    """A harness cluster name not used on this machine yet."""
    while True:
        with _counter_lock:
            number = next(_counter)
        name = "%s%d_%d" % (HARNESS_PREFIX, os.getpid(), number)
        if not os.path.exists("/etc/postgresql/%s/%s" % (version, name)):
            return name


class PgCluster(object):
    """One Debian-managed PostgreSQL cluster listening on 127.0.0.1:<port>."""

    host = "127.0.0.1"
    user = "postgres"
    socket_dir = SOCKET_DIR

    def __init__(self, version, name, port, password=None):
        self.version = int(version)
        self.name = name
        self.port = int(port)
        self.password = password
        self.created_here = False
        self.bindir = bindir_for(self.version)
        self.data_dir = "/var/lib/postgresql/%s/%s" % (self.version, name)
        self.conf_dir = "/etc/postgresql/%s/%s" % (self.version, name)
        self.log_file = "/var/log/postgresql/postgresql-%s-%s.log" % (self.version, name)

    def __repr__(self):
        return "PgCluster(%s/%s port=%s)" % (self.version, self.name, self.port)

    # -- creation -------------------------------------------------------

    @classmethod
    def create(cls, name=None, port=None, version=DEFAULT_VERSION, fsync=False, extra_conf=None):
        """Create, configure and start a new cluster; the postgres role gets a random password."""
        name = name or cls.next_name(version)
        cluster = cls(version, name, port or find_free_port())
        try:
            cluster._create_and_start(fsync, extra_conf, port_was_chosen=port is None)
            cluster.set_random_password()
        except BaseException:
            if cluster.created_here:
                cluster.drop()
            raise
        return cluster

    @classmethod
    def next_name(cls, version):
        return next_cluster_name(version)

    def _create_and_start(self, fsync, extra_conf, port_was_chosen):
        self.created_here = True
        self.init_cluster()
        self.write_harness_conf(fsync, extra_conf)
        try:
            self.start()
        except PgClusterError:
            if not (port_was_chosen and self._port_was_taken()):
                raise
            self._move_to_new_port(fsync, extra_conf)
            self.start()

    def init_cluster(self):
        run_command(["pg_createcluster", "--start-conf", "manual", str(self.version), self.name,
                     "-p", str(self.port), "--", "--no-sync"])

    def _port_was_taken(self):
        try:
            with open(self.log_file) as log:
                return "Address already in use" in log.read()
        except OSError:
            return False

    def _move_to_new_port(self, fsync, extra_conf):
        """Another process grabbed our port between probing and starting; take another one."""
        self.port = find_free_port()
        run_command(["pg_conftool", str(self.version), self.name, "set", "port", str(self.port)])

    def harness_settings(self, fsync, extra_conf):
        settings = {
            "listen_addresses": "127.0.0.1",
            "wal_level": "replica",
            "max_wal_senders": 5,
        }
        if not fsync:
            # synchronous_commit stays on: with it off, stop(mode="immediate") (a simulated crash)
            # loses recently committed transactions, which would make crash/PITR tests flaky.
            # fsync=off alone is safe against process crashes because WAL still reaches the kernel.
            settings["fsync"] = False
        settings.update(extra_conf or {})
        return settings

    def write_harness_conf(self, fsync=False, extra_conf=None):
        """(Re)write conf.d/90-test-harness.conf; takes effect on the next (re)start or reload."""
        lines = ["# written by tests/lib/pgcluster.py"]
        for key, value in self.harness_settings(fsync, extra_conf).items():
            lines.append("%s = %s" % (key, format_conf_value(value)))
        conf_d = os.path.join(self.conf_dir, "conf.d")
        os.makedirs(conf_d, exist_ok=True)
        with open(os.path.join(conf_d, CONF_FILE_NAME), "w") as conf:
            conf.write("\n".join(lines) + "\n")

    def set_random_password(self):
        self.password = secrets.token_hex(16)
        self.psql_as_os_user("ALTER ROLE postgres PASSWORD '%s';" % self.password)

    def psql_as_os_user(self, script, dbname="postgres"):
        """Run SQL with psql as OS user postgres over the unix socket (peer auth); returns stdout."""
        argv = ["runuser", "-u", OS_USER, "--", os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir, "-p", str(self.port), "-d", dbname, "-f", "-"]
        return run_command(argv, input_text=script).stdout

    # -- lifecycle --------------------------------------------------------

    def ctl(self, action, *options, **kwargs):
        argv = ["pg_ctlcluster", "--skip-systemctl-redirect"] + list(options) + [str(self.version), self.name, action]
        return run_command(argv, check=kwargs.get("check", True))

    def start(self):
        try:
            self.ctl("start")
        except PgClusterError as error:
            raise PgClusterError("%s\nlog tail:\n%s" % (error, self.log_tail()))
        self.wait_until_ready()

    def stop(self, mode="fast"):
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError("unsupported stop mode %r" % mode)
        self.ctl("stop", "-m", mode)

    def restart(self):
        self.ctl("restart")
        self.wait_until_ready()

    def reload(self):
        self.ctl("reload")

    def is_running(self):
        return self.ctl("status", check=False).returncode == 0

    def wait_until_ready(self, timeout=STARTUP_TIMEOUT):
        deadline = time.time() + timeout
        argv = [os.path.join(self.bindir, "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        while run_command(argv, check=False).returncode != 0:
            if time.time() > deadline:
                raise PgClusterError("%r not ready after %ss\nlog tail:\n%s" % (self, timeout, self.log_tail()))
            time.sleep(0.1)

    def drop(self):
        drop_cluster(self.version, self.name)

    def exists(self):
        return any(v == str(self.version) and n == self.name for v, n, _p, _s in list_clusters())

    def log_tail(self, lines=30):
        try:
            with open(self.log_file) as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return "(no log at %s)" % self.log_file

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.drop()
        return False

    # -- client side ------------------------------------------------------

    def conn_params(self, dbname="postgres"):
        """Connection settings, named like the collection's module options."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password, "database": dbname}

    def login_params(self, dbname="postgres"):
        """Connection settings named like community.postgresql module options."""
        return {"login_host": self.host, "port": self.port, "login_user": self.user,
                "login_password": self.password, "login_db": dbname}

    def env(self):
        """PG* variables for running pg_dump, psql ... against this cluster (merge into os.environ yourself)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password}

    def tool(self, name):
        """Absolute path of a PostgreSQL client/server binary of this cluster's version."""
        return os.path.join(self.bindir, name)

    def connect(self, dbname="postgres"):
        return connect_to(self, dbname)

    def sql(self, query, params=None, dbname="postgres"):
        return run_sql(self, query, params, dbname)

    def scalar(self, query, params=None, dbname="postgres"):
        rows = self.sql(query, params, dbname)
        return rows[0][0] if rows else None

    def create_database(self, name, owner=None):
        statement = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
        if owner:
            statement += pgsql.SQL(" OWNER {}").format(pgsql.Identifier(owner))
        self.sql(statement)

    def drop_database(self, name):
        self.sql(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))

    def database_exists(self, name):
        return bool(self.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)))


def params_of(target, dbname=None):
    """conn_params dict for a PgCluster or an existing conn_params dict, optionally for another database."""
    params = dict(target.conn_params() if hasattr(target, "conn_params") else target)
    if dbname:
        params["database"] = dbname
    params.setdefault("database", "postgres")
    return params


def connect_to(target, dbname=None):
    """psycopg2 autocommit connection over TCP to a PgCluster or conn_params dict."""
    params = params_of(target, dbname)
    connection = psycopg2.connect(host=params["host"], port=params["port"], user=params["user"],
                                  password=params.get("password"), dbname=params["database"], connect_timeout=10)
    connection.autocommit = True
    return connection


def run_sql(target, query, params=None, dbname=None):
    """Execute one statement; return its rows as a list of tuples ([] when it returns none)."""
    connection = connect_to(target, dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []
    finally:
        connection.close()
