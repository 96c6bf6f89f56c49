"""Key files: born 0600, never clobbered, never loaded when others can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.errors import CertificateRevokedError, UsageError
from exchnode.pki import (
    load_local_identity,
    read_passphrase_file,
    write_private_key,
    write_public_file,
)
from exchnode.pki._keyfiles import load_encryption_key, load_private_key, load_signing_key
from exchnode.testing import IssuedNode, SyntheticPKI

PASSPHRASE = b"correct horse battery staple"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, to prove we do not rely on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_written_key_is_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_plain_round_trip(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    write_private_key(tmp_path / "k", key)
    assert _raw(load_signing_key(tmp_path / "k")) == _raw(key)


def test_encrypted_round_trip(tmp_path: Path) -> None:
    key = X25519PrivateKey.generate()
    path = tmp_path / "encryption.key"
    write_private_key(path, key, passphrase=PASSPHRASE)
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = load_encryption_key(path, passphrase=PASSPHRASE)
    assert loaded.public_key() == key.public_key()


def test_wrong_passphrase(tmp_path: Path) -> None:
    write_private_key(tmp_path / "k", Ed25519PrivateKey.generate(), passphrase=PASSPHRASE)
    with pytest.raises(UsageError) as caught:
        load_private_key(tmp_path / "k", passphrase=b"guess")
    assert "wrong passphrase" in str(caught.value)
    assert "guess" not in str(caught.value)


def test_missing_passphrase(tmp_path: Path) -> None:
    write_private_key(tmp_path / "k", Ed25519PrivateKey.generate(), passphrase=PASSPHRASE)
    with pytest.raises(UsageError) as caught:
        load_private_key(tmp_path / "k")
    assert "passphrase-protected" in str(caught.value)


def test_passphrase_for_a_plain_key(tmp_path: Path) -> None:
    write_private_key(tmp_path / "k", Ed25519PrivateKey.generate())
    with pytest.raises(UsageError) as caught:
        load_private_key(tmp_path / "k", passphrase=PASSPHRASE)
    assert "not encrypted" in str(caught.value)


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_private_key(tmp_path / "k", Ed25519PrivateKey.generate(), passphrase=b"")
    assert not (tmp_path / "k").exists()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k"
    first = Ed25519PrivateKey.generate()
    write_private_key(path, first)
    with pytest.raises(UsageError) as caught:
        write_private_key(path, Ed25519PrivateKey.generate())
    assert "refusing to overwrite" in str(caught.value)
    assert _raw(load_signing_key(path)) == _raw(first)


@pytest.mark.usefixtures("permissive_umask")
def test_overwrite_keeps_0600(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"old")
    path.chmod(0o644)
    second = Ed25519PrivateKey.generate()
    write_private_key(path, second, overwrite=True)
    assert _mode(path) == 0o600
    assert _raw(load_signing_key(path)) == _raw(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temporary left behind


def test_refuses_to_write_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError):
        write_private_key(tmp_path / "link", Ed25519PrivateKey.generate())
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o620])
def test_refuses_key_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    write_private_key(path, Ed25519PrivateKey.generate())
    path.chmod(mode)
    with pytest.raises(UsageError) as caught:
        load_signing_key(path)
    assert str(path) in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)
    load_signing_key(path, allow_insecure_permissions=True)  # the explicit escape hatch


def test_refuses_to_read_through_a_symlink(tmp_path: Path) -> None:
    write_private_key(tmp_path / "k", Ed25519PrivateKey.generate())
    (tmp_path / "link").symlink_to(tmp_path / "k")
    with pytest.raises(UsageError):
        load_signing_key(tmp_path / "link")


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        load_signing_key(tmp_path / "absent.key")
    assert "does not exist" in str(caught.value)


def test_garbage_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(UsageError) as caught:
        load_private_key(path)
    assert "does not hold a PEM private key" in str(caught.value)


def test_key_of_the_wrong_type(tmp_path: Path) -> None:
    write_private_key(tmp_path / "k", X25519PrivateKey.generate())
    with pytest.raises(UsageError) as caught:
        load_signing_key(tmp_path / "k")
    assert "not an Ed25519 key" in str(caught.value)


def test_passphrase_file(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_bytes(PASSPHRASE + b"\r\nignored second line\n")
    path.chmod(0o600)
    assert read_passphrase_file(path) == PASSPHRASE
    path.chmod(0o644)
    with pytest.raises(UsageError):
        read_passphrase_file(path)
    path.write_bytes(b"\n")
    path.chmod(0o600)
    with pytest.raises(UsageError):
        read_passphrase_file(path)


# --- load_local_identity ------------------------------------------------------------------------


def _write_node(directory: Path, node: IssuedNode, passphrase: bytes | None = None) -> None:
    pem = serialization.Encoding.PEM
    chain = b"".join(cert.public_bytes(pem) for cert in (node.certificate, *node.chain))
    (directory / "chain.pem").write_bytes(chain)
    write_private_key(
        directory / "signing.key", node.identity.signing_private_key, passphrase=passphrase
    )
    write_private_key(
        directory / "encryption.key", node.identity.encryption_private_key, passphrase=passphrase
    )


@pytest.fixture
def node(pki: SyntheticPKI) -> IssuedNode:
    return pki.node("520102.gongan", pki.ca("520102", pki.ca("520100", pki.root("520000"))))


def test_load_local_identity(tmp_path: Path, node: IssuedNode) -> None:
    _write_node(tmp_path, node, PASSPHRASE)
    identity = load_local_identity(
        tmp_path / "chain.pem", tmp_path / "signing.key", tmp_path / "encryption.key", PASSPHRASE
    )
    assert str(identity.name) == "520102.gongan"
    assert identity.peer.certificate == node.certificate
    assert identity.chain == node.chain
    assert identity.peer.signing_key_id == node.identity.peer.signing_key_id
    assert identity.peer.encryption_key_id == node.identity.peer.encryption_key_id


def test_load_local_identity_verifies_when_given_trust(
    tmp_path: Path, pki: SyntheticPKI, node: IssuedNode
) -> None:
    _write_node(tmp_path, node)
    pki.revoke(node.certificate, pki.cas["520102"])
    trust = pki.trust_store([pki.cas["520000"]])
    with pytest.raises(CertificateRevokedError):
        load_local_identity(
            tmp_path / "chain.pem",
            tmp_path / "signing.key",
            tmp_path / "encryption.key",
            trust=trust,
            now=pki.epoch + timedelta(days=1),
        )


def test_load_local_identity_refuses_mismatched_keys(
    tmp_path: Path, pki: SyntheticPKI, node: IssuedNode
) -> None:
    _write_node(tmp_path, node)
    other = pki.node("520102.other", pki.cas["520102"])
    (tmp_path / "signing.key").unlink()
    write_private_key(tmp_path / "signing.key", other.identity.signing_private_key)
    with pytest.raises(UsageError) as caught:
        load_local_identity(
            tmp_path / "chain.pem", tmp_path / "signing.key", tmp_path / "encryption.key"
        )
    assert "does not match the certificate of 520102.gongan" in str(caught.value)


def test_load_local_identity_with_a_bad_chain_file(tmp_path: Path, node: IssuedNode) -> None:
    _write_node(tmp_path, node)
    (tmp_path / "chain.pem").write_bytes(b"rubbish")
    with pytest.raises(UsageError):
        load_local_identity(
            tmp_path / "chain.pem", tmp_path / "signing.key", tmp_path / "encryption.key"
        )


def test_a_public_file_is_replaced_whole_readable_by_all_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chain.pem"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    write_public_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["chain.pem"]
