# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery: base backup + WAL archive -> a server promoted at the target.

Order of work (nothing on the target host changes until step 4):

1. pick the base backup: the newest whose end lies before the target, checksum verified;
2. check the WAL: every segment from the backup's start on is archived without a hole up to
   the target (a hole, or a target after the archive's end / before the oldest backup, is
   an error naming the cause);
3. decide where the server's data directory is (Debian cluster: version+name and
   pg_ctlcluster; otherwise a data directory + port and pg_ctl) and that it is stopped;
4. move an existing data directory aside to ``<datadir>.pre-pitr-<UTC time>`` (never
   deleted), extract the backup, check it with pg_verifybackup;
5. write restore_command (the installed ``todoapi-pgbackup-wal restore-wal``), the target
   and ``recovery_target_action = 'promote'`` into postgresql.auto.conf, create
   recovery.signal (without it PostgreSQL does crash recovery only and ignores every
   recovery setting: the seed's mistake);
6. start the server, wait until it left recovery (promoted), report timeline and the last
   replayed transaction, and reset the recovery target settings.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os
import re
import shutil
import subprocess
import tempfile
import time

from ..core import fsutil
from ..core import manifest as manifests
from . import base_backup
from . import wal_archive
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool

TARGET_KINDS = ("latest", "immediate", "time", "xid", "lsn", "name")
DEFAULT_WAL_COMMAND = "/usr/local/bin/todoapi-pgbackup-wal"
SOCKET_DIR = "/var/run/postgresql"
MANAGED_KEYS = ("restore_command", "recovery_target", "recovery_target_time", "recovery_target_xid",
                "recovery_target_lsn", "recovery_target_name", "recovery_target_action", "recovery_target_inclusive",
                "recovery_target_timeline", "recovery_end_command", "archive_cleanup_command")
BEGIN_MARK = "# BEGIN todoapi.pgbackup pitr_recovery"
END_MARK = "# END todoapi.pgbackup pitr_recovery"
WALDUMP_RECORD = re.compile(r"tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (\S+)(?: (.*))?$")
WALDUMP_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ?(\S*)")
RECOVERY_ENDED_EARLY = "recovery ended before configured recovery target was reached"


# -- the request --------------------------------------------------------------------------------

class PitrRequest(object):
    """Validated inputs of a point-in-time recovery."""

    def __init__(self, repository, archive_dir, target="latest", target_time=None, target_xid=None, target_lsn=None,
                 target_name=None, target_inclusive=True, backup=None, cluster_version=None, cluster_name=None,
                 data_dir=None, port=None, owner="postgres", wal_command=DEFAULT_WAL_COMMAND, restore_command=None,
                 identity_file=None, stream_dirs=None, stop_server=False, archive_after_recovery=True,
                 timeout=3600, pg_bin_dir=None):
        candidates = (("time", target_time), ("xid", target_xid), ("lsn", target_lsn), ("name", target_name))
        given = [(kind, value) for kind, value in candidates if value not in (None, "")]
        if len(given) > 1:
            raise PgBackupError("Give only one recovery target (got %s)." % ", ".join("target_" + pair[0] for pair in given),
                                hint="PostgreSQL stops at one target: a time, an xid, an LSN or a restore point name.")
        if given and target not in (None, "", "latest"):
            raise PgBackupError("target '%s' cannot be combined with target_%s." % (target, given[0][0]))
        if given:
            self.kind, value = given[0]
        else:
            self.kind, value = (target or "latest"), None
            if self.kind not in ("latest", "immediate"):
                raise PgBackupError("Unknown target '%s'." % target, hint="Use latest or immediate, or a target_* option.")
        self.target_value = self._parse_target(self.kind, value)
        self.target_inclusive = bool(target_inclusive)
        if not archive_dir:
            raise PgBackupError("No WAL archive directory given.", hint="Set 'archive_dir' to the WAL archive.")
        self.repository = repository
        self.archive_dir = os.path.abspath(archive_dir)
        self.stream_dirs = [os.path.abspath(d) for d in (stream_dirs or []) if d]
        self.backup = backup if backup not in (None, "", "auto") else None
        if cluster_name and data_dir:
            raise PgBackupError("Give either cluster_version+cluster_name (Debian cluster) or data_dir+port, not both.")
        if cluster_name:
            self.mode = "debian"
            if not cluster_version:
                raise PgBackupError("cluster_name needs cluster_version (e.g. 15).")
        elif data_dir:
            self.mode = "plain"
            if not port:
                raise PgBackupError("data_dir needs 'port' for the recovered server.")
        else:
            raise PgBackupError("No target server given.",
                                hint="Set cluster_version+cluster_name (Debian) or data_dir+port.")
        self.cluster_version = str(cluster_version) if cluster_version else None
        self.cluster_name = cluster_name
        self.data_dir = os.path.abspath(data_dir) if data_dir else None
        self.port = int(port) if port else None
        self.owner = owner or "postgres"
        self.wal_command = wal_command or DEFAULT_WAL_COMMAND
        self.restore_command = restore_command
        self.identity_file = identity_file
        self.stop_server = bool(stop_server)
        self.archive_after_recovery = bool(archive_after_recovery)
        self.timeout = int(timeout or 3600)
        self.pg_bin_dir = pg_bin_dir

    @staticmethod
    def _parse_target(kind, value):
        if kind == "time":
            return manifests.parse_time(value)
        if kind == "xid":
            try:
                number = int(str(value))
            except ValueError:
                raise PgBackupError("target_xid '%s' is not a transaction id." % value, hint="Give a number like 7421.")
            if number < 3:
                raise PgBackupError("target_xid %d is not a normal transaction id." % number)
            return number
        if kind == "lsn":
            base_backup.parse_lsn(value)
            return str(value).upper()
        if kind == "name":
            if len(str(value)) > 63:
                raise PgBackupError("Restore point names are at most 63 bytes long.")
            return str(value)
        return None

    def describe_target(self):
        if self.kind == "time":
            return "time %s" % manifests.isoformat(self.target_value)
        if self.kind in ("xid", "lsn", "name"):
            return "%s %s" % (self.kind, self.target_value)
        return self.kind


# -- choosing the base backup ---------------------------------------------------------------------

def _before_target(manifest, request, name_lsn=None):
    kind = request.kind
    if kind in ("latest", "immediate"):
        return True
    if kind == "time":
        return manifests.parse_time(manifest["finished_at"]) < request.target_value
    if kind == "xid":
        return int(manifest.get("next_xid_at_end") or 0) <= request.target_value
    lsn = name_lsn if kind == "name" else request.target_value
    return base_backup.parse_lsn(manifest["end_lsn"]) <= base_backup.parse_lsn(lsn)


def choose_backup(request, backups, name_lsn=None):
    """The newest verified base backup usable for the target; (manifest, skipped problems)."""
    if request.backup:
        manifest = request.repository.resolve(request.backup, kind="physical")
        if manifest.get("kind") != "physical":
            raise PgBackupError("Backup '%s' is not a physical base backup." % manifest["id"],
                                hint="PITR needs a backup taken with todoapi.pgbackup.pg_basebackup.")
        if not _before_target(manifest, request, name_lsn):
            raise PgBackupError("Base backup '%s' ends after the recovery target %s." % (
                manifest["id"], request.describe_target()), hint="Choose an older backup, or let the module pick one.")
        request.repository.verify_checksum(manifest)
        return manifest, []
    if not backups:
        raise PgBackupError("Repository '%s' holds no physical base backup." % request.repository.path,
                            hint="Take one with todoapi.pgbackup.pg_basebackup first.")
    usable = [m for m in backups if _before_target(m, request, name_lsn)]
    if not usable:
        oldest = backups[0]
        raise PgBackupError("The recovery target %s lies before the end of the oldest base backup '%s' (finished %s, "
                            "end LSN %s)." % (request.describe_target(), oldest["id"], oldest["finished_at"],
                                              oldest["end_lsn"]),
                            hint="A base backup can only be rolled forward; nothing older is kept, so this point "
                                 "in time cannot be recovered.")
    skipped = []
    for manifest in reversed(usable):
        try:
            request.repository.verify_checksum(manifest)
            return manifest, skipped
        except PgBackupError as exc:
            skipped.append(str(exc))
    raise PgBackupError("Every base backup usable for %s failed its checksum: %s" % (
        request.describe_target(), "; ".join(skipped)), hint="The repository is damaged; restore it from a copy.")


# -- reading the WAL archive ---------------------------------------------------------------------

def _segment_size(manifest):
    return int(manifest.get("wal_segment_size") or wal_archive.DEFAULT_SEGMENT_SIZE)


def _segno(name, manifest):
    return wal_archive.parse_segment(name, _segment_size(manifest))[1]


def check_wal(request, manifest):
    """Contiguous WAL after the backup: returns the range report (raises on holes that matter)."""
    size = _segment_size(manifest)
    timeline = int(manifest["timeline"])
    in_backup = range(_segno(manifest["wal_start_segment"], manifest), _segno(manifest["wal_end_segment"], manifest) + 1)
    report = wal_archive.wal_range_present(request.archive_dir, timeline, manifest["wal_start_segment"],
                                           segment_size=size, stream_dirs=request.stream_dirs, also_present=in_backup)
    newer = [t for t in wal_archive.history_timelines(request.archive_dir) if t > timeline]
    report["newer_timelines"] = newer
    if not report["complete"] and request.kind == "latest":
        raise PgBackupError("The WAL archive has a hole after base backup '%s': %d segment(s) missing, first %s "
                            "(WAL is archived up to %s). Recovering to 'latest' would silently stop at the hole."
                            % (manifest["id"], report["missing_count"], report["missing"][0], report["last"]),
                            hint="Recover to a target before %s, or find the missing segments first." % report["missing"][0])
    return report


def _decode_segments(request, names, into):
    for name in names:
        try:
            wal_archive.restore_segment(name, os.path.join(into, name), request.archive_dir,
                                        identity_file=request.identity_file, stream_dirs=request.stream_dirs)
        except wal_archive.WalSegmentMissing:
            break


def scan_wal(request, manifest, first, last, waldump):
    """Commits, aborts and restore points that pg_waldump finds in segments first..last."""
    size = _segment_size(manifest)
    timeline = int(manifest["timeline"])
    names = [wal_archive.segment_file_name(timeline, segno, size) for segno in range(first, last + 1)]
    work = tempfile.mkdtemp(prefix=".tmp-walscan-", dir=request.repository.path
                            if os.path.isdir(request.repository.path) else None)
    try:
        _decode_segments(request, names, work)
        present = sorted(n for n in os.listdir(work) if wal_archive.SEGMENT.match(n))
        if not present:
            return []
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        completed = subprocess.run([waldump, "-p", work, present[0], present[-1]], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, check=False)
        # pg_waldump exits non-zero at the end of the written WAL (zero pages); the records before count.
        return parse_waldump(completed.stdout.decode("utf-8", "replace"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse_waldump(text):
    events = []
    for line in text.splitlines():
        match = WALDUMP_RECORD.search(line)
        if not match:
            continue
        xid, lsn, what, rest = int(match.group(1)), match.group(2), match.group(3), match.group(4) or ""
        if what in ("COMMIT", "ABORT", "COMMIT_PREPARED", "ABORT_PREPARED"):
            stamp = WALDUMP_TIME.match(rest)
            moment = None
            if stamp:
                moment = datetime.datetime.strptime(stamp.group(1).split(".")[0], "%Y-%m-%d %H:%M:%S")
                fraction = stamp.group(1).partition(".")[2]
                moment = moment.replace(microsecond=int((fraction + "000000")[:6]) if fraction else 0,
                                        tzinfo=datetime.timezone.utc)
            events.append({"type": what.lower(), "xid": xid, "lsn": lsn, "time": moment})
        elif what == "RESTORE_POINT":
            events.append({"type": "restore_point", "name": rest.strip(), "lsn": lsn})
    return events


def locate_target(request, backups, waldump):
    """For a restore point name: the LSN of the newest such restore point in the archive."""
    if request.kind != "name":
        return None
    oldest = backups[0] if backups else None
    if oldest is None:
        return None
    report = wal_archive.wal_range_present(request.archive_dir, int(oldest["timeline"]), oldest["wal_start_segment"],
                                           segment_size=_segment_size(oldest), stream_dirs=request.stream_dirs)
    last = report["last_contiguous"] or oldest["wal_end_segment"]
    events = scan_wal(request, oldest, _segno(oldest["wal_start_segment"], oldest), _segno(last, oldest), waldump)
    points = [e for e in events if e["type"] == "restore_point" and e["name"] == request.target_value]
    if not points:
        raise PgBackupError("No restore point named '%s' is in the WAL archive (searched from %s to %s)." % (
            request.target_value, oldest["wal_start_segment"], last),
            hint="Check the name (pg_create_restore_point), or that the WAL holding it was archived.")
    return points[-1]["lsn"]


def check_target_in_archive(request, manifest, report, waldump):
    """Raise when the target lies after the end of the contiguous WAL; returns what is known of that end."""
    size = _segment_size(manifest)
    end_segno = _segno(report["last_contiguous"], manifest) if report["last_contiguous"] else \
        _segno(manifest["wal_end_segment"], manifest)
    end_lsn = (end_segno + 1) * size
    info = {"last_contiguous_segment": report["last_contiguous"], "archive_end_lsn": base_backup.format_lsn(end_lsn)}
    start = _segno(manifest["wal_start_segment"], manifest)
    if request.kind == "lsn":
        target = base_backup.parse_lsn(request.target_value)
        if target >= end_lsn:
            raise PgBackupError("target_lsn %s is after the end of the archived WAL (%s, up to segment %s)." % (
                request.target_value, info["archive_end_lsn"], report["last_contiguous"]),
                hint="Use an earlier LSN, or target latest.")
    elif request.kind == "time":
        last_commit = None
        segno = end_segno
        while segno >= start and last_commit is None:
            first = max(start, segno - 3)
            events = [e for e in scan_wal(request, manifest, first, segno, waldump) if e.get("time")]
            if events:
                last_commit = max(e["time"] for e in events)
            segno = first - 1
        info["last_commit_time"] = manifests.isoformat(last_commit) if last_commit else None
        if last_commit is None or last_commit <= request.target_value:
            raise PgBackupError("target_time %s is after the last transaction in the WAL archive (%s): PostgreSQL "
                                "would end recovery before reaching it." % (
                                    manifests.isoformat(request.target_value), info["last_commit_time"] or "none"),
                                hint="Use target latest to recover everything archived, or an earlier time.")
    elif request.kind == "xid":
        events = scan_wal(request, manifest, start, end_segno, waldump)
        done = [e for e in events if e["type"] in ("commit", "abort", "commit_prepared", "abort_prepared")
                and e["xid"] == request.target_value]
        if not done:
            highest = max([e.get("xid", 0) for e in events] or [0])
            raise PgBackupError("Transaction %d did not commit in the archived WAL after base backup '%s' (highest "
                                "transaction there: %d)." % (request.target_value, manifest["id"], highest),
                                hint="Check the xid; a transaction that never committed cannot be a recovery target.")
        if done[-1]["type"].startswith("abort"):
            raise PgBackupError("Transaction %d was rolled back, so it cannot be a recovery target." % request.target_value,
                                hint="Use the xid of a committed transaction, or a time.")
    return info


# -- the target server -------------------------------------------------------------------------

class TargetServer(object):
    """A Debian cluster (pg_ctlcluster) or a plain data directory (pg_ctl)."""

    def __init__(self, request, bin_dir):
        self.request = request
        self.bin_dir = bin_dir
        self.owner = request.owner
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
        """Start without waiting for the end of recovery (that is polled separately)."""
        if self.request.mode == "debian":
            argv = ["pg_ctlcluster", self.request.cluster_version, self.request.cluster_name, "start"]
            completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
            return completed.stdout.decode("utf-8", "replace")
        argv = self._as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-W",
                               "start"])
        _run(argv, "starting the %s" % self.describe())
        return ""

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

    def sql(self, statement):
        """Run one statement over the Unix socket as the OS owner (peer authentication)."""
        argv = self._as_owner([os.path.join(self.bin_dir, "psql"), "-X", "-A", "-t", "-q", "-h", SOCKET_DIR,
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


def _owner_ids(owner):
    return fsutil.resolve_owner(owner)


def _chown_tree(path, ids):
    if not ids:
        return
    for root, dirs, files in os.walk(path):
        os.lchown(root, ids[0], ids[1])
        for name in dirs + files:
            os.lchown(os.path.join(root, name), ids[0], ids[1])


def _quote(value):
    return "'%s'" % str(value).replace("'", "''")


def restore_command_for(request):
    if request.restore_command:
        return request.restore_command
    parts = [request.wal_command, "restore-wal", "%f", "%p", "--archive-dir", request.archive_dir]
    if request.identity_file:
        parts += ["--identity", request.identity_file]
    for directory in request.stream_dirs:
        parts += ["--stream-dir", directory]
    return " ".join(_shell_quote(p) if p not in ("%f", "%p") else p for p in parts)


def _shell_quote(text):
    if re.match(r"^[A-Za-z0-9_./:=@%+-]+$", text):
        return text
    return "'%s'" % text.replace("'", "'\"'\"'")


def recovery_settings(request, target_server):
    settings = [("restore_command", restore_command_for(request)), ("recovery_target_action", "promote")]
    if request.kind == "immediate":
        settings.append(("recovery_target", "immediate"))
    elif request.kind == "time":
        settings.append(("recovery_target_time", request.target_value.strftime("%Y-%m-%d %H:%M:%S.%f+00")))
    elif request.kind == "xid":
        settings.append(("recovery_target_xid", str(request.target_value)))
    elif request.kind == "lsn":
        settings.append(("recovery_target_lsn", request.target_value))
    elif request.kind == "name":
        settings.append(("recovery_target_name", request.target_value))
    if request.kind in ("time", "xid", "lsn"):
        settings.append(("recovery_target_inclusive", "on" if request.target_inclusive else "off"))
    # A recovered server has no synchronous standby (pg_receivewal) yet: keeping the backup's
    # synchronous_standby_names would make every commit hang. Re-run role wal_archiving to re-enable it.
    settings.append(("synchronous_standby_names", ""))
    if not request.archive_after_recovery:
        settings.append(("archive_mode", "off"))
    if request.mode == "plain":
        settings.append(("port", str(target_server.port)))
    return settings


def write_recovery_config(data_dir, settings):
    """Replace our block (and any line setting the same keys) in postgresql.auto.conf; add recovery.signal."""
    path = os.path.join(data_dir, "postgresql.auto.conf")
    keys = set(MANAGED_KEYS) | set(pair[0] for pair in settings)
    kept = []
    if os.path.exists(path):
        with open(path) as handle:
            inside = False
            for line in handle.read().splitlines():
                if line.strip() == BEGIN_MARK:
                    inside = True
                    continue
                if line.strip() == END_MARK:
                    inside = False
                    continue
                key = line.split("=", 1)[0].strip().lower() if "=" in line and not line.lstrip().startswith("#") else None
                if inside or key in keys:
                    continue
                kept.append(line)
    if not kept:
        kept = ["# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command."]
    lines = kept + [BEGIN_MARK] + ["%s = %s" % (key, _quote(value)) for key, value in settings] + [END_MARK]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(data_dir, "recovery.signal"), "w"):
        pass


def _ensure_plain_config(data_dir, port):
    """A data directory taken from a Debian cluster has no postgresql.conf/pg_hba.conf: add minimal ones."""
    conf = os.path.join(data_dir, "postgresql.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as handle:
            handle.write("# written by todoapi.pgbackup pitr_recovery (the backup came without one)\n"
                         "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n" % (port, SOCKET_DIR))
    hba = os.path.join(data_dir, "pg_hba.conf")
    if not os.path.exists(hba):
        with open(hba, "w") as handle:
            handle.write("# written by todoapi.pgbackup pitr_recovery\nlocal all all peer\n"
                         "host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n")
    ident = os.path.join(data_dir, "pg_ident.conf")
    if not os.path.exists(ident):
        open(ident, "w").close()


# -- plan and run -------------------------------------------------------------------------------

def plan(request):
    """Everything decided and checked before the target host is touched (check mode stops here)."""
    repo = request.repository
    backups = repo.list(kind="physical")
    major = int((backups[-1]["server_version_num"] if backups else 150000)) // 10000
    waldump = find_tool("pg_waldump", major, request.pg_bin_dir)[0]
    name_lsn = locate_target(request, backups, waldump)
    manifest, skipped = choose_backup(request, backups, name_lsn)
    report = check_wal(request, manifest)
    archive_info = check_target_in_archive(request, manifest, report, waldump)
    bin_dir = request.pg_bin_dir or os.path.dirname(find_tool("pg_ctl", int(manifest["server_version_num"]) // 10000,
                                                              request.pg_bin_dir)[0])
    server = TargetServer(request, bin_dir)
    return {
        "backup": manifest, "skipped_backups": skipped, "wal": report, "archive": archive_info,
        "target": {"kind": request.kind, "value": request.target_value if request.kind != "time"
                   else manifests.isoformat(request.target_value), "inclusive": request.target_inclusive,
                   "restore_point_lsn": name_lsn},
        "server": server, "data_dir": server.data_dir, "port": server.port,
        "restore_command": restore_command_for(request),
    }


def public_plan(details):
    result = dict(details)
    server = result.pop("server")
    result["backup_id"] = result.pop("backup")["id"]
    result["server_running"] = server.is_running()
    result["data_dir_exists"] = os.path.isdir(details["data_dir"]) and bool(os.listdir(details["data_dir"]))
    return result


def recover(request):
    details = plan(request)
    server = details["server"]
    manifest = details["backup"]
    if server.is_running():
        if not request.stop_server:
            raise PgBackupError("The %s is running." % server.describe(),
                                hint="Stop it first, or set stop_server: true (its data directory is then moved aside, "
                                     "not deleted).")
        server.stop()
    ids = _owner_ids(request.owner)
    data_dir = server.data_dir
    stamp = manifests.utcnow().strftime("%Y%m%dT%H%M%SZ")
    moved_to = None
    started = False
    try:
        if os.path.exists(data_dir) and (not os.path.isdir(data_dir) or os.listdir(data_dir)):
            moved_to = "%s.pre-pitr-%s" % (data_dir.rstrip("/"), stamp)
            os.rename(data_dir, moved_to)
        if not os.path.isdir(data_dir):
            os.makedirs(data_dir, fsutil.DIR_MODE)
        os.chmod(data_dir, fsutil.DIR_MODE)
        artifact = request.repository.artifact_path(manifest)
        base_backup.extract_backup(artifact, data_dir)
        base_backup.verify_data_directory(data_dir, os.path.join(artifact, "backup_manifest"), server.bin_dir)
        for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            fsutil.remove_quietly(os.path.join(data_dir, leftover))
        if request.mode == "plain":
            _ensure_plain_config(data_dir, server.port)
        write_recovery_config(data_dir, recovery_settings(request, server))
        _chown_tree(data_dir, ids)
        fsutil.fsync_tree(data_dir)
        log_offset = server.log_size()
        started = True
        start_output = server.start()
        result = wait_for_promotion(request, server, log_offset, start_output)
    except BaseException as exc:
        if not started:
            _roll_back(data_dir, moved_to, stamp)
            if isinstance(exc, PgBackupError) and moved_to:
                exc.hint = (exc.hint or "") + " The previous data directory was put back in place."
        elif isinstance(exc, PgBackupError) and moved_to:
            exc.hint = (exc.hint or "") + " The previous data directory is kept at %s." % moved_to
        if isinstance(exc, OSError):
            raise fsutil.describe_os_error(exc, data_dir)
        raise
    reset_recovery_targets(server)
    result.update({"backup_id": manifest["id"], "backup_end_lsn": manifest["end_lsn"], "data_dir": data_dir,
                   "previous_data_dir": moved_to, "port": server.port, "wal": details["wal"],
                   "archive": details["archive"], "target": details["target"],
                   "skipped_backups": details["skipped_backups"], "restore_command": details["restore_command"]})
    return result


def _roll_back(data_dir, moved_to, stamp):
    if not moved_to:
        return
    try:
        if os.path.exists(data_dir):
            os.rename(data_dir, "%s.failed-pitr-%s" % (data_dir.rstrip("/"), stamp))
        os.rename(moved_to, data_dir)
    except OSError:
        pass


def _fatal_lines(log):
    """FATAL/PANIC lines of the server itself (not the 'starting up' answers to our own polling)."""
    return [line for line in log.splitlines() if re.search(r"\b(FATAL|PANIC):", line)
            and "the database system is" not in line]


def wait_for_promotion(request, server, log_offset, start_output):
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
            raise recovery_failure(request, server.log_since(log_offset) or start_output)
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


def reset_recovery_targets(server):
    """After promotion the target settings are no longer wanted (a later restart must not reuse them)."""
    for key in ("recovery_target", "recovery_target_time", "recovery_target_xid", "recovery_target_lsn",
                "recovery_target_name", "recovery_target_action", "recovery_target_inclusive"):
        server.sql("ALTER SYSTEM RESET %s" % key)
    server.sql("SELECT pg_reload_conf()")
