#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pg_restore
short_description: Restore a logical backup whole or table by table, and prove the row counts
version_added: 0.1.0
description:
  - Restores a backup taken by M(todoapi.pgbackup.pg_dump). The artifact's size and sha256 are checked against
    its manifest before the target is touched.
  - B(Full restore) (no O(tables)) restores into a new staging database, compares every table's row count with
    the manifest, and only then puts it in place of O(database). A failure drops the staging database and leaves
    the target as it was. A target that already holds tables is only replaced with O(force=true).
    O(validate_foreign_keys=after_swap) moves the foreign-key checks after the swap-in, O(build_indexes=after_swap)
    the builds of the plain indexes.
  - Before it starts, a full restore drops the staging databases that earlier restores into O(database) left
    behind when they died (killed, host lost). A staging database carries an owner record in its comment; it is
    dropped only when that record shows that its restore's session to the server is gone and, when the record names
    the host running the module, that the restore's process is gone too, and nobody is connected to it. A staging
    database whose restore is still running is never touched. See RV(dropped_staging_databases) and
    RV(leftover_staging_databases).
  - B(Per-table restore) (O(tables) given) runs in one transaction in the existing O(database). A listed table
    that still exists gets exactly the backup's rows and keeps its indexes, constraints and grants; a listed
    table that was dropped is recreated with its indexes, constraints, triggers, grants and comments. Foreign
    keys touching the restored tables are checked before commit, as are the row counts. No other table changes.
    (C(pg_restore -t) alone fails on existing tables and loses the indexes of dropped ones.)
  - B(From a URL) (O(repository) C(s3://), C(azure://) or C(sftp://)) the backup is first downloaded into a private
    temporary directory below O(work_dir), as a stream, under temporary names until every file matches the manifest's
    size and sha256; only then is it restored, and the download is removed afterwards, also when the restore fails. A
    download that breaks off leaves nothing usable and fails the task before the target is touched. V(latest) is then
    the newest backup whose download matches its manifest.
extends_documentation_fragment:
  - todoapi.pgbackup.connection
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
options:
  backup:
    description:
      - Which backup to restore, as V(latest) (the newest backup of O(source_database) whose checksum verifies),
        a backup id, or the path (URL) of an artifact or manifest inside O(repository).
    type: str
    default: latest
  database:
    description: Target database. Defaults to O(source_database).
    type: str
  source_database:
    description: Database the backup was taken of, used to pick V(latest). Defaults to O(database).
    type: str
  tables:
    description:
      - Restore only these tables (C(Todos) or C(public.Todos), case-sensitive) into the existing O(database).
    type: list
    elements: str
    default: []
  clean:
    description:
      - For a full restore over a database that holds tables (needs O(force=true)), replace the whole database (the
        seed's dropdb/createdb/pg_restore) - the backup is restored into a staging database, its row counts are checked
        against the manifest, and only then does it take the old database's place (the old one is dropped).
      - With O(clean=false) such a restore runs in place instead - C(pg_restore --clean --if-exists --single-transaction)
        drops and recreates the backup's objects inside the existing database in one transaction, on one connection
        whatever O(jobs) says, so an error rolls all of it back; objects that are not in the backup are kept, and the
        row counts are checked after that transaction has committed. (A plain SQL backup is replayed with
        C(psql --single-transaction) instead, which drops nothing first.)
      - A database that does not exist or holds no tables is restored through a staging database whatever this option says.
    type: bool
    default: false
  force:
    description:
      - Allow a full restore to replace a target database that already holds tables, and disconnect other
        sessions connected to it.
    type: bool
    default: false
  jobs:
    description:
      - Connections that restore at once, for full restores into a new or emptied database.
      - V(0) (the default) means one per CPU of the host that runs the module, at most 8; V(1) restores
        serially with one C(pg_restore), like the seed's command.
      - "Custom format: the table data is streamed from the (compressed, encrypted) archive and each table's
        rows are spread over the connections, so a single large table loads on every core; indexes and
        constraints are then built by C(pg_restore --section=post-data -j N). Nothing but the archive's table
        of contents (about a megabyte) is written to O(work_dir). Autovacuum is kept off the new tables until
        their indexes and constraints are built; each table's own C(autovacuum_enabled) options are then put back."
      - Directory format is restored with C(pg_restore -j). Archives holding large objects, in-place restores
        (O(force) without O(clean)) and per-table restores always run serially.
    type: int
    default: 0
  maintenance_work_mem:
    description:
      - C(maintenance_work_mem) of the sessions that build indexes and add constraints after the data is
        loaded (parallel restores only). Each of the O(jobs) sessions may use this much memory on the server.
      - The default sorts the indexes of a table of a few GiB in memory (PostgreSQL's own default is 64MB);
        an empty string keeps the server's setting.
    type: str
    default: 256MB
  toast_compression:
    description:
      - How the restore compresses the values PostgreSQL stores compressed (TOAST, values over about 2 kB),
        that is the C(default_toast_compression) of the sessions that write the data.
      - V(auto) (the default) uses V(lz4) when the server offers it (PostgreSQL 14 and later built with lz4,
        as the PGDG and Debian packages are), else the server's setting. lz4 writes several times faster than
        PostgreSQL's own default V(pglz) and reads faster too; the data is the same, only its storage differs.
      - V(server) keeps the server's C(default_toast_compression). Columns that have their own compression
        method in the backup (C(ALTER TABLE ... SET COMPRESSION)) keep it whatever this says.
    type: str
    choices: [auto, lz4, pglz, server]
    default: auto
  validate_foreign_keys:
    description:
      - When a full restore through a staging database checks the backup's foreign keys against its rows.
      - V(during) (the default) checks them while the staging database is loaded, before it is swapped in, so
        a backup whose rows break a foreign key never replaces O(database).
      - V(after_swap) adds them C(NOT VALID) during the load (no scan of the rows), swaps the database in, and
        then validates them with C(ALTER TABLE ... VALIDATE CONSTRAINT), which takes a SHARE UPDATE EXCLUSIVE
        lock and lets the application read and write meanwhile. A C(NOT VALID) foreign key checks every row
        written from the moment it exists, so rows written during the validation are checked. The module waits
        for the validation; RV(usable_after_seconds) says when the database could be used.
      - With V(after_swap), a failed validation fails the task with a message that says that O(database) IS in
        place and usable, which foreign keys failed (they stay C(NOT VALID)) and the statement that validates
        them once the offending rows are fixed; see RV(failed_foreign_keys).
      - Foreign keys the backup already holds C(NOT VALID) stay so either way. Foreign keys of partitioned tables
        are checked during the load either way (PostgreSQL before 18 cannot add them C(NOT VALID)).
      - V(after_swap) needs a custom or directory format backup and a staging database (not O(force) without
        O(clean) over a database that holds tables); otherwise the restore fails before changing anything. A
        per-table restore (O(tables)) checks the foreign keys before its commit whatever this says.
    type: str
    choices: [during, after_swap]
    default: during
  build_indexes:
    description:
      - When a full restore through a staging database builds the backup's plain indexes.
      - V(during) (the default) builds every index while the staging database is loaded, before it is swapped in.
      - V(after_swap) leaves the plain indexes out of the load, swaps the database in once its data, primary keys,
        unique and other constraints are in, and then builds each of them with C(CREATE INDEX CONCURRENTLY) (the
        archive's statement, same name and definition), which lets the application read and write meanwhile; the
        application runs without these indexes until they are built. The indexes of one table are built one after
        the other, O(jobs) tables at a time. The module waits for the builds; RV(usable_after_seconds) says when the
        database could be used, RV(checks_finished_after_seconds) when the last index was built.
      - A plain index is one that is not a constraint, not UNIQUE, not on a partitioned table or attached to a
        partitioned table's index, not the table's CLUSTER or REPLICA IDENTITY index, and that no other object
        (a comment, a foreign key) depends on. Every other index is built during the load whatever this says.
      - A build that fails (for example on a row the application wrote after the swap-in that the index expression
        cannot handle) leaves an INVALID index, which is dropped; the task then fails with a message that says that
        O(database) IS in place and usable, which indexes are missing and the statement that builds each once the
        cause is fixed; see RV(failed_indexes).
      - With O(validate_foreign_keys=after_swap) too, the indexes are built first (the application's queries need
        them; a foreign key's validation scans the whole table and probes only the referenced key, which is built
        before the swap-in), then the foreign keys are validated.
      - V(after_swap) needs a custom or directory format backup and a staging database, as
        O(validate_foreign_keys=after_swap) does. A per-table restore (O(tables)) builds the indexes in its
        transaction whatever this says.
    type: str
    choices: [during, after_swap]
    default: during
  globals:
    description: Restore the roles and tablespaces stored with the backup first (existing roles are kept).
    type: bool
    default: false
  identity_file:
    description: C(age) identity (private key) file for encrypted backups.
    type: path
  no_owner:
    description: Do not restore object ownership (C(pg_restore --no-owner)), for targets that lack the roles.
    type: bool
    default: false
  maintenance_db:
    description: Database to connect to for creating, renaming and dropping databases.
    type: str
    default: postgres
  work_dir:
    description:
      - Directory for temporary files of a parallel restore, and for the download of a backup from a URL
        O(repository) (it needs room for the backup). Defaults to the system temporary directory.
    type: path
notes:
  - Supports check mode; it verifies the backup's checksum (from a URL as a stream, without downloading it) and
    inspects the target without changing anything.
  - A per-table restore sets C(session_replication_role), which needs a superuser.
requirements:
  - psycopg2 on the managed host
  - PostgreSQL client programs (C(pg_restore), C(psql)) of the server's major version or newer
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories
seealso:
  - module: todoapi.pgbackup.pg_dump
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Restore the latest TodoDb backup into a new database
  todoapi.pgbackup.pg_restore:
    repository: /var/backups/todoapi
    source_database: TodoDb
    database: TodoDb_restored

- name: The seed's full restore (drop, create, restore), replacing the live database
  todoapi.pgbackup.pg_restore:
    repository: /var/backups/todoapi
    database: TodoDb
    clean: true
    force: true
    jobs: 4

- name: Disaster recovery - the database is usable before its foreign keys are validated
  todoapi.pgbackup.pg_restore:
    repository: /var/backups/todoapi
    database: TodoDb
    clean: true
    force: true
    validate_foreign_keys: after_swap
    build_indexes: after_swap
  register: restored

- name: Say when the application could use it
  ansible.builtin.debug:
    msg: "usable after {{ restored.usable_after_seconds }} s, every check done after {{ restored.checks_finished_after_seconds }} s"

- name: Put back two tables from a given backup, keeping everything else as it is
  todoapi.pgbackup.pg_restore:
    repository: /var/backups/todoapi
    database: TodoDb
    backup: 20240106T020000Z_logical_TodoDb
    tables: [Todos, Categories]
  register: restored

- name: Show what came back
  ansible.builtin.debug:
    var: restored.tables

- name: Restore the newest TodoDb backup straight from an SFTP server (downloaded to /var/tmp first)
  todoapi.pgbackup.pg_restore:
    repository: sftp://backup@vault.example.com/srv/backups/todoapi
    sftp_key_file: /etc/todoapi-pgbackup/sftp_key
    sftp_known_hosts: /etc/todoapi-pgbackup/known_hosts
    source_database: TodoDb
    database: TodoDb_restored
    work_dir: /var/tmp
'''

RETURN = r'''
backup:
  description: Manifest of the backup that was (or in check mode would be) restored.
  returned: always
  type: dict
  sample: {"id": "20240106T020000Z_logical_TodoDb", "database": "TodoDb", "sha256": "..."}
mode:
  description: V(full) or V(tables).
  returned: always
  type: str
database:
  description: Target database.
  returned: always
  type: str
restored_tables:
  description: Tables restored, as C(schema.table).
  returned: success
  type: list
  elements: str
recreated_tables:
  description: For a per-table restore, the listed tables that did not exist and were recreated.
  returned: when O(tables) is given
  type: list
  elements: str
tables:
  description:
    - Row count of each restored table after the restore (equal to the manifest's). A full restore loaded over
      several connections takes it from the rows the server reported for its COPY statements, and counts the
      table again only when that differs from the manifest.
  returned: success
  type: dict
  sample: {"public.Todos": 200000}
duration_seconds:
  description: Wall time of the restore.
  returned: success
  type: float
usable_after_seconds:
  description:
    - Seconds from the start of the restore until O(database) was the restored database and accepted the
      application's queries (a full restore through a staging database - the swap-in; in place or per table -
      the commit).
  returned: success
  type: float
  sample: 9.4
checks_finished_after_seconds:
  description:
    - Seconds from the start of the restore until every check of the restored data had finished (row counts
      against the manifest; foreign keys, validated after the swap-in with O(validate_foreign_keys=after_swap); the
      indexes built after the swap-in with O(build_indexes=after_swap)).
    - Before the swap-in, so not more than RV(usable_after_seconds), when the checks run during the load.
  returned: success
  type: float
  sample: 10.9
validated_foreign_keys:
  description:
    - With O(validate_foreign_keys=after_swap), the foreign keys validated after the swap-in, each with
      C(table), C(constraint) (both as SQL identifiers) and C(seconds) its validation took; empty otherwise.
  returned: success and O(tables) is empty
  type: list
  elements: dict
  sample: [{"table": "public.\"Todos\"", "constraint": "\"FK_Todos_Users_UserId\"", "seconds": 0.71}]
failed_foreign_keys:
  description:
    - When the task failed because foreign keys did not hold after the swap-in (O(validate_foreign_keys=after_swap)),
      each with C(table), C(constraint), C(error) and C(statement), the C(VALIDATE CONSTRAINT) to run once
      the offending rows are fixed. O(database) is then in place and usable (C(database_in_place) is V(true)).
  returned: failure of the validation after the swap-in
  type: list
  elements: dict
  sample: [{"table": "public.\"Todos\"", "constraint": "\"FK_Todos_Users_UserId\"",
            "error": "insert or update on table \"Todos\" violates foreign key constraint ...",
            "statement": "ALTER TABLE ONLY public.\"Todos\" VALIDATE CONSTRAINT \"FK_Todos_Users_UserId\";"}]
built_indexes:
  description:
    - With O(build_indexes=after_swap), the indexes built after the swap-in, each with C(index), C(table) (both
      as SQL identifiers) and C(seconds) its build took; empty otherwise.
  returned: success and O(tables) is empty
  type: list
  elements: dict
  sample: [{"index": "\"IX_Todos_UserId\"", "table": "public.\"Todos\"", "seconds": 1.92}]
failed_indexes:
  description:
    - When the task failed because indexes could not be built after the swap-in (O(build_indexes=after_swap)),
      each with C(index), C(table), C(error) and C(statement), the C(CREATE INDEX CONCURRENTLY) to run once the
      cause is fixed. Their INVALID leftovers are dropped. O(database) is then in place and usable
      (C(database_in_place) is V(true)); C(built_indexes), C(failed_foreign_keys) and C(validated_foreign_keys)
      say what else was done after the swap-in.
  returned: failure of an index build after the swap-in
  type: list
  elements: dict
  sample: [{"index": "\"IX_Todos_Ratio\"", "table": "public.\"Todos\"", "error": "division by zero",
            "statement": "CREATE INDEX CONCURRENTLY \"IX_Todos_Ratio\" ON public.\"Todos\" USING btree ((100 / \"Weight\"));"}]
connections:
  description:
    - Connections that loaded the data of a full restore (1 when it ran serially, see O(jobs)).
  returned: success and O(tables) is empty
  type: int
  sample: 2
dropped_staging_databases:
  description:
    - Staging databases that earlier restores into O(database) left behind when they died, dropped by this restore.
  returned: success and O(tables) is empty
  type: list
  elements: str
  sample: ["TodoDb__restore_4711"]
leftover_staging_databases:
  description:
    - Staging databases that earlier restores into O(database) left behind and this restore did not drop, each
      with C(database) and C(reason) (no owner record, or the drop failed); each is also a warning.
    - M(todoapi.pgbackup.backup_info) with O(todoapi.pgbackup.backup_info#module:check_staging_databases=true)
      reports them too.
  returned: success and O(tables) is empty
  type: list
  elements: dict
  sample: [{"database": "TodoDb__restore_4711", "reason": "cannot drop it: must be owner of database TodoDb__restore_4711"}]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.working_copy import LocalCopy
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import (
    storage_argument_spec, connection_from, repository_from, require_psycopg2, run_or_fail)


def restore_request(module, repository):
    params = module.params
    return run_or_fail(
        module, logical_restore.LogicalRestoreRequest,
        repository, connection_from(module), database=params["database"], backup=params["backup"],
        source_database=params["source_database"], tables=params["tables"], clean=params["clean"],
        force=params["force"], jobs=params["jobs"], globals_=params["globals"],
        identity_file=params["identity_file"], no_owner=params["no_owner"],
        maintenance_db=params["maintenance_db"], work_dir=params["work_dir"], pg_bin_dir=params["pg_bin_dir"],
        maintenance_work_mem=params["maintenance_work_mem"], toast_compression=params["toast_compression"],
        validate_foreign_keys=params["validate_foreign_keys"], build_indexes=params["build_indexes"])


def restore(module, request):
    """Run ``request``; from a URL it reads a verified download, removed afterwards. Returns the result and manifest."""
    with LocalCopy(request.repository, request.work_dir) as copies:
        request.repository, request.backup = run_or_fail(module, copies.fetch_selected, request.backup,
                                                         database=request.source_database, kind="logical")
        result = run_or_fail(module, _restore, module, request)
        return result, run_or_fail(module, request.repository.load, result.pop("backup_id"))


def main():
    module = AnsibleModule(
        argument_spec=storage_argument_spec(
            backup=dict(type="str", default="latest"),
            database=dict(type="str"),
            source_database=dict(type="str"),
            tables=dict(type="list", elements="str", default=[]),
            clean=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            jobs=dict(type="int", default=0),
            maintenance_work_mem=dict(type="str", default="256MB"),
            toast_compression=dict(type="str", default="auto", choices=["auto", "lz4", "pglz", "server"]),
            validate_foreign_keys=dict(type="str", default="during", choices=["during", "after_swap"]),
            build_indexes=dict(type="str", default="during", choices=["during", "after_swap"]),
            globals=dict(type="bool", default=False),
            identity_file=dict(type="path"),
            no_owner=dict(type="bool", default=False),
            maintenance_db=dict(type="str", default="postgres"),
            work_dir=dict(type="path"),
        ),
        required_one_of=[("database", "source_database")],
        supports_check_mode=True,
    )
    require_psycopg2(module)
    request = restore_request(module, repository_from(module))
    if module.check_mode:
        # Read-only, also for a URL: the remote copy's checksum is read as a stream, nothing is downloaded.
        plan = run_or_fail(module, logical_restore.plan, request)
        module.exit_json(changed=True, backup=plan["backup"], mode=plan["mode"], database=request.database)
    result, manifest = restore(module, request)
    for leftover in result.get("leftover_staging_databases") or []:
        module.warn("Staging database '%s' of an earlier restore that died was left in place: %s."
                    % (leftover["database"], leftover["reason"]))
    result.pop("changed", None)
    module.exit_json(changed=True, backup=manifest, **result)


def _restore(module, request):
    try:
        return logical_restore.restore(request)
    except logical_restore.FailedAfterSwap as exc:  # the database is in place: the result says so too
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint, **exc.details)


if __name__ == "__main__":
    main()
