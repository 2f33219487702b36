# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The installed ``todoapi-pgbackup-wal``'s entry point: ``archive-wal --async`` whose segment the
background pusher already stored is answered here, from the spool, before anything else is imported;
every other case (and any doubt) goes to the full program, ``runner/wal.py``, with the same arguments.

PostgreSQL starts archive_command once per segment, one after the other, so that start bounds the
asynchronous archive's throughput. The helper runs Python with ``-S`` (no ``site``: its ``.pth`` files
cost as much as the rest of the start), this module imports only ``os``, ``sys``, ``time``, ``fcntl``
and ``_json`` (the C half of ``json``: ``json`` itself imports ``re`` and ``enum``, several times the
cost of the rest), and the full program adds the site directories back (``site.main()``) before it
imports anything that may live there (boto3, paramiko, zstandard).

The answer is the one ``wal_spool.archive_async`` gives: exit 0 only when the ``.ok`` of this very
file (size, inode, modification time) and this archive is there, waiting while the pusher runs.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys

from ..physical import wal_ack

DEFAULT_CONFIG = "/etc/todoapi-pgbackup/wal.json"  # runner/wal.py's (imported from there only when needed)
FAST_WAIT_SECONDS = 30
HEX_DIGITS = frozenset("0123456789ABCDEF")
# archive-wal's options that take a value (option -> setting); --async is its only flag.
VALUE_OPTIONS = {"--config": "config", "--archive-dir": "archive_dir", "--archive-url": "archive_url",
                 "--spool-dir": "spool_dir", "--compress": None, "--compress-level": None, "--recipient": None,
                 "--process-max": None}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if archived_ahead(argv):
            return 0
    except Exception:  # any doubt: the full program decides, and reports
        pass
    enable_site()
    from .wal import main as full_main
    return full_main(argv)


def enable_site():
    """Add the site directories (-S left them out) before a library that lives there is imported, where a
    normal start puts them: right after the standard library, before what the program appended to sys.path."""
    if sys.flags.no_site:
        import site
        before = list(sys.path)
        site.main()
        added = [path for path in sys.path if path not in before]
        stdlib = os.path.dirname(os.__file__)
        own = [index for index, path in enumerate(before) if path == stdlib or path.startswith(stdlib + os.sep)]
        at = own[-1] + 1 if own else len(before)
        sys.path[:] = before[:at] + added + before[at:]


def archived_ahead(argv):
    """Whether ``argv`` is ``archive-wal <path> <name> ...`` in asynchronous mode and the pusher
    acknowledged that very file in that archive (the acknowledgement is then consumed)."""
    settings = parse_archive_wal(argv)
    if settings is None:
        return False
    wal_path, wal_name = settings.pop("positional")
    if len(wal_name) != 24 or not HEX_DIGITS.issuperset(wal_name):
        return False  # history, backup and partial files: rare, the full program checks their names
    config = read_config(settings.get("config"))
    if config is None:
        return False
    async_push = settings.get("async") or config.get("async_push")
    if async_push is None:
        async_push = config.get("async")
    location, spool_dir = archive_location(settings, config), option_or_config(settings, config, "spool_dir")
    if not async_push or not location or not spool_dir:
        return False
    expected = " %s %s" % (wal_ack.identity(wal_path), location)
    return wal_ack.wait_acknowledged(spool_dir, wal_name, expected, FAST_WAIT_SECONDS)


def parse_archive_wal(argv):
    """{'positional': [path, name], setting: value, 'async': True} for the options above; None for any
    other command, option, spelling or count (argparse's job, in the full program)."""
    if len(argv) < 3 or argv[0] != "archive-wal":
        return None
    settings, positional, rest = {}, [], argv[1:]
    while rest:
        word = rest.pop(0)
        option, equals, value = word.partition("=")
        if word == "--async":
            settings["async"] = True
        elif option in VALUE_OPTIONS and (equals or rest):
            value = value if equals else rest.pop(0)
            if VALUE_OPTIONS[option]:
                settings[VALUE_OPTIONS[option]] = value
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    if len(positional) != 2:
        return None
    settings["positional"] = positional
    return settings


def option_or_config(settings, config, name):
    value = settings.get(name)
    return config.get(name) if value is None else value


def archive_location(settings, config):
    """The archive an acknowledgement must name, as runner/wal.py's _location; None when unclear."""
    if settings.get("archive_dir") or settings.get("archive_url"):
        directory, url = settings.get("archive_dir"), settings.get("archive_url")
    else:
        directory, url = config.get("archive_dir"), config.get("archive_url")
    if directory and url:
        return None
    return url or directory


class _JsonContext(object):
    """What ``_json.make_scanner`` reads from ``json.JSONDecoder``: json.load's defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        raise ValueError("JSON constant %s" % name)


def read_config(path):
    """The config file as a dict ({} when the default one does not exist); None when the full program
    must read it (missing explicit file, not a JSON object, no ``_json``)."""
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if not explicit and not os.path.exists(path):
        return {}
    import _json
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8").strip()
    value, end = _json.make_scanner(_JsonContext())(text, 0)
    if end != len(text) or not isinstance(value, dict):
        return None
    return value
