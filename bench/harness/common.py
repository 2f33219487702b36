# -*- coding: utf-8 -*-
"""Helpers every part of the bench uses: the log, size units, the core count, directories."""

from __future__ import absolute_import, division, print_function

import os
import shutil
import statistics
import sys
import time

MIB = 1024.0 * 1024.0
CORES = os.cpu_count() or 1


def log(message):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


def median(values):
    return statistics.median(values) if values else None


def mkdir(path, owner=None, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def rmtree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.unlink(path)
