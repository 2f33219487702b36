"""Generate AWX / automation controller job templates with survey specs for the collection's
playbooks: from the argument specs of the roles each playbook uses, and from the playbook's own
play-level inputs (its ``vars:`` defaults, described in its header comment).

    .venv/bin/python scripts/awx_surveys.py          # writes docs/awx/*.json
    .venv/bin/python scripts/awx_surveys.py --check  # fails if docs/awx is out of date
"""

from __future__ import absolute_import, division, print_function

import argparse
import glob
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "awx")
ROLE_PREFIX = "todoapi.pgbackup."
SURVEY_TYPES = {"str": "text", "path": "text", "int": "integer", "float": "float", "raw": "text"}


def roles_of(playbook_path):
    """Role names (without the collection prefix) a playbook uses, in order."""
    with open(playbook_path) as handle:
        plays = yaml.safe_load(handle) or []
    found = []

    def visit(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role"):
                    found.append(value.get("name", ""))
                elif key == "roles" and isinstance(value, list):
                    found.extend(r if isinstance(r, str) else r.get("role", r.get("name", "")) for r in value)
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)
    visit(plays)
    with open(playbook_path) as handle:
        # A playbook that takes a role's variables without applying the role says "# survey-role: <name>".
        found.extend(re.findall(r"^# survey-role: (\S+)$", handle.read(), re.MULTILINE))
    names = []
    for name in found:
        short = name[len(ROLE_PREFIX):] if name.startswith(ROLE_PREFIX) else name
        if short and short not in names and os.path.isdir(os.path.join(ROOT, "roles", short)):
            names.append(short)
    return names


def survey_question(variable, spec):
    """One survey question for a scalar option; None for lists/dicts (set those as extra vars)."""
    kind = spec.get("type", "str")
    description = spec.get("description", "")
    if isinstance(description, list):
        description = " ".join(description)
    question = {"variable": variable, "question_name": variable, "question_description": description[:512],
                "required": bool(spec.get("required", False))}
    if spec.get("no_log"):
        question.update(type="password", default="")
    elif kind == "bool":
        question.update(type="multiplechoice", choices=["true", "false"],
                        default="true" if spec.get("default") else "false")
    elif spec.get("choices"):
        question.update(type="multiplechoice", choices=[str(c) for c in spec["choices"]],
                        default=str(spec.get("default", "")))
    elif kind in SURVEY_TYPES:
        question.update(type=SURVEY_TYPES[kind], default=spec.get("default", "") if spec.get("default") is not None else "")
    else:
        return None
    return question


def role_options(role):
    path = os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        specs = yaml.safe_load(handle).get("argument_specs", {})
    return specs.get("main", {}).get("options", {})


def play_inputs(playbook_path):
    """{variable: spec} of the first play's literal ``vars:`` defaults, described from the header
    comment (``#   name   description   default``); templated values are wiring, not inputs."""
    with open(playbook_path) as handle:
        text = handle.read()
    plays = yaml.safe_load(text) or []
    described = {}
    for line in text.splitlines():
        match = re.match(r"^#\s+([a-z_][a-z0-9_]*)\s{2,}(.*?)(\s{2,}\S.*)?$", line)
        if match:
            described[match.group(1)] = match.group(2).strip()
    inputs = {}
    for variable, value in ((plays[0].get("vars") or {}) if plays else {}).items():
        if isinstance(value, str) and "{{" in value:
            continue
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), "raw")
        spec = {"type": kind, "default": value, "description": described.get(variable, "")}
        if "password" in variable:
            spec["no_log"] = True
        inputs[variable] = spec
    return inputs


def job_template(playbook_path):
    name = os.path.splitext(os.path.basename(playbook_path))[0]
    questions, extra_only = [], []
    for variable, spec in play_inputs(playbook_path).items():
        question = survey_question(variable, spec) if not isinstance(spec["default"], (list, dict)) else None
        if question is None:
            extra_only.append(variable)
        else:
            questions.append(question)
    for role in roles_of(playbook_path):
        for variable, spec in sorted(role_options(role).items()):
            question = survey_question(variable, spec)
            if question is None:
                extra_only.append(variable)
            elif variable not in [q["variable"] for q in questions]:
                questions.append(question)
    return name, {
        "name": "todoapi.pgbackup %s" % name,
        "job_type": "run",
        "playbook": "playbooks/%s.yml" % name,
        "ask_variables_on_launch": True,
        "ask_inventory_on_launch": True,
        "survey_enabled": bool(questions),
        "survey_spec": {"name": name, "description": "Generated from the playbook's inputs and the argument specs of "
                        "roles: %s" % (", ".join(roles_of(playbook_path)) or "none"), "spec": questions},
        "extra_vars_only": sorted(set(extra_only)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    os.makedirs(OUT, exist_ok=True)
    for playbook in sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))):
        name, template = job_template(playbook)
        if not template["survey_spec"]["spec"]:
            continue
        path = os.path.join(OUT, "%s.job_template.json" % name)
        text = json.dumps(template, indent=2, sort_keys=True) + "\n"
        current = open(path).read() if os.path.exists(path) else None
        if current != text:
            stale.append(path)
            if not args.check:
                with open(path, "w") as handle:
                    handle.write(text)
    if args.check and stale:
        sys.exit("out of date: %s (run scripts/awx_surveys.py)" % ", ".join(stale))


if __name__ == "__main__":
    main()
