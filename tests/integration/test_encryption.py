# -*- coding: utf-8 -*-
"""Encryption at rest with age: only ciphertext ever reaches the repository, restores need the
right private key, and a wrong or missing key fails clearly without touching the target."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention, status, verify  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli  # noqa: E402
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository   # noqa: E402
from tests.lib.dbcompare import assert_same_data, table_fingerprints   # noqa: E402
from tests.lib.engine import spec_of   # noqa: E402
from tests.lib.procscan import Poller   # noqa: E402
from tests.lib.tododb import create_todo_db   # noqa: E402

AGE_HEADER = b"age-encryption.org/v1\n"
PGDMP = b"PGDMP"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class AgeKey(object):
    def __init__(self, directory, name):
        self.identity_file = os.path.join(directory, name + ".key")
        subprocess.run(["age-keygen", "-o", self.identity_file], check=True, capture_output=True)
        self.recipient = subprocess.run(["age-keygen", "-y", self.identity_file], check=True, capture_output=True,
                                        text=True).stdout.strip()


@pytest.fixture
def keys():
    """Two age keypairs: 'restore' (the backup's recipient) and 'stranger' (not a recipient)."""
    directory = tempfile.mkdtemp(prefix="pgbackup-keys-")
    os.chmod(directory, 0o700)
    try:
        yield {"restore": AgeKey(directory, "restore"), "stranger": AgeKey(directory, "stranger")}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def target_db(pg):
    name = "Decrypted %s" % uuid.uuid4().hex[:6]
    yield name
    pg.drop_database(name)


def backup(cluster, database, repo_path, recipients, **options):
    request = logical_backup.LogicalBackupRequest(database, LocalRepository(repo_path), spec_of(cluster),
                                                  encrypt_recipients=recipients, **options)
    return logical_backup.backup(request)


def restore_request(cluster, repo_path, source, target, identity_file=None, **options):
    return logical_restore.LogicalRestoreRequest(LocalRepository(repo_path), spec_of(cluster), database=target,
                                                 source_database=source, identity_file=identity_file, **options)


def head(path, size=64):
    with open(path, "rb") as handle:
        return handle.read(size)


def pgbackup_temp_files():
    return set(name for name in os.listdir(tempfile.gettempdir()) if name.startswith("pgbackup-restore-"))


class TempFileWatcher(Poller):
    """Polls a repository during a backup and records the first bytes of every .tmp- file seen."""

    def __init__(self, path):
        super(TempFileWatcher, self).__init__(interval=0.005)
        self.path = path
        self.seen = {}

    def poll(self):
        for name in os.listdir(self.path):
            if not name.startswith(".tmp-"):
                continue
            try:
                start = head(os.path.join(self.path, name), len(AGE_HEADER))
            except (IOError, OSError):
                continue
            if start:
                self.seen.setdefault(name, set()).add(start)


def test_encrypted_backup_holds_only_ciphertext_and_restores_with_the_right_key(pg, todo_db, tmp_repo, keys, target_db):
    # A somewhat larger table so the dump streams for a while and the watcher sees the temp file.
    pg.sql('CREATE TABLE "Padding" AS SELECT g AS id, md5(g::text) || repeat(\'x\', 200) AS body '
           'FROM generate_series(1, 60000) g', dbname=todo_db.name)
    with TempFileWatcher(tmp_repo) as watcher:
        manifest = backup(pg, todo_db.name, tmp_repo, [keys["restore"].recipient])

    # Every temp file ever seen in the repository started with the age header (never plaintext).
    assert watcher.seen, "the watcher never saw the backup's temporary file"
    for name, starts in watcher.seen.items():
        assert all(AGE_HEADER.startswith(start) or start.startswith(AGE_HEADER) for start in starts), (name, starts)
    assert not [n for n in os.listdir(tmp_repo) if n.startswith(".tmp-")]

    # Manifest: method and recipients; artifact and globals are age files, not pg_dump archives.
    assert manifest["encryption"] == {"method": "age", "recipients": [keys["restore"].recipient]}
    with open(os.path.join(tmp_repo, manifest["id"] + ".manifest.json")) as handle:
        assert json.load(handle)["encryption"]["recipients"] == [keys["restore"].recipient]
    assert manifest["artifact"].endswith(".dump.zst.age")
    artifact = os.path.join(tmp_repo, manifest["artifact"])
    globals_file = os.path.join(tmp_repo, manifest["extra_files"]["globals"]["artifact"])
    for path in (artifact, globals_file):
        start = head(path)
        assert start.startswith(AGE_HEADER) and PGDMP not in start and ZSTD_MAGIC not in start
    with open(artifact, "rb") as handle:
        body = handle.read()
    assert b"CREATE TABLE" not in body and b"Todos" not in body
    listing = subprocess.run([pg.tool("pg_restore"), "-l", artifact], capture_output=True, text=True, check=False)
    assert listing.returncode != 0

    # Restore with the right identity (jobs=2 decodes to a private temp file: it must be gone after).
    temp_before = pgbackup_temp_files()
    result = logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, target_db,
                                                     keys["restore"].identity_file, jobs=2))
    assert result["tables"] == manifest["tables"]
    assert result["tables"]["public.Padding"] == 60000
    assert_same_data((pg, todo_db.name), (pg, target_db))
    assert pgbackup_temp_files() == temp_before
    assert not [n for n in os.listdir(tmp_repo) if n.startswith(".tmp-")]


