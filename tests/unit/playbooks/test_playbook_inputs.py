# -*- coding: utf-8 -*-
"""The playbooks' extra vars follow one naming scheme (docs/playbooks.md): target_hosts for the hosts,
a role's own name for a setting that role has, the playbook's prefix for what only the playbook decides.
A role-named variable is defaulted in the task (so inventory variables reach it) to the role's default;
each deprecated name is still read, before its new name; docs/playbooks.md and docs/awx are current."""

from __future__ import absolute_import, division, print_function

import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

from scripts import playbook_inputs

ROOT = playbook_inputs.ROOT
OWN_PREFIX = {"backup_now": "pgbackup_", "demo": "demo_", "dr_restore": "dr_", "pitr_restore": "pitr_",
              "pre_change_backup": "pre_change_", "rotate_backup_credentials": "rotate_", "verify_backup": "verify_"}
ROLE_OPTIONS = playbook_inputs.role_options()
PLAYBOOKS = playbook_inputs.playbooks()


def body(path):
    """The playbook without its header comment."""
    with open(path) as handle:
        text = handle.read()
    return text[text.index("\n- name:"):]


def test_every_playbook_lists_its_inputs():
    assert len(PLAYBOOKS) >= 9
    for path in PLAYBOOKS:
        assert len(playbook_inputs.header_inputs(path)) >= 3, path


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=playbook_inputs.playbook_name)
def test_names_follow_the_scheme(playbook):
    name = playbook_inputs.playbook_name(playbook)
    strays = [item.name for item in playbook_inputs.header_inputs(playbook)
              if item.name != "target_hosts" and item.name not in ROLE_OPTIONS
              and not item.name.startswith(OWN_PREFIX.get(name, "\0"))]
    assert not strays, "%s: neither target_hosts, a role's variable nor %s*: %s" % (name, OWN_PREFIX.get(name), strays)


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=playbook_inputs.playbook_name)
def test_role_variables_get_the_role_default_in_the_task(playbook):
    text = body(playbook)
    play_vars = playbook_inputs.first_play(playbook).get("vars") or {}
    problems = []
    for item in playbook_inputs.header_inputs(playbook):
        if item.name not in ROLE_OPTIONS:
            continue
        if item.name in play_vars:
            problems.append("%s is a play variable: inventory variables would not reach it" % item.name)
        expected = ROLE_OPTIONS[item.name][1].get("default")
        for written in re.findall(r"\b%s \| default\(((?!omit)[^()]*)\)" % item.name, text):
            if yaml.safe_load(written) != expected:
                problems.append("%s defaults to %s, role %s to %r" % (item.name, written, ROLE_OPTIONS[item.name][0], expected))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=playbook_inputs.playbook_name)
def test_deprecated_names_are_still_read_first(playbook):
    listed = set(item.name for item in playbook_inputs.header_inputs(playbook))
    text = body(playbook)
    role_texts = [role_text(role_dir, "tasks", "vars") for role_dir in playbook_inputs.role_dirs(playbook)]
    for old, new in playbook_inputs.deprecated_names(playbook).items():
        assert new in listed and old not in listed, (old, new)
        assert any(re.search(r"\b%s \| default\(" % old, t) for t in [text] + role_texts), \
            "%s is not read before %s" % (old, new)
        assert re.search(r"^\s+%s:" % old, text.split("pre_tasks:")[0], re.M) is None, "%s has a default" % old
        for role_dir in playbook_inputs.role_dirs(playbook):  # a role default would make the warning permanent
            assert re.search(r"^%s:" % old, role_text(role_dir, "defaults"), re.M) is None, "%s has a default" % old


def role_text(role_dir, *folders):
    texts = []
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(role_dir, folder, "*.yml"))):
            with open(path) as handle:
                texts.append(handle.read())
    return "\n".join(texts)


def test_docs_table_is_current():
    tables = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "playbook_inputs.py")],
                            capture_output=True, text=True, check=True).stdout.strip().split("\n\n")
    with open(os.path.join(ROOT, "docs", "playbooks.md")) as handle:
        doc = handle.read()
    for table in tables:
        assert table in doc, "run: .venv/bin/python scripts/playbook_inputs.py (tables of docs/playbooks.md)"


def test_awx_templates_are_current():
    check = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "awx_surveys.py"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
