# -*- coding: utf-8 -*-
"""The installed WAL helper's fast path: archive-wal in asynchronous mode answers from the spool, with the
interpreter started without site, and everything else (any doubt) goes to the full program unchanged."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_spool
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import wal as wal_cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import wal_fast
from tests.lib.archiving import install_wal_tool

SEG = "000000010000000000000002"
MB = 1024 * 1024


@pytest.fixture
def cluster(tmp_path):
    """(segment path, config path, spool, archive): a role-like asynchronous config of a directory archive."""
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    segment = pg_wal / SEG
    segment.write_bytes(os.urandom(4096) * (MB // 4096))
    archive = tmp_path / "archive"
    archive.mkdir()
    spool = wal_spool.Spool(str(tmp_path / "spool"))
    config = tmp_path / "wal-15-main.json"
    config.write_text(json.dumps({"archive_dir": str(archive), "compress": "zstd", "compress_level": 3, "recipients": [],
                                  "async": True, "spool_dir": spool.path, "process_max": 4, "note": u"caf\u00e9"}))
    return str(segment), str(config), spool, str(archive)


def acknowledge(spool, segment, location):
    spool.acknowledge(SEG, "ab" * 32, wal_spool.file_identity(segment), location)


@pytest.mark.parametrize("argv, expected", [
    (["archive-wal", "p", SEG, "--config", "c"], {"config": "c"}),
    (["archive-wal", "--config=c", "p", SEG, "--async", "--compress", "zstd", "--recipient=k", "--spool-dir", "s"],
     {"config": "c", "async": True, "spool_dir": "s"}),
    (["archive-wal", "p", SEG, "--archive-url", "s3://b/p", "--process-max", "2"], {"archive_url": "s3://b/p"}),
])
def test_archive_wal_arguments_are_read_as_argparse_reads_them(argv, expected):
    expected["positional"] = ["p", SEG]
    assert wal_fast.parse_archive_wal(argv) == expected


@pytest.mark.parametrize("argv", [
    ["restore-wal", SEG, "p"], ["archive-wal", "p"], ["archive-wal", "p", SEG, "x"], ["archive-wal", "p", SEG, "--conf", "c"],
    ["archive-wal", "p", SEG, "--config"], ["archive-wal", "p", SEG, "-h"], ["archive-wal", "p", SEG, "--", "x"], [],
])
def test_anything_else_is_left_to_the_full_program(argv):
    assert wal_fast.parse_archive_wal(argv) is None


def test_the_config_reads_as_json_reads_it(cluster, tmp_path, monkeypatch):
    _segment, config, _spool, _archive = cluster
    assert wal_fast.DEFAULT_CONFIG == wal_cli.DEFAULT_CONFIG
    with open(config) as handle:
        assert wal_fast.read_config(config) == json.load(handle)
    monkeypatch.setattr(wal_fast, "DEFAULT_CONFIG", str(tmp_path / "absent.json"))
    assert wal_fast.read_config(None) == {}
    for text in ("[1]", '{"a": 1} x', '{"a": NaN}', "{"):
        (tmp_path / "bad.json").write_text(text)
        try:
            assert wal_fast.read_config(str(tmp_path / "bad.json")) is None
        except ValueError:
            pass  # main() takes the full path, which reports the file


def test_an_acknowledged_segment_is_answered_and_the_acknowledgement_consumed(cluster):
    segment, config, spool, archive = cluster
    acknowledge(spool, segment, archive)
    assert wal_fast.archived_ahead(["archive-wal", segment, SEG, "--config", config])
    assert spool.read(SEG) is None


def test_another_archive_or_file_or_an_error_is_not_answered(cluster, tmp_path):
    segment, config, spool, archive = cluster
    argv = ["archive-wal", segment, SEG, "--config", config]
    acknowledge(spool, segment, str(tmp_path / "other-archive"))
    assert not wal_fast.archived_ahead(argv)
    assert spool.read(SEG)[0] == "ok"  # left to the full program, which stores the segment again
    spool.clear(SEG)
    spool.fail(SEG, "disk full")
    assert not wal_fast.archived_ahead(argv)
    assert spool.read(SEG) == ("error", "disk full")
    spool.clear(SEG)
    acknowledge(spool, segment, archive)
    assert not wal_fast.archived_ahead(["archive-wal", segment, SEG, "--config", config, "--archive-dir", str(tmp_path)])
    with open(segment, "ab") as handle:
        handle.write(b"x")  # another file now: its size differs
    assert not wal_fast.archived_ahead(argv)
    os.unlink(segment)
    with pytest.raises(OSError):
        wal_fast.archived_ahead(argv)  # main() takes the full path, which reports it


def test_without_acknowledgement_it_waits_only_while_the_pusher_runs(cluster):
    segment, config, spool, archive = cluster
    argv = ["archive-wal", segment, SEG, "--config", config]
    started = time.monotonic()
    assert not wal_fast.archived_ahead(argv)  # no pusher: the full program starts one
    assert time.monotonic() - started < 1
    lock = spool.lock()  # a running pusher, which stores the segment a moment later
    timer = threading.Timer(0.3, acknowledge, (spool, segment, archive))
    timer.start()
    try:
        assert wal_fast.archived_ahead(argv)
    finally:
        timer.join()
        os.close(lock)
    assert time.monotonic() - started >= 0.3


def test_a_synchronous_config_is_not_answered(cluster, tmp_path):
    segment, _config, spool, archive = cluster
    acknowledge(spool, segment, archive)
    config = tmp_path / "sync.json"
    config.write_text(json.dumps({"archive_dir": archive, "spool_dir": spool.path}))
    assert not wal_fast.archived_ahead(["archive-wal", segment, SEG, "--config", str(config)])
    assert wal_fast.archived_ahead(["archive-wal", segment, SEG, "--config", str(config), "--async"])


def test_the_installed_wrapper_runs_without_site_and_adds_it_back_for_the_full_program(cluster, tmp_path):
    segment, config, spool, archive = cluster
    wrapper = install_wal_tool(str(tmp_path), python=sys.executable)  # the engine goes to tmp_path/lib
    lib, wrapper = tmp_path / "lib", tmp_path / os.path.basename(wrapper)
    assert wrapper.read_text().startswith("#!%s -S\n" % sys.executable)
    acknowledge(spool, segment, archive)
    done = subprocess.run([str(wrapper), "archive-wal", segment, SEG, "--config", config], capture_output=True, check=False)
    assert (done.returncode, done.stderr, spool.read(SEG)) == (0, b"", None)
    assert os.listdir(archive) == []  # answered from the spool: the pusher had stored it
    # the full program, synchronous: stores it (the zstd module comes from site-packages, added back)
    done = subprocess.run([str(wrapper), "archive-wal", segment, SEG, "--archive-dir", archive, "--compress", "zstd"],
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert os.listdir(archive) == [SEG + ".zst"]
    probe = "import sys; sys.path.insert(0, %r); from todoapi_pgbackup_engine.runner import wal_fast; " \
            "%s; import zstandard" % (str(lib), "%s")
    for enable, returncode in (("wal_fast.enable_site()", 0), ("pass", 1)):
        assert subprocess.run([sys.executable, "-S", "-c", probe % enable], capture_output=True, check=False).returncode == returncode
    # where a normal start puts them: before a directory the program appended
    order = "import sys; sys.path.insert(0, %r); sys.path.append('/appended'); from todoapi_pgbackup_engine.runner import " \
            "wal_fast; wal_fast.enable_site(); import zstandard, os; print(sys.path.index(os.path.dirname(os.path.dirname(" \
            "zstandard.__file__))) < sys.path.index('/appended') and sys.path[0] == %r)" % (str(lib), str(lib))
    assert subprocess.run([sys.executable, "-S", "-c", order], capture_output=True, text=True, check=True).stdout == "True\n"
    usage = subprocess.run([str(wrapper), "archive-wal", segment], capture_output=True, check=False)
    assert usage.returncode == wal_cli.EXIT_USAGE and b"usage:" in usage.stderr
    assert "-S" not in wal_cli.wrapper_script(str(lib), python="/usr/bin/env python3").splitlines()[0]
