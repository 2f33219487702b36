# -*- coding: utf-8 -*-
"""base_backup, pitr and wal_archive are the physical layer's entry modules: the modules, the runner, ops/,
bench/ and the tests import them. What they promise in __all__ must be there, and be the owner's object."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup, base_backup_tar, base_backup_verify
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_chain, base_backup_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import pitr, pitr_request
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_archive, wal_archive_contents, wal_names


@pytest.mark.parametrize("module", [base_backup, pitr, wal_archive], ids=lambda module: module.__name__.rsplit(".", 1)[1])
def test_every_promised_name_is_there(module):
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_entry_names_are_the_owners_objects():
    assert base_backup.extract_backup is base_backup_tar.extract_backup
    assert base_backup.verify_tar_backup is base_backup_verify.verify_tar_backup
    assert base_backup.chain_of is base_backup_chain.chain_of
    assert base_backup.restore_into is base_backup_restore.restore_into
    assert pitr.PitrRequest is pitr_request.PitrRequest
    assert wal_archive.prune_wal is wal_archive_contents.prune_wal
    assert wal_archive.SEGMENT is wal_names.SEGMENT
