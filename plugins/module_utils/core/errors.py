# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type the engine raises for every expected failure."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class PgBackupError(Exception):
    """A failure the operator can act on.

    ``message`` says what went wrong, ``hint`` what to do about it. Modules turn it into
    one ``fail_json`` and the runner into one log line and a non-zero exit.
    """

    def __init__(self, message, hint=None, **details):
        super(PgBackupError, self).__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self):
        if self.hint:
            return "%s %s" % (self.message, self.hint)
        return self.message
