# -*- coding: utf-8 -*-
"""A PostgreSQL cluster archiving its WAL the way role wal_archiving sets it up, for the PITR, DR
and fault tests: the engine and the todoapi-pgbackup-wal wrapper installed for the system Python,
an archive directory of OS user postgres, the archive_command settings, and waiting until a
segment is archived.

    base = shared_dir("pgbackup-pitr-")
    wal_command = install_wal_tool(base)
    archive = postgres_dir(base, "archive")
    cluster = PgCluster.create(extra_conf=archiving_conf(wal_command, archive, archive_timeout=5))
"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import tempfile
import time

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import wal as wal_cli
from tests.lib.ansible_run import REPO_ROOT


def shared_dir(prefix):
    """A temp dir PostgreSQL (OS user postgres) can reach."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def postgres_dir(parent, name):
    """``parent/name``, created 0700 for OS user postgres (an archive or repository PostgreSQL writes into)."""
    path = os.path.join(parent, name)
    os.mkdir(path, 0o700)
    shutil.chown(path, "postgres", "postgres")
    return path


def install_wal_tool(base, python="/usr/bin/python3"):
    """What role wal_archiving installs, below ``base``: the engine package + the wrapper, for the
    system Python (or ``python``). Returns the wrapper's path."""
    lib = os.path.join(base, "lib")
    shutil.copytree(os.path.join(REPO_ROOT, "plugins", "module_utils"), os.path.join(lib, "todoapi_pgbackup_engine"),
                    ignore=shutil.ignore_patterns("__pycache__", "ansible_module"))
    wrapper = os.path.join(base, "todoapi-pgbackup-wal")
    with open(wrapper, "w") as handle:
        handle.write(wal_cli.wrapper_script(lib, python=python))
    os.chmod(wrapper, 0o755)
    for root, _dirs, _files in os.walk(base):
        os.chmod(root, 0o755)
    return wrapper


def archiving_conf(wal_command, archive, compress=None, **settings):
    """``extra_conf`` for PgCluster.create(): archive_mode on, each finished segment archived into
    ``archive`` by ``wal_command archive-wal`` (with ``--compress``, when given); plus ``settings``."""
    command = "%s archive-wal %%p %%f --archive-dir %s" % (wal_command, archive)
    if compress:
        command += " --compress %s" % compress
    conf = {"archive_mode": "on", "archive_command": command}
    conf.update(settings)
    return conf


def wait_archived(cluster, timeout=30):
    """Switch to a new segment and wait until the finished one is archived; returns its name."""
    cluster.sql("SELECT pg_create_restore_point('switch')")  # WAL to switch away from, even on an idle cluster
    segment = cluster.scalar("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, failed = cluster.sql("SELECT coalesce(last_archived_wal >= %s, false), last_failed_wal FROM pg_stat_archiver",
                                   (segment,))[0]
        if done:
            return segment
        time.sleep(0.2)
    raise AssertionError("segment %s not archived (last failed: %s)\n%s" % (segment, failed, cluster.log_tail()))
