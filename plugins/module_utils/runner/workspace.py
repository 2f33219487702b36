# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local room for work on a remote repository, below the setup's ``state_dir``: a backup whose first
repository is remote is taken here and then uploaded; verify and restore download a remote backup
here (checked against its manifest before use). Each use gets its own directory, removed afterwards,
so nothing is left behind and two setups never share one."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import shutil
import tempfile

from ..core.errors import PgBackupError
from ..storage.local import LocalRepository
from .program import current_user


@contextlib.contextmanager
def scratch_repository(config, purpose):
    """A new, empty LocalRepository below ``<state_dir>/work``, removed on the way out."""
    parent = os.path.join(config["state_dir"], "work")
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        path = tempfile.mkdtemp(prefix=purpose + "-", dir=parent)
    except OSError as exc:
        raise PgBackupError("Cannot make a work directory in '%s' as OS user '%s': %s." % (
            parent, current_user(), exc.strerror),
            hint="Create 'state_dir' (the backup role does, owned by the backup user) or set it to a writable directory.")
    try:
        yield LocalRepository(path, owner=config["owner"])
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def readable_copy(config, repository, manifest):
    """(repository, manifest) to read a backup's files from: the repository itself when it is local,
    else a verified download into a scratch repository."""
    if isinstance(repository, LocalRepository):
        yield repository, manifest
        return
    with scratch_repository(config, "download") as local:
        yield local, repository.download(manifest, local)
