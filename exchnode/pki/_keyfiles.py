"""Private keys on disk: the I/O edge between key files and :mod:`exchnode.core`.

Theory of operation
-------------------
A key file is PKCS#8 PEM, optionally encrypted with a passphrase
(``BestAvailableEncryption``).  Three rules keep it private (SPEC §3.9):

* it is *born* with mode 0600: ``os.open(O_CREAT | O_EXCL | O_WRONLY, 0o600)``
  creates it, so there is no moment at which another user could open it, and
  ``O_EXCL`` refuses to follow a planted symlink or clobber an existing key;
  replacing a key (``overwrite=True``) writes a fresh 0600 file next to it and
  renames it over the old one, so the new key never inherits a laxer mode;
* it is refused on load when group or others have any access to it, unless the
  caller explicitly allows that (as ssh does);
* a wrong or missing passphrase is a :class:`~exchnode.errors.UsageError` with a
  sentence an operator can act on, never a traceback -- and no passphrase is
  ever put into a message.

:func:`load_local_identity` reads a node's certificate chain and both keys and
checks that they belong together before anything signs with them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path
from typing import cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.core import LocalIdentity, PeerIdentity
from exchnode.errors import CertificateError, UsageError
from exchnode.pki._trust import TrustStore
from exchnode.pki._verify import (
    load_certificates_pem,
    read_node_certificate,
    verify_node_certificate,
)

__all__ = [
    "PRIVATE_FILE_MODE",
    "load_encryption_key",
    "load_local_identity",
    "load_private_key",
    "load_signing_key",
    "read_passphrase_file",
    "read_private_file",
    "write_private_file",
    "write_private_key",
    "write_public_file",
]

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644  # certificates, chains, CRLs, requests: anyone may read them
_MAX_KEY_FILE = 64 * 1024  # a PEM key is < 1 KiB; refuse to slurp a wrong, huge file


def _fsync_directory(directory: Path) -> None:
    # Make the new directory entry durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_public_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0644): readers see the old or the new file, whole."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), PUBLIC_FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _write_new_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; fail if it exists."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask may only have narrowed it; pin it
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def write_private_file(path: Path | str, data: bytes, *, overwrite: bool = False) -> None:
    """Write secret bytes to ``path`` with mode 0600, atomically.

    Without ``overwrite`` an existing file is an error (UsageError); with it
    the file is replaced by rename, so the result is 0600 whatever it was.
    """
    target = Path(path)
    if not overwrite:
        try:
            _write_new_private_file(target, data)
        except FileExistsError:
            raise UsageError(
                f"refusing to overwrite existing file {target}; move it away first"
            ) from None
    else:
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        _write_new_private_file(temporary, data)
        try:
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
    _fsync_directory(target.parent)


def write_private_key(
    path: Path | str,
    key: Ed25519PrivateKey | X25519PrivateKey,
    *,
    passphrase: bytes | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``key`` as PKCS#8 PEM, mode 0600, encrypted if a passphrase is given."""
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
        raise UsageError("only Ed25519 and X25519 private keys are written")
    if passphrase is not None and not passphrase:
        raise UsageError("the passphrase is empty")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_private_file(path, pem, overwrite=overwrite)


def read_private_file(path: Path | str, *, allow_insecure_permissions: bool = False) -> bytes:
    """Read a secret file, refusing one that group or others can access.

    The mode is checked on the opened descriptor (``fstat``), so the check and
    the read concern the same file.
    """
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise UsageError(f"key file {source} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot open key file {source}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise UsageError(f"key file {source} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if os.name == "posix" and mode & 0o077 and not allow_insecure_permissions:
            raise UsageError(
                f"key file {source} has mode {mode:04o}: group or others can access it; "
                f"run 'chmod 600 {source}'"
            )
        data = handle.read(_MAX_KEY_FILE + 1)
    if len(data) > _MAX_KEY_FILE:
        raise UsageError(f"key file {source} is larger than {_MAX_KEY_FILE} bytes")
    return data


def read_passphrase_file(path: Path | str, *, allow_insecure_permissions: bool = False) -> bytes:
    """The passphrase in ``path``: its first line, without the line ending.

    Held to the same permission rule as a key file: a passphrase others can
    read protects nothing.
    """
    data = read_private_file(path, allow_insecure_permissions=allow_insecure_permissions)
    passphrase = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not passphrase:
        raise UsageError(f"passphrase file {path} is empty")
    return passphrase


def load_private_key(
    path: Path | str,
    *,
    passphrase: bytes | None = None,
    allow_insecure_permissions: bool = False,
) -> PrivateKeyTypes:
    """Load a PEM private key; every failure is a UsageError naming the file."""
    data = read_private_file(path, allow_insecure_permissions=allow_insecure_permissions)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and passphrase is None:
        raise UsageError(f"key file {path} is passphrase-protected and no passphrase was given")
    if not encrypted and passphrase is not None:
        raise UsageError(f"key file {path} is not encrypted, but a passphrase was given")
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except ValueError:
        if encrypted:
            raise UsageError(
                f"wrong passphrase for key file {path} (or the file is damaged)"
            ) from None
        raise UsageError(f"key file {path} does not hold a PEM private key") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"key file {path} cannot be loaded: {exc}") from None


