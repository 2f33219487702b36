# -*- coding: utf-8 -*-
"""A fleet as one job, over SSH as the lab user with become (docs/fleet.md):

- provision_db_host.yml builds PostgreSQL on db1..db3 from nothing and makes db3 ready for backups
  (backup login, runner, config, passfile, crontab); the installed runner then backs db3 up;
- backup_now.yml over db1..db3 with forks and backup_now_throttle, db2 cut off: db2 alone fails, and
  the job says so (play recap, last task, set_stats), and throttle 1 runs the backups one host after
  the other;
- backup_info over the fleet (an ad-hoc run) reports each host's newest backup;
- the same fleet backup under ansible-runner, as AWX runs it: status, rc, per-host events and the
  job's artifacts name db2.

The tests share one provisioned fleet (cluster "fleet" on port 5433, so the lab's other tests keep
15/main) and run in file order: the backup_info test reads the backups the tests before it took.
The clusters are dropped at the end.
"""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os
import secrets
import shutil
import subprocess
import tempfile

import ansible_runner
import pytest

from tests.lib.ansible_run import ansible_bin, parse_json_report, playbook_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROVISION = os.path.join(ROOT, "playbooks", "provision_db_host.yml")
BACKUP_NOW = os.path.join(ROOT, "playbooks", "backup_now.yml")
FLEET = ["db1", "db2", "db3"]
LOST = "db2"
CLUSTER, PORT, DATABASE, SETUP = "fleet", 5433, "fleetdb", "fleet"
REPOSITORY = "/var/lib/postgresql/fleet-backups"  # backup_now creates it on db1 and db2 (postgres owns the parent)
ANSIBLE_UNREACHABLE_RC = 4
BACKUP_TASK = "Back up each database into the repository"
FLEET_VARS = {"target_hosts": "db_hosts", "pgbackup_db_port": PORT, "pgbackup_databases": [DATABASE],
              "pgbackup_repository": REPOSITORY, "backup_now_throttle": 1}

CREATE_DATABASE = """
- name: A small database on each host
  hosts: db_hosts
  gather_facts: false
  become: true
  become_user: postgres
  tasks:
    - name: Create it, with a table naming the host
      ansible.builtin.command:
        argv: [psql, -p, "%(port)s", -v, ON_ERROR_STOP=1, -d, postgres, -c, "CREATE DATABASE %(database)s",
               -c, "\\\\c %(database)s", -c, "CREATE TABLE fleet_marker AS SELECT '{{ inventory_hostname }}'::text AS host"]
""" % {"port": PORT, "database": DATABASE}

DROP_CLUSTERS = """
- name: Drop the fleet clusters
  hosts: db_hosts
  gather_facts: false
  become: true
  tasks:
    - name: Drop the cluster
      ansible.builtin.command: pg_dropcluster --stop 15 %s
      args:
        removes: /etc/postgresql/15/%s/postgresql.conf
""" % (CLUSTER, CLUSTER)


@pytest.fixture(scope="module")
def fleet(lab):
    """db1..db3 provisioned by provision_db_host.yml in one run (forks 3); db3 also gets the backup login
    and the backup role. Yields (provision result, the backup login's password)."""
    password = secrets.token_hex(12)
    on_db3 = "{{ inventory_hostname == 'db3' }}"
    provision = lab.playbook(PROVISION, forks=3, extra_vars={
        "target_hosts": "db_hosts", "postgresql_server_install_packages": False,
        "postgresql_server_cluster_name": CLUSTER, "postgresql_server_port": PORT,
        "provision_backup_login": on_db3, "backup_login_password": password,
        "backup_login_hba_sources": ["127.0.0.1/32"], "backup_login_hba_contype": "host", "backup_login_admin_port": PORT,
        "provision_backup": on_db3, "pgbackup_name": SETUP, "pgbackup_repository": REPOSITORY,
        "pgbackup_databases": [DATABASE], "pgbackup_db_host": "127.0.0.1", "pgbackup_db_port": PORT,
        "pgbackup_db_user": "todoapi_backup", "pgbackup_password": password, "pgbackup_install_packages": False})
    try:
        lab.playbook(CREATE_DATABASE, forks=3)
        yield provision, password
    finally:
        for host in FLEET:
            if lab.status()[host] == "down":
                lab.reconnect(host)
        lab.playbook(DROP_CLUSTERS, forks=3)