def test_wrong_or_missing_identity_fails_clearly_and_leaves_target_untouched(pg, todo_db, tmp_repo, keys):
    backup(pg, todo_db.name, tmp_repo, [keys["restore"].recipient])
    # The target is the live database with changed data: a failed restore must not touch it.
    pg.sql('DELETE FROM "Todos" WHERE "Id" % 2 = 0', dbname=todo_db.name)
    before = table_fingerprints(pg, todo_db.name)
    repo_before = sorted(os.listdir(tmp_repo))
    databases_before = set(row[0] for row in pg.sql("SELECT datname FROM pg_database"))
    temp_before = pgbackup_temp_files()

    for options in ({}, {"jobs": 2}, {"tables": ["Todos"]}):
        with pytest.raises(PgBackupError) as wrong:
            logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, todo_db.name,
                                                    keys["stranger"].identity_file, force=True, **options))
        assert wrong.value.message == "The age identity does not match any recipient of this backup (wrong key).", options
        assert "recipients in the manifest" in wrong.value.hint

        with pytest.raises(PgBackupError) as missing:
            logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, todo_db.name, None, force=True,
                                                    **options))
        assert missing.value.message == "This backup is encrypted with age and no identity (private key) file was given."
        assert "identity_file" in missing.value.hint

        assert table_fingerprints(pg, todo_db.name) == before, options
        assert set(row[0] for row in pg.sql("SELECT datname FROM pg_database")) == databases_before
        assert sorted(os.listdir(tmp_repo)) == repo_before
        assert pgbackup_temp_files() == temp_before

    with pytest.raises(PgBackupError, match="Identity file '/nonexistent/key' does not exist"):
        logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, todo_db.name, "/nonexistent/key", force=True))
    assert table_fingerprints(pg, todo_db.name) == before


def test_several_recipients_any_key_restores(pg, tmp_repo, keys, target_db):
    name = "TodoDb_enc_%s" % uuid.uuid4().hex[:6]
    create_todo_db(pg, dbname=name, size_mb=1)
    try:
        manifest = backup(pg, name, tmp_repo, [keys["restore"].recipient, keys["stranger"].recipient], globals_=False)
        assert manifest["encryption"]["recipients"] == [keys["restore"].recipient, keys["stranger"].recipient]
        result = logical_restore.restore(restore_request(pg, tmp_repo, name, target_db, keys["stranger"].identity_file))
        assert result["tables"] == manifest["tables"]
    finally:
        pg.drop_database(name)


def test_bad_recipient_and_directory_format_are_refused_before_anything_is_written(pg, todo_db, tmp_repo, keys):
    with pytest.raises(PgBackupError, match="Not an age recipient"):
        backup(pg, todo_db.name, tmp_repo, ["age1notakey"])
    with pytest.raises(PgBackupError, match="Encryption is not supported for the directory format"):
        backup(pg, todo_db.name, tmp_repo, [keys["restore"].recipient], fmt="directory")
    assert os.listdir(tmp_repo) == []


def run_module(ansible_playbook, module, args, expect_failure=False):
    playbook = "\n".join([
        "- name: Run one module",
        "  hosts: all",
        "  gather_facts: false",
        "  tasks:",
        "    - name: under test",
        "      %s: %s" % (module, json.dumps(args)),
        ""])
    return ansible_playbook(playbook, expect_failure=expect_failure).task("under test")


