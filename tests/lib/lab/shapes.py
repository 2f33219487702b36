# -*- coding: utf-8 -*-
"""The two deployment shapes of docs/topologies.md, set up on a lab (tests/integration/lab/test_lab_push.py,
test_lab_pull.py).

prepare_shapes(lab, work_dir) gives db1 and db2 each a PostgreSQL 15 cluster ``15/shapes`` on port 5441
(a name and port of their own, so the other lab tests' 15/main is untouched) with a small TodoDb, and
backup1 an SFTP account ``pgrepo`` whose authorized_keys holds one key per DB host. Everything goes over
SSH as the lab user with become, like the plays under test.

The hosts run the machine's /usr/bin/python3, which has no paramiko here; a host would install
python3-paramiko. A .pth file in the host's own /usr/local (an overlay: no other host and not the machine
sees it) appends the test venv's site-packages (the same CPython 3.11) instead, as
tests/integration/test_wal_remote.py does for its helper.
"""

from __future__ import absolute_import, division, print_function

import os
import secrets
import site
import subprocess

SHAPE_CLUSTER = "shapes"
SHAPE_PORT = 5441
DB_HOSTS = ("db1", "db2")
ROWS = {"db1": 3, "db2": 5}
SFTP_USER = "pgrepo"
PTH_FILE = "/usr/local/lib/python3.11/dist-packages/pgbackup-lab-venv.pth"

SETUP_PLAY = """
- name: A small TodoDb in 15/shapes on each DB host
  hosts: db1,db2
  gather_facts: false
  become: true
  tasks:
    - name: Create the cluster
      ansible.builtin.command: pg_createcluster 15 {{ shape_cluster }} --port {{ shape_port }}
      args:
        creates: /etc/postgresql/15/{{ shape_cluster }}/postgresql.conf
    - name: Listen on the lab address
      ansible.builtin.command: pg_conftool 15 {{ shape_cluster }} set listen_addresses *
      changed_when: true
    - name: Start the cluster
      ansible.builtin.command: pg_ctlcluster 15 {{ shape_cluster }} start
      changed_when: true
    - name: Set the superuser's password and create TodoDb
      ansible.builtin.command:
        argv: [psql, -p, "{{ shape_port }}", -v, ON_ERROR_STOP=1, -d, postgres,
               -c, "ALTER ROLE postgres PASSWORD '{{ shape_admin_password }}'", -c, 'CREATE DATABASE "TodoDb"']
      become_user: postgres
      changed_when: true
    - name: Fill TodoDb
      ansible.builtin.command:
        argv: [psql, -p, "{{ shape_port }}", -v, ON_ERROR_STOP=1, -d, TodoDb, -c,
               "CREATE TABLE todos (id int PRIMARY KEY, title text, host text DEFAULT '{{ inventory_hostname }}');
                INSERT INTO todos (id, title) SELECT g, 'todo ' || g FROM generate_series(1, {{ shape_rows[inventory_hostname] }}) g"]
      become_user: postgres
      changed_when: true

- name: The SFTP account on backup1, one key per DB host, one directory per DB host
  hosts: backup1
  gather_facts: false
  become: true
  tasks:
    - name: Create the account (no password; '*' so that sshd accepts its keys)
      ansible.builtin.user:
        name: "{{ shape_sftp_user }}"
        password: "*"
        shell: /usr/sbin/nologin
        home: /home/{{ shape_sftp_user }}
    - name: Own the .ssh directory
      ansible.builtin.file:
        path: /home/{{ shape_sftp_user }}/.ssh
        state: directory
        owner: "{{ shape_sftp_user }}"
        mode: "0700"
    - name: Authorize the DB hosts' keys
      ansible.builtin.copy:
        content: "{{ shape_public_keys | join('\\n') }}\\n"
        dest: /home/{{ shape_sftp_user }}/.ssh/authorized_keys
        owner: "{{ shape_sftp_user }}"
        mode: "0600"
    - name: Create the repositories
      ansible.builtin.file:
        path: /var/backups/fleet/{{ item[0] }}/{{ item[1] }}
        state: directory
        owner: "{{ shape_sftp_user }}"
        mode: "0700"
      loop: "{{ ['db1', 'db2'] | product(['logical', 'wal']) | list }}"
"""

