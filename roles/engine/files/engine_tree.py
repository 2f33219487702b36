# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run on the host by the engine role (python3 - <command> ..., this file on stdin): compare the installed
engine with the archive kept beside it, and install the package from that archive.

    check   INSTALL_DIR PACKAGE SHA256   is INSTALL_DIR/PACKAGE.tar that archive, and the tree exactly its content?
    install INSTALL_DIR PACKAGE SHA256   replace INSTALL_DIR/PACKAGE with the archive's content, in one rename

Both print one JSON object. The archive (built by the todoapi.pgbackup.engine_archive lookup) is the only
record of what must be installed: every member's type, mode, owner and content is compared, and whatever the
archive does not hold is extra, except the __pycache__ directories Python writes when root runs the engine.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile

IGNORED = "__pycache__"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_members(archive, package):
    """{name: (TarInfo, sha256 of the content or None)}; only directories and files below package/."""
    members = {}
    with tarfile.open(archive) as tar:
        for info in tar.getmembers():
            parts = info.name.split("/")
            if parts[0] != package or "" in parts or "." in parts or ".." in parts or not (info.isdir() or info.isfile()):
                raise SystemExit("%s: unexpected member %r" % (archive, info.name))
            content = tar.extractfile(info).read() if info.isfile() else None
            members[info.name] = (info, hashlib.sha256(content).hexdigest() if content is not None else None)
    if package not in members:
        raise SystemExit("%s: no top directory %s" % (archive, package))
    return members


def how_it_differs(path, info, content_sha256):
    """The ways path differs from the archive member info ([] when it does not)."""
    found = os.lstat(path)
    if info.isdir() != stat.S_ISDIR(found.st_mode) or (info.isfile() and not stat.S_ISREG(found.st_mode)):
        return ["not a %s" % ("directory" if info.isdir() else "regular file")]
    reasons = []
    if stat.S_IMODE(found.st_mode) != info.mode:
        reasons.append("mode %04o, not %04o" % (stat.S_IMODE(found.st_mode), info.mode))
    if (found.st_uid, found.st_gid) != (info.uid, info.gid):
        reasons.append("owner %d:%d, not %d:%d" % (found.st_uid, found.st_gid, info.uid, info.gid))
    if content_sha256 and sha256_of(path) != content_sha256:
        reasons.append("content differs")
    return reasons


def installed_names(install_dir, package):
    """Everything below install_dir/package (relative to install_dir), but __pycache__ directories."""
    names = set()
    for root, dirs, files in os.walk(os.path.join(install_dir, package)):
        dirs[:] = [name for name in dirs if name != IGNORED]
        names.update(os.path.relpath(os.path.join(root, name), install_dir) for name in dirs + files)
    return names | {package} if os.path.lexists(os.path.join(install_dir, package)) else names


def leftovers(install_dir, package):
    """Staging directories an interrupted install left beside the package."""
    prefix = ".%s." % package
    try:
        return sorted(name for name in os.listdir(install_dir) if name.startswith(prefix))
    except OSError:
        return []


def tree_differences(install_dir, package, members):
    """'<path>: <reasons>' for every way the installed tree differs from the archive's members."""
    top = members[package][0]
    out = []
    if os.path.isdir(install_dir):
        reasons = how_it_differs(install_dir, top, None)  # the package's parent is a directory like it
        out += ["%s: %s" % (".", "; ".join(reasons))] if reasons else []
    found = installed_names(install_dir, package)
    for name in sorted(set(members) | found):
        if name not in found:
            out.append("%s: missing" % name)
        elif name not in members:
            out.append("%s: not in the archive" % name)
        else:
            reasons = how_it_differs(os.path.join(install_dir, name), *members[name])
            out += ["%s: %s" % (name, "; ".join(reasons))] if reasons else []
    return out + ["%s: left by an interrupted install" % name for name in leftovers(install_dir, package)]


def check(install_dir, package, sha256):
    archive = os.path.join(install_dir, package + ".tar")
    if not os.path.isfile(archive):
        return {"archive": "missing", "differences": []}
    if sha256_of(archive) != sha256:
        return {"archive": "other", "differences": []}
    return {"archive": "current", "differences": tree_differences(install_dir, package, archive_members(archive, package))}


def unpack(archive, members, staging):
    """Write every member below staging (directories come before their content: the archive is sorted)."""
    with tarfile.open(archive) as tar:
        for name in sorted(members):
            info, target = members[name][0], os.path.join(staging, name)
            if info.isdir():
                os.mkdir(target, 0o700)
            else:
                with tar.extractfile(info) as source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out)
            os.chown(target, info.uid, info.gid)
            os.chmod(target, info.mode)


def install(install_dir, package, sha256):
    """Unpack beside the package, then swap it in with renames: the package is never half installed."""
    archive = os.path.join(install_dir, package + ".tar")
    if sha256_of(archive) != sha256:
        raise SystemExit("%s is not the archive %s" % (archive, sha256))
    members = archive_members(archive, package)
    before = tree_differences(install_dir, package, members)
    for name in leftovers(install_dir, package):
        shutil.rmtree(os.path.join(install_dir, name))
    staging = tempfile.mkdtemp(prefix=".%s." % package, dir=install_dir)
    try:
        unpack(archive, members, staging)
        current = os.path.join(install_dir, package)
        if os.path.lexists(current):
            os.rename(current, os.path.join(staging, "replaced"))
        os.rename(os.path.join(staging, package), current)
    finally:
        shutil.rmtree(staging)
    return {"archive": "current", "differences": before}


def main(argv):
    command, install_dir, package, sha256 = argv
    result = {"check": check, "install": install}[command](install_dir, package, sha256)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
