# -*- coding: utf-8 -*-
"""Running the system commands that build, enter and remove a lab (ip, mount, nsenter, useradd, ...)."""

from __future__ import absolute_import, division, print_function

import subprocess


class LabCommandError(RuntimeError):
    """A command that builds or removes part of the lab failed."""


def run(argv, check=True, input_text=None, env=None, timeout=60):
    completed = subprocess.run(argv, input=input_text, capture_output=True, text=True, env=env, timeout=timeout,
                               check=False)
    if check and completed.returncode != 0:
        raise LabCommandError("command failed (rc=%s): %s\n%s%s" % (
            completed.returncode, " ".join(argv), completed.stdout, completed.stderr))
    return completed
