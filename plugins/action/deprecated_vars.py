# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of todoapi.pgbackup.deprecated_vars (documented in plugins/modules/deprecated_vars.py).

Runs on the controller only: whether a variable is set is a question about the play's variables,
not about the host. A module's ``deprecations`` are what Ansible prints as [DEPRECATION WARNING],
in a terminal as in AWX's job output, which a debug message is not.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.module_utils.six import string_types
from ansible.plugins.action import ActionBase

COLLECTION = "todoapi.pgbackup"


def deprecation_message(old, new, see):
    return "The variable '%s' is deprecated: use '%s'%s. Until then a value given under the old name is the one " \
           "used." % (old, new, " (%s)" % see if see else "")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("renamed", "removed_in", "see"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        renamed = self._task.args.get("renamed")
        removed_in = self._task.args.get("removed_in")
        see = self._task.args.get("see") or ""
        if not isinstance(renamed, dict) or not all(isinstance(k, string_types) and isinstance(v, string_types)
                                                    for k, v in renamed.items()):
            raise AnsibleActionFail("renamed must be a dictionary of old variable name: new variable name")
        if not removed_in:
            raise AnsibleActionFail("removed_in (the version that drops the old names) is required")
        used = dict((old, new) for old, new in renamed.items() if old in task_vars)
        result.update(changed=False, used=used, deprecations=[
            {"msg": deprecation_message(old, new, see), "version": str(removed_in),
             "collection_name": COLLECTION} for old, new in sorted(used.items())])
        return result
