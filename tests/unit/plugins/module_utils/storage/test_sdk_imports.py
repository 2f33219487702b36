# -*- coding: utf-8 -*-
"""The cloud and SSH libraries are imported when a remote repository of their kind is opened, not by every module."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module import common

# the directory holding ansible_collections/, for a fresh interpreter
COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(common.__file__), *[os.pardir] * 6))
LIBRARIES = ("boto3", "botocore", "azure.storage.blob", "paramiko")


def run_python(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([COLLECTIONS_ROOT] + sys.path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_modules_common_imports_no_remote_storage_library():
    loaded = run_python(
        "import sys\n"
        "from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module import common\n"
        "from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup\n"
        "print(' '.join(m for m in %r if m in sys.modules))" % (LIBRARIES,))
    assert loaded == ""


@pytest.mark.parametrize("url, library, message", [
    ("s3://bucket/prefix", "boto3", "need the Python library boto3, which is not installed"),
    ("azure://account/container/prefix", "azure", "need the Python library azure-storage-blob"),
    ("sftp://backup@127.0.0.1/srv/backups", "paramiko", "need the Python library paramiko"),
])
def test_a_missing_library_is_reported_when_its_repository_is_opened(url, library, message):
    output = run_python(
        "import sys\n"
        "sys.modules[%r] = None  # import %s now raises ImportError\n"
        "from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory\n"
        "from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError\n"
        "try:\n"
        "    factory.open_repository(%r)\n"
        "except PgBackupError as exc:\n"
        "    print(exc.message)\n" % (library, library, url))
    assert message in output


@pytest.mark.parametrize("url, library", [("s3://bucket/prefix", "boto3"), ("sftp://backup@127.0.0.1:1/srv/backups", "paramiko")])
def test_opening_a_remote_repository_imports_its_library(url, library):
    pytest.importorskip(library)
    loaded = run_python(
        "import sys\n"
        "from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory\n"
        "try:\n"
        "    factory.open_repository(%r)\n"
        "except Exception:\n"
        "    pass  # no server here: only the import matters\n"
        "print(%r in sys.modules)" % (url, library))
    assert loaded == "True"
