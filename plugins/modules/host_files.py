#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: host_files
short_description: Make a host's files, directories and cron entries what a role wants, in one task
version_added: 0.2.0
description:
  - Compares every path in O(paths) and every entry in O(cron) with what is wanted and changes only what differs,
    in one process on the host (the C(todoapi.pgbackup.backup) role converges its directories, runner, config,
    passfile, log file and cron entries with one run of this module).
  - Paths are made in the order given, so list a directory before the files in it.
  - Files are written through a temporary file in the same directory, fsynced, given their owner, group and mode,
    then renamed over the old one; a reader never sees half a file or a file with the wrong mode.
  - "Cron entries are kept as M(ansible.builtin.cron) keeps them (a C(#Ansible: <name>) line above the job line), so
    entries written by that module are updated in place, not duplicated. The crontab is installed with C(crontab -u)."
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: One before/after per changed path (state, owner, group, mode, content) and per crontab;
      the content of O(paths[].secret_content) is never shown.
options:
  paths:
    description: Files and directories, made in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - V(directory) creates it (with missing parents, each given O(paths[].owner) and O(paths[].mode)) and sets its
            owner, group and mode; V(file) makes its content O(paths[].content) or O(paths[].secret_content);
            V(touch) creates an empty file when missing and never changes its content; V(absent) removes a file.
        type: str
        choices: [directory, file, touch, absent]
        default: file
      owner:
        description: Owning user (name or id). Required unless O(paths[].state=absent).
        type: str
      group:
        description: Owning group (name or id). Required unless O(paths[].state=absent).
        type: str
      mode:
        description: Octal mode, e.g. V('0640'). Required unless O(paths[].state=absent).
        type: str
      content:
        description: The file's whole content (O(paths[].state=file)); shown in diff mode.
        type: str
      secret_content:
        description: The file's whole content when it is a secret (a passfile); never logged or shown in a diff.
        type: str
      keep_existing:
        description: With O(paths[].state=directory), leave an existing directory's owner and mode as they are (e.g. /var/log);
          only a missing one is created.
        type: bool
        default: false
  cron:
    description: Entries of one user's crontab.
    type: dict
    suboptions:
      user:
        description: The user whose crontab holds the entries.
        type: str
        required: true
      entries:
        description: "The entries, each found by its C(#Ansible: <name>) line."
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: "Name of the entry (the text after C(#Ansible: ))."
            type: str
            required: true
          state:
            description: Whether the entry is there.
            type: str
            choices: [present, absent]
            default: present
          minute:
            description: Minute field.
            type: str
            default: '*'
          hour:
            description: Hour field.
            type: str
            default: '*'
          day:
            description: Day of month field.
            type: str
            default: '*'
          month:
            description: Month field.
            type: str
            default: '*'
          weekday:
            description: Day of week field.
            type: str
            default: '*'
          job:
            description: The command. Required with O(cron.entries[].state=present).
            type: str
  list_files:
    description: Also report the regular files of a directory whose names match patterns (nothing is changed there),
      e.g. the systemd units a role may have to remove.
    type: dict
    suboptions:
      dir:
        description: The directory (a missing one has no files).
        type: path
        required: true
      patterns:
        description: Shell patterns of the file names.
        type: list
        elements: str
        required: true
notes:
  - Runs as a user allowed to give files the owners asked for (normally root, with C(become)).
seealso:
  - module: ansible.builtin.file
  - module: ansible.builtin.copy
  - module: ansible.builtin.cron
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Make the backup files and cron entries what they should be
  todoapi.pgbackup.host_files:
    paths:
      - path: /var/log
        state: directory
        owner: root
        group: root
        mode: "0755"
        keep_existing: true
      - path: /etc/todoapi-pgbackup
        state: directory
        owner: root
        group: postgres
        mode: "0750"
      - path: /etc/todoapi-pgbackup/config.json
        content: "{{ config | to_nice_json }}\n"
        owner: root
        group: postgres
        mode: "0640"
      - path: /etc/todoapi-pgbackup/pgpass
        secret_content: "*:*:*:postgres:{{ password }}\n"
        owner: postgres
        group: postgres
        mode: "0600"
      - path: /var/log/todoapi_backup.log
        state: touch
        owner: postgres
        group: postgres
        mode: "0640"
    cron:
      user: postgres
      entries:
        - name: todoapi-pgbackup backup
          minute: "0"
          job: /usr/local/bin/todoapi-pgbackup --config /etc/todoapi-pgbackup/config.json backup
        - name: todoapi-pgbackup prune
          state: absent
'''

RETURN = r'''
paths:
  description: Each path that changed (or would, in check mode) with what changed
    (V(created), V(content), V(owner), V(mode), V(removed)).
  returned: always
  type: dict
  sample: {"/etc/todoapi-pgbackup/config.json": ["content"]}
cron:
  description: Names of the cron entries that changed (or would).
  returned: always
  type: list
  elements: str
files:
  description: The files O(list_files) found (empty without it).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import host_files
# Not ansible_module.common: it imports the storage and physical layers, which would all be shipped with each run.
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError

PATH_SPEC = dict(
    path=dict(type="path", required=True),
    state=dict(type="str", choices=["directory", "file", "touch", "absent"], default="file"),
    owner=dict(type="str"),
    group=dict(type="str"),
    mode=dict(type="str"),
    content=dict(type="str"),
    secret_content=dict(type="str", no_log=True),
    keep_existing=dict(type="bool", default=False),
)
ENTRY_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    minute=dict(type="str", default="*"),
    hour=dict(type="str", default="*"),
    day=dict(type="str", default="*"),
    month=dict(type="str", default="*"),
    weekday=dict(type="str", default="*"),
    job=dict(type="str"),
)


def wanted_paths(module):
    """The paths as the engine takes them, content as bytes; a missing or malformed value fails naming it."""
    wanted = []
    for index, item in enumerate(module.params["paths"]):
        where = "paths[%d] (%s)" % (index, item["path"])
        if item["state"] != "absent":
            missing = [key for key in ("owner", "group", "mode") if not item[key]]
            if missing:
                module.fail_json(msg="%s needs %s." % (where, ", ".join(missing)))
            try:
                int(item["mode"], 8)
            except ValueError:
                module.fail_json(msg="%s: mode %r is not an octal mode such as '0640'." % (where, item["mode"]))
        content = item["secret_content"] if item["secret_content"] is not None else item["content"]
        if item["state"] == "file" and content is None:
            module.fail_json(msg="%s: a file needs content or secret_content." % where)
        wanted.append(dict(item, content=None if content is None else content.encode("utf-8"),
                           secret=item["secret_content"] is not None))
    return wanted


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="dict", default=[], options=PATH_SPEC),
            cron=dict(type="dict", options=dict(user=dict(type="str", required=True),
                                                entries=dict(type="list", elements="dict", default=[], options=ENTRY_SPEC))),
            list_files=dict(type="dict", options=dict(dir=dict(type="path", required=True),
                                                      patterns=dict(type="list", elements="str", required=True))),
        ),
        supports_check_mode=True,
    )
    cron = module.params["cron"]
    for entry in (cron or {}).get("entries", []):
        if entry["state"] == "present" and not entry["job"]:
            module.fail_json(msg="cron entry '%s' needs a job (or state: absent)." % entry["name"])
    try:
        result = host_files.converge(wanted_paths(module), cron=cron, list_files=module.params["list_files"], check_mode=module.check_mode)
    except PgBackupError as exc:
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint or "")
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
