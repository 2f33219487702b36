# -*- coding: utf-8 -*-
"""A host's filesystem: its own mount, UTS and IPC namespaces, kept alive by files under
``<lab root>/ns/`` (no process needed, so a host survives having all its processes killed).

In its mount namespace (private propagation) a host sees the machine's filesystem, except:
- copy-on-write overlays on ``/etc`` and ``/usr/local``: what a play installs or configures on a
  host stays on that host (upper layer under ``<lab root>/<host>/overlay/``);
- its own empty directories, bind-mounted from ``<lab root>/<host>/fs/`` (HOST_DIRS): PostgreSQL's
  config, data, sockets and logs, cron, the collection's config, backups, homes, temp dirs;
- fresh ``/run``, ``/dev/shm`` and ``/sys`` (so ``/sys/class/net`` lists the host's interfaces);
- ``/var/tmp`` is its own, which hides every lab root (other hosts' disks) from it.
"""

from __future__ import absolute_import, division, print_function

import collections
import grp
import os
import pwd
import re
import shlex
import sys

from tests.lib.ansible_run import REPO_ROOT
from tests.lib.lab import topology
from tests.lib.lab.commands import run

DirSpec = collections.namedtuple("DirSpec", "path owner group mode")

# Bind-mounted per host, in this order (a nested entry is a directory inside its parent's mount).
# /var/tmp stays last: once it is covered, the bind sources under /var/tmp are out of sight.
HOST_DIRS = (
    DirSpec("/etc/postgresql", "postgres", "postgres", 0o755),
    DirSpec("/etc/cron.d", "root", "root", 0o755),
    DirSpec("/etc/todoapi-pgbackup", "root", "root", 0o755),
    DirSpec("/var/lib/postgresql", "postgres", "postgres", 0o755),
    DirSpec("/var/run/postgresql", "postgres", "postgres", 0o2775),
    DirSpec("/var/log", "root", "root", 0o755),
    DirSpec("/var/log/postgresql", "root", "postgres", 0o1775),
    DirSpec("/var/backups", "root", "root", 0o755),
    DirSpec("/var/spool/cron", "root", "root", 0o755),
    DirSpec("/var/spool/cron/crontabs", "root", "crontab", 0o1730),
    DirSpec("/home", "root", "root", 0o755),
    DirSpec("/root", "root", "root", 0o700),
    DirSpec("/tmp", "root", "root", 0o1777),
    DirSpec("/var/tmp", "root", "root", 0o1777),
)
OVERLAYS = ("/etc", "/usr/local")
FRESH_TMPFS = (("/run", "0755"), ("/dev/shm", "1777"))
NAMESPACE_FILES = {"mnt": "--mount", "uts": "--uts", "ipc": "--ipc"}  # file suffix: flag of unshare/nsenter
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def host_dir(root, host):
    return os.path.join(root, host)


def fs_path(root, host, path):
    return os.path.join(root, host, "fs", path.lstrip("/"))


def overlay_dir(root, host, lower):
    return os.path.join(root, host, "overlay", lower.strip("/").replace("/", "-"))


def host_path(root, host, path):
    """Where a path of the host lives on the controller: in its bind-mounted directories, or in
    the upper layer of an overlay (which holds only what the host itself wrote there)."""
    for spec in HOST_DIRS:
        if path == spec.path or path.startswith(spec.path + "/"):
            return fs_path(root, host, path)
    for lower in OVERLAYS:
        if path.startswith(lower + "/"):
            return os.path.join(overlay_dir(root, host, lower), "upper", path[len(lower) + 1:])
    raise ValueError("%s is not one of the host's own paths (%s)" % (path, ", ".join(s.path for s in HOST_DIRS)))


def ns_dir(root):
    return os.path.join(root, "ns")


def ns_file(root, host, kind):
    return os.path.join(ns_dir(root), "%s.%s" % (host, kind))


def _ids(owner, group):
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:  # no cron installed: no crontab group
        gid = 0
    return pwd.getpwnam(owner).pw_uid, gid


def make_dir(path, owner, group, mode):
    os.makedirs(path, exist_ok=True)
    os.chown(path, *_ids(owner, group))
    os.chmod(path, mode)


def write_file(path, text, mode=0o644, owner="root", group="root"):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chown(path, *_ids(owner, group))
    os.chmod(path, mode)


def prepare_host_dirs(root, host):
    """The host's empty disks and overlay layers, owned and moded like on a fresh Debian host."""
    make_dir(host_dir(root, host), "root", "root", 0o755)
    for spec in HOST_DIRS:
        make_dir(fs_path(root, host, spec.path), spec.owner, spec.group, spec.mode)
    for lower in OVERLAYS:
        for layer in ("upper", "work"):
            make_dir(os.path.join(overlay_dir(root, host, lower), layer), "root", "root", 0o755)


