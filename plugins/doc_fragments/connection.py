# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  host:
    description:
      - Host name or IP address of the PostgreSQL server, or a Unix socket directory.
      - When omitted, the local Unix socket is used (peer authentication as the OS user running the module).
    type: str
    aliases: [login_host]
  port:
    description: Port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [login_port]
  user:
    description: PostgreSQL role to connect as.
    type: str
    default: postgres
    aliases: [login_user]
  password:
    description:
      - Password of O(user).
      - Never passed on a command line; the PostgreSQL tools receive it through a private temporary passfile.
    type: str
    aliases: [login_password]
  sslmode:
    description: libpq C(sslmode) for the connection.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  pg_bin_dir:
    description:
      - Directory holding the PostgreSQL client programs to use.
      - By default the programs of the server's major version (Debian's C(/usr/lib/postgresql/<major>/bin)) or a newer one are used.
    type: path
'''
