# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: setup_paths
author: todoapi.pgbackup maintainers
version_added: 0.2.0
short_description: The paths and job names of a named todoapi-pgbackup setup
description:
  - Two setups of the C(todoapi-pgbackup) runner on one host (for example one per PostgreSQL cluster) differ by
    their name alone. This filter gives the default paths that follow from a name; the C(todoapi.pgbackup.backup)
    and C(todoapi.pgbackup.monitoring) roles take their defaults from it and C(todoapi-pgbackup --name NAME) finds
    the config the same way (C(plugins/module_utils/runner/names.py) owns the scheme).
  - The default name C(main) keeps the paths of earlier releases; any other name C(N) adds C(-N) to each of them.
  - A name is 1 to 32 lower-case letters, digits, C(-) and C(_), starting with a letter or digit; another is an error.
positional: _input
options:
  _input:
    description: The setup's name.
    type: str
    required: true
'''

EXAMPLES = r'''
# {'config_dir': '/etc/todoapi-pgbackup-pg18', 'config_file': '/etc/todoapi-pgbackup-pg18/config.json',
#  'monitoring_file': '/etc/todoapi-pgbackup-pg18/monitoring.json', 'log_file': '/var/log/todoapi_backup-pg18.log',
#  'job_name': 'todoapi-pgbackup-pg18', 'lock_file': '/run/lock/todoapi-pgbackup-pg18.lock',
#  'state_dir': '/var/lib/todoapi-pgbackup-pg18',
#  'textfile': '/var/lib/prometheus/node-exporter/todoapi_pgbackup-pg18.prom'}
paths: "{{ 'pg18' | todoapi.pgbackup.setup_paths }}"
'''

RETURN = r'''
_value:
  description:
    - C(config_dir), C(config_file), C(monitoring_file), C(log_file), C(job_name) (base name of the cron entries and
      systemd units), C(lock_file), C(state_dir) and C(textfile) (the monitoring metrics) of the setup.
  type: dict
'''

from ansible.errors import AnsibleFilterError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import names


def setup_paths(name):
    try:
        return names.setup_paths(name)
    except names.BadName as exc:
        raise AnsibleFilterError("pgbackup_name %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"setup_paths": setup_paths}
