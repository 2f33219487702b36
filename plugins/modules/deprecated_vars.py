#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: deprecated_vars
short_description: Warn about variables that are set under a deprecated name
version_added: 0.2.0
description:
  - For each old name of O(renamed) that is set (extra var, inventory, play or host variable), prints a
    C([DEPRECATION WARNING]) naming the new variable and the version that drops the old name. Ansible prints these
    warnings in the terminal and in the job output of AWX / automation controller.
  - Only warns; the play decides which value it uses. The collection's playbooks keep using the value of an old
    name that is set, so a run that worked before still does the same thing.
  - Runs on the controller; the host is not contacted.
options:
  renamed:
    description: Old variable name -> new variable name.
    type: dict
    required: true
  removed_in:
    description: Version of the collection that no longer reads the old names.
    type: str
    required: true
  see:
    description: Where the new names are described, added to each warning.
    type: str
notes:
  - Supports check mode (it changes nothing).
  - Ansible does not print deprecation warnings when C(deprecation_warnings=False) is configured.
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Warn about the old names of this play's variables
  todoapi.pgbackup.deprecated_vars:
    renamed:
      repository: pgbackup_repository
      pg_port: pgbackup_db_port
    removed_in: 0.3.0
    see: docs/playbooks.md
  tags: [always]
'''

RETURN = r'''
used:
  description: The old names that are set, each with its new name.
  returned: always
  type: dict
  sample: {"repository": "pgbackup_repository"}
'''
