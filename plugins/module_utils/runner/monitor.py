# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's ``status`` subcommand: check the repository, export metrics, send alerts.

The runner's ``status`` command (commands/status.py) calls ``add_status_arguments`` and
``run_status_command`` with its own config and database connection.

``main(argv)`` parses the same options without the runner (returns the exit status).

Settings, lowest priority first: the runner's config (repository, owner, databases,
log_file, max_age_hours), the monitoring JSON file (``--monitoring-config``; keys are the
long option names with underscores, e.g. ``smtp_password``, so secrets stay out of crontab
and ``ps``), then the command line. Exit status: 0 healthy, 1 problems found, 2 the check or
an alert could not be done.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import sys

from ..ops import alerts
from ..ops import status as statuses
from ..core import fsutil
from ..core.errors import PgBackupError
from ..storage.local import LocalRepository

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
DEFAULTS = {
    "repository": None, "owner": None, "database": None, "databases": [], "max_age_hours": 25.0, "size_anomaly_factor": 3.0,
    "log_file": None, "textfile": None, "alert_mode": "on_change", "alert_state_file": None,
    "smtp_host": None, "smtp_port": 25, "smtp_from": None, "smtp_to": [], "smtp_starttls": False,
    "smtp_user": None, "smtp_password": None, "webhook_url": None, "webhook_timeout": 10, "json": False,
    "check_archiver": False,
}


def add_status_arguments(parser):
    """Options of the status subcommand; defaults are None so --config values can fill them."""
    add = parser.add_argument
    add("--monitoring-config", help="JSON file with any of these settings (keys like smtp_password)")
    add("--repository", help="backup repository directory")
    add("--owner", help="OS user owning the repository (for files written there)")
    add("--database", help="only this database (its absence is a problem)")
    add("--max-age-hours", type=float, help="newest backup older than this is 'stale' (default 25)")
    add("--size-anomaly-factor", type=float, help="newest size beyond factor x / 1/factor of the median (default 3)")
    add("--log-file", help="the runner's JSON-lines log, for 'last_run_failed'")
    add("--textfile", help="write Prometheus metrics here (node_exporter textfile collector)")
    add("--alert-mode", choices=alerts.MODES, help="on_change (default) or always_on_failure")
    add("--alert-state-file", help="remembers the last alert (needed to send alerts)")
    add("--smtp-host")
    add("--smtp-port", type=int)
    add("--smtp-from")
    add("--smtp-to", action="append", help="recipient (repeat for several)")
    add("--smtp-starttls", action="store_true", default=None)
    add("--smtp-user")
    add("--webhook-url")
    add("--webhook-timeout", type=float)
    add("--json", action="store_true", default=None, help="print the whole status as JSON")
    add("--check-archiver", action="store_true", default=None,
        help="also check WAL archiving (pg_stat_archiver) on the runner's database server")
    return parser


def settings_from(args, runner_config=None):
    """Merge defaults < runner config < --monitoring-config file < command line into one dict."""
    settings = dict(DEFAULTS)
    for key in ("repository", "owner", "databases", "log_file", "max_age_hours"):
        if runner_config and runner_config.get(key) not in (None, "", []):
            settings[key] = runner_config[key]
    config_path = getattr(args, "monitoring_config", None)
    if config_path:
        loaded = fsutil.read_json(config_path, "Cannot read monitoring config '%s': %s.",
                                  hint="It must be a JSON object readable by this user.")
        if not isinstance(loaded, dict):
            raise PgBackupError("Monitoring config '%s' is not a JSON object." % config_path)
        unknown = sorted(set(loaded) - set(DEFAULTS))
        if unknown:
            raise PgBackupError("Unknown setting(s) in '%s': %s." % (config_path, ", ".join(unknown)),
                                hint="Known settings: %s." % ", ".join(sorted(DEFAULTS)))
        settings.update(dict((k, v) for k, v in loaded.items() if v is not None))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and value != []:
            settings[key] = value
    if isinstance(settings["smtp_to"], str):
        settings["smtp_to"] = [settings["smtp_to"]]
    if not settings["repository"]:
        raise PgBackupError("No repository given.", hint="Pass --repository or set 'repository' in the config file.")
    return settings


