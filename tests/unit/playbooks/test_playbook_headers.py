# -*- coding: utf-8 -*-
"""A playbook that applies a role (``roles:``) takes that role's variables as its extra vars, and
its header comment lists each of them on a line of its own ending with its default
(``#   name   what it is   default``). The role's meta/argument_specs.yml owns the defaults; this
test keeps the headers from drifting away from them."""

from __future__ import absolute_import, division, print_function

import glob
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HEADER_LINE = re.compile(r"^#\s+([a-z_][a-z0-9_]*)\s{2,}.*\S\s{2,}(\S.*?)\s*$")


def applied_roles(playbook):
    with open(playbook) as handle:
        plays = yaml.safe_load(handle) or []
    for play in plays:
        for entry in play.get("roles") or []:
            name = entry if isinstance(entry, str) else entry["role"]
            yield name.split(".")[-1]


def listed_defaults(playbook):
    """{variable: default as written} from the comment lines before the first play."""
    listed = {}
    with open(playbook) as handle:
        for line in handle:
            if line.startswith("- "):
                break
            match = HEADER_LINE.match(line)
            if match:
                listed[match.group(1)] = match.group(2)
    return listed


def role_options(role):
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


PLAYBOOKS = [path for path in sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))) if list(applied_roles(path))]


def test_some_playbooks_apply_roles():
    assert len(PLAYBOOKS) >= 3, PLAYBOOKS


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=os.path.basename)
def test_header_lists_every_role_variable_with_its_default(playbook):
    listed = listed_defaults(playbook)
    problems = []
    for role in applied_roles(playbook):
        for name, spec in sorted(role_options(role).items()):
            if name not in listed:
                problems.append("%s is not listed" % name)
            elif yaml.safe_load(listed[name]) != spec.get("default"):
                problems.append("%s: the header says %s, roles/%s/meta/argument_specs.yml %r" % (
                    name, listed[name], role, spec.get("default")))
    assert not problems, "%s:\n%s" % (os.path.basename(playbook), "\n".join(problems))
