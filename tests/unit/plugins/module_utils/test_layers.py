# -*- coding: utf-8 -*-
"""The engine's layout is its architecture (docs/architecture.md): these tests keep it that way.

- a layer imports only the layers below it (core < storage < logical, physical < ops < runner,
  ansible_module), never a sibling at its own level, and there is no import cycle;
- the collection's own code is imported plainly (no ``try: ... except ImportError`` around it);
- no file in plugins/ is over 600 lines and no function over 80;
- the engine role installs exactly the packages the host needs (all, nested ones too, but ansible_module).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os
import re

import pytest

PLUGINS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins"))
MODULE_UTILS = os.path.join(PLUGINS, "module_utils")
ROLES = os.path.join(os.path.dirname(PLUGINS), "roles")

# Layer -> rank. A module may import a layer of a lower rank, and its own package.
RANKS = {"core": 0, "storage": 1, "logical": 2, "physical": 2, "ops": 3, "runner": 4, "ansible_module": 4}
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def python_files(top):
    for root, dirs, files in os.walk(top):
        dirs[:] = [name for name in dirs if name != "__pycache__"]
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


def engine_modules():
    """{dotted name relative to module_utils: path}, e.g. {'core.errors': '.../core/errors.py'}."""
    modules = {}
    for path in python_files(MODULE_UTILS):
        relative = os.path.relpath(path, MODULE_UTILS)[:-3].replace(os.sep, ".")
        modules[re.sub(r"(^|\.)__init__$", "", relative)] = path
    return modules


def engine_imports(name, path):
    """The engine modules ``name`` imports (dotted, relative to module_utils), with the import's line."""
    parts = name.split(".") if name else []
    package = parts if path.endswith("__init__.py") else parts[:-1]
    modules = engine_modules()
    found = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        for alias in node.names:
            candidate = ".".join(base + [alias.name])
            found.append((candidate if candidate in modules else ".".join(base), node.lineno))
    return found


def layer_of(dotted):
    return dotted.split(".", 1)[0]


def test_every_engine_file_lives_in_a_layer():
    flat = [name for name in engine_modules() if name and "." not in name and name not in RANKS]
    assert not flat, "engine files outside a layer folder: %s (put them in one of %s)" % (flat, sorted(RANKS))


def test_no_layer_imports_a_higher_one_or_a_sibling():
    wrong = []
    for name, path in engine_modules().items():
        if not name:
            continue
        own = layer_of(name)
        for target, line in engine_imports(name, path):
            other = layer_of(target)
            if other != own and RANKS.get(other, 99) >= RANKS[own]:
                wrong.append("%s:%d imports %s (%s may use only %s)" % (
                    os.path.relpath(path, PLUGINS), line, target, own,
                    sorted(layer for layer, rank in RANKS.items() if rank < RANKS[own]) or "itself"))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = dict((name, set(target for target, _line in engine_imports(name, path)) - {name})
                 for name, path in engine_modules().items())
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        if state.get(node) == "open":
            raise AssertionError("import cycle: %s" % " -> ".join(trail[trail.index(node):] + [node]))
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_own_code_is_imported_plainly():
    guarded = []
    for path in python_files(PLUGINS):
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if not isinstance(node, ast.Try):
                continue
            catches_import_error = any(isinstance(handler.type, ast.Name) and handler.type.id == "ImportError"
                                       for handler in node.handlers)
            own = [stmt for stmt in node.body if isinstance(stmt, ast.ImportFrom)
                   and (stmt.level or "todoapi.pgbackup" in (stmt.module or ""))]
            if catches_import_error and own:
                guarded.append("%s:%d" % (os.path.relpath(path, PLUGINS), node.lineno))
    assert not guarded, "the collection's own modules always ship whole; import them plainly: %s" % guarded
    assert not [path for path in python_files(PLUGINS) if "inspect.signature" in open(path).read()]


@pytest.mark.parametrize("path", list(python_files(PLUGINS)), ids=lambda path: os.path.relpath(path, PLUGINS))
def test_files_and_functions_stay_small(path):
    source = open(path).read()
    lines = source.count("\n")
    assert lines <= MAX_FILE_LINES, "%d lines, over %d: split it by job" % (lines, MAX_FILE_LINES)
    long_functions = ["%s (%d lines)" % (node.name, node.end_lineno - node.lineno + 1)
                      for node in ast.walk(ast.parse(source, path))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_functions, "functions over %d lines: %s" % (MAX_FUNCTION_LINES, long_functions)


def test_engine_role_installs_every_layer_the_host_needs():
    """Every package directory under module_utils, nested ones included, except ansible_module."""
    text = open(os.path.join(ROLES, "engine", "vars", "main.yml")).read()
    listed = re.search(r"^_engine_packages: \[(.*)\]$", text, re.M).group(1)
    packages = [item.strip().strip("'\"") for item in listed.split(",")]
    package_dirs = [os.path.relpath(root, MODULE_UTILS).replace(os.sep, "/")
                    for root, _dirs, files in os.walk(MODULE_UTILS) if "__init__.py" in files]
    needed = sorted(name for name in package_dirs if name.split("/")[0] != "ansible_module")
    assert packages[0] == "." and sorted(packages) == needed
