# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: connection options, error handling and the end of a backup."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ..core.errors import PgBackupError
from ..core.pgconn import ConnectionSpec, PSYCOPG2_IMPORT_ERROR
from ..storage.local import LocalRepository

CONNECTION_ARGS = dict(
    host=dict(type="str", aliases=["login_host"]),
    port=dict(type="int", default=5432, aliases=["login_port"]),
    user=dict(type="str", default="postgres", aliases=["login_user"]),
    password=dict(type="str", no_log=True, aliases=["login_password"]),
    sslmode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    pg_bin_dir=dict(type="path"),
)

REPOSITORY_ARGS = dict(
    repository=dict(type="path", required=True),
    owner=dict(type="str", default="postgres"),
)


def argument_spec(**specific):
    spec = dict(CONNECTION_ARGS)
    spec.update(REPOSITORY_ARGS)
    spec.update(specific)
    return spec


def connection_from(module):
    return ConnectionSpec.from_params(module.params)


def repository_from(module):
    return LocalRepository(module.params["repository"], owner=module.params["owner"])


def require_psycopg2(module):
    if PSYCOPG2_IMPORT_ERROR:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)


def run_or_fail(module, action, *args, **kwargs):
    """Call the engine; turn a PgBackupError into one fail_json with the hint included."""
    try:
        return action(*args, **kwargs)
    except PgBackupError as exc:
        module.fail_json(msg=str(exc), error=exc.message, hint=exc.hint or "")


def exit_with_backup(module, engine, request, repository):
    """The end of a backup module (pg_dump, pg_basebackup): in check mode exit with the engine's
    plan; otherwise take the backup and exit with its manifest plus the artifact's full path."""
    if module.check_mode:
        module.exit_json(changed=True, backup=run_or_fail(module, engine.plan, request))
    manifest = run_or_fail(module, engine.backup, request)
    manifest["path"] = os.path.join(repository.path, manifest["artifact"])
    module.exit_json(changed=True, backup=manifest)
