# -*- coding: utf-8 -*-
"""Real storage servers on 127.0.0.1 for tests: moto_server (S3), Azurite (Azure Blob) and
OpenSSH's sshd (SFTP). Plain Python plus a few pytest fixtures at the end::

    from tests.lib.servers import MotoServer, AzuriteServer, SshdServer

    with AzuriteServer.start() as azurite:
        azurite.create_container("backups")
        repo = factory.open_repository("azure://backups/prod", azure_connection_string=azurite.connection_string)

    with SshdServer.start() as sshd:           # needs root: its own sshd on a free port
        repo = factory.open_repository(sshd.url("/srv/b"), **sshd.options())

Every server listens on a free loopback port, keeps its state in a private temp directory
and is stopped (by its own process id) when the context or fixture ends. Tools come from:
moto_server next to the venv's python; Azurite from .cache/npm-tools (installed by
scripts/install-test-tools.sh, which ``AzuriteServer.find()`` runs once if needed); sshd from
/usr/sbin/sshd (openssh-server). A missing tool makes the fixtures skip with a reason naming
the script to run.
"""

from __future__ import absolute_import, division, print_function

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.lib.pgcluster import find_free_port

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALL_SCRIPT = os.path.join(REPO_ROOT, "scripts", "install-test-tools.sh")
NPM_TOOLS_DIR = os.environ.get("PGBACKUP_NPM_TOOLS_DIR", os.path.join(REPO_ROOT, ".cache", "npm-tools"))
AZURITE_BLOB = os.path.join(NPM_TOOLS_DIR, "node_modules", ".bin", "azurite-blob")
MOTO_SERVER = os.path.join(os.path.dirname(sys.executable), "moto_server")
SSHD = "/usr/sbin/sshd"
SFTP_TEST_USER = "pgbsftp"

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

S3_ACCESS_KEY = "AKIAPGBACKUPTEST0001"
S3_SECRET_KEY = "s3cr3t-Never-Logged-7f3a9c"
S3_REGION = "us-east-1"


class ToolMissing(RuntimeError):
    """A server program is not installed; the message says how to get it."""


def wait_for_port(port, process, timeout=60, log_path=None, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    stop_process(process)
    output = ""
    if log_path and os.path.exists(log_path):
        with open(log_path) as handle:
            output = handle.read()
    raise RuntimeError("%s did not start on 127.0.0.1:%d:\n%s" % (what, port, output))


def stop_process(process, timeout=3):
    """Terminate one process we started (by its own handle), then kill it if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Server(object):
    process = None
    workdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def kill(self):
        """Simulate a crash (SIGKILL); stop() still cleans up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        stop_process(self.process)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


# S3


class MotoServer(_Server):
    """moto_server: a real S3-compatible HTTP server."""

    @classmethod
    def start(cls, port=None):
        if not os.path.exists(MOTO_SERVER):
            raise ToolMissing("moto_server is not installed in the venv (pip install 'moto[server]').")
        server = cls()
        server.port = port or find_free_port()
        server.workdir = tempfile.mkdtemp(prefix="pgbackup-moto-")
        log = os.path.join(server.workdir, "moto.log")
        with open(log, "w") as handle:
            server.process = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(server.port)],
                                              stdout=handle, stderr=subprocess.STDOUT)
        wait_for_port(server.port, server.process, 30, log, "moto_server")
        server.endpoint = "http://127.0.0.1:%d" % server.port
        return server

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION, aws_access_key_id=S3_ACCESS_KEY,
                            aws_secret_access_key=S3_SECRET_KEY)

    def options(self, **extra):
        """open_repository() keywords for this server."""
        options = dict(endpoint_url=self.endpoint, region=S3_REGION, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY)
        options.update(extra)
        return options

    def create_bucket(self, name=None):
        name = name or "pgbackup-%s" % uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        return name


# Azure Blob


class AzuriteServer(_Server):
    """Azurite's blob service (the Azure Storage emulator from Microsoft)."""

    @staticmethod
    def find(install=True):
        if os.path.exists(AZURITE_BLOB):
            return AZURITE_BLOB
        if install and shutil.which("npm") and os.path.exists(INSTALL_SCRIPT):
            subprocess.run(["sh", INSTALL_SCRIPT], capture_output=True, timeout=600, check=False)
        if os.path.exists(AZURITE_BLOB):
            return AZURITE_BLOB
        raise ToolMissing("Azurite is not installed in %s; run scripts/install-test-tools.sh (needs npm)." % NPM_TOOLS_DIR)

    @classmethod
    def start(cls, port=None, accounts=None):
        program = cls.find()
        server = cls()
        server.port = port or find_free_port()
        server.workdir = tempfile.mkdtemp(prefix="pgbackup-azurite-")
        log = os.path.join(server.workdir, "azurite.log")
        env = dict(os.environ)
        server.account, server.key = AZURITE_ACCOUNT, AZURITE_KEY
        if accounts:  # "name:key1:key2;other:key" (Azurite's AZURITE_ACCOUNTS)
            env["AZURITE_ACCOUNTS"] = accounts
            first = accounts.split(";")[0].split(":")
            server.account, server.key = first[0], first[1]
        with open(log, "w") as handle:
            server.process = subprocess.Popen(
                [program, "--blobHost", "127.0.0.1", "--blobPort", str(server.port),
                 "--location", os.path.join(server.workdir, "data"), "--skipApiVersionCheck", "--loose", "--silent"],
                stdout=handle, stderr=subprocess.STDOUT, env=env)
        wait_for_port(server.port, server.process, 60, log, "azurite-blob")
        server.endpoint = "http://127.0.0.1:%d/%s" % (server.port, server.account)
        return server

    def connection_string_for(self, account=None, key=None):
        account = account or self.account
        return ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://127.0.0.1:%d/%s;"
                % (account, key or self.key, self.port, account))

    @property
    def connection_string(self):
        return self.connection_string_for()

    def options(self, **extra):
        """open_repository() keywords for this server (fast retries for tests)."""
        options = dict(azure_connection_string=self.connection_string, azure_max_attempts=2, azure_retry_backoff=0.2)
        options.update(extra)
        return options

    def service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name=None):
        name = name or "pgbackup-%s" % uuid.uuid4().hex[:12]
        self.service().create_container(name)
        return name

    def blob_names(self, container, prefix=""):
        client = self.service().get_container_client(container)
        return sorted(blob.name for blob in client.list_blobs(name_starts_with=prefix or None))