def _load_key_of(
    key_type: type[object],
    algorithm: str,
    path: Path | str,
    passphrase: bytes | None,
    allow_insecure_permissions: bool,
) -> PrivateKeyTypes:
    """The key in ``path``, refused unless it is a ``key_type`` (``algorithm`` names it)."""
    key = load_private_key(
        path, passphrase=passphrase, allow_insecure_permissions=allow_insecure_permissions
    )
    if not isinstance(key, key_type):
        raise UsageError(f"key file {path} holds a {type(key).__name__}, not an {algorithm} key")
    return key


def load_signing_key(
    path: Path | str, *, passphrase: bytes | None = None, allow_insecure_permissions: bool = False
) -> Ed25519PrivateKey:
    """An Ed25519 key (a CA key or a node's signing key)."""
    key = _load_key_of(Ed25519PrivateKey, "Ed25519", path, passphrase, allow_insecure_permissions)
    return cast(Ed25519PrivateKey, key)  # checked: _load_key_of refuses any other


def load_encryption_key(
    path: Path | str, *, passphrase: bytes | None = None, allow_insecure_permissions: bool = False
) -> X25519PrivateKey:
    """An X25519 key (a node's encryption key)."""
    key = _load_key_of(X25519PrivateKey, "X25519", path, passphrase, allow_insecure_permissions)
    return cast(X25519PrivateKey, key)  # checked: _load_key_of refuses any other


def load_local_identity(
    cert_chain_pem_path: Path | str,
    signing_key_path: Path | str,
    encryption_key_path: Path | str,
    passphrase: bytes | None = None,
    *,
    trust: TrustStore | None = None,
    now: datetime | None = None,
) -> LocalIdentity:
    """This node's identity from ``chain.pem``, ``signing.key`` and ``encryption.key``.

    ``chain.pem`` holds the node certificate first, then its intermediates (as
    written by ``exchnode pki issue-node``); ``LocalIdentity.chain`` gets the
    intermediates.  The keys must match the certificate.  Given ``trust`` and
    ``now``, the chain is also verified exactly as peers will verify it, so a
    node refuses to start with a certificate the network would reject.
    """
    chain_path = Path(cert_chain_pem_path)
    try:
        certificates = load_certificates_pem(chain_path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"certificate file {chain_path} does not exist") from None
    except CertificateError as exc:
        raise UsageError(f"certificate file {chain_path}: {exc}") from None
    leaf, intermediates = certificates[0], tuple(certificates[1:])
    if trust is not None:
        if now is None:
            raise UsageError("verifying the local chain needs 'now'")
        peer = verify_node_certificate(leaf, intermediates, trust, now)
    else:
        try:
            contents = read_node_certificate(leaf)
        except CertificateError as exc:
            raise UsageError(f"certificate file {chain_path}: {exc}") from None
        peer = PeerIdentity(contents.name, contents.signing_key, contents.encryption_key, leaf)
    signing = load_signing_key(signing_key_path, passphrase=passphrase)
    encryption = load_encryption_key(encryption_key_path, passphrase=passphrase)
    if signing.public_key() != peer.signing_key:
        raise UsageError(
            f"signing key {signing_key_path} does not match the certificate of {peer.name}"
        )
    if encryption.public_key() != peer.encryption_key:
        raise UsageError(
            f"encryption key {encryption_key_path} does not match the certificate of {peer.name}"
        )
    return LocalIdentity.from_keys(peer.name, signing, encryption, leaf, intermediates)
