# -*- coding: utf-8 -*-
"""Which methods each section measures, in the order they run within a round (``bench.py --list``)."""

from __future__ import absolute_import, division, print_function

from harness.common import CORES
from harness.rounds import Method
from harness.workspace_pg18 import Pg18Workspace
from methods.collection import CollectionMethods
from methods.incremental import IncrementalMethods
from methods.incremental_reference import BASEBACKUP, ReferenceIncremental
from methods.dr_playbook import DrPlaybook
from methods.pgbackrest import PgBackRest
from methods.seed import SeedMethods
from methods.wal_push import WalPush

LOGICAL_BACKUP, LOGICAL_RESTORE = "logical backup", "logical restore"
PHYSICAL_BACKUP, PHYSICAL_RESTORE = "physical backup", "physical restore"
PG18_BACKUP, PG18_RESTORE = "physical backup, PostgreSQL 18", "physical restore, PostgreSQL 18"
DISASTER_RECOVERY = "disaster recovery"
WAL_PUSH_DIR, WAL_PUSH_S3 = "WAL push, directory", "WAL push, S3"


class Catalog(object):
    def __init__(self, workspace):
        self.seed = SeedMethods(workspace)
        self.collection = CollectionMethods(workspace)
        self.pgbackrest = PgBackRest(workspace)
        self.incremental_methods = IncrementalMethods(Pg18Workspace(workspace.work, workspace.nice))
        self.incremental_reference = ReferenceIncremental(self.incremental_methods)
        self.dr_playbook = DrPlaybook(workspace, self.collection)
        self.wal_push = WalPush(workspace, self.pgbackrest)

    def sections(self):
        return (("main", self.main()), ("scale", self.scale()), ("dr", self.dr()), ("wal", self.wal()),
                ("explore", self.explore()), ("incremental", self.incremental()))

    # -- shared by the sections ---------------------------------------------------------------

    def _seed_dump(self):
        return Method("seed_dump", LOGICAL_BACKUP, "seed: pg_dump -F c -Z 9", self.seed.dump, baseline=True)

    def _floor_dump(self):
        return Method("floor_dump", LOGICAL_BACKUP, "reference: pg_dump -F c -Z 0 -f /dev/null", self.seed.floor_dump,
                      comparator=True)

    def _seed_restore(self):
        return Method("seed_restore", LOGICAL_RESTORE, "seed: createdb + pg_restore -d", self.seed.restore,
                      baseline=True)

    def _seed_base(self):
        return Method("seed_base", PHYSICAL_BACKUP, "seed: pg_basebackup -Ft -z -P", self.seed.basebackup,
                      baseline=True)

    def _coll_dump(self):
        return Method("coll_dump", LOGICAL_BACKUP, "collection pg_dump (defaults)", self.collection.dump)

    def _coll_restore(self):
        return Method("coll_restore", LOGICAL_RESTORE, "collection pg_restore (defaults)", self.collection.restore)

    def _pgbr_backups(self):
        return [Method("pgbr_backup_gz", PHYSICAL_BACKUP, "pgBackRest full, gz (default)",
                       lambda db, tag: self.pgbackrest.backup(db, tag, "gz"), comparator=True),
                Method("pgbr_backup_zst", PHYSICAL_BACKUP, "pgBackRest full, zst",
                       lambda db, tag: self.pgbackrest.backup(db, tag, "zst"), comparator=True)]

    # -- the sections -------------------------------------------------------------------------

    def main(self):
        coll, pgbr = self.collection, self.pgbackrest
        return [
            self._seed_dump(), self._coll_dump(), self._floor_dump(),
            self._seed_restore(), self._coll_restore(),
            Method("coll_restore_after_swap", LOGICAL_RESTORE, "collection pg_restore validate_foreign_keys=after_swap",
                   lambda db, tag: coll.restore(db, tag, {"validate_foreign_keys": "after_swap"},
                                                key="coll_restore_after_swap"), comparator=True),
            Method("coll_restore_deferred", LOGICAL_RESTORE,
                   "collection pg_restore validate_foreign_keys=after_swap build_indexes=after_swap",
                   lambda db, tag: coll.restore(db, tag, {"validate_foreign_keys": "after_swap", "build_indexes": "after_swap"},
                                                key="coll_restore_deferred"), comparator=True),
            Method("coll_restore_serial", LOGICAL_RESTORE, "collection pg_restore jobs=1 (serial)",
                   lambda db, tag: coll.restore(db, tag, {"jobs": 1}, key="coll_restore_serial"), comparator=True),
            self._seed_base(),
            Method("coll_base", PHYSICAL_BACKUP, "collection pg_basebackup (defaults)", coll.basebackup),
            Method("floor_base", PHYSICAL_BACKUP, "reference: pg_basebackup alone, default compression, no checks",
                   self.seed.floor_basebackup, comparator=True),
        ] + self._pgbr_backups() + [
            Method("seed_extract", PHYSICAL_RESTORE, "seed backup: tar -xzf + sync", self.seed.extract, baseline=True),
            Method("coll_extract", PHYSICAL_RESTORE, "collection restore_into + syncfs (as pitr_recovery)", coll.extract),
            Method("pgbr_restore_gz", PHYSICAL_RESTORE, "pgBackRest restore, gz",
                   lambda db, tag: pgbr.restore(db, tag, "gz"), comparator=True),
            Method("pgbr_restore_zst", PHYSICAL_RESTORE, "pgBackRest restore, zst",
                   lambda db, tag: pgbr.restore(db, tag, "zst"), comparator=True),
        ]

    def scale(self):
        return [self._coll_dump(), self._coll_restore()]

    def incremental(self):
        """On PostgreSQL 18 (its own cluster and database of the same size): the full backup and its restore are
        the baselines here. The reference rows (PostgreSQL's own programs, no engine) run after the engine's, with
        their own chain, so that each chain holds only its own 1 % changes."""
        inc, ref = self.incremental_methods, self.incremental_reference
        return [
            Method("pg18_full", PG18_BACKUP, "full base backup (defaults)", inc.full, baseline=True),
            Method("pg18_incr", PG18_BACKUP, "incremental base backup after 1 % of the rows changed", inc.incremental),
            Method("pg18_full_restore", PG18_RESTORE, "restore the full backup (extracted and checked, pg_verifybackup -s)",
                   inc.restore_full, baseline=True),
            Method("pg18_chain_restore", PG18_RESTORE,
                   "restore full + 6 incrementals (extract, pg_combinebackup --link, pg_verifybackup)", inc.restore_chain),
            Method("pg18_ref_full", PG18_BACKUP, "reference: %s (no verification)" % BASEBACKUP, ref.full, comparator=True),
            Method("pg18_ref_incr", PG18_BACKUP, "reference: the same with --incremental=<its full's backup_manifest> "
                   "after 1 % of the rows changed", ref.incremental_backup, comparator=True),
            Method("pg18_ref_full_restore", PG18_RESTORE, "reference: tar -xzf base.tar.gz (+ pg_wal.tar) + sync",
                   ref.restore_full, comparator=True),
            Method("pg18_ref_chain_restore", PG18_RESTORE, "reference: tar -xzf each of full + 6 incrementals, "
                   "pg_combinebackup --link, scratch removed, sync (no pg_verifybackup)", ref.restore_chain, comparator=True),
        ]

    def dr(self):
        return [Method("dr_logical", DISASTER_RECOVERY, "dr_restore.yml, dr_method=logical (defaults)",
                       self.dr_playbook.logical),
                Method("dr_pitr", DISASTER_RECOVERY, "dr_restore.yml, dr_method=pitr (all archived WAL)",
                       self.dr_playbook.pitr)]

    def wal(self):
        """archive_command throughput: the collection against pgBackRest, with its defaults and tuned like the collection."""
        def push(key, group, label, comparator=False):
            return Method(key, group, label, lambda db, tag: self.wal_push.push(db, tag, key), comparator=comparator)
        methods = []
        for target, group, where in (("dir", WAL_PUSH_DIR, "directory"), ("s3", WAL_PUSH_S3, "S3")):
            methods += [
                push("wal_coll_%s" % target, group, "collection archive-wal, %s, synchronous" % where),
                push("wal_coll_%s_async" % target, group, "collection archive-wal, %s, asynchronous" % where),
                push("wal_pgbr_%s" % target, group, "pgBackRest archive-push, %s (defaults: gz)" % where, comparator=True),
                push("wal_pgbr_%s_async" % target, group, "pgBackRest archive-push --archive-async, %s (defaults: gz, "
                     "process-max 1)" % where, comparator=True),
                push("wal_pgbr_%s_async_zst" % target, group, "pgBackRest archive-push --archive-async, %s, zst, "
                     "process-max 4" % where, comparator=True),
            ]
        return methods

    def explore(self):
        return [self._seed_dump(), self._floor_dump()] + self._explore_dumps() + [self._seed_restore()] + \
            self._explore_restores() + [self._seed_base()] + self._explore_basebackups() + self._pgbr_backups()

    # -- explore: the collection with one module option changed -------------------------------

    def _dump(self, key, label, overrides):
        return Method(key, LOGICAL_BACKUP, label, lambda db, tag: self.collection.dump(db, tag, overrides, key=key))

    def _restore(self, key, label, source_key, overrides):
        return Method(key, LOGICAL_RESTORE, label, lambda db, tag: self.collection.restore(
            db, tag, overrides, source_key=source_key, key=key))

    def _base(self, key, label, overrides):
        return Method(key, PHYSICAL_BACKUP, label,
                      lambda db, tag: self.collection.basebackup(db, tag, overrides, key=key))

    def _explore_dumps(self):
        return [self._dump("x_zstd%d" % level, "custom, zstd:%d external -T0" % level, {"compression": "zstd:%d" % level})
                for level in (1, 3, 6)] + \
            [self._dump("x_gzip%d" % level, "custom, gzip:%d in pg_dump" % level, {"compression": "gzip:%d" % level})
             for level in (1, 6)] + \
            [self._dump("x_none", "custom, no compression", {"compression": "none"})] + \
            [self._dump("x_dir_gzip%d" % level, "directory -j%d, gzip:%d" % (CORES, level),
                        {"format": "directory", "jobs": CORES, "compression": "gzip:%d" % level}) for level in (1, 6)]

    def _explore_restores(self):
        j = CORES
        return [
            self._restore("x_restore_j1", "zstd:3 custom, jobs=1 (serial pg_restore)", "x_zstd3", {"jobs": 1}),
            self._restore("x_restore_j%d_server_mwm" % j, "zstd:3 custom, jobs=%d, maintenance_work_mem='' (server's)" % j,
                          "x_zstd3", {"jobs": j, "maintenance_work_mem": ""}),
            self._restore("x_restore_j%d" % j,
                          "zstd:3 custom, jobs=%d (defaults: maintenance_work_mem=256MB, toast lz4)" % j, "x_zstd3",
                          {"jobs": j}),
            self._restore("x_restore_j%d_toast_server" % j,
                          "zstd:3 custom, jobs=%d, toast_compression=server (pglz here)" % j, "x_zstd3",
                          {"jobs": j, "toast_compression": "server"}),
            self._restore("x_restore_j%d_1gb" % j, "zstd:3 custom, jobs=%d, maintenance_work_mem=1GB" % j, "x_zstd3",
                          {"jobs": j, "maintenance_work_mem": "1GB"}),
            self._restore("x_restore_dir_j%d" % j, "directory gzip:1, jobs=%d" % j, "x_dir_gzip1", {"jobs": j}),
        ]

    def _explore_basebackups(self):
        return [
            self._base("x_base_default", "tar server-zstd:level=1,workers=auto, CRC32C, verify (engine default)", {}),
            self._base("x_base_noverify", "as the default, verify=false", {"verify": False}),
            self._base("x_base_verify_after", "as the default, base.tar checked after pg_basebackup (not while it writes)",
                       {"verify_while_writing": False}),
            self._base("x_base_before_19", "the default before issue 19: level=3, base.tar checked after pg_basebackup",
                       {"compression": "server-zstd:level=3", "verify_while_writing": False}),
            self._base("x_base_one_thread", "tar server-zstd:level=1,workers=0 (one thread)",
                       {"compression": "server-zstd:level=1,workers=0"}),
            self._base("x_base_sha256", "as the default, manifest_checksums=SHA256", {"manifest_checksums": "SHA256"}),
            self._base("x_base_server_zstd3", "tar server-zstd:level=3,workers=auto (the default before)",
                       {"compression": "server-zstd:level=3"}),
            self._base("x_base_server_zstd2", "tar server-zstd:level=2,workers=auto", {"compression": "server-zstd:level=2"}),
            self._base("x_base_client_zstd", "tar client-zstd (zstd in pg_basebackup)", {"compression": "client-zstd"}),
            self._base("x_base_none", "tar uncompressed", {"compression": "none"}),
            self._base("x_base_client_gzip", "tar client-gzip", {"compression": "client-gzip"}),
            self._base("x_base_plain", "plain, verify (pg_verifybackup in place)", {"format": "plain", "compression": "none"}),
            self._base("x_base_fetch", "as the default, wal_method=fetch", {"wal_method": "fetch"}),
            self._base("x_base_spread", "as the default, checkpoint=spread", {"checkpoint": "spread"}),
        ]
