# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pipeline import Pipeline, Stage


def collect(pipeline):
    pipeline.start()
    data = b"".join(pipeline.stdout_chunks())
    pipeline.wait()
    return data


def test_chain_passes_data_through_every_stage():
    stages = [Stage(["printf", "hello"]), Stage(["tr", "a-z", "A-Z"]), Stage(["cat"])]
    assert collect(Pipeline(stages, capture_stdout=True)) == b"HELLO"


def test_failed_first_stage_is_reported_even_when_the_last_succeeds():
    # A shell pipe would report success here: only the last process's status counts there.
    stages = [Stage(["sh", "-c", "echo partial; echo 'boom' >&2; exit 3"], name="producer"), Stage(["cat"])]
    with pytest.raises(PgBackupError) as info:
        collect(Pipeline(stages, capture_stdout=True))
    assert "producer exited with status 3" in str(info.value) and "boom" in str(info.value)


def test_error_text_on_stderr_fails_a_zero_exit():
    stages = [Stage(["sh", "-c", "echo 'pg_dump: error: query failed' >&2"], name="pg_dump",
                    error_pattern=r"(?m)^pg_dump: error:")]
    with pytest.raises(PgBackupError) as info:
        Pipeline(stages).run()
    assert "reported an error" in str(info.value)


def test_iterable_stdin_is_fed_to_first_stage(tmp_path):
    out = tmp_path / "out"
    Pipeline([Stage(["cat"])], stdin=iter([b"a", b"b"]), stdout_path=str(out)).run()
    assert out.read_bytes() == b"ab"


def test_upstream_exception_in_feeder_stops_the_consumer_and_is_raised(tmp_path):
    def source():
        yield b"BEGIN;"
        raise PgBackupError("upstream decoder failed")

    with pytest.raises(PgBackupError) as info:
        Pipeline([Stage(["cat"])], stdin=source(), stdout_path=str(tmp_path / "o")).run()
    assert "upstream decoder failed" in str(info.value)


def test_missing_program_is_named():
    with pytest.raises(PgBackupError) as info:
        Pipeline([Stage(["/nonexistent/tool"])]).run()
    assert "Cannot start 'tool'" in str(info.value)


def test_sigpipe_of_upstream_is_tolerated_only_when_asked():
    stages = [Stage(["yes"]), Stage(["head", "-c", "10"])]
    assert len(collect(Pipeline(stages, capture_stdout=True, tolerate_sigpipe=True))) == 10
    with pytest.raises(PgBackupError):
        collect(Pipeline([Stage(["yes"]), Stage(["head", "-c", "10"])], capture_stdout=True))
