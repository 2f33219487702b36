"""Verify the converged backup role with testinfra (pytest --hosts=local://)."""

import json
import os

import pytest
import yaml

with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vars.yml")) as handle:
    VARS = yaml.safe_load(handle)

RUNNER = VARS["pgbackup_runner_path"]
CONFIG = os.path.join(VARS["pgbackup_config_dir"], "config.json")


def as_postgres(host, command):
    return host.run("runuser -u postgres -- sh -c %s" % json.dumps(command))


def cron_line(host, job):
    lines = host.run("crontab -l -u postgres").stdout.splitlines()
    marker = "#Ansible: %s %s" % (VARS["pgbackup_job_name"], job)
    return lines[lines.index(marker) + 1]


@pytest.mark.parametrize("path, mode, owner", [
    (VARS["pgbackup_repository"], 0o700, "postgres"),
    (os.path.join(VARS["pgbackup_config_dir"], "pgpass"), 0o600, "postgres"),
    (CONFIG, 0o640, "root"),
    (RUNNER, 0o755, "root"),
])
def test_files_modes_and_owners(host, path, mode, owner):
    entry = host.file(path)
    assert entry.exists
    assert entry.mode == mode
    assert entry.user == owner


def test_log_file_is_not_world_writable(host):
    assert not host.file(VARS["pgbackup_log_file"]).mode & 0o002


def test_cron_entries_follow_the_seed_schedule_and_hold_no_password(host):
    backup = cron_line(host, "backup")
    assert backup.startswith("0 2 * * * ")
    assert RUNNER in backup and VARS["pgbackup_log_file"] in backup
    for job in ("backup", "prune", "verify"):
        assert VARS["pgbackup_password"] not in cron_line(host, job)
    assert VARS["pgbackup_password"] not in host.file(CONFIG).content_string


def test_runner_as_cron_runs_it_makes_a_restorable_backup(host):
    command = cron_line(host, "backup").split(None, 5)[5]
    assert as_postgres(host, command).rc == 0
    listing = as_postgres(host, "%s --config %s list --json" % (RUNNER, CONFIG))
    backups = json.loads(listing.stdout)
    backups = backups.get("backups", backups) if isinstance(backups, dict) else backups
    assert backups and backups[-1]["database"] == "TodoDb"
    verify = as_postgres(host, "%s --config %s verify" % (RUNNER, CONFIG))
    assert verify.rc == 0, verify.stdout + verify.stderr
    restore = as_postgres(host, "%s --config %s restore --database TodoDb_molecule_check" % (RUNNER, CONFIG))
    assert restore.rc == 0, restore.stdout + restore.stderr
    count = host.run("runuser -u postgres -- psql -X -At -p %s -d TodoDb_molecule_check -c %s"
                     % (VARS["molecule_port"], json.dumps('SELECT count(*) FROM "Todos"')))
    assert count.stdout.strip() == "5000"
