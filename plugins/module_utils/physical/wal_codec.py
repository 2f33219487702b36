# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How an archived WAL file is encoded: ``zstd --check`` and/or ``age``, told apart by the stored
name's suffix (``wal_archive_layout.ENCODINGS``). Both archives use it: the directory archive
(``wal_archive``) and the remote one (``wal_remote``).

Every function works on local files; what PostgreSQL wrote (the plaintext) is what the sha256
values describe.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ..core import fsutil
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage, require_tool
from . import wal_zstd
from .wal_archive_layout import CHECKSUM_SUFFIX, COMPRESSION_CHOICES, WalArchiveError


def check_compression(compress):
    compress = compress or "none"
    if compress not in COMPRESSION_CHOICES:
        raise WalArchiveError("Unknown WAL compression '%s'." % compress, hint="Use none or zstd.")
    return compress


def _zstd(*args):
    return Stage([require_tool("zstd", "the zstd package"), "-q"] + list(args), name="zstd")


def encode_stages(compress, level, recipients):
    stages = []
    if compress == "zstd":
        stages.append(_zstd("-%d" % level, "--check", "-c"))
    if recipients:
        argv = [require_tool("age", "the age package")]
        for recipient in recipients:
            argv += ["-r", recipient]
        stages.append(Stage(argv, name="age"))
    return stages


def decode_stages(path, identity_file, name=None):
    """Stages that turn a stored file back into the WAL; ``name`` (default ``path``) tells the encoding."""
    name = name or path
    stages = []
    if name.endswith(".age"):
        missing = streams.missing_identity({"encryption": True}, identity_file, "WAL file '%s'" % name)
        if missing:
            raise WalArchiveError(missing[0].upper() + missing[1:] + ".",
                                  hint="Configure identity_file (restore-wal --identity) with a key of one of its recipients.")
        stages.append(Stage([require_tool("age", "the age package"), "-d", "-i", identity_file], name="age"))
    if name.endswith(".zst") or name.endswith(".zst.age"):
        stages.append(_zstd("-d", "-c"))
    return stages


def suffix_for(compress, recipients):
    return (".zst" if compress == "zstd" else "") + (".age" if recipients else "")


def encode_to(source, destination, stored_name, compress, level, recipients, size, durable=True, digest=False):
    """Write ``source`` (``size`` bytes) encoded for ``stored_name`` (its suffix) to the new private file
    ``destination``, fsynced when ``durable`` (not for a copy that is uploaded, then deleted). A zstd copy
    (not encrypted) is proven to decompress to the bytes of ``source``, so a broken compressor is never
    trusted. Returns (written, sha256): written False when there is nothing to encode; the sha256 of
    ``source`` when ``digest`` and it came for free (zstd in the process hashes what it reads), else None."""
    stages = encode_stages(compress, level, recipients)
    if not stages:
        return False, None
    fsutil.remove_quietly(destination)
    sha256 = None
    if compress == "zstd" and not recipients and wal_zstd.available():
        try:
            sha256 = wal_zstd.compress_file(source, destination, level, size, durable=durable, digest=digest)
            decodes = wal_zstd.decompresses_to(destination, source, size)
        except wal_zstd.zstandard.ZstdError as exc:
            raise WalArchiveError("Compressing '%s' failed: %s." % (stored_name, exc),
                                  hint="The WAL file changed while it was read, or python3-zstandard is broken.")
        except (IOError, OSError) as exc:
            raise WalArchiveError("Cannot write the compressed copy of '%s' to '%s': %s." % (stored_name, destination,
                                                                                             exc.strerror or exc),
                                  hint="Check free space and permissions there; PostgreSQL keeps the segment and retries.")
    else:
        Pipeline(stages, stdin=source, stdout_path=destination).run()
        os.chmod(destination, fsutil.FILE_MODE)
        if durable:
            fsutil.fsync_path(destination)
        decodes = compress != "zstd" or bool(recipients) or _decodes_to(destination, stored_name, source, size)
    if not decodes:
        raise WalArchiveError("The compressed copy of '%s' does not decompress to the original." % stored_name,
                              hint="Check the zstd installation and the disk holding '%s'." % destination)
    return True, sha256