def deliver(settings, decision, status):
    """Send the alert through every configured channel; returns (channels sent, errors)."""
    sent, errors = [], []
    if settings["smtp_host"] and settings["smtp_to"]:
        try:
            alerts.send_email(settings["smtp_host"], settings["smtp_port"], settings["smtp_from"] or "pgbackup@localhost",
                              settings["smtp_to"], decision["subject"], decision["body"],
                              starttls=bool(settings["smtp_starttls"]), username=settings["smtp_user"],
                              password=settings["smtp_password"])
            sent.append("email")
        except PgBackupError as exc:
            errors.append(str(exc))
    if settings["webhook_url"]:
        try:
            alerts.post_webhook(settings["webhook_url"], alerts.webhook_payload(decision, status),
                                timeout=settings["webhook_timeout"])
            sent.append("webhook")
        except PgBackupError as exc:
            errors.append(str(exc))
    return sent, errors


def check(settings, now=None, connection=None):
    """Status + textfile + alerts; returns (exit code, report dict).

    With ``check_archiver`` and a ``connection`` (the runner's), a failing archive_command
    (pg_stat_archiver) and staging databases left by dead restores are more problems, alerted like
    the others."""
    repository = LocalRepository(settings["repository"], owner=settings["owner"])
    status = statuses.backup_status(repository, database=settings["database"], now=now,
                                    expected_databases=settings["databases"],
                                    max_age_hours=settings["max_age_hours"],
                                    size_anomaly_factor=settings["size_anomaly_factor"], log_file=settings["log_file"])
    if settings["check_archiver"]:
        if connection is None:
            raise PgBackupError("check_archiver needs the runner's database connection.",
                                hint="Run it as 'todoapi-pgbackup status' with the runner's config.")
        archiver = statuses.archiver_status(connection)
        status["archiver"] = archiver
        # the one check that connects to the server, so it also looks for dead restores' staging databases
        server_problems = archiver["problems"] + statuses.staging_problems(connection)
        if server_problems:
            status["health"].extend(server_problems)
            status["problem_codes"] = sorted(set(status["problem_codes"]) | set(p["code"] for p in server_problems))
            status["ok"] = False
    report = {"ok": status["ok"], "problem_codes": status["problem_codes"], "alert": None, "errors": []}
    if settings["textfile"]:
        statuses.write_prometheus_textfile(settings["textfile"], status)
        report["textfile"] = settings["textfile"]
    channels = bool((settings["smtp_host"] and settings["smtp_to"]) or settings["webhook_url"])
    if channels:
        if not settings["alert_state_file"]:
            raise PgBackupError("Alerts are configured but no alert state file is set.",
                                hint="Set --alert-state-file (e.g. /var/lib/todoapi-pgbackup/alert-state.json).")
        decision = alerts.alert_decision(settings["alert_state_file"], status, settings["alert_mode"])
        report["alert"] = {"send": decision["send"], "kind": decision["kind"], "subject": decision["subject"]}
        if decision["send"]:
            sent, errors = deliver(settings, decision, status)
            report["alert"]["sent"] = sent
            report["errors"] = errors
            if sent and not errors:
                alerts.save_alert_state(settings["alert_state_file"], decision)
        else:
            alerts.save_alert_state(settings["alert_state_file"], decision)
    report["status"] = status
    if report["errors"]:
        return EXIT_ERROR, report
    return (EXIT_OK if status["ok"] else EXIT_PROBLEMS), report


def run_status_command(args, runner_config=None, out=None, err=None, connect=None):
    """Entry point for the runner: returns the process exit status. ``connect()`` returns the
    runner's ConnectionSpec, needed only for ``check_archiver``."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        settings = settings_from(args, runner_config)
        connection = None
        if settings["check_archiver"] and connect is not None:
            connection = connect()
        code, report = check(settings, connection=connection)
    except PgBackupError as exc:
        err.write("pgbackup status: ERROR: %s\n" % exc)
        return EXIT_ERROR
    status = report.pop("status")
    if settings["json"]:
        out.write(json.dumps(dict(report, status=status), indent=2, sort_keys=True) + "\n")
    else:
        if status["ok"]:
            out.write("pgbackup status: OK (%d backups)\n" % len(status["backups"]))
        for problem in status["health"]:
            out.write("pgbackup status: %s %s: %s\n" % (problem["severity"].upper(), problem["code"], problem["message"]))
        if report["alert"] and report["alert"]["send"]:
            out.write("pgbackup status: alert '%s' sent via %s\n" % (report["alert"]["subject"],
                                                                     ", ".join(report["alert"].get("sent") or []) or "nothing"))
    for error in report["errors"]:
        err.write("pgbackup status: ALERT NOT DELIVERED: %s\n" % error)
    return code


def main(argv=None):
    parser = add_status_arguments(argparse.ArgumentParser(prog="todoapi-pgbackup status",
                                                          description="Check backup health, write metrics, send alerts."))
    return run_status_command(parser.parse_args(argv))
