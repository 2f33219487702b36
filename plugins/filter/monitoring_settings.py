# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: monitoring_settings
author: todoapi.pgbackup maintainers
version_added: 0.2.0
short_description: The monitoring check's settings file from the monitoring role's variables
description:
  - Maps the variables of the C(todoapi.pgbackup.monitoring) role to the keys of the settings file that
    C(todoapi-pgbackup status --monitoring-config) reads (C(monitoring_webhook_url) to C(webhook_url) ...; the keys are
    those of C(plugins/module_utils/runner/monitor.py)). Empty values are left out, so the runner's config (or the
    check's default) applies.
  - C(monitoring_max_age_hours) and C(monitoring_size_anomaly_factor) are deprecated - the thresholds belong to the
    runner's config (the backup role's C(pgbackup_max_age_hours) and C(pgbackup_size_anomaly_factor)). When set they
    still override it, and a deprecation warning says so.
positional: _input
options:
  _input:
    description: "The role's variables by name (C({'monitoring_webhook_url': monitoring_webhook_url, ...}))."
    type: dict
    required: true
'''

EXAMPLES = r'''
# What roles/monitoring/tasks/main.yml does
settings: "{{ {'pgbackup_name': 'main', 'monitoring_webhook_url': 'https://hooks.example/x'} | todoapi.pgbackup.monitoring_settings }}"
'''

RETURN = r'''
_value:
  description:
    - "The settings, for example C({'name': 'main', 'webhook_url': 'https://hooks.example/x'})."
  type: dict
'''

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

# Role variable -> key of the settings file (plugins/module_utils/runner/monitor.py DEFAULTS; a unit test checks).
ROLE_VARIABLES = {
    "pgbackup_name": "name",
    "monitoring_repository": "repository",
    "monitoring_log_file": "log_file",
    "monitoring_database": "database",
    "monitoring_max_age_hours": "max_age_hours",
    "monitoring_size_anomaly_factor": "size_anomaly_factor",
    "monitoring_textfile_path": "textfile",
    "monitoring_alert_mode": "alert_mode",
    "monitoring_alert_state_file": "alert_state_file",
    "monitoring_smtp_host": "smtp_host",
    "monitoring_smtp_port": "smtp_port",
    "monitoring_smtp_starttls": "smtp_starttls",
    "monitoring_smtp_user": "smtp_user",
    "monitoring_smtp_password": "smtp_password",
    "monitoring_email_from": "smtp_from",
    "monitoring_email_to": "smtp_to",
    "monitoring_webhook_url": "webhook_url",
    "monitoring_webhook_timeout": "webhook_timeout",
    "monitoring_check_archiver": "check_archiver",
}
# Deprecated variable -> what replaces it.
DEPRECATED = {
    "monitoring_max_age_hours": "pgbackup_max_age_hours",
    "monitoring_size_anomaly_factor": "pgbackup_size_anomaly_factor",
}


def monitoring_settings(variables):
    if not isinstance(variables, dict):
        raise AnsibleFilterError("monitoring_settings needs a dict of the monitoring role's variables.")
    unknown = sorted(set(variables) - set(ROLE_VARIABLES))
    if unknown:
        raise AnsibleFilterError("monitoring_settings does not know the variable(s) %s." % ", ".join(unknown))
    settings = {}
    for name, value in sorted(variables.items()):
        if value in (None, "", []):
            continue
        if name in DEPRECATED:
            Display().deprecated("%s is deprecated: the threshold belongs to the runner's config; set the backup role's %s "
                                 "instead. Until then it overrides the config's." % (name, DEPRECATED[name]),
                                 version="1.0.0", collection_name="todoapi.pgbackup")
        settings[ROLE_VARIABLES[name]] = value
    return settings


class FilterModule(object):
    def filters(self):
        return {"monitoring_settings": monitoring_settings}