PUSH_PLAY = """
- name: Push shape - each DB host backs up locally and copies to backup1; WAL goes there too
  hosts: db1,db2
  gather_facts: false
  become: true
  vars:
    sftp_base: sftp://{{ shape_sftp_user }}@backup1/var/backups/fleet/{{ inventory_hostname }}
  tasks:
    - name: Install the SFTP key of this DB host (0600, postgres) and backup1's host key
      ansible.builtin.copy:
        src: "{{ item.src }}"
        dest: /etc/todoapi-pgbackup/{{ item.dest }}
        owner: postgres
        group: postgres
        mode: "{{ item.mode }}"
      loop:
        - {src: "{{ shape_keys[inventory_hostname] }}", dest: sftp-backup1.key, mode: "0600"}
        - {src: "{{ shape_known_hosts }}", dest: known_hosts, mode: "0644"}
      loop_control:
        label: "{{ item.dest }}"

    - name: Back up TodoDb locally and to backup1
      ansible.builtin.include_role:
        name: todoapi.pgbackup.backup
      vars:
        pgbackup_name: "{{ shape_cluster }}"
        pgbackup_db_port: "{{ shape_port }}"
        pgbackup_install_packages: false
        pgbackup_scheduler: cron
        pgbackup_repositories:
          - name: local
            location: /var/backups/todoapi-{{ shape_cluster }}
          - name: backup1
            location: "{{ sftp_base }}/logical"
            options: {known_hosts: /etc/todoapi-pgbackup/known_hosts, timeout: 10}
            credentials_file: /etc/todoapi-pgbackup/sftp-backup1.key

    - name: Push WAL to backup1
      ansible.builtin.include_role:
        name: todoapi.pgbackup.wal_archiving
      vars:
        wal_archiving_cluster_name: "{{ shape_cluster }}"
        wal_archiving_port: "{{ shape_port }}"
        wal_archiving_login_host: 127.0.0.1
        wal_archiving_login_password: "{{ shape_admin_password }}"
        wal_archiving_archive_url: "{{ sftp_base }}/wal"
        wal_archiving_storage_options: {sftp_known_hosts: /etc/todoapi-pgbackup/known_hosts, sftp_timeout: 10}
        wal_archiving_credentials: "{{ lookup('ansible.builtin.file', shape_keys[inventory_hostname]) }}"
        wal_archiving_archive_timeout: 10s
        wal_archiving_verify: false  # the play checks a segment with a row of its own below

    - name: Run the scheduled backup job now (what cron runs)
      ansible.builtin.command:
        argv: [/usr/local/bin/todoapi-pgbackup, --name, "{{ shape_cluster }}", backup]
      become_user: postgres
      changed_when: true

    - name: Switch to a new segment
      ansible.builtin.command:
        argv: [psql, -p, "{{ shape_port }}", -Atq, -d, postgres, -c, "CREATE TABLE IF NOT EXISTS probe (note text)",
               -c, "INSERT INTO probe VALUES ('pushed')",
               -c, "SELECT pg_walfile_name(pg_switch_wal())"]
      become_user: postgres
      changed_when: true
      register: switched

    - name: Wait until it is archived
      ansible.builtin.command:
        argv: [psql, -p, "{{ shape_port }}", -Atq, -d, postgres, -c, "SELECT last_archived_wal FROM pg_stat_archiver"]
      become_user: postgres
      changed_when: false
      register: archived
      until: archived.stdout >= switched.stdout
      retries: 60
      delay: 1
"""

PULL_HOSTS_PLAY = """
- name: Pull shape, DB hosts - the least-privilege login, admitted from backup1 only
  hosts: db1,db2
  gather_facts: false
  become: true
  roles:
    - role: todoapi.pgbackup.backup_login
      vars:
        backup_login_password: "{{ shape_login_password }}"
        backup_login_physical: true
        backup_login_admin_port: "{{ shape_port }}"
        backup_login_hba_sources: ["{{ hostvars['backup1'].ansible_host }}/32"]
        backup_login_hba_contype: host  # the lab's clusters have no certificate; in production: hostssl

- name: Pull shape, backup1 - one named backup configuration and one WAL stream per DB host
  hosts: backup1
  gather_facts: false
  become: true
  tasks:
    - name: Back up each DB host over the network (pgbackup_name = the DB host)
      ansible.builtin.include_role:
        name: todoapi.pgbackup.backup
      vars:
        pgbackup_name: "{{ db_host }}"
        pgbackup_db_host: "{{ hostvars[db_host].ansible_host }}"
        pgbackup_db_port: "{{ shape_port }}"
        pgbackup_db_user: todoapi_backup
        pgbackup_password: "{{ shape_login_password }}"
        pgbackup_repository: /var/backups/todoapi-{{ db_host }}
        pgbackup_install_packages: false
        pgbackup_scheduler: cron
      loop: [db1, db2]
      loop_control:
        loop_var: db_host

    - name: Stream each DB host's WAL into backup1
      ansible.builtin.include_role:
        name: todoapi.pgbackup.wal_streaming
      vars:
        wal_streaming_name: "{{ db_host }}"
        wal_streaming_host: "{{ hostvars[db_host].ansible_host }}"
        wal_streaming_port: "{{ shape_port }}"
        wal_streaming_password: "{{ shape_login_password }}"
      loop: [db1, db2]
      loop_control:
        loop_var: db_host

    - name: Run each scheduled backup job now (what cron runs)
      ansible.builtin.command:
        argv: [/usr/local/bin/todoapi-pgbackup, --name, "{{ db_host }}", backup]
      become_user: postgres
      changed_when: true
      loop: [db1, db2]
      loop_control:
        loop_var: db_host
"""

