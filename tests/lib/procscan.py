# -*- coding: utf-8 -*-
"""Watching while something runs: a background poller, and on top of it a /proc scanner that
looks for secrets in every process's command line and environment.

    with ProcScanner([password]) as scanner:
        run_the_backup()
    assert scanner.saw_command("--config %s backup" % config), "the scan never saw the runner"
    assert scanner.hits == [], scanner.hits
"""

from __future__ import absolute_import, division, print_function

import os
import threading


class Poller(object):
    """Calls ``poll()`` in a background thread every ``interval`` seconds, from entering the
    ``with`` block until leaving it."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def poll(self):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        return False

    def _run(self):
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)


# /proc


def _stat_fields(pid):
    """(comm, [state, ppid, ...]) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        with open("/proc/%s/stat" % pid) as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()


def proc_stat(pid):
    """(comm, ppid) of a process, or None when it is gone."""
    fields = _stat_fields(pid)
    return (fields[0], int(fields[1][1])) if fields else None


def proc_state(pid):
    """The state letter of a process (``Z`` for a zombie), or None when it is gone."""
    fields = _stat_fields(pid)
    return fields[1][0] if fields else None


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def read_proc(pid, what):
    """/proc/<pid>/<what> (cmdline, environ), or b"" when it cannot be read (the process is gone)."""
    try:
        with open("/proc/%d/%s" % (pid, what), "rb") as handle:
            return handle.read()
    except OSError:
        return b""


class ProcScanner(Poller):
    """Reads /proc/<pid>/cmdline and /proc/<pid>/environ of every process, again and again,
    while a run goes on, and records each process in which one of ``secrets`` shows up. It keeps
    every command line seen (``saw_command``). For the processes below this test process it also
    keeps the names seen and, in ``children``, {pid: (name, argv, environment entries)} (to prove
    the scan caught the children it was meant to watch, and to inspect them)."""

    def __init__(self, secrets, interval=0.005):
        super(ProcScanner, self).__init__(interval)
        self.secrets = [s.encode("utf-8") if isinstance(s, str) else s for s in secrets if s]
        self.hits = []
        self.commands = set()
        self.seen = set()
        self.children = {}

    def saw_command(self, text):
        """Whether ``text`` was part of a command line seen (arguments joined by spaces)."""
        text = text.encode("utf-8") if isinstance(text, str) else text
        return any(text in command for command in self.commands)

    def poll(self):
        me = os.getpid()
        parents = {}
        for pid in all_pids():
            if pid == me:
                continue
            info = proc_stat(pid)
            if not info:
                continue
            parents[pid] = info
            for what in ("cmdline", "environ"):
                data = read_proc(pid, what)
                if what == "cmdline" and data:
                    self.commands.add(data.replace(b"\0", b" "))
                for secret in self.secrets:
                    if secret in data:
                        self.hits.append((pid, info[0], what, secret.decode("utf-8", "replace")[:6] + "..."))
        for pid, (comm, ppid) in parents.items():
            chain, seen = ppid, 0
            while chain not in (me, 0, 1) and chain in parents and seen < 64:
                chain, seen = parents[chain][1], seen + 1
            if chain == me:
                self.seen.add(comm)
                environ = read_proc(pid, "environ")
                cmdline = read_proc(pid, "cmdline")
                if environ and cmdline and pid not in self.children:
                    self.children[pid] = (comm, cmdline.split(b"\0"), environ.split(b"\0"))
