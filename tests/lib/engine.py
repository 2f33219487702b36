# -*- coding: utf-8 -*-
"""Calling the engine (plugins/module_utils) directly, the way the modules do."""

from __future__ import absolute_import, division, print_function

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec


def spec_of(cluster, **overrides):
    """The engine's ConnectionSpec for a PgCluster (password included, as a module would pass it)."""
    params = dict(host=cluster.host, port=cluster.port, user=cluster.user, password=cluster.password)
    params.update(overrides)
    return ConnectionSpec(**params)
