# -*- coding: utf-8 -*-
"""PostgreSQL clusters made on lab hosts (Debian's pg_createcluster over SSH with become) are the
hosts' own: db1 and db2 both run 15/main on port 5432 with different data, backup1 reaches both
over the lab network with SCRAM, and neither the root namespace nor another host sees them."""

from __future__ import absolute_import, division, print_function

import os
import secrets

from tests.lib.pgcluster import HARNESS_PREFIX, list_clusters

CREATE_AND_QUERY = """
- name: A PostgreSQL 15 cluster on db1 and on db2, both on port 5432
  hosts: db1,db2
  gather_facts: false
  become: true
  tasks:
    - name: Create the cluster
      ansible.builtin.command: pg_createcluster 15 main --port 5432
      args:
        creates: /etc/postgresql/15/main/postgresql.conf
    - name: Listen on the lab address
      ansible.builtin.command: pg_conftool 15 main set listen_addresses *
    - name: Let the lab network in with a SCRAM password
      ansible.builtin.lineinfile:
        path: /etc/postgresql/15/main/pg_hba.conf
        line: host all all {{ pgbackup_lab_network }} scram-sha-256
    - name: Start the cluster
      ansible.builtin.command: pg_ctlcluster 15 main start
    - name: Set the password and write which host this is
      ansible.builtin.command:
        argv: [psql, -v, ON_ERROR_STOP=1, -d, postgres,
               -c, "ALTER ROLE postgres PASSWORD '{{ lab_password }}'",
               -c, "CREATE TABLE lab_marker AS SELECT '{{ inventory_hostname }}'::text AS host"]
      become_user: postgres

- name: Both servers from backup1, over the lab network
  hosts: backup1
  gather_facts: false
  tasks:
    - name: Read each server's marker
      ansible.builtin.command:
        argv: [psql, "host={{ item }} port=5432 user=postgres dbname=postgres connect_timeout=5", -AtF, " ", -c,
               "SELECT host, system_identifier, inet_client_addr() FROM lab_marker, pg_control_system()"]
      environment:
        PGPASSWORD: "{{ lab_password }}"
      loop: [db1, db2]
      changed_when: false
    - name: A wrong password is refused
      ansible.builtin.command:
        argv: [psql, "host=db1 port=5432 user=postgres dbname=postgres connect_timeout=5", -c, SELECT 1]
      environment:
        PGPASSWORD: not-{{ lab_password }}
      register: refused
      changed_when: false
      failed_when: "'password authentication failed' not in refused.stderr"

- name: Which clusters each host sees
  hosts: db1,db2,backup1
  gather_facts: false
  tasks:
    - name: List clusters
      ansible.builtin.command: pg_lsclusters -h
      changed_when: false
"""


def root_clusters():
    """The root namespace's pg_lsclusters, without the throwaway clusters of concurrent test runs."""
    return sorted(cluster for cluster in list_clusters() if not cluster[1].startswith(HARNESS_PREFIX))


def test_clusters_on_two_hosts_are_distinct_reachable_and_private(lab):
    root_before = root_clusters()
    result = lab.playbook(CREATE_AND_QUERY, extra_vars={"lab_password": secrets.token_hex(12)})

    markers = [item["stdout"].split() for item in result.host_results("Read each server's marker")["backup1"]["results"]]
    (host1, sysid1, client1), (host2, sysid2, client2) = markers
    assert (host1, host2) == ("db1", "db2")
    assert sysid1 != sysid2, "db1 and db2 answered with the same cluster"
    assert client1 == client2 == str(lab.address("backup1")), "the connections did not come from backup1 over the lab"

    seen = {host: value["stdout"].splitlines() for host, value in result.host_results("List clusters").items()}
    for host in ("db1", "db2"):
        # Other lab tests of the session may have clusters of their own names there (15/shapes): only main is this test's.
        assert [line.split()[:4] for line in seen[host] if line.split()[1] == "main"] == [["15", "main", "5432", "online"]], seen
        assert os.path.isfile(lab.host_path(host, "/var/lib/postgresql/15/main/PG_VERSION"))
    assert seen["backup1"] == []

    # The machine may have a 15/main of its own (stopped, on 5432): it must look exactly as before.
    assert root_clusters() == root_before, "the lab's clusters showed up in the root namespace's pg_lsclusters"