def manifests_on(lab, host):
    """{backup id: manifest} of the fleet repository on the host, read from its disk."""
    directory = lab.host_path(host, REPOSITORY)
    found = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.endswith(".manifest.json"):
            with open(os.path.join(directory, name)) as handle:
                manifest = json.load(handle)
            found[manifest["id"]] = manifest
    return found


def test_provision_makes_db3_ready_for_backups(lab, fleet):
    provision, password = fleet
    assert provision.ok_hosts() == FLEET
    assert provision.host_results("todoapi.pgbackup.postgresql_server : Create the cluster")["db3"]["changed"]
    login = provision.host_results("todoapi.pgbackup.backup_login : Create or update the backup login (LOGIN, nothing else; "
                                   "scram-sha-256 password)")
    assert [host for host, value in sorted(login.items()) if not value.get("skipped")] == ["db3"]
    assert password not in provision.stdout + provision.stderr

    crontab = lab.ssh("db3", "sudo -n crontab -l -u postgres")
    assert crontab.returncode == 0, crontab.stderr
    assert "todoapi-pgbackup-%s backup" % SETUP in crontab.stdout
    assert lab.ssh("db1", "sudo -n test -e /etc/todoapi-pgbackup-%s/config.json" % SETUP).returncode == 1

    before = set(manifests_on(lab, "db3"))
    # What cron would run at 02:00, run now: the runner the role installed, as the backup user.
    run = lab.ssh("db3", "sudo -n -u postgres /usr/local/bin/todoapi-pgbackup --name %s backup" % SETUP)
    assert run.returncode == 0, run.stdout + run.stderr
    new = {backup_id: manifest for backup_id, manifest in manifests_on(lab, "db3").items() if backup_id not in before}
    assert [manifest["database"] for manifest in new.values()] == [DATABASE], run.stdout
    with open(lab.host_path("db3", "/etc/todoapi-pgbackup-%s/config.json" % SETUP)) as handle:
        config = json.load(handle)
    assert password not in json.dumps(config), "the password is in the runner's config"
    assert "todoapi_backup" in json.dumps(config), "the runner does not use the backup login"