def test_encrypted_round_trip_through_the_modules(ansible_playbook, pg, todo_db, tmp_repo, keys, target_db):
    login = {"host": pg.host, "port": pg.port, "user": pg.user, "password": pg.password, "repository": tmp_repo}
    dumped = run_module(ansible_playbook, "todoapi.pgbackup.pg_dump",
                        dict(login, database=todo_db.name, encrypt_recipients=[keys["restore"].recipient]))["backup"]
    assert dumped["encryption"]["recipients"] == [keys["restore"].recipient]
    assert head(dumped["path"]).startswith(AGE_HEADER)

    failed = run_module(ansible_playbook, "todoapi.pgbackup.pg_restore",
                        dict(login, source_database=todo_db.name, database=target_db,
                             identity_file=keys["stranger"].identity_file), expect_failure=True)
    assert "wrong key" in failed["msg"]
    assert not pg.database_exists(target_db)

    restored = run_module(ansible_playbook, "todoapi.pgbackup.pg_restore",
                          dict(login, source_database=todo_db.name, database=target_db,
                               identity_file=keys["restore"].identity_file))
    assert restored["changed"] and restored["tables"] == dumped["tables"]
    assert_same_data((pg, todo_db.name), (pg, target_db))


def test_verification_without_the_private_key_is_skipped_never_failed(ansible_playbook, pg, todo_db, tmp_repo, keys):
    """The safe setup keeps the private key off the database host: the nightly structure check there
    must say 'skipped' with the reason, keep the checksum's verdict, and neither alert nor block
    retention; the same check with the key passes, and with a wrong key fails."""
    manifest = backup(pg, todo_db.name, tmp_repo, [keys["restore"].recipient])
    login = {"host": pg.host, "port": pg.port, "user": pg.user, "password": pg.password, "repository": tmp_repo}
    verified = run_module(ansible_playbook, "todoapi.pgbackup.backup_verify",
                          dict(login, backup=manifest["id"], level="structure"))
    assert verified["verified"] and verified["skipped_level"] == "structure" and not verified.get("skipped")
    assert "no identity (private key)" in verified["skipped_reason"]
    assert list(verified["details"]) == ["checksum"]
    assert any("skipped" in warning for warning in verified.get("warnings", [])), verified

    repository = LocalRepository(tmp_repo)
    state = verify.verification_state(repository, manifest["id"])
    assert (state["state"], state["level"]) == ("verified", "checksum") and state["skipped"]["level"] == "structure"
    report = status.backup_status(repository, max_age_hours=26)
    assert "verify_failed" not in report["problem_codes"] and "no_backup" not in report["problem_codes"]
    assert report["latest"][todo_db.name]["id"] == manifest["id"]
    assert retention.default_verifier(repository)(manifest), "retention must count a skipped level as no damage"

    with_key = verify.verify_backup(repository, manifest, "structure", identity_file=keys["restore"].identity_file)
    assert with_key["skipped"] is None and list(with_key["checks"]) == ["checksum", "structure"]
    with pytest.raises(PgBackupError, match="wrong key"):
        verify.verify_backup(repository, manifest, "structure", identity_file=keys["stranger"].identity_file)
    assert verify.verification_state(repository, manifest["id"])["state"] == "failed"


def test_runner_verify_without_the_key_logs_skipped_and_exits_0(pg, todo_db, tmp_repo, keys, tmp_path):
    manifest = backup(pg, todo_db.name, tmp_repo, [keys["restore"].recipient])
    log_file = tmp_path / "runner.log"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"repository": tmp_repo, "databases": [todo_db.name], "log_file": str(log_file),
                                  "lock_file": str(tmp_path / "run.lock"), "verify_level": "structure"}))

    def events():
        return [json.loads(line) for line in log_file.read_text().splitlines()]

    assert cli.main(["--config", str(config), "--quiet", "verify"]) == 0
    skipped = [e for e in events() if e["event"] == "verify_skipped"]
    assert skipped and skipped[0]["skipped_level"] == "structure" and skipped[0]["backup_id"] == manifest["id"]
    assert not [e for e in events() if e["event"] == "verify_failed"]
    assert cli.main(["--config", str(config), "--quiet", "verify", "--identity", keys["restore"].identity_file]) == 0
    assert events()[-2]["event"] == "verify_ok" and events()[-2]["level_checked"] == "structure"
    assert cli.main(["--config", str(config), "--quiet", "verify", "--identity", keys["stranger"].identity_file]) == 1
