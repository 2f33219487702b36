"""Generate AWX / automation controller job templates with survey specs for the collection's
playbooks, one question for each scalar extra var the playbook's header lists (scripts/playbook_inputs.py).
A variable one of the collection's roles owns is asked as that role's argument spec describes it; the
playbook's own inputs take their default from the play's ``vars:``, else from the header.

    .venv/bin/python scripts/awx_surveys.py          # writes docs/awx/*.json
    .venv/bin/python scripts/awx_surveys.py --check  # fails if docs/awx is out of date
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import sys

import yaml

from playbook_inputs import ROOT, first_play, header_inputs, playbook_name, playbooks, role_options

OUT = os.path.join(ROOT, "docs", "awx")
SURVEY_TYPES = {"str": "text", "path": "text", "int": "integer", "float": "float", "raw": "text"}
NO_VALUE = ("", "none", '""', "(required)")


def survey_question(variable, spec):
    """One survey question for a scalar option; None for lists, dicts and values computed from other
    variables (set those as extra vars)."""
    kind = spec.get("type", "str")
    description = spec.get("description", "")
    if isinstance(description, list):
        description = " ".join(description)
    question = {"variable": variable, "question_name": variable, "question_description": description[:512],
                "required": bool(spec.get("required", False))}
    if spec.get("no_log") or "password" in variable:
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


def value_spec(variable, value, description, required=False):
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), "list" if isinstance(value, list) else "dict")
    spec = {"type": kind, "default": value, "description": description, "required": required}
    if "password" in variable:
        spec["no_log"] = True
    return spec


def header_default(text):
    """The value a header's default column stands for; '' for 'none', a description or a placeholder."""
    if text in NO_VALUE or " " in text.strip("[]{}'\"") or text.startswith("<"):
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def conditional_roles(playbook_path):
    """Short names of the roles the first play applies only under a condition (roles: - role: x, when: ...)."""
    entries = first_play(playbook_path).get("roles") or []
    return set(entry["role"].split(".")[-1] for entry in entries if isinstance(entry, dict) and "when" in entry)


def input_specs(playbook_path, owners):
    """{variable: spec} for every variable the header lists, in its order. A role's required option is
    not required when the playbook applies that role only under a condition (provision_db_host.yml)."""
    play_vars = first_play(playbook_path).get("vars") or {}
    optional_roles = conditional_roles(playbook_path)
    specs = {}
    for item in header_inputs(playbook_path):
        if item.name in owners:
            role, spec = owners[item.name]
            specs[item.name] = dict(spec, required=False) if role in optional_roles else spec
        elif item.name in play_vars and "{{" in str(play_vars[item.name]):
            specs[item.name] = {"type": "computed", "description": item.description}  # a blank answer would break it
        elif item.name in play_vars:
            specs[item.name] = value_spec(item.name, play_vars[item.name], item.description)
        else:
            specs[item.name] = value_spec(item.name, header_default(item.default), item.description,
                                          required=item.default == "(required)")
    return specs


def job_template(playbook_path, owners):
    name = playbook_name(playbook_path)
    questions, extra_only, roles = [], [], []
    for variable, spec in input_specs(playbook_path, owners).items():
        question = survey_question(variable, spec)
        if question is None:
            extra_only.append(variable)
        else:
            questions.append(question)
        role = owners.get(variable, (None,))[0]
        if role and role not in roles:
            roles.append(role)
    return name, {
        "name": "todoapi.pgbackup %s" % name,
        "job_type": "run",
        "playbook": "playbooks/%s.yml" % name,
        "ask_variables_on_launch": True,
        "ask_inventory_on_launch": True,
        "survey_enabled": bool(questions),
        "survey_spec": {"name": name, "description": "Generated from the extra vars the playbook's header lists "
                        "(docs/playbooks.md), described by the argument specs of roles: %s" % (", ".join(roles) or "none"),
                        "spec": questions},
        "extra_vars_only": sorted(set(extra_only)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    owners = role_options()
    os.makedirs(OUT, exist_ok=True)
    for playbook in playbooks():
        name, template = job_template(playbook, owners)
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