# SFTP


def ensure_sftp_user(name=SFTP_TEST_USER):
    """A system user without password or shell, for SFTP tests (created once, kept)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                        "/usr/sbin/nologin", name], check=True, capture_output=True)
    # '*' (no password) instead of useradd's '!' (locked): sshd refuses key logins of locked accounts.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


class SshdServer(_Server):
    """A private OpenSSH sshd (SFTP only, keys only) for one test user on a free loopback port."""

    @classmethod
    def start(cls, user=SFTP_TEST_USER, port=None):
        if os.geteuid() != 0:
            raise ToolMissing("an sshd for tests needs root")
        if not os.path.exists(SSHD):
            raise ToolMissing("/usr/sbin/sshd is missing; run scripts/install-test-tools.sh (openssh-server).")
        server = cls()
        server.user = user
        server.account = ensure_sftp_user(user) if user != "root" else pwd.getpwnam("root")
        server.port = port or find_free_port()
        server.workdir = tempfile.mkdtemp(prefix="pgbackup-sshd-")
        os.chmod(server.workdir, 0o755)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        server.host_key = os.path.join(server.workdir, "ssh_host_ed25519_key")
        server.key_file = os.path.join(server.workdir, "client_key")
        server.known_hosts = os.path.join(server.workdir, "known_hosts")
        server.authorized_keys = os.path.join(server.workdir, "authorized_keys")
        for path in (server.host_key, server.key_file):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pgbackup-test", "-f", path],
                           check=True, capture_output=True)
        shutil.copy(server.key_file + ".pub", server.authorized_keys)
        os.chmod(server.authorized_keys, 0o644)
        with open(server.host_key + ".pub") as handle:
            host_key_type, host_key_data = handle.read().split()[:2]
        server.host_key_line = "[127.0.0.1]:%d %s %s" % (server.port, host_key_type, host_key_data)
        with open(server.known_hosts, "w") as handle:
            handle.write(server.host_key_line + "\n")
        config = os.path.join(server.workdir, "sshd_config")
        with open(config, "w") as handle:
            handle.write("\n".join([
                "ListenAddress 127.0.0.1",
                "Port %d" % server.port,
                "HostKey %s" % server.host_key,
                "PidFile %s" % os.path.join(server.workdir, "sshd.pid"),
                "AuthorizedKeysFile %s" % server.authorized_keys,
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "AllowUsers %s" % user,
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp -u 0077",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "LogLevel VERBOSE",
                "",
            ]))
        server.log = os.path.join(server.workdir, "sshd.log")
        server.process = subprocess.Popen([SSHD, "-D", "-e", "-f", config, "-E", server.log],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(server.port, server.process, 30, server.log, "sshd")
        return server

    def url(self, path):
        return "sftp://%s@127.0.0.1:%d%s" % (self.user, self.port, path)

    def options(self, **extra):
        """open_repository() keywords for this server."""
        options = dict(sftp_key_file=self.key_file, sftp_known_hosts=self.known_hosts, sftp_timeout=10)
        options.update(extra)
        return options

    def make_dir(self, mode=0o700):
        """A fresh directory owned by the SFTP user (below this server's work dir)."""
        path = os.path.join(self.workdir, "data-%s" % uuid.uuid4().hex[:8])
        os.mkdir(path, mode)
        os.chown(path, self.account.pw_uid, self.account.pw_gid)
        return path

    def log_text(self):
        try:
            with open(self.log) as handle:
                return handle.read()
        except OSError:
            return ""


# pytest fixtures (import them into a test module: ``from tests.lib.servers import azurite, sshd``)


def _start_or_skip(start):
    try:
        return start()
    except ToolMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def moto():
    server = _start_or_skip(MotoServer.start)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def azurite():
    pytest.importorskip("azure.storage.blob")
    server = _start_or_skip(AzuriteServer.start)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sshd():
    pytest.importorskip("paramiko")
    server = _start_or_skip(SshdServer.start)
    try:
        yield server
    finally:
        server.stop()
