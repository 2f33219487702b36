# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alerts about backup health: e-mail (smtplib), webhook (JSON POST), and when to send.

``alert_decision`` compares the current problems with those remembered in a small JSON
state file; ``save_alert_state`` remembers them once the alert went out, so an alert that
could not be delivered is tried again on the next check.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ..core import fsutil
from ..core.errors import PgBackupError

MODES = ("on_change", "always_on_failure")
SUBJECT_PREFIX = "[todoapi.pgbackup]"


def send_email(smtp_host, smtp_port, sender, recipients, subject, body, starttls=False, username=None, password=None,
               timeout=30):
    """Send a plain-text mail; raise PgBackupError naming the cause when the server refuses it."""
    recipients = [r for r in (recipients or []) if r]
    if not recipients:
        raise PgBackupError("No e-mail recipients given.", hint="Set at least one address to alert.")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=(sender.rpartition("@")[2] or None))
    message.set_content(body)
    try:
        with smtplib.SMTP(smtp_host, int(smtp_port), timeout=timeout) as smtp:
            if starttls:
                smtp.starttls(context=ssl.create_default_context())
            if username:
                smtp.login(username, password or "")
            smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError:
        raise PgBackupError("The SMTP server %s:%s rejected the login of '%s'." % (smtp_host, smtp_port, username),
                            hint="Check the SMTP user and password.")
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise PgBackupError("Sending the alert e-mail through %s:%s failed: %s" % (smtp_host, smtp_port, exc),
                            hint="Check the SMTP host, port and STARTTLS setting.")
    return recipients


def post_webhook(url, payload, timeout=10, headers=None):
    """POST ``payload`` as JSON; raise PgBackupError unless the server answers 2xx."""
    if not str(url).startswith(("http://", "https://")):
        raise PgBackupError("Webhook URL '%s' is not an http(s) URL." % url, hint="Use http:// or https://.")
    data = json.dumps(payload, sort_keys=True).encode("utf-8")
    all_headers = {"Content-Type": "application/json", "User-Agent": "todoapi.pgbackup"}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        raise PgBackupError("The webhook answered HTTP %d %s." % (exc.code, exc.reason),
                            hint="Check the webhook URL and what the receiver expects.")
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        raise PgBackupError("The webhook at %s could not be reached: %s" % (_redact(url), reason),
                            hint="Check the URL and that this host may connect to it.")


def _redact(url):
    """Webhook URLs often carry a secret token in their path: show scheme and host only."""
    scheme, separator, rest = str(url).partition("://")
    return "%s%s%s/..." % (scheme, separator, rest.split("/", 1)[0])


def problem_keys(status):
    return sorted(set("%s:%s" % (p.get("database") or "*", p["code"]) for p in status.get("health", [])))


def load_alert_state(path):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def alert_decision(previous_state_file, status, mode):
    """Whether to alert now, and what to say. Does not write the state (see ``save_alert_state``).

    ``on_change``: alert when the set of (database, problem code) pairs differs from the last
    one alerted, including a recovery message when it becomes empty. ``always_on_failure``:
    alert on every check that finds problems (and once on recovery).
    """
    if mode not in MODES:
        raise PgBackupError("Unknown alert mode '%s'." % mode, hint="Use one of: %s." % ", ".join(MODES))
    previous = load_alert_state(previous_state_file) or {}
    before = sorted(previous.get("problems") or [])
    now = problem_keys(status)
    new = [key for key in now if key not in before]
    resolved = [key for key in before if key not in now]
    if now:
        send = mode == "always_on_failure" or now != before
        kind = "problem"
    else:
        send = bool(before)
        kind = "recovery" if before else None
    subject, body = _message(status, kind, new, resolved)
    return {"send": send, "kind": kind, "mode": mode, "problems": now, "previous": before, "new": new,
            "resolved": resolved, "subject": subject, "body": body,
            "state": {"problems": now, "checked_at": status.get("checked_at"), "ok": bool(status.get("ok"))}}


def save_alert_state(previous_state_file, decision):
    """Remember what was alerted (call after the alert went out, or when nothing had to be sent)."""
    fsutil.write_json_atomic(previous_state_file, decision["state"])


def _message(status, kind, new, resolved):
    host = socket.gethostname()
    health = status.get("health", [])
    if kind == "recovery":
        subject = "%s RECOVERED on %s: backups are healthy again" % (SUBJECT_PREFIX, host)
    elif kind == "problem":
        codes = sorted(set(p["code"] for p in health))
        dbs = sorted(set(p.get("database") or "*" for p in health))
        subject = "%s PROBLEM on %s: %s (%s)" % (SUBJECT_PREFIX, host, ", ".join(codes), ", ".join(dbs))
    else:
        subject = "%s OK on %s" % (SUBJECT_PREFIX, host)
    lines = [subject, "", "Repository: %s" % status.get("repository"), "Checked at: %s" % status.get("checked_at"), ""]
    if health:
        lines.append("Problems:")
        for problem in health:
            lines.append("  - [%s] %s: %s" % (problem["severity"], problem["code"], problem["message"]))
        lines.append("")
    if new:
        lines.append("New since the last alert: %s" % ", ".join(new))
    if resolved:
        lines.append("Resolved since the last alert: %s" % ", ".join(resolved))
    lines.append("")
    lines.append("Newest usable backup per database:")
    for database, entry in sorted((status.get("latest") or {}).items()):
        if entry:
            lines.append("  %s: %s (%.1f h old, %s bytes, %s)" % (database, entry["id"], entry["age_hours"], entry["size"],
                                                                  entry["verified"]))
        else:
            lines.append("  %s: none" % database)
    return subject, "\n".join(lines) + "\n"


def webhook_payload(decision, status):
    return {"status": "recovered" if decision["kind"] == "recovery" else "problem", "host": socket.gethostname(),
            "summary": decision["subject"], "text": decision["body"], "checked_at": status.get("checked_at"),
            "repository": status.get("repository"), "problems": status.get("health", []),
            "codes": status.get("problem_codes", []), "new": decision["new"], "resolved": decision["resolved"],
            "metrics": status.get("metrics", {})}
