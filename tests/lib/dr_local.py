# -*- coding: utf-8 -*-
"""``playbooks/dr_restore.yml`` onto THIS machine: a new cluster (another name and port, standing for the
new host; PostgreSQL already installed) recovered from a local repository. Used by
tests/integration/test_dr_restore.py and the bench's DR drills (bench/methods/dr_playbook.py)::

    extra_vars = new_local_server_vars(repository, "TodoDb", (name, port), work_dir, admin_password, app_password)
"""

from __future__ import absolute_import, division, print_function

import os
import shlex
import site

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


def storage_python(directory):
    """A Python for the target that also has the storage client libraries: the system Python, plus for root (who
    runs the downloads) the test venv's site-packages (the same CPython 3.11), where azure-storage-blob is, as a host
    would have it installed. OS user postgres, who cannot read the venv, gets the plain system Python."""
    venv_site = [path for path in site.getsitepackages() if path.endswith("site-packages")][0]
    path = os.path.join(directory, "python3")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\nif [ "$(id -u)" = 0 ]; then export PYTHONPATH=%s; fi\nexec %s "$@"\n'
                     % (shlex.quote(venv_site), SYSTEM_PYTHON))
    os.chmod(path, 0o755)
    return path
