#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: database_check
short_description: Prove that a restored database is complete and sound (row counts, pg_amcheck, smoke queries)
version_added: 0.1.0
description:
  - Checks a live database, typically right after a restore ("Verify data integrity" in the seed's Disaster Recovery Plan).
  - Compares every table's row count with O(expected_tables) (the backup manifest's C(tables)).
  - Runs C(pg_amcheck --heapallindexed) on the database (heap and B-tree indexes), one connection per CPU (at most 8)
    checking tables and indexes at once. The C(amcheck) extension is installed
    for the check and dropped again when the database did not have it.
  - Runs O(smoke_queries), each of which must succeed and return at least one row (the seed's
    C(SELECT COUNT(*) FROM "Users")).
  - Fails naming the first check that did not pass.
extends_documentation_fragment:
  - todoapi.pgbackup.connection
options:
  database:
    description: Database to check.
    type: str
    required: true
  expected_tables:
    description: Expected row count per table, keyed C(schema.table) (as in a backup manifest's C(tables)).
    type: dict
    default: {}
  smoke_queries:
    description: SQL queries that must succeed and return at least one row.
    type: list
    elements: str
    default: []
  amcheck:
    description: Run C(pg_amcheck --heapallindexed).
    type: bool
    default: true
notes:
  - Supports check mode (the checks only read; C(amcheck) is installed and dropped again when missing).
requirements:
  - psycopg2 on the managed host
  - C(pg_amcheck) of the server's major version or newer, when O(amcheck=true)
seealso:
  - module: todoapi.pgbackup.pg_restore
  - module: todoapi.pgbackup.backup_verify
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Restore
  todoapi.pgbackup.pg_restore:
    repository: /var/backups/todoapi
    database: TodoDb
    globals: true
  register: restored

- name: Prove the restored database
  todoapi.pgbackup.database_check:
    database: TodoDb
    expected_tables: "{{ restored.backup.tables }}"
    smoke_queries:
      - SELECT COUNT(*) FROM "Users"
'''

RETURN = r'''
tables:
  description: Row count of each expected table (equal to O(expected_tables)).
  returned: success
  type: dict
counts_match:
  description: Whether all row counts matched.
  returned: success
  type: bool
amcheck:
  description: V(ok), or V(skipped) with O(amcheck=false).
  returned: success
  type: str
smoke_queries:
  description: Each query with its row count and first row.
  returned: success
  type: list
  elements: dict
duration_seconds:
  description: Wall time of the checks.
  returned: success
  type: float
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import dr
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    CONNECTION_ARGS, connection_from, require_psycopg2, run_or_fail)


def main():
    spec = dict(CONNECTION_ARGS)
    spec.update(
        database=dict(type="str", required=True),
        expected_tables=dict(type="dict", default={}),
        smoke_queries=dict(type="list", elements="str", default=[]),
        amcheck=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    require_psycopg2(module)
    params = module.params
    expected = {}
    for key, value in params["expected_tables"].items():
        try:
            expected[key] = int(value)
        except (TypeError, ValueError):
            module.fail_json(msg="expected_tables['%s'] is not a row count: %r." % (key, value))
    result = run_or_fail(module, dr.check_database, connection_from(module), params["database"], expected_tables=expected,
                         smoke_queries=params["smoke_queries"], amcheck=params["amcheck"], pg_bin_dir=params["pg_bin_dir"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
