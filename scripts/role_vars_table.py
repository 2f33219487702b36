"""Print a role's variable table (Markdown) from its meta/argument_specs.yml:
    .venv/bin/python scripts/role_vars_table.py roles/backup_login
"""

from __future__ import absolute_import, division, print_function

import os
import re
import sys

import yaml


def plain(text):
    text = " ".join(text) if isinstance(text, list) else str(text or "")
    return re.sub(r"\b[CVOIE]\(([^)]*)\)", r"`\1`", text).replace("|", "\\|")


def table(role_dir):
    with open(os.path.join(role_dir, "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, spec in sorted(options.items()):
        default = "(required)" if spec.get("required") else "`%s`" % (spec.get("default", ""),)
        rows.append("| `%s` | %s | %s | %s |" % (name, spec.get("type", "str"), default, plain(spec.get("description"))))
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(sys.argv[1]))
