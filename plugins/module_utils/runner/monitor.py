# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's ``status`` subcommand: check the repository, export metrics, send alerts.

The runner's ``status`` command (commands/status.py) calls ``add_status_arguments`` and
``run_status_command`` with its own config and database connection.

``main(argv)`` parses the same options without the runner (returns the exit status).

Settings, lowest priority first: the runner's config (its first repository, owner, databases,
log_file, the thresholds max_age_hours and size_anomaly_factor, and state_dir for the alert
state), the monitoring JSON file (``--monitoring-config``, by default ``monitoring.json`` beside
the runner's config when there is one: the alert channels, the textfile; keys are the long
option names with underscores, e.g. ``smtp_password``, so secrets stay out of crontab and
``ps``), then the command line. Exit status: 0 healthy, 1 problems found, 2 the check or an
alert could not be done. When the check itself cannot run (a missing or wrong config, an
unreadable repository, a crash), ``publish_failure`` still writes the metrics and alerts.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import sys

from ..core import fsutil
from ..core import manifest as manifests
from ..core.errors import PgBackupError
from ..ops import alerts
from ..ops import status as statuses
from ..storage.local import LocalRepository
from . import names, repositories
from .config import DEFAULTS as CONFIG_DEFAULTS
from .config import INSTALLED_DEFAULTS

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
STATUS_FAILED = "status_failed"  # the problem of a check that could not run
MONITORING_FILE = "monitoring.json"  # beside the runner's config: the named configuration's alert channels
DEFAULTS = {
    # the thresholds are the runner config's (config.py owns them; from_runner_config takes a config's own)
    "max_age_hours": INSTALLED_DEFAULTS["max_age_hours"], "size_anomaly_factor": CONFIG_DEFAULTS["size_anomaly_factor"],
    "repository": None, "owner": None, "database": None, "databases": [],
    "log_file": None, "textfile": None, "alert_mode": "on_change", "alert_state_file": None,
    "smtp_host": None, "smtp_port": 25, "smtp_from": None, "smtp_to": [], "smtp_starttls": False,
    "smtp_user": None, "smtp_password": None, "webhook_url": None, "webhook_timeout": 10, "json": False,
    "check_archiver": False, "name": None,
}


def add_status_arguments(parser):
    """Options of the status subcommand; defaults are None so --config values can fill them."""
    add = parser.add_argument
    add("--monitoring-config", help="JSON file with any of these settings (keys like smtp_password)")
    add("--repository", metavar="NAME|INDEX|DIR",
        help="a repository of the config, by name or position from 1, or a directory (default: the config's first)")
    add("--owner", help="OS user owning the repository (for files written there)")
    add("--database", help="only this database (its absence is a problem)")
    add("--max-age-hours", type=float, help="newest backup older than this is 'stale' (default: the config's max_age_hours)")
    add("--size-anomaly-factor", type=float,
        help="newest size beyond factor x / 1/factor of the median (default: the config's size_anomaly_factor)")
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


def from_runner_config(config):
    """The monitoring settings the runner's config owns (thresholds, databases, log, alert state)."""
    if not config:
        return {}
    return {"owner": config["owner"], "databases": config["databases"], "log_file": config["log_file"],
            # the check always looks at the age: a config without a limit gets the installed one
            "max_age_hours": config["max_age_hours"] or INSTALLED_DEFAULTS["max_age_hours"],
            "size_anomaly_factor": config["size_anomaly_factor"],
            "alert_state_file": os.path.join(config["state_dir"], "alert-state.json")}


def monitoring_file(args):
    """--monitoring-config, else the monitoring.json beside the runner's config when this user can read it."""
    given = getattr(args, "monitoring_config", None)
    config_path = getattr(args, "config", None)
    if given or not config_path:
        return given
    beside = os.path.join(os.path.dirname(os.path.abspath(config_path)), MONITORING_FILE)
    return beside if os.access(beside, os.R_OK) else None


def read_monitoring_file(path):
    loaded = fsutil.read_json(path, "Cannot read monitoring config '%s': %s.",
                              hint="It must be a JSON object readable by this user.")
    if not isinstance(loaded, dict):
        raise PgBackupError("Monitoring config '%s' is not a JSON object." % path)
    unknown = sorted(set(loaded) - set(DEFAULTS))
    if unknown:
        raise PgBackupError("Unknown setting(s) in '%s': %s." % (path, ", ".join(unknown)),
                            hint="Known settings: %s." % ", ".join(sorted(DEFAULTS)))
    return dict((key, value) for key, value in loaded.items() if value is not None)


