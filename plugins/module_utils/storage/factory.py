# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``open_repository(url_or_path, owner, **options)``: the one entry point to a repository. It
returns a ``LocalRepository`` for paths, and the S3, Azure Blob or SFTP repository for
``s3://``, ``azure://`` and ``sftp://`` URLs; every kind offers the same interface.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ..core.errors import PgBackupError
from . import azure_blob
from . import s3
from . import sftp
from .local import LocalRepository


def open_repository(url_or_path, owner=None, **s3_options):
    """A repository object for a local/NFS path or an ``s3://bucket/prefix`` URL."""
    if not url_or_path:
        raise PgBackupError("No repository given.", hint="Set 'repository' to a directory path or an s3://bucket/prefix URL.")
    if azure_blob.is_azure_url(url_or_path):
        return azure_blob.open_azure(url_or_path, owner=owner, **s3_options)
    if sftp.is_sftp_url(url_or_path):
        return sftp.open_sftp(url_or_path, owner=owner, **s3_options)
    if s3.is_s3_url(url_or_path):
        return s3.S3Repository(url_or_path, **dict((key, value) for key, value in s3_options.items()
                                                   if not key.startswith(("azure_", "sftp_"))))
    if "://" in url_or_path:
        raise PgBackupError("Repository '%s' uses an unsupported URL scheme." % url_or_path,
                            hint="Use a local or NFS-mounted path, s3://bucket/prefix (with s3_endpoint_url for "
                                 "S3-compatible services such as MinIO or Google Cloud Storage), azure://container/prefix "
                                 "or sftp://user@host[:port]/path.")
    return LocalRepository(url_or_path, owner=owner)


def describe_location(repository):
    return getattr(repository, "url", None) or repository.path
