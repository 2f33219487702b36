# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a chain of processes (pg_dump | zstd | age ...) and check every one of them.

A shell pipe reports only the last process; here each stage's exit status and stderr
are checked, a failed stage stops the others, and the error names the stage. Data flows
through OS pipes between stages; Python only feeds the first stage (optional) and reads
the last one (optional), so the engine can checksum the artifact while it is written.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading

from .errors import PgBackupError

CHUNK_SIZE = 1024 * 1024
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = 1031  # Linux; fcntl has no name for it before Python 3.10
STDERR_TAIL = 2000


class Stage(object):
    """One process of a pipeline.

    ``error_pattern``: a regex that marks the run failed when it appears on stderr even
    though the process exited 0 (pg_dump and pg_restore print "error:" lines).
    """

    def __init__(self, argv, name=None, error_pattern=None):
        self.argv = [str(arg) for arg in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.error_pattern = re.compile(error_pattern) if error_pattern else None


def require_tool(path_or_name, package_hint):
    """Return the absolute path of a program or raise naming the package that provides it."""
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) \
        else shutil.which(path_or_name)
    if not found:
        raise PgBackupError("Required program '%s' was not found." % path_or_name,
                            hint="Install %s on this host." % package_hint)
    return found


def _enlarge_pipe(stream):
    """Pipes of 1 MiB instead of 64 KiB: a gigabyte crossing a pipe then costs ~16 times fewer
    context switches. Best effort: the kernel may cap it (fs.pipe-max-size) or lack it."""
    try:
        fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, ValueError):
        pass


class Pipeline(object):
    """Start with ``start()``, consume ``stdout_chunks()`` if ``capture_stdout``, then ``wait()``.

    ``stdin`` is None (no input), a file path, or an iterable of bytes fed by a thread.
    """

    def __init__(self, stages, env=None, stdin=None, capture_stdout=False, stdout_path=None, tolerate_sigpipe=False):
        self.stages = stages
        self.tolerate_sigpipe = tolerate_sigpipe
        self.env = env
        self.stdin = stdin
        self.capture_stdout = capture_stdout
        self.stdout_path = stdout_path
        self.processes = []
        self.stderr_files = []
        self._feeder = None
        self._feeder_error = []
        self._tmpdir = None

    def start(self):
        self._tmpdir = tempfile.mkdtemp(prefix="pgbackup-stderr-")
        previous_stdout = None
        stdin_handle = None
        try:
            if isinstance(self.stdin, str):
                stdin_handle = open(self.stdin, "rb")
            for index, stage in enumerate(self.stages):
                last = index == len(self.stages) - 1
                if index == 0:
                    proc_stdin = stdin_handle if stdin_handle else (
                        subprocess.PIPE if self.stdin is not None else subprocess.DEVNULL)
                else:
                    proc_stdin = previous_stdout
                if not last:
                    proc_stdout = subprocess.PIPE
                elif self.stdout_path:
                    proc_stdout = open(self.stdout_path, "wb")
                elif self.capture_stdout:
                    proc_stdout = subprocess.PIPE
                else:
                    proc_stdout = subprocess.DEVNULL
                err_path = os.path.join(self._tmpdir, "%d.err" % index)
                err_handle = open(err_path, "wb")
                self.stderr_files.append(err_path)
                try:
                    # Own process group: kill() then also stops helpers a stage forked (pg_basebackup's
                    # WAL streamer), which would otherwise outlive a killed stage and hold its connection.
                    proc = subprocess.Popen(stage.argv, stdin=proc_stdin, stdout=proc_stdout, stderr=err_handle,
                                            env=self.env, close_fds=True, start_new_session=True)
                except OSError as exc:
                    raise PgBackupError("Cannot start '%s': %s." % (stage.name, exc.strerror or exc),
                                        hint="Check that it is installed and executable.")
                finally:
                    err_handle.close()
                    if last and self.stdout_path:
                        proc_stdout.close()
                if previous_stdout is not None:
                    previous_stdout.close()  # the child owns it now; lets SIGPIPE propagate
                if proc.stdout is not None:
                    _enlarge_pipe(proc.stdout)
                previous_stdout = proc.stdout if not last else None
                self.processes.append(proc)
        except BaseException:
            self.kill()
            self._cleanup()
            raise
        finally:
            if stdin_handle:
                stdin_handle.close()
        if self.stdin is not None and not isinstance(self.stdin, str):
            self._feeder = threading.Thread(target=self._feed, name="pipeline-feeder")
            self._feeder.daemon = True
            self._feeder.start()
        return self

    def _feed(self):
        sink = self.processes[0].stdin
        try:
            for chunk in self.stdin:
                sink.write(chunk)
        except BrokenPipeError:
            pass  # the first stage's own exit status tells why it stopped reading
        except BaseException as exc:  # an upstream failure: stop without finishing the input
            self._feeder_error.append(exc)
            self.kill()
        finally:
            try:
                sink.close()
            except BrokenPipeError:
                pass

    def stdout_chunks(self):
        stream = self.processes[-1].stdout
        while True:
            chunk = stream.read(CHUNK_SIZE)
            if not chunk:
                break
            yield chunk
        stream.close()

    def kill(self):
        for proc in self.processes:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def stderr_text(self, index):
        with open(self.stderr_files[index], "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def wait(self):
        """Wait for every stage; raise a PgBackupError for the first stage that failed."""
        try:
            if self._feeder:
                self._feeder.join()
            codes = [proc.wait() for proc in self.processes]
            if self._feeder_error:
                raise self._feeder_error[0]
            failure = self._first_failure(codes)
            if failure:
                self.kill()  # what a failed stage left running in its process group
                raise failure
            return [self.stderr_text(i) for i in range(len(self.stages))]
        finally:
            self._cleanup()

    def _first_failure(self, codes):
        # A stage killed by SIGPIPE (-13) only failed because a later stage did: report that one.
        candidates = []
        for index, (stage, code) in enumerate(zip(self.stages, codes)):
            text = self.stderr_text(index)
            if code != 0 or (stage.error_pattern and stage.error_pattern.search(text)):
                candidates.append((index, stage, code, text))
        real = [c for c in candidates if c[2] != -13] or candidates
        if not real:
            return None
        if self.tolerate_sigpipe and codes[-1] == 0 and all(c[2] == -13 for c in real):
            return None  # the last stage read all it needed and closed its input early
        index, stage, code, text = real[0]
        tail = text.strip()[-STDERR_TAIL:] or "(no error output)"
        if code < 0:
            reason = "was killed by signal %d" % -code
        elif code:
            reason = "exited with status %d" % code
        else:
            reason = "reported an error"
        return PgBackupError("%s %s: %s" % (stage.name, reason, tail), stage=stage.name, returncode=code)

    def wait_quietly(self):
        """Reap the processes after a failure elsewhere has already been reported."""
        try:
            self.wait()
        except (PgBackupError, OSError):
            pass

    def _cleanup(self):
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def run(self):
        """Start and wait, for pipelines whose stdout goes to a file or nowhere."""
        self.start()
        try:
            return self.wait()
        except BaseException:
            self.kill()
            raise