def _decodes_to(encoded, stored_name, source, size):
    """Whether ``encoded`` decodes to exactly the bytes of ``source`` (compared, not hashed: a second
    sha256 of the whole segment would cost more than the compression it checks)."""
    def compare(chunks):
        seen = 0
        with open(source, "rb") as original:
            for chunk in chunks:
                if original.read(len(chunk)) != chunk:
                    return None
                seen += len(chunk)
        return seen

    pipeline = Pipeline(decode_stages(encoded, None, stored_name), stdin=encoded, capture_stdout=True).start()
    seen = _consume(pipeline, compare)
    if seen is None:
        pipeline.kill()
        pipeline.wait_quietly()
        return False
    try:
        pipeline.wait()
    except PgBackupError:
        return False
    return seen == size


def decoded_sha256(path, identity_file=None, name=None):
    """sha256 and size of what PostgreSQL wrote, for a stored (maybe encoded) archive file; the size is
    None for an encrypted file read without a key (its ``.sha256`` file then tells the checksum)."""
    name = name or path
    if not (name.endswith(".zst") or name.endswith(".age")):
        return fsutil.sha256_file(path), os.path.getsize(path)
    if name.endswith(".age") and not identity_file:
        return read_checksum_sidecar(path), None
    pipeline = Pipeline(decode_stages(path, identity_file, name), stdin=path, capture_stdout=True).start()
    digest, size = _drain(pipeline)
    try:
        pipeline.wait()
    except PgBackupError as exc:
        raise WalArchiveError("Archived WAL file '%s' cannot be decoded: %s" % (name, exc.message),
                              hint="It is damaged; the WAL it held is lost unless another copy exists.")
    return digest, size


def _drain(pipeline, write=None):
    """(sha256, size) of a started pipeline's output, read to the end (and handed to ``write``).
    Its exit status is the caller's to check."""
    return _consume(pipeline, lambda chunks: fsutil.sha256_chunks(chunks, write))


def _consume(pipeline, reader):
    """``reader(chunks)`` over a started pipeline's output; the pipeline is killed and reaped when reading fails."""
    try:
        return reader(pipeline.stdout_chunks())
    except BaseException:
        pipeline.kill()
        pipeline.wait_quietly()  # reaped: the asynchronous pusher lives on after a failure
        raise


def read_checksum_sidecar(path):
    sidecar = path + CHECKSUM_SUFFIX
    try:
        with open(sidecar) as handle:
            value = handle.read().split()[0]
    except (OSError, IndexError):
        raise WalArchiveError("The checksum file of encrypted WAL file '%s' is missing or unreadable." % path,
                              hint="Without it the archived content cannot be compared; check the archive by hand.")
    if not re.match(r"^[0-9a-f]{64}$", value):
        raise WalArchiveError("The checksum file '%s' is damaged." % sidecar)
    return value


def decode_to(source, destination, identity_file, name=None):
    """Decode the stored file ``source`` (encoding told by ``name``, default ``source``) into the new
    private file ``destination``; returns (sha256, size) of the WAL written."""
    name = name or source
    stages = decode_stages(source, identity_file, name)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsutil.FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        if not stages:
            return fsutil.sha256_chunks(fsutil.file_chunks(source), out.write)
        pipeline = Pipeline(stages, stdin=source, capture_stdout=True).start()
        digest, size = _drain(pipeline, out.write)
        try:
            pipeline.wait()
        except PgBackupError as exc:
            text = exc.message.lower()
            if "no identity matched" in text:
                raise WalArchiveError("The age identity does not match archived WAL file '%s' (wrong key)." % name,
                                      hint="Use the private key of one of the archive's recipients.")
            raise WalArchiveError("Archived WAL file '%s' is damaged: %s" % (name, exc.message),
                                  hint="Recovery cannot continue past this segment.")
    return digest, size
