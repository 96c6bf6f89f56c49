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

from exchnode.core import (
    FreshnessPolicy,
    Limits,
    LocalIdentity,
    Opener,
    OpenPolicy,
    ReceiptVerifier,
    ReplayWindow,
    SentMessage,
    StaticDirectory,
)
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
    # ... and the sender, holding what it keeps of the message, counts it (SPEC §10.4).
    assert check_receipt(vector) is None


def refusal(vector: dict[str, Any]) -> str | None:
    """Open an invalid-envelope vector as it says (SPEC §8.1); the code it fails with."""
    data = bytes.fromhex(vector["envelope"])
    peers = directory(tuple(vector.get("directory_without", ())))
    freshness = FreshnessPolicy(**vector.get("freshness", {}))
    policy = OpenPolicy(freshness=freshness, limits=Limits(**vector.get("limits", {})))
    opener = Opener(identity(vector["open_as"]), peers, policy, replay=ReplayWindow(freshness))
    for first in vector.get("open_first", ()):
        opener.open(bytes.fromhex(first), vector["open_at"])
    for _ in range(vector.get("open_times", 1) - 1):
        opener.open(data, vector["open_at"])
    try:
        opener.open(data, vector["open_at"])
    except RejectedError as exc:
        return exc.code
    return None


INVALID = load("invalid.json")["vectors"]


@pytest.mark.parametrize("vector", INVALID, ids=lambda v: v["name"])
def test_invalid_envelope(vector: dict[str, Any]) -> None:
    assert refusal(vector) == vector["error"]


@pytest.mark.parametrize(
    "vector", [v for v in INVALID if "second_error" in v], ids=lambda v: v["name"]
)
def test_an_envelope_failing_two_checks_fails_the_second_once_the_first_is_lifted(
    vector: dict[str, Any],
) -> None:
    """The vector really fails both checks, so its ``error`` pins their order (SPEC §8.1)."""
    assert vector["second_error"] != vector["error"]
    assert refusal({**vector, **vector["second_error_when"]}) == vector["second_error"]


def test_every_error_code_of_the_envelope_checks_has_a_vector() -> None:
    codes = {v["error"] for v in INVALID}
    assert codes == {
        "too-large",
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


def test_each_step_of_the_order_is_pinned_against_the_next_by_a_vector_failing_both() -> None:
    """SPEC §8.1, step by step: for each pair of neighbouring checks, a vector fails both."""
    pairs = {(v["error"], v["second_error"]) for v in INVALID if "second_error" in v}
    assert pairs >= {
        ("too-large", "unsupported-suite"),  # 1 before 3
        ("unsupported-version", "malformed"),  # 2: the format first
        ("malformed", "bad-signature"),  # 2 before 8
        ("unsupported-suite", "malformed"),  # 3: the suite first
        ("unsupported-suite", "too-large"),  # 3: the suite before the body's limits
        ("lifetime-too-long", "expired"),  # 5, in the order of §8.2
        ("expired", "not-a-recipient"),  # 5 before 6
        ("not-yet-valid", "not-a-recipient"),  # 5 before 6
        ("expired", "bad-signature"),  # 5 before 8
        ("not-a-recipient", "unknown-signer"),  # 6 before 7
        ("not-a-recipient", "decryption-failed"),  # 6 before 10
        ("unknown-signer", "bad-signature"),  # 7 before 8
        ("bad-signature", "replayed"),  # 8 before 9
        ("replayed", "decryption-failed"),  # 9 before 10
    }


# --- receipts at their sender (SPEC §10.4) ---------------------------------------------


def check_receipt(vector: dict[str, Any]) -> str | None:
    """Check a receipt vector as its sender would; the code it is refused with, if any."""
    verifier = ReceiptVerifier(directory(tuple(vector.get("directory_without", ()))))
    held = {
        bytes.fromhex(r["message_id"]): SentMessage(
            bytes.fromhex(r["message_id"]),
            bytes.fromhex(r["digest"]),
            frozenset(r["recipients"]),
            r["expires_ms"],
            frozenset(r["receipted"]),
        )
        for r in vector["sent"]
    }

    def check(data: bytes) -> None:
        receipt = verifier.verify_for(
            data, held.get, me=vector["check_as"], now=vector["check_at"], carrier=vector["carrier"]
        )
        record = held[receipt.message_id]  # accepted: the sender records it (step 13)
        held[receipt.message_id] = record._replace(receipted=record.receipted | {receipt.recipient})

    data = bytes.fromhex(vector["receipt"])
    for first in vector.get("check_first", ()):
        check(bytes.fromhex(first))
    for _ in range(vector.get("check_times", 1) - 1):
        check(data)
    try:
        check(data)
    except RejectedError as exc:
        return exc.code
    return None


INVALID_RECEIPTS = load("invalid-receipts.json")["vectors"]


@pytest.mark.parametrize("vector", INVALID_RECEIPTS, ids=lambda v: v["name"])
def test_invalid_receipt(vector: dict[str, Any]) -> None:
    assert check_receipt(vector) == vector["error"]


@pytest.mark.parametrize(
    "vector", [v for v in INVALID_RECEIPTS if "second_error" in v], ids=lambda v: v["name"]
)
def test_a_receipt_failing_two_checks_fails_the_second_once_the_first_is_lifted(
    vector: dict[str, Any],
) -> None:
    assert vector["second_error"] != vector["error"]
    assert check_receipt({**vector, **vector["second_error_when"]}) == vector["second_error"]


def test_every_error_code_of_the_receipt_checks_has_a_vector() -> None:
    assert {v["error"] for v in INVALID_RECEIPTS} == {
        "too-large",
        "malformed",
        "unsupported-version",
        "unsupported-suite",
        "unknown-message",
        "expired",
        "not-yet-valid",
        "not-a-recipient",
        "wrong-digest",
        "wrong-carrier",
        "unknown-signer",
        "bad-signature",
        "replayed",
    }


def test_the_receipt_order_is_pinned_by_vectors_failing_two_checks() -> None:
    """SPEC §10.4: the record checks before the signer and seal, the seal before replay."""
    pairs = {(v["error"], v["second_error"]) for v in INVALID_RECEIPTS if "second_error" in v}
    assert pairs >= {
        ("unsupported-suite", "malformed"),  # 3: the suite first
        ("expired", "not-a-recipient"),  # 6 before 7
        ("not-a-recipient", "bad-signature"),  # 7 before 11
        ("wrong-digest", "wrong-carrier"),  # 8 before 9
        ("wrong-carrier", "unknown-signer"),  # 9 before 10
        ("bad-signature", "replayed"),  # 11 before 12
    }
