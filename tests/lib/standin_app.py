# -*- coding: utf-8 -*-
"""A tiny stand-in for the Todo API, for restore and disaster recovery tests.

It reads its connection string from a settings file, like the real application:

* ``*.json``: appsettings.json, ``ConnectionStrings.DefaultConnection`` (an Npgsql string,
  ``Host=...;Port=...;Database=...;Username=...;Password=...``);
* anything else: a .env file with ``ConnectionStrings__DefaultConnection=<Npgsql string>``.

The file is read once at start (a real application needs a restart to see a new connection
string). ``GET /health`` on 127.0.0.1:<port> answers 200 only when
``SELECT count(*) FROM "Users"`` works on that database, 503 otherwise.

With ``--write-every SECONDS --acks FILE`` it is also a write workload: one commit (a row in
"Users" whose "UserName" is a unique token ``w<start>-<n>``) every SECONDS, and each token is
appended to FILE with the time (``<token> <unix time>``, flushed and fsynced) only after COMMIT returned: FILE lists exactly the commits
acknowledged to the application, so a disaster's real data loss is the tokens in FILE that the
recovered database lacks. Failed writes are logged and retried on a new connection.

Commands (what playbook variables name; the script needs only psycopg2 and the stdlib)::

    python standin_app.py start  --settings FILE --port N --pidfile FILE [--log FILE]
                                 [--write-every SECONDS --acks FILE]
    python standin_app.py stop   --pidfile FILE
    python standin_app.py status --pidfile FILE
    python standin_app.py health --port N          (exit 0 when /health says 200)

``start`` daemonizes (double fork, stdio detached) and returns once the port listens;
``stop`` is idempotent (exit 0 when it was not running).
"""

from __future__ import absolute_import, division, print_function

import argparse
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

NPGSQL_KEYS = {"host": "host", "server": "host", "port": "port", "database": "dbname", "username": "user",
               "user id": "user", "userid": "user", "user": "user", "password": "password"}
ENV_KEY = "ConnectionStrings__DefaultConnection"


def parse_npgsql(text):
    """'Host=h;Port=5432;Database=TodoDb;Username=u;Password=p' -> psycopg2 keyword arguments."""
    params = {}
    for part in split_connection_string(text):
        if "=" not in part:
            continue
        key, value = part.split("=", 1)
        key = key.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('""', '"')
        if key in NPGSQL_KEYS:
            params[NPGSQL_KEYS[key]] = value
    return params


def split_connection_string(text):
    """Split on ';' outside double quotes."""
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def read_connection_string(path):
    with open(path) as handle:
        text = handle.read()
    if path.endswith(".json"):
        return json.loads(text)["ConnectionStrings"]["DefaultConnection"]
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if line.startswith(ENV_KEY + "="):
            value = line[len(ENV_KEY) + 1:].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return value
    raise ValueError("no %s in %s" % (ENV_KEY, path))


def users_count(params):
    import psycopg2
    conn = psycopg2.connect(connect_timeout=3, **params)
    try:
        with conn.cursor() as cursor:
            cursor.execute('SELECT count(*) FROM "Users"')
            return cursor.fetchone()[0]
    finally:
        conn.close()


def make_handler(params, settings_path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/health":
                self.send_error(404)
                return
            try:
                body = {"status": "healthy", "users": users_count(params), "database": params.get("dbname"),
                        "settings": settings_path}
                code = 200
            except Exception as exc:  # any failure to reach the database is "unhealthy"
                body = {"status": "unhealthy", "error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)}
                code = 503
            data = json.dumps(body).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), fmt % args))
    return Handler


def exit_on_signal(signum, frame):
    raise SystemExit(0)


WRITE_SQL = ('INSERT INTO "Users" ("Email", "UserName", "PasswordHash", "CreatedAt") '
             "VALUES (%s || '@workload.invalid', %s, 'x', now())")


