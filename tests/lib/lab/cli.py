# -*- coding: utf-8 -*-
"""Command line of the lab (scripts/lab.sh): ``python -m tests.lib.lab up|down|status|hold``.

up      build a lab owned by a detached keeper process, print its inventory path; it stays up
        until ``down`` (labs whose keeper is gone count as stale)
down    remove the labs ``up`` started, and every stale lab
status  list the labs on this machine: owner, subnet, inventory, which hosts answer SSH
hold    build a lab owned by this command, print its inventory, keep it until SIGINT/SIGTERM
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import signal
import subprocess
import sys

from tests.lib.lab.cleanup import cleanup_stale_labs, known_lab_ids, leftovers, read_state
from tests.lib.lab.lab import Lab
from tests.lib.lab.topology import owner_pid_of


def _print_ready(lab):
    print("lab %s up: network %s, controller %s" % (lab.id, lab.network, lab.controller))
    print("ssh:       ssh -F %s db1" % lab.ssh_config)
    print("inventory: %s" % lab.inventory)
    sys.stdout.flush()


def cmd_up(_args):
    cleanup_stale_labs()
    keeper = subprocess.Popen(["sleep", "infinity"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    try:
        lab = Lab.create(owner_pid=keeper.pid, keeper=True)
    except BaseException:
        keeper.kill()
        raise
    _print_ready(lab)
    return 0


def cmd_down(_args):
    for lab_id in known_lab_ids():
        if read_state(lab_id).get("keeper"):
            Lab.attach(lab_id).down()
            print("lab %s removed" % lab_id)
    for lab_id in cleanup_stale_labs():
        print("stale lab %s removed" % lab_id)
    return 0


def cmd_status(_args):
    ids = known_lab_ids()
    if not ids:
        print("no lab on this machine")
    for lab_id in ids:
        try:
            lab = Lab.attach(lab_id)
        except KeyError:
            print("lab %s: incomplete (%s)" % (lab_id, "; ".join(leftovers(lab_id))))
            continue
        owner = "keeper" if lab.keeper else "owner"
        alive = "alive" if lab.owner_alive() else "dead: stale, removed by the next run"
        print("lab %s: %s %d %s, network %s" % (lab_id, owner, owner_pid_of(lab_id), alive, lab.network))
        print("  inventory: %s" % lab.inventory)
        print("  hosts:     %s" % ", ".join("%s %s (%s)" % (host, state, lab.address(host))
                                            for host, state in lab.status().items()))
    return 0


def _stop_holding(_signum, _frame):
    raise SystemExit(0)


def cmd_hold(_args):
    # Handlers first, and for SIGINT too: a shell starts background jobs with SIGINT ignored.
    # A signal during Lab.create() then unwinds through its cleanup.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_holding)
    cleanup_stale_labs()
    lab = Lab.create()
    try:
        _print_ready(lab)
        print("holding; SIGINT or SIGTERM (pid %d) takes it down" % os.getpid())
        sys.stdout.flush()
        while True:
            signal.pause()
    except SystemExit:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the teardown
        lab.down()
    return 0


COMMANDS = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "hold": cmd_hold}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/lab.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the lab needs root (network and mount namespaces, sshd on port 22)")
    return COMMANDS[args.command](args)
