# -*- coding: utf-8 -*-
"""Every filter of plugins/filter has the documentation ansible-doc -t filter renders: in the
plugin's DOCUMENTATION when the file is named after its one filter, else in <filter>.yml beside it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import glob
import importlib
import os

import pytest
import yaml

FILTER_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "filter"))


def documented_filters():
    for path in sorted(glob.glob(os.path.join(FILTER_DIR, "*.py"))):
        plugin = os.path.splitext(os.path.basename(path))[0]
        module = importlib.import_module("ansible_collections.todoapi.pgbackup.plugins.filter." + plugin)
        for name in sorted(module.FilterModule().filters()):
            yield plugin, name, path


def docs_of(plugin, name, path):
    sidecar = os.path.join(FILTER_DIR, name + ".yml")
    if os.path.exists(sidecar):
        with open(sidecar) as handle:
            return yaml.safe_load(handle)
    assert plugin == name, "filter %s of %s.py needs %s.yml (only a file named after its filter may hold it)" % (
        name, plugin, name)
    parts = {}
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
            text = node.value.value
            parts[node.targets[0].id] = text if node.targets[0].id == "EXAMPLES" else yaml.safe_load(text)
    return parts


def descriptions(node):
    """Every 'description' below node (ansible-doc wants a string or a list of strings)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description":
                yield value
            else:
                yield from descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from descriptions(item)


def is_text(description):
    return isinstance(description, str) or (isinstance(description, list) and all(isinstance(d, str) for d in description))


@pytest.mark.parametrize("plugin, name, path", list(documented_filters()), ids=lambda value: os.path.basename(str(value)))
def test_filter_is_documented(plugin, name, path):
    docs = docs_of(plugin, name, path)
    assert docs["DOCUMENTATION"]["name"] == name
    bad = [d for d in descriptions([docs["DOCUMENTATION"], docs["RETURN"]]) if not is_text(d)]
    assert not bad, "descriptions must be strings (quote a ': ' in YAML): %s" % bad
    assert docs["DOCUMENTATION"]["short_description"] and docs["DOCUMENTATION"]["options"]["_input"]
    assert "todoapi.pgbackup.%s" % name in docs["EXAMPLES"]
    assert docs["RETURN"]["_value"]["description"]