def write_loop(params, every, acks_path):
    """The write workload: a commit every `every` seconds; a token is appended to acks_path only after
    its COMMIT returned (then flushed and fsynced). Errors: logged, the next write opens a new connection."""
    import psycopg2
    instance = "w%d" % int(time.time() * 1000)
    number, connection = 0, None
    with open(acks_path, "a") as acks:
        while True:
            token = "%s-%d" % (instance, number)
            try:
                if connection is None:
                    connection = psycopg2.connect(connect_timeout=3, **params)
                with connection.cursor() as cursor:
                    cursor.execute(WRITE_SQL, (token, token))
                connection.commit()
                acks.write("%s %.6f\n" % (token, time.time()))
                acks.flush()
                os.fsync(acks.fileno())
                number += 1
            except Exception as exc:  # the database is gone or refuses: try again on a new connection
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                sys.stderr.write("%s write %s failed: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), token, reason))
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass
                connection = None
            time.sleep(every)


def serve(settings, port, write_every=None, acks=None):
    params = parse_npgsql(read_connection_string(settings))
    if write_every and acks:
        threading.Thread(target=write_loop, args=(params, write_every, acks), daemon=True).start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), make_handler(params, settings))
    signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def read_pid(pidfile):
    try:
        with open(pidfile) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def port_listens(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def cmd_start(args):
    pid = read_pid(args.pidfile)
    if alive(pid):
        print("already running (pid %d)" % pid)
        return 0
    read_connection_string(args.settings)  # fail here, visibly, on a bad settings file
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        log = os.open(args.log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        with open(args.pidfile, "w") as handle:
            handle.write("%d\n" % os.getpid())
        try:
            serve(args.settings, args.port, args.write_every, args.acks)
        finally:
            try:
                if read_pid(args.pidfile) == os.getpid():
                    os.unlink(args.pidfile)
            except OSError:
                pass
        os._exit(0)
    os.waitpid(first, 0)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if port_listens(args.port) and alive(read_pid(args.pidfile)):
            print("started (pid %s, port %d)" % (read_pid(args.pidfile), args.port))
            return 0
        time.sleep(0.1)
    print("did not start listening on port %d; see %s" % (args.port, args.log), file=sys.stderr)
    return 1


def cmd_stop(args):
    pid = read_pid(args.pidfile)
    if not alive(pid):
        print("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(args.pidfile)
    except OSError:
        pass
    print("stopped")
    return 0


def cmd_status(args):
    pid = read_pid(args.pidfile)
    print("running (pid %d)" % pid if alive(pid) else "not running")
    return 0 if alive(pid) else 3


def health(port, timeout=3):
    """(status code, parsed body) of GET /health; (None, error text) when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=timeout) as response:
            return response.status, json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode("utf-8") or "{}")
    except (OSError, ValueError) as exc:
        return None, str(exc)


def cmd_health(args):
    code, body = health(args.port)
    print(code, json.dumps(body))
    return 0 if code == 200 else 1


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start")
    start.add_argument("--settings", required=True)
    start.add_argument("--port", type=int, required=True)
    start.add_argument("--pidfile", required=True)
    start.add_argument("--log")
    start.add_argument("--write-every", type=float, help="seconds between the workload's commits (with --acks)")
    start.add_argument("--acks", help="file listing the tokens of acknowledged commits, one a line")
    for name in ("stop", "status"):
        sub = commands.add_parser(name)
        sub.add_argument("--pidfile", required=True)
    check = commands.add_parser("health")
    check.add_argument("--port", type=int, required=True)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "health": cmd_health}[args.command](args)


class StandinApp(object):
    """Test-side handle: paths, the commands playbooks run, and the health check."""

    def __init__(self, work_dir, port, settings_name="appsettings.json", python=sys.executable):
        self.work_dir = work_dir
        self.port = port
        self.settings = os.path.join(work_dir, settings_name)
        self.pidfile = os.path.join(work_dir, "standin.pid")
        self.log = os.path.join(work_dir, "standin.log")
        self.script = os.path.abspath(__file__)
        self.python = python

    def command(self, action):
        """The shell-free command line a playbook runs to start/stop/check the app."""
        base = [self.python, self.script, action]
        if action == "start":
            return base + ["--settings", self.settings, "--port", str(self.port), "--pidfile", self.pidfile,
                           "--log", self.log]
        if action == "health":
            return base + ["--port", str(self.port)]
        return base + ["--pidfile", self.pidfile]

    def command_line(self, action):
        return " ".join(self.command(action))

    def write_settings(self, host, port, database, user, password):
        connection = "Host=%s;Port=%s;Database=%s;Username=%s;Password=%s" % (host, port, database, user, password)
        with open(self.settings, "w") as handle:
            if self.settings.endswith(".json"):
                json.dump({"Logging": {"LogLevel": {"Default": "Information"}},
                           "ConnectionStrings": {"DefaultConnection": connection}}, handle, indent=2)
            else:
                handle.write("ASPNETCORE_ENVIRONMENT=Production\n%s=%s\n" % (ENV_KEY, connection))

    def start(self):
        import subprocess
        subprocess.run(self.command("start"), check=True, capture_output=True, timeout=30)

    def stop(self):
        import subprocess
        subprocess.run(self.command("stop"), check=False, capture_output=True, timeout=30)

    def is_running(self):
        return alive(read_pid(self.pidfile))

    def health(self):
        return health(self.port)


if __name__ == "__main__":
    sys.exit(main())
