"""The extra vars of the collection's playbooks, read from the one place that lists them: each
playbook's header comment, after its "Extra vars" line, one variable a line

    #   name   what it is   default                 (or: what it is   (default: default))

(longer descriptions go on on lines indented further), and the deprecated names its first play, or a role
it applies, warns about (task todoapi.pgbackup.deprecated_vars). scripts/awx_surveys.py builds the AWX surveys from
this; docs/playbooks.md holds the tables printed here:

    .venv/bin/python scripts/playbook_inputs.py          # prints the tables
    .venv/bin/python scripts/playbook_inputs.py --write  # replaces them in docs/playbooks.md
"""

from __future__ import absolute_import, division, print_function

import collections
import glob
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "playbooks.md")
ENTRY = re.compile(r"^#   ([a-z_][a-z0-9_]*)\s{2,}(\S.*?)\s*$")
CONTINUED = re.compile(r"^#\s{4,}(\S.*?)\s*$")
DEFAULT_IN_PARENTHESES = re.compile(r"^(.*?)\s*\(default: (.*)\)$")
DEPRECATION_ACTIONS = ("todoapi.pgbackup.deprecated_vars", "deprecated_vars")

Input = collections.namedtuple("Input", "name description default")


def playbooks():
    return sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))


def playbook_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def _split(text):
    """(description, default as written) of one header entry."""
    match = DEFAULT_IN_PARENTHESES.match(text)
    if match:
        return match.group(1), match.group(2)
    parts = re.split(r"\s{2,}", text)
    return " ".join(parts[:-1]), parts[-1]


def header_inputs(path):
    """[Input] in the order the header lists them."""
    entries, listing = [], False
    with open(path) as handle:
        for line in handle:
            if line.startswith("- "):
                break
            if "Extra vars" in line:
                listing = True
                continue
            entry = ENTRY.match(line) if listing else None
            continued = CONTINUED.match(line) if listing and entries and not entry else None
            if entry:
                entries.append([entry.group(1), entry.group(2)])
            elif continued:
                entries[-1][1] += " " + continued.group(1)
            else:
                listing = listing and not entries
    return [Input(name, *_split(text)) for name, text in entries]


def first_play(path):
    with open(path) as handle:
        plays = yaml.safe_load(handle) or []
    return plays[0] if plays else {}


def role_dirs(path):
    """The directories of the collection's roles the playbook's first play applies (its ``roles:``)."""
    dirs = []
    for entry in first_play(path).get("roles") or []:
        name = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
        role_dir = os.path.join(ROOT, "roles", str(name).rsplit(".", maxsplit=1)[-1])
        if os.path.isdir(role_dir):
            dirs.append(role_dir)
    return dirs


def _task_files(path):
    """The playbook's first play's pre_tasks and tasks, then the tasks of the roles it applies."""
    play = first_play(path)
    tasks = (play.get("pre_tasks") or []) + (play.get("tasks") or [])
    for role_dir in role_dirs(path):
        for task_file in sorted(glob.glob(os.path.join(role_dir, "tasks", "*.yml"))):
            with open(task_file) as handle:
                tasks += [task for task in (yaml.safe_load(handle) or []) if isinstance(task, dict)]
    return tasks


def deprecated_names(path):
    """{old name: new name} the playbook warns about, itself or in a role it applies."""
    renamed = {}
    for task in _task_files(path):
        for action in DEPRECATION_ACTIONS:
            if action in task:
                renamed.update(task[action].get("renamed") or {})
    return renamed


def role_options():
    """{variable: (role, argument spec)} of every role of the collection."""
    options = {}
    for spec_file in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))):
        role = os.path.basename(os.path.dirname(os.path.dirname(spec_file)))
        with open(spec_file) as handle:
            main = yaml.safe_load(handle)["argument_specs"].get("main", {})
        for name, spec in (main.get("options") or {}).items():
            options[name] = (role, spec)
    return options


def _cell(text):
    return text.replace("|", "\\|")


def _code(text):
    return "`%s`" % text if "`" not in text else "``%s``" % text


def inputs_table():
    """One row per variable: default (per playbook where they differ), meaning, playbooks."""
    seen = collections.OrderedDict()
    for path in playbooks():
        for item in header_inputs(path):
            seen.setdefault(item.name, []).append((playbook_name(path), item))
    rows = ["| variable | default | meaning | playbooks |", "|---|---|---|---|"]
    for name in sorted(seen):
        uses = seen[name]
        by_default = collections.OrderedDict()
        for playbook, item in uses:
            by_default.setdefault(item.default, []).append(playbook)
        if len(by_default) == 1:
            default = _code(next(iter(by_default)))
        else:
            default = "; ".join("%s (%s)" % (_code(value), ", ".join(names)) for value, names in by_default.items())
        descriptions = collections.Counter(item.description for _playbook, item in uses)
        meaning = sorted(descriptions, key=lambda text: (-descriptions[text], len(text), text))[0]
        names = ", ".join(sorted(set(playbook for playbook, _item in uses)))
        rows.append("| `%s` | %s | %s | %s |" % (name, _cell(default), _cell(meaning), names))
    return "\n".join(rows)


def deprecated_table():
    """One row per deprecated name: its new name and the playbooks that still read it."""
    renames = collections.OrderedDict()
    for path in playbooks():
        for old, new in deprecated_names(path).items():
            renames.setdefault((old, new), []).append(playbook_name(path))
    rows = ["| deprecated name | use instead | read (with a warning) by |", "|---|---|---|"]
    for (old, new), names in sorted(renames.items()):
        rows.append("| `%s` | `%s` | %s |" % (old, new, ", ".join(names)))
    return "\n".join(rows)


def write_doc(tables):
    """Replace each table of docs/playbooks.md (from its header row to the next blank line)."""
    with open(DOC) as handle:
        text = handle.read()
    for table in tables:
        header = table.split("\n", 1)[0]
        start = text.index(header)
        end = text.find("\n\n", start)
        text = text[:start] + table + (text[end:] if end >= 0 else "\n")
    with open(DOC, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    TABLES = [deprecated_table(), inputs_table()]
    if sys.argv[1:] == ["--write"]:
        write_doc(TABLES)
    else:
        print("\n\n".join(TABLES))
