# -*- coding: utf-8 -*-
"""Running the measured commands: exit status, peak RSS and the CPU time they used."""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import time


class StepFailed(RuntimeError):
    pass


CLIENT_CPU = [0.0]  # CPU seconds of the processes run_process waited for (and their waited-for children)


def run_process(argv, env=None, log_path=None, stdin_path=None, timeout=7200):
    """Run argv; return (seconds, peak RSS in kB of the process or any of its waited-for children)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    inp = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
                                stdin=inp, close_fds=True)
        status, usage = _wait(proc, started + timeout)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        CLIENT_CPU[0] += usage.ru_utime + usage.ru_stime
    finally:
        if log_path:
            out.close()
        if stdin_path:
            inp.close()
    if proc.returncode != 0:
        raise StepFailed("%s exited %s: %s" % (os.path.basename(argv[0]), proc.returncode, _log_tail(log_path)))
    return seconds, usage.ru_maxrss


def run_process_rss(*args, **kwargs):
    """run_process, returning only the peak RSS (the Timed block around it keeps the time)."""
    return run_process(*args, **kwargs)[1]


def _wait(proc, deadline):
    """(status, rusage) of proc; wait4 rather than wait, for the resources of this one process tree."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, usage
        if time.monotonic() > deadline:
            proc.kill()
            return os.wait4(proc.pid, 0)[1:]
        time.sleep(0.02)


def _log_tail(log_path):
    if not log_path or not os.path.exists(log_path):
        return ""
    with open(log_path, "rb") as handle:
        return handle.read()[-1500:].decode("utf-8", "replace").strip()
