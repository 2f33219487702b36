# -*- coding: utf-8 -*-
"""Staging databases without PostgreSQL: their names, the owner record and how a leftover is told apart."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import staging, staging_leftovers, staging_owner


def record(**changes):
    value = {"owner": staging_owner.OWNER_MARK, "database": "TodoDb__restore_42", "target": "TodoDb",
             "host": "db1", "pid": 42}
    value.update(changes)
    return json.dumps(value)


def test_staging_name_fits_postgresql_names_and_is_found_again():
    assert staging.staging_name("TodoDb") == "TodoDb__restore_%d" % os.getpid()
    long_name = staging.staging_name("x" * 80)
    assert len(long_name) == 63 and long_name.endswith("__restore_%d" % os.getpid())
    assert staging_leftovers.STAGING_NAME.search(long_name)
    assert not staging_leftovers.STAGING_NAME.search("TodoDb__restore_old")
    assert not staging_leftovers.STAGING_NAME.search("TodoDb__previous_42")


def test_only_a_record_naming_the_database_itself_is_its_owner_record():
    assert staging_owner.read_owner("TodoDb__restore_42", record())["pid"] == 42
    # After the swap-in the database is called TodoDb: a record left on it is not TodoDb's.
    assert staging_owner.read_owner("TodoDb", record()) is None
    assert staging_owner.read_owner("TodoDb__restore_42", record(owner="someone else")) is None
    for comment in (None, "", "the application's database", "[1, 2]", '"text"'):
        assert staging_owner.read_owner("TodoDb__restore_42", comment) is None


def test_process_start_tells_a_reused_pid_from_the_owner():
    own = staging_owner.process_start(os.getpid())
    assert isinstance(own, int) and own == staging_owner.process_start(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert staging_owner.process_start(child.pid) >= own
    finally:
        child.kill()
        child.wait()
    assert staging_owner.process_start(child.pid) is None  # reaped: gone
    assert staging_owner.process_start(None) is None


def test_a_leftover_without_record_belongs_to_targets_its_cut_name_starts():
    assert staging_leftovers._restores_into("TodoDb", None, "TodoDb")
    assert staging_leftovers._restores_into("x" * 50, None, "x" * 80)  # the name was cut to fit 63 bytes
    assert not staging_leftovers._restores_into("Todo", {"target": "Todo"}, "TodoDb")
    assert not staging_leftovers._restores_into("Other", None, "TodoDb")


def test_leftovers_are_described_with_what_to_do():
    owned = {"database": "TodoDb__restore_42", "target": "TodoDb", "owner": json.loads(record())}
    text = staging_leftovers.describe(owned)
    assert "pid 42 on db1" in text and "next full restore into 'TodoDb' drops it" in text
    unowned = dict(owned, owner=None)
    assert "no owner record" in staging_leftovers.describe(unowned)