def test_fleet_backup_fails_only_the_unreachable_host(lab, fleet):
    before = {host: set(manifests_on(lab, host)) for host in FLEET}
    lab.cut_off(LOST)
    try:
        result = lab.playbook(BACKUP_NOW, forks=3, extra_vars=FLEET_VARS, expect_failure=True,
                              env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    finally:
        lab.reconnect(LOST)

    assert result.rc == ANSIBLE_UNREACHABLE_RC, result.describe()
    assert result.unreachable_hosts() == [LOST], result.describe()
    assert result.failed_hosts() == [], result.describe()
    assert result.ok_hosts() == ["db1", "db3"]
    assert result.report["global_custom_stats"] == {"backup_now_succeeded_hosts": ["db1", "db3"],
                                                    "backup_now_failed_hosts": [LOST]}
    summary = result.host_results("Report which hosts failed")
    assert [value["msg"] for value in summary.values()] == ["Backed up: db1, db3. Failed or unreachable: db2."]
    windows = []
    for host in ("db1", "db3"):
        taken = result.host_results(BACKUP_TASK)[host]["results"][0]["backup"]["id"]
        new = manifests_on(lab, host)
        assert set(new) - before[host] == {taken}, host
        windows.append(dump_window(new[taken]))
    assert set(manifests_on(lab, LOST)) == before[LOST]
    # backup_now_throttle=1: with forks 3, the hosts' pg_dump runs would overlap; throttled, one follows the other.
    first, second = sorted(windows)
    assert first[1] <= second[0], "backups overlapped despite backup_now_throttle=1: %s" % windows


def dump_window(manifest):
    """(start, end) of the backup in epoch seconds, from its manifest."""
    end = datetime.datetime.strptime(manifest["finished_at"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    return end - manifest["duration_seconds"], end


def run_adhoc(lab, pattern, module, args, become_user):
    """`ansible <pattern> -m <module> -a <args> -b --become-user <user>` over the lab, json callback; {host: result}."""
    with tempfile.TemporaryDirectory(prefix="pgbackup-lab-adhoc-") as work_dir:
        env = playbook_env(lab.collections_root, work_dir, {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"})
        del env["ANSIBLE_REMOTE_TEMP"]
        argv = [ansible_bin("ansible"), pattern, "-i", lab.inventory, "--forks", "3", "-b", "--become-user", become_user,
                "-m", module, "-a", json.dumps(args)]
        done = subprocess.run(argv, cwd=work_dir, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return parse_json_report(done.stdout)["plays"][0]["tasks"][0]["hosts"]


def test_backup_info_over_the_fleet_reports_each_hosts_newest_backup(lab, fleet):
    reports = run_adhoc(lab, "db_hosts", "todoapi.pgbackup.backup_info",
                        {"repository": REPOSITORY, "database": DATABASE}, "postgres")
    assert sorted(reports) == FLEET
    for host in FLEET:
        on_disk = manifests_on(lab, host)
        newest = max(on_disk.values(), key=lambda manifest: manifest["finished_at"])["id"] if on_disk else None
        latest = reports[host]["latest"][DATABASE]
        assert (latest and latest["id"]) == newest, (host, reports[host])
        assert reports[host]["ok"] == bool(on_disk), (host, reports[host]["health"])
    assert reports[LOST]["health"][0]["code"] == "no_backup", "db2 was cut off during every fleet backup"


def runner_private_dir(lab, base):
    """An ansible-runner private data dir laid out like AWX's: the lab inventory in inventory/hosts."""
    os.makedirs(os.path.join(base, "inventory"))
    shutil.copy(lab.inventory, os.path.join(base, "inventory", "hosts"))
    return base


def test_fleet_backup_under_ansible_runner_names_the_failed_host(lab, fleet, tmp_path):
    private_dir = runner_private_dir(lab, str(tmp_path / "job"))
    lab.cut_off(LOST)
    try:
        runner = ansible_runner.run(
            private_data_dir=private_dir, playbook="todoapi.pgbackup.backup_now", extravars=FLEET_VARS, forks=3,
            quiet=True, envvars={"ANSIBLE_COLLECTIONS_PATH": lab.collections_root, "ANSIBLE_NOCOLOR": "1",
                                 "PATH": os.path.dirname(ansible_bin("ansible")) + os.pathsep + os.environ["PATH"]})
    finally:
        lab.reconnect(LOST)

    assert (runner.status, runner.rc) == ("failed", ANSIBLE_UNREACHABLE_RC), runner.stdout.read()
    events = list(runner.events)
    unreachable = [event["event_data"]["host"] for event in events if event["event"] == "runner_on_unreachable"]
    assert unreachable == [LOST]
    backed_up = sorted(event["event_data"]["host"] for event in events
                       if event["event"] == "runner_on_ok" and event["event_data"].get("task") == BACKUP_TASK)
    assert backed_up == ["db1", "db3"]
    stats = [event for event in events if event["event"] == "playbook_on_stats"][-1]["event_data"]
    assert (stats["dark"], stats["failures"], sorted(stats["changed"])) == ({LOST: 1}, {}, ["db1", "db3"]), stats
    assert stats["artifact_data"] == {"backup_now_succeeded_hosts": ["db1", "db3"], "backup_now_failed_hosts": [LOST]}