def write_identity(root, host, network):
    """/etc/hostname and /etc/hosts of the host: every lab host and the controller by name."""
    write_file(host_path(root, host, "/etc/hostname"), host + "\n")
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "%s\tcontroller" % topology.controller_address(network)]
    lines += ["%s\t%s" % (topology.host_address(network, name), name) for name in topology.HOST_NAMES]
    write_file(host_path(root, host, "/etc/hosts"), "\n".join(lines) + "\n")


_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")  # mountinfo writes a space in a path as \040


def mount_points():
    """Mount points of the calling process's mount namespace."""
    with open("/proc/self/mountinfo", "rb") as handle:
        points = [line.split()[4] for line in handle]
    return [os.fsdecode(_OCTAL_ESCAPE.sub(lambda match: bytes([int(match.group(1), 8)]), point)) for point in points]


def outermost(paths):
    """paths without those below another one of them (unmounting the outer one detaches both)."""
    kept = []
    for path in sorted(set(paths)):
        if not any(path.startswith(outer + "/") for outer in kept):
            kept.append(path)
    return kept


def _pinning_mounts():
    """Namespace files bound in the root namespace (ip netns's, other labs'): a new mount namespace
    would copy and so pin them; the setup script detaches them in the host."""
    lab_roots = os.path.join(topology.ROOTS_PARENT, topology.ROOT_PREFIX)
    return outermost([point for point in mount_points() if point == "/run/netns" or point.startswith(lab_roots)])


# Where a hidden checkout is held between covering its directory and binding it back (/run is fresh already).
CHECKOUT_STAGE = "/run/pgbackup-lab-checkout"


def hidden_checkout_paths():
    """The checkout and the venv the tests run from, where a host's own empty directory would hide them (a clone
    under /tmp, /root or /home): the setup script binds them back at the same paths, so the hosts run the same
    files (the stand-in application, the venv's packages) as the controller."""
    wanted = outermost(os.path.realpath(path) for path in (REPO_ROOT, sys.prefix))
    return [path for path in wanted if any(path == spec.path or path.startswith(spec.path + "/") for spec in HOST_DIRS)]


def setup_script(root, host):
    quote = shlex.quote
    lines = ["umount -l %s 2>/dev/null || true" % quote(point) for point in _pinning_mounts()]
    hidden = hidden_checkout_paths()
    for lower in OVERLAYS:
        layers = overlay_dir(root, host, lower)
        lines.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s/upper,workdir=%s/work %s"
                     % (lower, layers, layers, lower))
    for target, mode in FRESH_TMPFS:
        lines.append("mount -t tmpfs -o mode=%s,nosuid,nodev tmpfs %s" % (mode, target))
    lines += ["mkdir -m 0755 /run/sshd", "mkdir -m 1777 /run/lock", "mount -t sysfs sysfs /sys"]
    for index, path in enumerate(hidden):
        stage = quote("%s/%d" % (CHECKOUT_STAGE, index))
        lines += ["mkdir -p %s" % stage, "mount --bind %s %s" % (quote(path), stage)]
    for spec in HOST_DIRS:
        if any(spec.path.startswith(other.path + "/") for other in HOST_DIRS):
            continue  # inside its parent's bind mount already
        target = quote(spec.path)
        fresh = os.path.realpath(spec.path).startswith(tuple(lower + "/" for lower in OVERLAYS) + ("/run/",))
        lines.append(("mkdir -p %s" if fresh else "test -d %s") % target)
        lines.append("mount --bind %s %s" % (quote(fs_path(root, host, spec.path)), target))
    for index, path in enumerate(hidden):
        lines += ["mkdir -p %s" % quote(path), "mount --bind %s/%d %s" % (CHECKOUT_STAGE, index, quote(path))]
    lines.append("hostname %s" % quote(host))
    return "\n".join(lines) + "\n"


def prepare_ns_dir(root):
    """<lab root>/ns as a private mount: only there can mount-namespace files be bound."""
    path = ns_dir(root)
    os.makedirs(path, mode=0o700, exist_ok=True)
    run(["mount", "--bind", path, path])
    run(["mount", "--make-private", path])


def create_host_namespaces(root, host, netns_path):
    """Create the host's mount/UTS/IPC namespaces inside its network namespace and mount its disks."""
    files = {kind: ns_file(root, host, kind) for kind in NAMESPACE_FILES}
    for path in files.values():
        open(path, "a").close()
    run(["nsenter", "--net=" + netns_path, "unshare"] + ["%s=%s" % (NAMESPACE_FILES[kind], path) for kind, path in files.items()]
        + ["--propagation", "private", "sh", "-ec", setup_script(root, host)], env=HOST_ENV)


def enter_argv(root, host, netns_path):
    """argv prefix that runs a command as root inside the host (all of its namespaces)."""
    return (["nsenter", "--net=" + netns_path] + ["%s=%s" % (flag, ns_file(root, host, kind)) for kind, flag in NAMESPACE_FILES.items()]
            + ["--wd=/", "--"])