# Entry point primary of role wal_streaming: synchronous_standby_names names backup1's pg_receivewal (or nothing).
SYNC_PLAY = """
- name: Pull shape, DB hosts - commits wait for backup1
  hosts: db1,db2
  gather_facts: false
  become: true
  tasks:
    - name: Make commits wait for backup1's pg_receivewal
      ansible.builtin.include_role:
        name: todoapi.pgbackup.wal_streaming
        tasks_from: primary
      vars:
        wal_streaming_port: "{{ shape_port }}"
        wal_streaming_synchronous: "{{ shape_synchronous }}"
"""

PULL_PLAY = PULL_HOSTS_PLAY + SYNC_PLAY

STREAM_STOP_START = "sudo /usr/local/bin/todoapi-pgbackup-wal-streaming %s %s"


class Shapes(object):
    """What prepare_shapes made: the secrets and paths the plays take as extra vars."""

    def __init__(self, lab, work_dir):
        self.lab = lab
        self.work_dir = str(work_dir)
        self.admin_password = secrets.token_hex(12)
        self.login_password = "p:%s\\" % secrets.token_hex(8)  # a ':' and a '\\' for the passfile's escaping
        self.rows = dict(ROWS)
        self.keys = {host: os.path.join(self.work_dir, "sftp-%s" % host) for host in DB_HOSTS}
        self.sftp_uid = None
        self.measured = {}  # what the shapes' tests timed (docs/topologies.md, "Measured on the lab")

    def common_vars(self):
        return {"shape_cluster": SHAPE_CLUSTER, "shape_port": SHAPE_PORT, "shape_admin_password": self.admin_password,
                "shape_sftp_user": SFTP_USER, "shape_rows": self.rows}

    def pull_vars(self, synchronous=True):
        values = self.common_vars()
        values.update({"shape_login_password": self.login_password, "shape_synchronous": synchronous})
        return values

    def psql(self, host, *commands, **options):
        """psql on the DB host's 15/shapes as postgres, one -c per command (each its own transaction), or
        script= on stdin. Inside the host: setup and probes, not what is proven."""
        argv = ["psql", "-p", str(SHAPE_PORT), "-d", options.get("database", "postgres"), "-Atq", "-v", "ON_ERROR_STOP=1"]
        for command in commands:
            argv += ["-c", command]
        if options.get("script") is not None:
            argv += ["-f", "-"]
        return self.lab.run(host, argv, user="postgres", check=False, input_text=options.get("script"),
                            timeout=options.get("timeout", 60))

    def push_vars(self):
        values = self.common_vars()
        values.update({"shape_keys": self.keys, "shape_known_hosts": self.lab.known_hosts})
        return values


def venv_site_packages():
    return [path for path in site.getsitepackages() if path.endswith("site-packages")][0]


def give_paramiko(lab, host):
    """The host's Python sees the venv's packages (paramiko) after its own (see the module docstring)."""
    lab.run(host, ["mkdir", "-p", os.path.dirname(PTH_FILE)])
    lab.run(host, ["sh", "-c", 'printf "%%s\\n" "$1" > %s' % PTH_FILE, "sh", venv_site_packages()])


def prepare_shapes(lab, work_dir):
    shapes = Shapes(lab, work_dir)
    public_keys = []
    for host in DB_HOSTS:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "postgres@%s" % host,
                        "-f", shapes.keys[host]], check=True)
        with open(shapes.keys[host] + ".pub") as handle:
            public_keys.append(handle.read().strip())
    for host in DB_HOSTS + ("backup1",):
        give_paramiko(lab, host)
    extra_vars = shapes.common_vars()
    extra_vars["shape_public_keys"] = public_keys
    lab.playbook(SETUP_PLAY, extra_vars=extra_vars)
    shapes.sftp_uid = int(lab.run("backup1", ["id", "-u", SFTP_USER]).stdout)
    return shapes
