# -*- coding: utf-8 -*-
"""How the parallel load's row counts name their tables, and when they spare the count(*) before the swap-in
(plugins/module_utils/logical/parallel_restore.py, restore_steps.verify_counts); the load itself is tested against
a real server in tests/integration/test_parallel_restore.py."""

from __future__ import absolute_import, division, print_function

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import parallel_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore_steps


def test_copy_statements_name_tables_as_manifests_do():
    key = parallel_restore.copy_table_key
    assert key('COPY public."Todos" ("Id", "Title") FROM stdin;') == "public.Todos"
    assert key("COPY public.notes (id, body) FROM stdin;") == "public.notes"
    assert key('COPY "my ""odd"" schema"."a.b" (x) FROM stdin;') == 'my "odd" schema.a.b'
    assert key("COPY public.t FROM stdin;") == "public.t"


def test_a_statement_that_is_not_understood_matches_no_table():
    assert parallel_restore.copy_table_key("COPY (SELECT 1) TO stdout;") == "COPY (SELECT 1) TO stdout;"


def test_counts_from_the_load_are_used_only_when_every_table_matches():
    expected = {"public.a": 3, "public.empty": 0}
    # conn None: no query may run when the load's counts are exactly the backup's (a table never loaded has 0 rows).
    assert restore_steps.verify_counts(None, expected, {"public.a": 3}) == expected
    # when they differ, count(*) decides: tests/integration/test_parallel_restore.py
