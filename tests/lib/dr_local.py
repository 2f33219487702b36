# -*- coding: utf-8 -*-
"""``playbooks/dr_restore.yml`` onto THIS machine: a new cluster (another name and port, standing for the
new host; PostgreSQL already installed) recovered from a local repository. Used by
tests/integration/test_dr_restore.py and the bench's DR drills (bench/methods/dr_playbook.py)::

    extra_vars = new_local_server_vars(repository, "TodoDb", (name, port), work_dir, admin_password, app_password)
"""

from __future__ import absolute_import, division, print_function

import os

SYSTEM_PYTHON = "/usr/bin/python3"  # become_user postgres cannot run a venv's Python under /root
PLAYBOOK_ENV = {"ANSIBLE_PIPELINING": "1"}


def new_local_server_vars(source, database, new_host, work_dir, admin_password, app_password):
    """The playbook's extra vars; its work files go to ``work_dir``/dr-work, its report to ``work_dir``/reports."""
    name, port = new_host
    return {
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "dr_target": "localhost",
        "dr_source": source,
        "dr_database": database,
        "dr_install_packages": False,
        "dr_pg_cluster": name,
        "dr_pg_port": port,
        "dr_listen_addresses": "127.0.0.1",
        "dr_app_networks": ["127.0.0.1/32"],
        "dr_admin_password": admin_password,
        "dr_app_password": app_password,
        "dr_app_db_host": "127.0.0.1",
        "dr_work_dir": os.path.join(work_dir, "dr-work"),
        "dr_report_dir": os.path.join(work_dir, "reports"),
    }
