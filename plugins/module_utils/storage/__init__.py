# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup repositories: local/NFS, S3, Azure Blob, SFTP (``factory.open_repository``)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Metadata beside a stored file, where the storage has none of its own (SFTP: ``<name>.meta``). Here, not
# in a back-end, so that readers of an archive's names (the WAL archive) need not import the back-ends.
META_SUFFIX = ".meta"
