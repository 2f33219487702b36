# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: engine_archive
author:
  - todoapi.pgbackup maintainers (@todoapi)
version_added: 0.2.0
short_description: Pack the engine into one tar on the controller, with the same bytes on every run
description:
  - Internal to the collection's C(todoapi.pgbackup.engine) role, which installs the engine on a host from this
    archive.
  - Packs the C(*.py) files of the listed packages of a source directory (not recursively; list every package)
    into one uncompressed tar, under a top directory named O(package).
  - The bytes depend only on the files' names and contents, so the archive's sha256 identifies a version of the
    engine on every controller and every run. Members are sorted by name; directories are C(0755) and files
    C(0644), all owned by root (uid and gid 0), with a fixed modification time; the tar is not compressed
    because compressors differ between machines (zlib and zlib-ng give different bytes).
  - Writes the archive into the run's local temporary directory (C(DEFAULT_LOCAL_TMP), removed when the run
    ends), named after its sha256.
options:
  _terms:
    description: The source directory, e.g. the collection's C(plugins/module_utils). Exactly one.
    required: true
  packages:
    description:
      - Packages to pack, as directories relative to the source directory; C(.) is the source directory itself.
        The C(*.py) files directly in each are packed; a package's parent directories are added as directories.
    type: list
    elements: str
    required: true
  package:
    description: Name of the archive's top directory, i.e. of the installed Python package.
    type: str
    required: true
notes:
  - Runs on the controller and reads controller files only.
'''

EXAMPLES = r'''
- name: Build the engine archive
  ansible.builtin.set_fact:
    _engine_archive: >-
      {{ lookup('todoapi.pgbackup.engine_archive', role_path ~ '/../../plugins/module_utils',
                packages=['.', 'core', 'runner'], package='todoapi_pgbackup_engine') }}

- name: Send it to the host
  ansible.builtin.copy:
    src: "{{ _engine_archive.path }}"
    dest: /usr/local/lib/todoapi-pgbackup/todoapi_pgbackup_engine.tar
    mode: "0644"
'''

RETURN = r'''
_raw:
  description: One dictionary describing the archive.
  type: list
  elements: dict
  contains:
    path:
      description: Where the archive is on the controller.
      type: path
    sha256:
      description: sha256 of the archive's bytes.
      type: str
    files:
      description: The packed files, relative to the top directory, sorted (e.g. C(runner/cli.py)).
      type: list
      elements: str
'''

import glob
import hashlib
import io
import os
import posixpath
import tarfile
import tempfile

from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DIR_MODE = 0o755
FILE_MODE = 0o644
# Any constant does: the install writes the files itself and does not copy this time onto them.
FIXED_MTIME = 0


def archive_paths(source_dir, packages):
    """(directories, files) to pack, as sorted paths relative to source_dir; '.' is left out."""
    directories, files = set(), set()
    for package in (posixpath.normpath(name) for name in packages):
        if package.startswith("..") or posixpath.isabs(package):
            raise AnsibleLookupError("package %r is not inside %s" % (package, source_dir))
        if not os.path.isdir(os.path.join(source_dir, package)):
            raise AnsibleLookupError("package %r: no directory %s" % (package, os.path.join(source_dir, package)))
        for path in glob.glob(os.path.join(source_dir, package, "*.py")):
            if os.path.isfile(path):
                files.add(posixpath.normpath(posixpath.join(package, os.path.basename(path))))
        while package != ".":
            directories.add(package)
            package = posixpath.dirname(package) or "."
    return sorted(directories), sorted(files)


def member(name, mode, size=0, directory=False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode, info.size, info.mtime = mode, size, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_archive(source_dir, packages, top):
    """(tar bytes, packed files): the top directory, then every directory and file in name order."""
    directories, files = archive_paths(source_dir, packages)
    entries = [(top, None)] + [(posixpath.join(top, name), None) for name in directories]
    entries += [(posixpath.join(top, name), os.path.join(source_dir, name)) for name in files]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, path in sorted(entries):
            if path is None:
                tar.addfile(member(name, DIR_MODE, directory=True))
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            tar.addfile(member(name, FILE_MODE, size=len(data)), io.BytesIO(data))
    return buffer.getvalue(), files


def write_atomically(data, directory, name):
    """Write data to directory/name through a temporary file, so a concurrent reader never sees part of it."""
    path = os.path.join(directory, name)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1:
            raise AnsibleLookupError("engine_archive takes exactly one source directory, got %d" % len(terms))
        source_dir = os.path.abspath(terms[0])
        top = self.get_option("package")
        data, files = build_archive(source_dir, self.get_option("packages"), top)
        if not files:
            raise AnsibleLookupError("no *.py file in the packages %s of %s" % (self.get_option("packages"), source_dir))
        sha256 = hashlib.sha256(data).hexdigest()
        path = write_atomically(data, C.DEFAULT_LOCAL_TMP, "%s-%s.tar" % (top, sha256))
        return [{"path": path, "sha256": sha256, "files": files}]
