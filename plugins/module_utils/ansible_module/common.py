# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: connection options, the repository (a path or a URL
with the options of its storage), error handling and the end of a backup."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import tempfile
import uuid

from ..core.errors import PgBackupError
from ..core.pgconn import ConnectionSpec, PSYCOPG2_IMPORT_ERROR
from ..physical.wal_remote import RemoteWalArchive
from ..storage import azure_blob
from ..storage import factory
from ..storage import s3
from ..storage import sftp
from ..storage.base import is_remote
from ..storage.working_copy import StagingRepository

CONNECTION_ARGS = dict(
    host=dict(type="str", aliases=["login_host"]),
    port=dict(type="int", default=5432, aliases=["login_port"]),
    user=dict(type="str", default="postgres", aliases=["login_user"]),
    password=dict(type="str", no_log=True, aliases=["login_password"]),
    sslmode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    pg_bin_dir=dict(type="path"),
)

# A path or a URL, and the options of every back-end (doc fragments todoapi.pgbackup.remote and
# todoapi.pgbackup.remote.repository).
STORAGE_ARGS = dict(
    repository=dict(type="str", required=True),
    owner=dict(type="str", default="postgres"),
)
STORAGE_ARGS.update(s3.S3_ARGUMENT_SPEC)
STORAGE_ARGS.update(azure_blob.AZURE_ARGUMENT_SPEC)
STORAGE_ARGS.update(sftp.SFTP_ARGUMENT_SPEC)

# Where a backup to a URL is taken first (doc fragment todoapi.pgbackup.remote.upload).
UPLOAD_ARGS = dict(
    work_dir=dict(type="path"),
    keep_local_copy=dict(type="bool", default=False),
)
UPLOAD_PREFIX = "pgbackup-upload-"


def storage_argument_spec(**specific):
    """Connection options, a repository path or URL with its storage options, and ``specific``."""
    spec = dict(CONNECTION_ARGS)
    spec.update(STORAGE_ARGS)
    spec.update(specific)
    return spec


def connection_from(module):
    return ConnectionSpec.from_params(module.params)


def storage_options(params):
    """The ``s3_*``/``aws_*``, ``azure_*`` and ``sftp_*`` module parameters as open_repository() keywords."""
    options = s3.s3_options_from_params(params)
    options.update(azure_blob.azure_options_from_params(params))
    options.update(sftp.sftp_options_from_params(params))
    return options


def repository_from(module):
    """The module's ``repository``: a LocalRepository for a path; for a URL the S3, Azure or SFTP
    repository, opened with the module's storage options. Opening checks the URL, the credentials'
    shape and the client library; it does not contact the service yet."""
    params = module.params
    return run_or_fail(module, factory.open_repository, expanded(params["repository"]), owner=params["owner"],
                       **storage_options(params))


def expanded(location):
    """A path option that may also be a URL: the path expanded as type=path does (~, $VARS), a URL unchanged."""
    return location if "://" in location else os.path.expanduser(os.path.expandvars(location))


def archive_from(module, option="archive_dir"):
    """A WAL archive option: a directory path (expanded as type=path does), or for a URL the
    ``wal_remote.RemoteWalArchive`` there, opened with the module's storage options as the repository is."""
    location = expanded(module.params[option])
    if "://" not in location:
        return location
    return RemoteWalArchive(run_or_fail(module, factory.open_repository, location, **storage_options(module.params)))


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


class BackupStaging(object):
    """Where a backup module (pg_dump) takes its backup: the repository itself when it is local. For a
    URL, a local repository first: ``work_dir`` itself with ``keep_local_copy``, else a private temporary
    directory below ``work_dir`` (default: the system's temporary directory) that ``cleanup()`` removes."""

    def __init__(self, module, repository):
        params = module.params
        self.remote = is_remote(repository)
        self.keep = bool(params.get("keep_local_copy"))
        self.temporary = None
        work_dir = params.get("work_dir")
        if not self.remote:
            self.local = repository
        elif self.keep:
            if not work_dir:
                module.fail_json(msg="keep_local_copy needs work_dir: the local repository the backup stays in.",
                                 hint="Set work_dir to a local directory, or leave keep_local_copy false.")
            self.local = StagingRepository(work_dir, repository, owner=params["owner"])
        else:  # created 0700 by the backup itself (LocalRepository.prepare), so never in check mode
            self.temporary = os.path.join(work_dir or tempfile.gettempdir(), UPLOAD_PREFIX + uuid.uuid4().hex)
            self.local = StagingRepository(self.temporary, repository, owner=params["owner"])

    def cleanup(self):
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None


def exit_with_backup(module, engine, request, repository, staging=None):
    """The end of a backup module (pg_dump, pg_basebackup): in check mode exit with the engine's plan
    (and, for a URL, proof that the storage answers); otherwise take the backup into
    ``request.repository`` and, for a URL, upload it (read back and checked against the manifest,
    manifest last) before the local copy is removed (``staging``: a BackupStaging). Exits with the
    manifest plus the artifact's full path or URL."""
    remote = is_remote(repository)
    if module.check_mode:
        plan = run_or_fail(module, engine.plan, request)
        if remote:
            run_or_fail(module, repository.check_reachable)
            plan.update(repository=repository.url, work_dir=request.repository.path)
        module.exit_json(changed=True, backup=plan)
    try:
        manifest = run_or_fail(module, engine.backup, request)
        if remote:
            upload(module, manifest, request.repository, repository, staging)
        manifest["path"] = repository.artifact_path(manifest)
    finally:
        if staging is not None:
            staging.cleanup()
    module.exit_json(changed=True, backup=manifest)


def upload(module, manifest, local, repository, staging):
    """Upload a backup just taken; a failure says what became of the local copy."""
    try:
        repository.upload(manifest, local)
    except PgBackupError as exc:
        if staging is not None and staging.keep:
            local_copy = "the backup stays in '%s' (keep_local_copy): copy it with todoapi.pgbackup.backup_copy" % local.path
        else:
            local_copy = "the copy taken in the temporary work directory was removed: take the backup again"
        module.fail_json(msg="Backup '%s' was taken but its upload to '%s' failed: %s" % (
            manifest["id"], repository.url, exc.message), error=exc.message,
            hint="Nothing was published there; %s. %s" % (local_copy, exc.hint or ""))
    if staging is not None and staging.keep:
        manifest["local_path"] = local.artifact_path(manifest)
