# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A point-in-time recovery never writes into the WAL it reads.

With ``archive_after_recovery`` the promoted server keeps the archiving settings it comes with: the
base backup's postgresql.auto.conf (where role wal_archiving puts them) over the target's
postgresql.conf (a Debian cluster's in /etc/postgresql, else the backup's own). A drill next to a
live primary would then archive its new timeline into the primary's archive, and a later recovery
to 'latest' follows that timeline. ``check_archiving_after_recovery`` reads those settings before
anything changes and refuses the recovery when the archiver would write into the WAL archive or a
stream directory the recovery reads. Refusing, not switching archiving off behind the operator's
back: archiving was asked for, and a recovered server that silently does not archive is a
different server than the one asked for.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shlex

from ..core.errors import PgBackupError
from . import backup_manifest
from . import pitr
from .base_backup_tar import TarStream, tar_members

ARCHIVING_ON = ("on", "always", "true", "yes", "1")
INCLUDES = ("include", "include_if_exists", "include_dir")
SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.$-]*)\s*=?\s*('(?:[^'\\]|''|\\.)*'|[^\s#']*)")
MAX_INCLUDE_DEPTH = 10


def check_archiving_after_recovery(request):
    """Plan the recovery; raise when its server would archive into what it reads. Returns the id of
    the base backup whose settings were checked, for the recovery to use exactly that one."""
    details = pitr.plan(request)
    settings = recovered_settings(request, details)
    for target in archive_targets(settings):
        for location in read_locations(request):
            if writes_into(target, location):
                raise PgBackupError(
                    "archive_after_recovery: the recovered %s would archive WAL into %s, which this recovery reads "
                    "from (archive_command %r). A drill next to the live primary would write a new timeline there, "
                    "and a later recovery to 'latest' would follow it. Nothing was changed."
                    % (details["server"].describe(), location, settings.get("archive_command", "")),
                    hint="Recover with archive_after_recovery: false (archive_mode off). If the recovered server "
                         "replaces the primary, run role wal_archiving on it afterwards and take a new base backup.")
    return details["backup"]["id"]


def read_locations(request):
    return [request.archive_location] + list(request.stream_dirs)


def recovered_settings(request, details):
    """{setting: value} the recovered server starts with, as far as archiving goes."""
    settings = {}
    names = ["postgresql.auto.conf"]
    if request.mode == "debian":
        settings.update(read_config_file(os.path.join(details["server"].conf_dir, "postgresql.conf")))
    else:
        names.insert(0, "postgresql.conf")
    texts = read_backup_files(request.repository.artifact_path(details["backup"]), names)
    for name in names:
        settings.update(parse_config(texts.get(name, "")))
    return settings


def read_backup_files(artifact_dir, names):
    """{name: text} of the data directory's top-level files ``names`` found in a base backup; a tar is
    read only up to the last of them (the backup's backup_manifest says which ones it holds)."""
    tars = tar_members(artifact_dir)
    if not tars:  # plain format: the artifact is a data directory
        return dict((name, _read(os.path.join(artifact_dir, name))) for name in names
                    if os.path.isfile(os.path.join(artifact_dir, name)))
    wanted = set(names)
    manifest_file = os.path.join(artifact_dir, "backup_manifest")
    if os.path.exists(manifest_file):
        wanted &= set(backup_manifest.BackupManifest.load(manifest_file).files)
    base = [name for name in tars if name.startswith("base.tar")]
    found = {}
    if not wanted or not base:
        return found
    stream = TarStream(os.path.join(artifact_dir, base[0]))
    try:
        reader = backup_manifest.TarReader(stream.chunks, stream.name)
        for info in reader:
            path = backup_manifest.member_path(info.name)
            if path in wanted:
                found[path] = b"".join(piece.tobytes() for piece in reader.data()).decode("utf-8", "replace")
                if len(found) == len(wanted):
                    break
    finally:
        stream.abort()  # the rest of base.tar is not needed
    return found


def _read(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")


def read_config_file(path, depth=0):
    """Settings of a postgresql.conf and the files it includes; {} when it cannot be read."""
    try:
        text = _read(path)
    except (IOError, OSError):
        return {}
    return parse_config(text, os.path.dirname(path), depth)


def parse_config(text, base_dir=None, depth=0):
    """{lowercase name: value} of PostgreSQL configuration text, later lines winning; include
    directives are followed when the file's directory is known."""
    settings = {}
    for line in text.splitlines():
        match = SETTING.match(line)
        if not match:
            continue
        name, value = match.group(1).lower(), _unquote(match.group(2))
        if name in INCLUDES:
            if base_dir and depth < MAX_INCLUDE_DEPTH:
                for included in _included_files(name, value, base_dir):
                    settings.update(read_config_file(included, depth + 1))
            continue
        settings[name] = value
    return settings


def _unquote(value):
    if len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        return value[1:-1].replace("''", "'").replace("\\'", "'")
    return value


def _included_files(directive, value, base_dir):
    path = value if os.path.isabs(value) else os.path.join(base_dir, value)
    if directive != "include_dir":
        return [path]
    if not os.path.isdir(path):
        return []
    return [os.path.join(path, name) for name in sorted(os.listdir(path))
            if name.endswith(".conf") and not name.startswith(".")]


def archive_targets(settings):
    """The places (paths, URLs) the archiver's configuration names; [] when archiving is off."""
    if settings.get("archive_mode", "off").lower() not in ARCHIVING_ON:
        return []
    texts = [settings.get("archive_command", "")]
    library = settings.get("archive_library", "").lower()
    if library:  # an archive module takes its destination from settings of its own (basic_archive.archive_directory)
        texts += [value for name, value in settings.items() if name.startswith(library + ".")]
    targets = []
    for text in texts:
        try:
            tokens = shlex.split(text)
        except ValueError:
            tokens = []
        for piece in tokens + re.split(r"[\s'\"=;&|()<>`]+", text):
            piece = piece.split("%", 1)[0].strip()  # /archive/%f -> /archive/
            if (piece.startswith("/") or "://" in piece) and piece not in targets:
                targets.append(piece)
    return targets + [t for t in helper_config_targets(targets) if t not in targets]


def helper_config_targets(paths):
    """The archive_url/archive_dir of the todoapi-pgbackup-wal config files among ``paths`` (``--config``, as role
    wal_archiving writes it for a remote archive) that exist on this host: the archive they name is a target too."""
    found = []
    for path in paths:
        if not path.endswith(".json") or not os.path.isfile(path):
            continue
        try:
            with open(path) as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            found += [str(config[key]) for key in ("archive_url", "archive_dir") if config.get(key)]
    return found


def writes_into(target, location):
    """Whether ``target`` (a path or URL the archiver names) is ``location`` or inside it; paths are
    compared as the files they are (symbolic links, bind mounts), not as text."""
    if "://" in target or "://" in location:
        base = location.rstrip("/")
        return target.rstrip("/") == base or target.startswith(base + "/")
    real_target, real_location = os.path.realpath(target), os.path.realpath(location)
    if real_target == real_location or real_target.startswith(real_location.rstrip("/") + "/"):
        return True
    try:
        wanted = os.stat(location)
    except OSError:
        return False
    probe = os.path.normpath(target)
    while True:
        try:
            if os.path.samestat(os.stat(probe), wanted):
                return True
        except OSError:
            pass
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
