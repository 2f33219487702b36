# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chains of incremental base backups (PostgreSQL 17+: ``pg_basebackup --incremental``, ``summarize_wal``).

An incremental backup holds only the blocks changed since its parent; it is restored by
``pg_combinebackup`` together with every backup it depends on, back to a full one. Each manifest of a
physical backup records ``backup_type`` (``full``, ``diff``: against the newest full, ``incr``: against the
newest backup of any type), ``parent`` (an id, None for a full) and ``chain`` (the ids from the full up to
the backup itself). A full backup and every backup that depends on it form one chain, which retention keeps
or removes whole. Manifests written before chains existed are full backups with a chain of one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ..core.errors import PgBackupError

BACKUP_TYPES = ("full", "diff", "incr", "auto")
TYPE_NAMES = {"diff": "a differential", "incr": "an incremental"}
# ``auto`` starts a new chain with a full backup once the chain it would extend holds this many backups: a
# restore then never combines more, and retention, which keeps a chain whole, can remove old ones (daily
# backups give a weekly full backup).
AUTO_CHAIN_LIMIT = 7
INCREMENTAL_SINCE = 170000
# pg_basebackup --incremental refused for want of WAL summaries (summarize_wal off, or summaries missing)
NO_SUMMARIES = r"WAL summarization|WAL summaries are required|summaries for that timeline"
USE_INSTEAD = "Take a full backup (type: full), or type: auto, which takes a full backup when an incremental one " \
              "is not possible."


def backup_type_of(manifest):
    return manifest.get("backup_type") or "full"


def chain_ids(manifest):
    """The ids from the full backup up to ``manifest`` itself."""
    return list(manifest.get("chain") or [manifest["id"]])


def chain_root(manifest):
    return chain_ids(manifest)[0]


def chain_of(repository, manifest):
    """The manifests of ``manifest``'s chain, full first; raises when a member is missing or does not fit."""
    members = []
    for backup_id in chain_ids(manifest)[:-1]:
        try:
            members.append(repository.load(backup_id))
        except PgBackupError:
            raise PgBackupError("Backup '%s' depends on '%s', which is not in the repository: it cannot be restored."
                                % (manifest["id"], backup_id),
                                hint="Restore an older full backup (or another chain); take a full backup now.")
    members.append(manifest)
    for parent, child in zip(members, members[1:]):
        if child.get("parent") != parent["id"] or child.get("system_identifier") != parent.get("system_identifier") \
                or incremental_from(child) not in (None, parent.get("start_lsn")):
            raise PgBackupError("The chain of backup '%s' is inconsistent: '%s' does not follow '%s'." % (
                manifest["id"], child["id"], parent["id"]), hint="Restore another backup; take a full backup now.")
    return members


def incremental_from(manifest):
    """The parent's start LSN that an incremental backup's backup_label names (None: not known)."""
    match = re.search(r"^INCREMENTAL FROM LSN: (\S+)$", manifest.get("backup_label") or "", re.M)
    return match.group(1) if match else None


def dependants(manifest, manifests):
    """The backups among ``manifests`` that need ``manifest`` to be restored."""
    return [other for other in manifests if other["id"] != manifest["id"] and manifest["id"] in chain_ids(other)]


def incremental_refusal(facts):
    """Why this server cannot take an incremental backup (None: it can)."""
    if facts["server_version_num"] < INCREMENTAL_SINCE:
        return "incremental base backups need PostgreSQL 17 or newer and this server runs %s" % facts["server_version"]
    if facts.get("summarize_wal") != "on":
        return "the server does not summarize its WAL (summarize_wal is off), which incremental backups need " \
               "(role todoapi.pgbackup.wal_archiving turns it on: wal_archiving_summarize_wal)"
    return None


def _same_cluster(manifest, facts, cluster):
    if facts.get("system_identifier") and manifest.get("system_identifier"):
        same = manifest["system_identifier"] == facts["system_identifier"]
    else:
        same = manifest["database"] == cluster
    return same and int(manifest.get("server_version_num") or 0) // 10000 == facts["server_version_num"] // 10000


def _can_be_parent(repository, manifest):
    if not os.path.isfile(os.path.join(repository.artifact_path(manifest), "backup_manifest")):
        return False
    try:
        chain_of(repository, manifest)
    except PgBackupError:
        return False
    return True


def choose_parent(repository, requested, facts, cluster):
    """(type to take, parent manifest or None, why ``auto`` took a full backup or None).

    ``diff`` builds on the newest full backup of this cluster, ``incr`` and ``auto`` on its newest backup of
    any type; ``auto`` takes a full backup when no incremental one is possible, or when the chain it would
    extend already holds AUTO_CHAIN_LIMIT backups; ``diff`` and ``incr`` fail saying why.
    """
    if requested == "full":
        return "full", None, None
    refusal = incremental_refusal(facts)
    parent = None
    if refusal is None:
        candidates = [m for m in repository.list(kind="physical") if _same_cluster(m, facts, cluster)
                      and (requested != "diff" or backup_type_of(m) == "full")]
        # newest first: a remote repository fetches each candidate's backup_manifest only when it gets there
        parent = next((m for m in reversed(candidates) if _can_be_parent(repository, m)), None)
        if parent is None:
            refusal = "the repository holds no %s backup of this cluster (PostgreSQL %d, %s) to build on" % (
                "full" if requested == "diff" else "complete", facts["server_version_num"] // 10000, cluster)
    if refusal is None and requested == "auto" and len(chain_ids(parent)) >= AUTO_CHAIN_LIMIT:
        return "full", None, "the chain of '%s' already holds %d backups: type auto starts a new one" % (
            parent["id"], AUTO_CHAIN_LIMIT)
    if refusal is None:
        return ("diff" if requested == "diff" else "incr"), parent, None
    if requested == "auto":
        return "full", None, refusal
    raise PgBackupError("Cannot take %s backup (type %s): %s." % (TYPE_NAMES[requested], requested, refusal),
                        hint=USE_INSTEAD)


def chain_record(backup_type, parent, backup_id):
    """The manifest's ``backup_type``, ``parent`` and ``chain`` of a new backup."""
    chain = (chain_ids(parent) if parent else []) + [backup_id]
    return {"backup_type": backup_type, "parent": parent["id"] if parent else None, "chain": chain}
