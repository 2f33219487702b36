# -*- coding: utf-8 -*-
"""Local receivers for alerts: an SMTP sink and an HTTP (webhook) receiver, stdlib only.

    from tests.lib.sinks import SmtpSink, HttpReceiver

    with SmtpSink() as smtp, HttpReceiver() as hook:
        send(smtp.host, smtp.port, hook.url)
        mail = smtp.wait_for(1)[0]          # {"from", "to", "data", "message" (email.message.Message)}
        post = hook.wait_for(1)[0]          # {"path", "headers", "body", "json"}

Both listen on 127.0.0.1 on a free port in a daemon thread, stop on exit, and
``wait_for`` gives up after ``timeout`` seconds (AssertionError) instead of hanging.
"""

from __future__ import absolute_import, division, print_function

import email
import email.policy
import http.server
import json
import socketserver
import threading
import time

HOST = "127.0.0.1"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
SOCKET_TIMEOUT = 10


class _Collector(object):
    def __init__(self):
        self.items = []
        self.condition = threading.Condition()

    def add(self, item):
        with self.condition:
            self.items.append(item)
            self.condition.notify_all()

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        with self.condition:
            while len(self.items) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("expected %d item(s), got %d within %ss" % (count, len(self.items), timeout))
                self.condition.wait(remaining)
            return list(self.items)


class _ServerThread(object):
    server = None

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self.thread.daemon = True
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        return False

    @property
    def host(self):
        return self.server.server_address[0]

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def received(self):
        return list(self.collector.items)

    def wait_for(self, count, timeout=10):
        return self.collector.wait_for(count, timeout)


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    timeout = SOCKET_TIMEOUT

    def reply(self, line):
        self.wfile.write((line + "\r\n").encode("ascii"))

    def handle(self):
        self.reply("220 sink ESMTP ready")
        sender, recipients = None, []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-sink\r\n250-SIZE %d\r\n250 8BITMIME\r\n" % MAX_MESSAGE_BYTES)
            elif verb == "HELO":
                self.reply("250 sink")
            elif verb == "MAIL":
                sender, recipients = line.split(":", 1)[1].strip().split()[0].strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip().split()[0].strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = self.read_data()
                message = email.message_from_bytes(data, policy=email.policy.default)
                self.server.collector.add({"from": sender, "to": recipients, "data": data, "message": message,
                                           "subject": str(message["Subject"]),
                                           "body": message.get_body(("plain",)).get_content()})
                self.reply("250 OK queued")
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")

    def read_data(self):
        lines, size = [], 0
        while True:
            raw = self.rfile.readline(65536)
            if not raw or raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b".."):
                raw = raw[1:]
            size += len(raw)
            if size > MAX_MESSAGE_BYTES:
                raise ValueError("message too large")
            lines.append(raw)
        return b"".join(lines)


class _ThreadingTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink(_ServerThread):
    def __init__(self):
        self.collector = _Collector()
        self.server = _ThreadingTCPServer((HOST, 0), _SmtpHandler)
        self.server.collector = self.collector


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    timeout = SOCKET_TIMEOUT

    def do_POST(self):
        length = min(int(self.headers.get("Content-Length") or 0), MAX_MESSAGE_BYTES)
        body = self.rfile.read(length)
        try:
            parsed = json.loads(body.decode("utf-8"))
        except ValueError:
            parsed = None
        self.server.collector.add({"path": self.path, "headers": dict(self.headers.items()), "body": body, "json": parsed})
        status = self.server.status_code
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class HttpReceiver(_ServerThread):
    """Records every POST; answers ``status_code`` (200 unless told otherwise)."""

    def __init__(self, status_code=200):
        self.collector = _Collector()
        self.server = http.server.ThreadingHTTPServer((HOST, 0), _HttpHandler)
        self.server.daemon_threads = True
        self.server.collector = self.collector
        self.server.status_code = status_code

    @property
    def url(self):
        return "http://%s:%d/hook/secret-token" % (self.host, self.port)