def settings_from(args, runner_config=None):
    """Merge defaults < runner config < monitoring file < command line into one dict."""
    settings = dict(DEFAULTS)
    settings.update(from_runner_config(runner_config))
    path = monitoring_file(args)
    if path:
        settings.update(read_monitoring_file(path))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and value != []:
            settings[key] = value
    if isinstance(settings["smtp_to"], str):
        settings["smtp_to"] = [settings["smtp_to"]]
    # every metric carries the setup's name, so that two setups on one host never export the same series
    settings["labels"] = {"config": runner_config["name"] if runner_config else settings["name"] or names.DEFAULT_NAME}
    return settings


def status_repository(settings, runner_config=None):
    """The repository to check: one of the config's (by name or position; default its first), or a directory."""
    selector = settings["repository"]
    if runner_config:
        entry = repositories.find(runner_config["repositories"], selector) if selector else runner_config["repositories"][0]
        if entry is not None:
            return repositories.open_entry(entry, owner=settings["owner"])
    if not selector:
        raise PgBackupError("No repository given.", hint="Pass --repository or set 'repository' in the config file.")
    return LocalRepository(selector, owner=settings["owner"])


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


def check(settings, now=None, connection=None, repository=None):
    """Status + textfile + alerts; returns (exit code, report dict).

    ``repository`` defaults to the directory ``settings['repository']``. With ``check_archiver``
    and a ``connection`` (the runner's), a failing archive_command (pg_stat_archiver) and staging
    databases left by dead restores are more problems, alerted like the others."""
    repository = repository or status_repository(settings)
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
    return publish(settings, status)


def publish(settings, status):
    """Write the textfile and send the alert ``status`` calls for; returns (exit code, report dict)."""
    report = {"ok": status["ok"], "problem_codes": status["problem_codes"], "alert": None, "errors": []}
    if settings["textfile"]:
        statuses.write_prometheus_textfile(settings["textfile"], status, labels=settings.get("labels"))
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
    runner's ConnectionSpec, needed only for ``check_archiver``. A check that cannot run is still
    published as the problem ``status_failed`` (publish_failure)."""
    out = out or sys.stdout
    err = err or sys.stderr
    settings = None
    try:
        settings = settings_from(args, runner_config)
        repository = status_repository(settings, runner_config)
        connection = connect() if settings["check_archiver"] and connect is not None else None
        code, report = check(settings, connection=connection, repository=repository)
    except PgBackupError as exc:
        err.write("pgbackup status: ERROR: %s\n" % exc)
        publish_failure(args, exc, settings=settings, runner_config=runner_config, err=err)
        return EXIT_ERROR
    except Exception as exc:
        publish_failure(args, exc, settings=settings, runner_config=runner_config, err=err)
        raise
    show(settings, report, out, err)
    return code


def show(settings, report, out, err):
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


def failure_status(error, repository=None):
    """A status that says only that the check could not run."""
    problem = {"code": STATUS_FAILED, "severity": "critical", "database": None,
               "message": "The backup status check could not run: %s" % error}
    return {"ok": False, "checked_at": manifests.isoformat(manifests.utcnow()), "repository": repository or "(unknown)",
            "thresholds": {}, "backups": [], "latest": {}, "health": [problem], "problem_codes": [STATUS_FAILED],
            "metrics": {}}


def publish_failure(args, error, settings=None, runner_config=None, err=None):
    """Cron drops the output of a check that cannot run, so say it where it is heard: the problem
    ``status_failed`` in the textfile (with status_ok 0) and an alert, from whatever settings can
    still be read (the monitoring file, the command line). Never raises; what fails goes to ``err``."""
    err = err or sys.stderr
    try:
        settings = settings or settings_from(args, runner_config)
        _code, report = publish(settings, failure_status(error, settings["repository"]))
        for problem in report["errors"]:
            err.write("pgbackup status: ALERT NOT DELIVERED: %s\n" % problem)
    except Exception as exc:
        err.write("pgbackup status: the failure could not be reported either: %s\n" % exc)


def main(argv=None):
    parser = add_status_arguments(argparse.ArgumentParser(prog="todoapi-pgbackup status",
                                                          description="Check backup health, write metrics, send alerts."))
    return run_status_command(parser.parse_args(argv))
