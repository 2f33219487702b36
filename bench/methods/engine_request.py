# -*- coding: utf-8 -*-
"""The engine request a module builds when the user sets nothing, from the module's documented defaults."""

from __future__ import absolute_import, division, print_function

import ast
import inspect
import os

from harness.paths import ROOT, import_collection

# Options of the modules that are not engine request arguments (connection, repository, target).
NOT_REQUEST_OPTIONS = ("database", "repository", "owner", "host", "port", "user", "password", "sslmode",
                       "pg_bin_dir", "backup", "source_database", "connection")
OPTION_TO_KWARG = {"format": "fmt", "globals": "globals_", "type": "backup_type"}


def module_defaults(module):
    """{option: default} from a module's DOCUMENTATION (kept equal to argument_spec by sanity tests)."""
    import yaml
    path = os.path.join(ROOT, "plugins", "modules", module + ".py")
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            options = yaml.safe_load(node.value.value).get("options") or {}
            return dict((name, spec.get("default")) for name, spec in options.items())
    raise RuntimeError("no DOCUMENTATION in %s" % path)


def request_kwargs(module, request_class, overrides=None):
    """The keyword arguments the module passes to the engine request when the user sets nothing."""
    accepted = inspect.signature(request_class.__init__).parameters
    kwargs = {}
    for option, value in module_defaults(module).items():
        name = OPTION_TO_KWARG.get(option, option)
        if option in NOT_REQUEST_OPTIONS or name not in accepted:
            continue
        kwargs[name] = value
    for option, value in (overrides or {}).items():
        kwargs[OPTION_TO_KWARG.get(option, option)] = value
    return kwargs


def engine_defaults():
    """{module: request kwargs} of the three engine calls the bench measures (reported with the results)."""
    import_collection()
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
    return {
        "pg_dump": request_kwargs("pg_dump", logical_backup.LogicalBackupRequest),
        "pg_restore": request_kwargs("pg_restore", logical_restore.LogicalRestoreRequest),
        "pg_basebackup": request_kwargs("pg_basebackup", base_backup.PhysicalBackupRequest),
    }
