# -*- coding: utf-8 -*-
"""WAL push: how many segments per second archive_command stores, the collection's helper
(``todoapi-pgbackup-wal archive-wal``, synchronous and asynchronous) against pgBackRest's
``archive-push`` (synchronous and ``--archive-async``), into a directory and into S3.

PostgreSQL's own archiver drives every method, as on a busy primary that fell behind: with
``archive_command`` empty, WAL piles up (``BENCH_WAL_SEGMENTS`` ready segments written by INSERTs,
so real, compressible WAL); then the method's command is set and the clock runs until
``pg_stat_archiver`` reports the last of them archived.

S3 is moto_server (the tests' S3 server) behind a TLS front (harness/tls_proxy.py), for pgBackRest
(which speaks only HTTPS to S3) and the collection alike (``AWS_CA_BUNDLE`` for boto3). pgBackRest runs
with its defaults (gz level 6; asynchronous: one process) and tuned like the collection's defaults (zst
level 3, ``PROCESS_MAX`` segments at a time).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import time

from harness.common import log, mkdir, rmtree
from harness.paths import ROOT
from harness.processes import StepFailed
from harness.timing import Timed
from harness.workspace import IDLE_ARCHIVE_COMMAND
from methods.pgbackrest import STANZA

SEGMENTS = int(os.environ.get("BENCH_WAL_SEGMENTS", "32"))
PROCESS_MAX = 4
S3_REGION = "us-east-1"
S3_KEY, S3_SECRET = "AKIABENCHWALPUSH0001", "bench-wal-push-secret"
TLS_PROXY = os.path.join(ROOT, "bench", "harness", "tls_proxy.py")
PAUSED_ARCHIVE_COMMAND = ""  # archive_mode on, no command: PostgreSQL keeps the segments .ready
FILL_SQL = ("INSERT INTO wal_push_fill SELECT g, md5(g::text) || md5(random()::text) || repeat('todo ', 8) "
            "FROM generate_series(1, 100000) g")


class WalPush(object):
    """The commands compared; ``setup()`` (once, at the first measurement) starts moto and writes the configs."""

    def __init__(self, workspace, pgbackrest):
        self.ws = workspace
        self.pgbr = pgbackrest
        self.commands = None
        self.markers = None
        self.moto = self.proxy = None

    # -- setup --------------------------------------------------------------------------------------

    def setup(self):
        if self.commands is not None:
            return
        from tests.lib.archiving import install_wal_tool
        rmtree(self.ws.path("walpush"))  # what an earlier, failed setup left
        base = mkdir(self.ws.path("walpush"), mode=0o755)
        wrapper = install_wal_tool(base)
        self.stop()
        cert = self._start_moto(base)
        bucket = "bench-wal"
        self._s3_client(cert).create_bucket(Bucket=bucket)
        credentials = self._postgres_file(os.path.join(base, "aws-credentials"),
                                          "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (S3_KEY, S3_SECRET))
        s3 = {"archive_url": "s3://%s/collection" % bucket, "credentials_file": credentials,
              "storage_options": {"s3_endpoint_url": self.endpoint, "s3_region": S3_REGION}}
        directory = {"archive_dir": mkdir(os.path.join(base, "archive"), owner="postgres", mode=0o700)}

        def helper(name, settings, env=""):
            config = dict(settings, compress="zstd", compress_level=3, process_max=PROCESS_MAX,
                          spool_dir=mkdir(os.path.join(base, "spool-" + name), owner="postgres", mode=0o700))
            path = self._postgres_file(os.path.join(base, name + ".json"), json.dumps(config))
            return "%s%s archive-wal %%p %%f --config %s" % (env, wrapper, path), path

        ca = "AWS_CA_BUNDLE=%s " % cert
        pgbr_s3 = self._pgbackrest_s3_conf(base, bucket, cert)
        methods = {
            "wal_coll_dir": helper("dir", directory),
            "wal_coll_dir_async": helper("dir-async", dict(directory, **{"async": True})),
            "wal_pgbr_dir": self._pgbackrest_command(self.pgbr.conf, base, "dir"),
            "wal_pgbr_dir_async": self._pgbackrest_command(self.pgbr.conf, base, "dir", async_push=True),
            "wal_pgbr_dir_async_zst": self._pgbackrest_command(self.pgbr.conf, base, "dir", async_push=True, tuned=True),
            "wal_coll_s3": helper("s3", s3, ca),
            "wal_coll_s3_async": helper("s3-async", dict(s3, **{"async": True}), ca),
            "wal_pgbr_s3": self._pgbackrest_command(pgbr_s3, base, "s3"),
            "wal_pgbr_s3_async": self._pgbackrest_command(pgbr_s3, base, "s3", async_push=True),
            "wal_pgbr_s3_async_zst": self._pgbackrest_command(pgbr_s3, base, "s3", async_push=True, tuned=True),
        }
        # a method's background process names its config (the collection) or spool (pgBackRest)
        self.markers = dict((key, marker) for key, (command, marker) in methods.items())
        self.commands = dict((key, command) for key, (command, marker) in methods.items())
        self.ws.cluster.sql("CREATE TABLE IF NOT EXISTS wal_push_fill (id bigint, payload text)")

    def _start_moto(self, base):
        """moto_server behind the TLS front (harness/tls_proxy.py) with a certificate for localhost/127.0.0.1;
        returns the certificate (its own CA)."""
        from tests.lib.pgcluster import find_free_port
        from tests.lib.servers import MotoServer, wait_for_port
        cert, key = os.path.join(base, "moto.crt"), os.path.join(base, "moto.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        os.chmod(cert, 0o644)
        self.moto = MotoServer.start()
        self.port = find_free_port()
        with open(os.path.join(base, "tls_proxy.log"), "w") as handle:
            self.proxy = subprocess.Popen([sys.executable, TLS_PROXY, cert, key, str(self.port), str(self.moto.port)],
                                          stdout=handle, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proxy, 30, os.path.join(base, "tls_proxy.log"), "tls_proxy")
        self.endpoint = "https://127.0.0.1:%d" % self.port
        return cert

    def _s3_client(self, cert):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION, aws_access_key_id=S3_KEY,
                            aws_secret_access_key=S3_SECRET, verify=cert)

    @staticmethod
    def _postgres_file(path, text):
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        os.chown(path, *_postgres_ids())
        return path

    def _pgbackrest_s3_conf(self, base, bucket, cert):
        """pgBackRest's stanza on the same S3 server (its own config, so its own repository)."""
        conf = os.path.join(base, "pgbackrest-s3.conf")
        with open(self.pgbr.conf) as handle:
            text = handle.read()
        # pgBackRest checks the certificate's DNS names only: localhost (127.0.0.1 here, where moto listens)
        repo = ["repo1-type=s3", "repo1-path=/pgbackrest", "repo1-s3-bucket=%s" % bucket, "repo1-s3-endpoint=localhost",
                "repo1-storage-port=%d" % self.port, "repo1-s3-region=%s" % S3_REGION, "repo1-s3-key=%s" % S3_KEY,
                "repo1-s3-key-secret=%s" % S3_SECRET, "repo1-s3-uri-style=path", "repo1-storage-ca-file=%s" % cert]
        lock = mkdir(os.path.join(base, "pgbr-lock-s3"), owner="postgres", mode=0o700)
        lines = [line for line in text.splitlines() if not line.startswith(("repo1-path=", "lock-path="))]
        lines.insert(lines.index("[global]") + 1, "\n".join(repo + ["lock-path=%s" % lock]))
        self._postgres_file(conf, "\n".join(lines) + "\n")
        done = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", "--config=%s" % conf, "--stanza=%s" % STANZA,
                               "--log-level-console=error", "stanza-create"], capture_output=True, text=True, check=False)
        if done.returncode:
            raise StepFailed("pgbackrest stanza-create on S3 failed: %s" % (done.stdout + done.stderr).strip()[-1500:])
        return conf

    def _pgbackrest_command(self, conf, base, name, async_push=False, tuned=False):
        """pgBackRest's archive-push with its defaults (gz level 6; asynchronous: process-max 1), or ``tuned`` as the
        collection's defaults are (zst level 3, PROCESS_MAX at a time)."""
        spool = mkdir(os.path.join(base, "pgbr-spool-%s%s%s" % (name, "-async" if async_push else "", "-zst" if tuned else "")),
                      owner="postgres", mode=0o700)
        options = ["--compress-type=%s" % ("zst" if tuned else "gz"), "--compress-level=%d" % (3 if tuned else 6)]
        if async_push:
            options += ["--archive-async", "--spool-path=%s" % spool, "--process-max=%d" % (PROCESS_MAX if tuned else 1)]
        return "pgbackrest --config=%s --stanza=%s %s archive-push %%p" % (conf, STANZA, " ".join(options)), spool

    # -- measurement ------------------------------------------------------------------------------------

    def push(self, db, tag, key):
        """Pile up SEGMENTS ready segments, then time archive_command (the method's) until all are archived."""
        self.setup()
        cluster = self.ws.cluster
        command = self.commands[key]
        self.ws.set_archive_command(PAUSED_ARCHIVE_COMMAND)
        try:
            last, count = self._pile_up(cluster)
            failed_before = cluster.scalar("SELECT failed_count FROM pg_stat_archiver")
            with Timed(self.ws) as timed:
                self.ws.set_archive_command(command)
                self._wait_archived(cluster, last, failed_before)
            failures = cluster.scalar("SELECT failed_count FROM pg_stat_archiver") - failed_before
        finally:
            self.ws.set_archive_command(IDLE_ARCHIVE_COMMAND)
            cluster.sql("TRUNCATE wal_push_fill")
            self._wait_for_pusher(key)
        fields = timed.fields()
        return dict(fields, segments=count, segments_per_second=count / fields["seconds"], archive_failures=failures,
                    command=command.replace(self.ws.work, "<work>"))

    def _ready(self, cluster):
        status = os.path.join(cluster.data_dir, "pg_wal", "archive_status")
        return sorted(name[:-len(".ready")] for name in os.listdir(status) if name.endswith(".ready"))

    def _pile_up(self, cluster):
        while len(self._ready(cluster)) < SEGMENTS:
            cluster.sql(FILL_SQL)
            cluster.sql("SELECT pg_switch_wal()")
        ready = self._ready(cluster)
        return ready[-1], len(ready)

    def _wait_archived(self, cluster, last, failed_before, timeout=1800):
        """Until ``last`` is archived; a method whose archive_command fails 3 times (PostgreSQL then waits a
        minute before it tries again) has failed."""
        deadline = time.monotonic() + timeout
        query = "SELECT coalesce(last_archived_wal >= %s, false), failed_count FROM pg_stat_archiver"
        while True:
            done, failed = cluster.sql(query, (last,))[0]
            if done:
                return
            if failed - failed_before >= 3 or time.monotonic() > deadline:
                raise StepFailed("segment %s not archived (%d failures): %s" % (
                    last, failed - failed_before, cluster.log_tail(6)))
            time.sleep(0.05)

    def _wait_for_pusher(self, key, timeout=60):
        """An asynchronous method's background process must be gone before the next method runs (it would
        store that method's segments into its own archive)."""
        marker = self.markers[key]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _processes_naming(marker):
            time.sleep(0.2)

    def stop(self):
        from tests.lib.servers import stop_process
        if self.moto is not None:
            stop_process(self.proxy)
            self.moto.stop()
            self.moto = self.proxy = None
            log("moto_server of the WAL push methods stopped")


def _processes_naming(text):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                if entry.isdigit() and text.encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def _postgres_ids():
    import pwd
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid
