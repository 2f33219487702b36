# -*- coding: utf-8 -*-
"""The engine archive's bytes depend on the sources' names and contents only: the sha256 the engine role
compares on the host must not change with a checkout's times, modes or owner, nor between runs."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import io
import os
import shutil
import tarfile

import pytest

from ansible.errors import AnsibleLookupError

from ansible_collections.todoapi.pgbackup.plugins.lookup.engine_archive import build_archive

SOURCES = {
    "__init__.py": b"",
    "core/__init__.py": b"",
    "core/errors.py": b"class PgBackupError(Exception):\n    pass\n",
    "runner/__init__.py": b"",
    "runner/cli.py": b"def main():\n    return 0\n",
    "runner/commands/__init__.py": b"",
    "runner/commands/backup.py": b"RUN = 1\n",
    "runner/README.txt": b"not python: not packed\n",
    "ansible_module/__init__.py": b"# modules only: not listed, not packed\n",
}


def write_sources(top):
    for name, content in SOURCES.items():
        path = os.path.join(top, name)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, "wb") as handle:
            handle.write(content)
    return str(top)


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime,
                 tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def test_same_sources_give_the_same_bytes_whatever_their_times_and_modes(tmp_path):
    first = write_sources(tmp_path / "a")
    second = write_sources(tmp_path / "b")
    for root, _dirs, names in os.walk(second):
        for name in names:
            os.chmod(os.path.join(root, name), 0o600)
            os.utime(os.path.join(root, name), (1000000000, 1000000000))
    packages = [".", "core", "runner"]
    data, files = build_archive(first, packages, "pkg")
    assert build_archive(first, packages, "pkg")[0] == data
    assert build_archive(second, list(reversed(packages)), "pkg")[0] == data
    assert files == ["__init__.py", "core/__init__.py", "core/errors.py", "runner/__init__.py", "runner/cli.py"]
    with open(os.path.join(first, "core", "errors.py"), "ab") as handle:
        handle.write(b"# changed\n")
    assert hashlib.sha256(build_archive(first, packages, "pkg")[0]).digest() != hashlib.sha256(data).digest()


def test_members_sorted_with_fixed_modes_owner_and_time(tmp_path):
    source = write_sources(tmp_path)
    data, _files = build_archive(source, [".", "runner/commands"], "pkg")
    got = members(data)
    assert [m[0] for m in got] == ["pkg", "pkg/__init__.py", "pkg/runner", "pkg/runner/commands",
                                   "pkg/runner/commands/__init__.py", "pkg/runner/commands/backup.py"]
    for name, kind, mode, uid, gid, uname, gname, mtime, content in got:
        assert (uid, gid, uname, gname, mtime) == (0, 0, "root", "root", 0), name
        if kind == tarfile.DIRTYPE:
            assert mode == 0o755, name
        else:
            assert (kind, mode, content) == (tarfile.REGTYPE, 0o644, SOURCES[name[len("pkg/"):]]), name


def test_a_listed_package_that_is_not_there_fails(tmp_path):
    source = write_sources(tmp_path)
    with pytest.raises(AnsibleLookupError, match="no directory"):
        build_archive(source, [".", "physical"], "pkg")
    with pytest.raises(AnsibleLookupError, match="not inside"):
        build_archive(source, ["../elsewhere"], "pkg")
    shutil.rmtree(os.path.join(source, "core"))
    with pytest.raises(AnsibleLookupError):
        build_archive(source, ["core"], "pkg")
