"""The protocol's test vectors: reproducible, and honoured by the code (SPEC §11).

Two independent checks.  First, regenerating the vectors from their fixed
keys reproduces the committed files byte for byte.  Second, every vector is
replayed from the JSON alone -- certificates verified from PEM, keys loaded
from their raw bytes -- as another implementation would use them.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.core import LocalIdentity, Opener, ReceiptVerifier, ReplayWindow, StaticDirectory
from exchnode.errors import RejectedError
from exchnode.pki import TrustStore, load_certificates_pem, verify_node_certificate
from exchnode.pki._verify import load_crl_pem

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"


def load(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((VECTORS / name).read_text("utf-8"))
    return value


def test_regeneration_reproduces_the_files_byte_for_byte() -> None:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, text in generator.generate().items():
        assert (VECTORS / name).read_text("utf-8") == text, f"{name} drifted from the code"


PKI = load("pki.json")


def directory(without: tuple[str, ...] = ()) -> StaticDirectory:
    trust = TrustStore(
        load_certificates_pem(PKI["root"].encode()),
        [load_crl_pem(crl.encode()) for crl in PKI["crls"]],
    )
    at = datetime.fromisoformat(PKI["verify_at"])
    peers = StaticDirectory()
    for name, node in PKI["nodes"].items():
        if name in without:
            continue
        leaf = load_certificates_pem(node["certificate"].encode())[0]
        chain = [load_certificates_pem(c.encode())[0] for c in node["chain"]]
        peer = verify_node_certificate(leaf, chain, trust, at)
        assert peer.signing_key_id.hex() == node["signing_key_id"]
        assert peer.encryption_key_id.hex() == node["encryption_key_id"]
        peers.add(peer)
    return peers


def identity(name: str) -> LocalIdentity:
    node = PKI["nodes"][name]
    return LocalIdentity.from_keys(
        name,
        Ed25519PrivateKey.from_private_bytes(bytes.fromhex(node["signing_private_key"])),
        X25519PrivateKey.from_private_bytes(bytes.fromhex(node["encryption_private_key"])),
    )


@pytest.mark.parametrize("vector", load("envelopes.json")["vectors"], ids=lambda v: v["name"])
def test_valid_envelope(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["envelope"])
    for name in vector["recipients"]:
        opened = Opener(identity(name), directory()).open(data, vector["open_at"])
        assert opened.plaintext.hex() == vector["plaintext"]
        assert opened.digest.hex() == vector["digest"]
        assert opened.message_id.hex() == vector["message_id"]
        assert opened.header.sender == vector["sender"]


@pytest.mark.parametrize("vector", load("receipts.json")["vectors"], ids=lambda v: v["name"])
def test_valid_receipt(vector: dict[str, Any]) -> None:
    receipt = ReceiptVerifier(directory()).verify(bytes.fromhex(vector["receipt"]))
    assert receipt.envelope_digest.hex() == vector["envelope_digest"]
    assert receipt.plaintext_digest.hex() == vector["plaintext_sha256"]


@pytest.mark.parametrize("vector", load("invalid.json")["vectors"], ids=lambda v: v["name"])
def test_invalid_envelope(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["envelope"])
    peers = directory(tuple(vector.get("directory_without", ())))
    opener = Opener(identity(vector["open_as"]), peers, replay=ReplayWindow())
    for _ in range(vector.get("open_times", 1) - 1):
        opener.open(data, vector["open_at"])
    with pytest.raises(RejectedError) as caught:
        opener.open(data, vector["open_at"])
    assert caught.value.code == vector["error"], str(caught.value)


def test_every_error_code_of_the_envelope_checks_has_a_vector() -> None:
    codes = {v["error"] for v in load("invalid.json")["vectors"]}
    assert codes == {
        "malformed",
        "unsupported-version",
        "unsupported-suite",
        "lifetime-too-long",
        "expired",
        "not-yet-valid",
        "not-a-recipient",
        "unknown-signer",
        "bad-signature",
        "decryption-failed",
        "replayed",
    }
