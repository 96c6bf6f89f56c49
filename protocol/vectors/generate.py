#!/usr/bin/env python3
"""Generate the protocol's test vectors from fixed keys (SPEC §11).

    python protocol/vectors/generate.py           write the JSON files here
    python protocol/vectors/generate.py --check   exit 1 if they differ from a regeneration

Everything is a function of public labels: keys come from
``exchnode.testing`` (SHA-256 of a label), randomness from
``exchnode.testing.SeededRandom``, times from fixed constants, and Ed25519 is
deterministic.  So regenerating reproduces every file byte for byte, and the
test suite checks that it does: spec, vectors and code cannot drift apart.

The files hold only public data and test keys:

* ``pki.json``       the certificate hierarchy, CRLs and the nodes' private keys
* ``envelopes.json`` valid envelopes (single, multi-recipient, a batch) with plaintexts
* ``receipts.json``  valid receipts for some of them, with what their sender holds to check them
* ``invalid.json``   envelopes that must be refused, each with the error code it must produce
* ``invalid-receipts.json`` receipts their sender must refuse (SPEC §10.4), each with its code
* ``catalog.json``   catalog format 2's feed pages and lookups (SPEC §18.10-§18.12), valid and not
* ``directory.json`` directory format 2's pages and lookups (SPEC §14.13-§14.17), valid and not

An invalid vector that fails two checks names both: ``error`` is the code
of the first in the verification order, ``second_error`` the code it gives
once the first failure is lifted by ``second_error_when`` (fields replacing
the vector's own).  The test suite opens both, which pins the order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from exchnode.catalog import (
    CatalogEntry,
    CatalogQuery,
    DataItem,
    DataType,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    Publication,
    RecordPage,
    ResourceFormat,
    ShareMethod,
    ShareType,
    UpdateCycle,
    Wanted,
    Withdrawal,
    sign_records,
)
from exchnode.core import (
    TYPE_ENVELOPE,
    TYPE_RECEIPT,
    LocalIdentity,
    NodeName,
    Opener,
    Outgoing,
    Sealer,
    SealPolicy,
    StaticDirectory,
    decode_signed,
    encode_signed,
    hpke_open,
    hpke_seal,
    issue_receipts,
    pack,
    sign_leaves,
    signed_leaf,
    wrap_info,
)
from exchnode.federation import (
    Audience,
    FeedPosition,
    Neighbour,
    NodeDirectory,
    Relation,
    encode_lookup,
)
from exchnode.federation._directory_pages import PAGE_LABEL, decode_page
from exchnode.pki import TrustStore, verify_node_certificate
from exchnode.testing import IssuedNode, SeededRandom, SyntheticPKI

HERE = Path(__file__).resolve().parent
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
SEALED_AT = 1_795_000_000.0  # 2026-11-18T08:26:40Z
OPEN_AT = SEALED_AT + 60.0
SENDER, RECIPIENT, OTHER, HUB = "520102.gongan", "522301.minzheng", "520100.fagai", "520100"
PAYLOAD = '{"身份证号":"520102199001011234","姓名":"张三"}'.encode()


def build_pki() -> tuple[SyntheticPKI, dict[str, IssuedNode], list[Any], list[Any]]:
    pki = SyntheticPKI(epoch=EPOCH)
    province = pki.root("520000")
    guiyang = pki.ca("520100", province)
    qiannan = pki.ca("522300", province)
    nodes = {
        SENDER: pki.node(SENDER, guiyang),
        RECIPIENT: pki.node(RECIPIENT, qiannan),
        OTHER: pki.node(OTHER, guiyang),
        HUB: pki.node(HUB, guiyang),
    }
    cas = [province, guiyang, qiannan]
    crl_time = datetime.fromtimestamp(SEALED_AT, UTC) - timedelta(days=1)
    crls = [pki.crl(ca, this_update=crl_time) for ca in cas]
    return pki, nodes, cas, crls


def pem(obj: Any) -> str:
    return str(obj.public_bytes(Encoding.PEM).decode())


def raw_private(key: Any) -> str:
    return str(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex())


def verified_directory(nodes: dict[str, IssuedNode], cas: list[Any], crls: list[Any]) -> Any:
    from exchnode.pki import TrustStore

    trust = TrustStore([cas[0].certificate], crls)
    moment = datetime.fromtimestamp(SEALED_AT, UTC)
    return StaticDirectory(
        verify_node_certificate(node.certificate, node.chain, trust, moment)
        for node in nodes.values()
    )


def resign(fields: list[Any], signer: LocalIdentity) -> bytes:
    body = pack(fields)
    (seal,) = sign_leaves(signer.signing_private_key, fields[0], [signed_leaf(TYPE_ENVELOPE, body)])
    return encode_signed(TYPE_ENVELOPE, body, seal)


def fields_of(envelope: bytes) -> list[Any]:
    body, _ = decode_signed(envelope, TYPE_ENVELOPE, "envelope", 1 << 26)
    value: list[Any] = msgpack.unpackb(body)
    return value


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


# Ed25519 (RFC 8032): the group order and the field prime, for the signature-encoding vectors.
ED25519_L = 2**252 + 27742317777372353535851937790883648493
ED25519_P = 2**255 - 19


def sign_with_identity_r(signer: LocalIdentity, message: bytes, r_encoding: bytes) -> bytes:
    """An Ed25519 signature whose R is the identity point (nonce 0), R written as given.

    S = k * a with k = SHA-512(R || A || M): the verification equation holds
    for the identity whatever its encoding; a verifier that compares R by its
    canonical encoding (SPEC §6.3) accepts the canonical one only.
    """
    seed = signer.signing_private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    h = hashlib.sha512(seed).digest()
    a = (int.from_bytes(h[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
    public = signer.peer.signing_key_raw
    k = int.from_bytes(hashlib.sha512(r_encoding + public + message).digest(), "little")
    return r_encoding + (k * a % ED25519_L).to_bytes(32, "little")


def generate() -> dict[str, str]:
    _pki, nodes, cas, crls = build_pki()
    identities = {name: node.identity for name, node in nodes.items()}
    directory = verified_directory(nodes, cas, crls)

    def sealer(seed: str, **policy: Any) -> Sealer:
        return Sealer(identities[SENDER], directory, SealPolicy(**policy), SeededRandom(seed))

    files: dict[str, Any] = {}
    files["pki.json"] = {
        "description": "Certificate hierarchy of the vectors: root 520000, CAs 520100 and "
        "522300, four nodes. Node private keys are raw 32-byte keys (RFC 8032 seed / "
        "RFC 7748 scalar) and are public test keys.",
        "root": pem(cas[0].certificate),
        "cas": [pem(ca.certificate) for ca in cas[1:]],
        "crls": [pem(crl) for crl in crls],
        "verify_at": datetime.fromtimestamp(SEALED_AT, UTC).isoformat(),
        "nodes": {
            name: {
                "certificate": pem(node.certificate),
                "chain": [pem(cert) for cert in node.chain],
                "signing_private_key": raw_private(node.identity.signing_private_key),
                "encryption_private_key": raw_private(node.identity.encryption_private_key),
                "signing_key_id": node.identity.peer.signing_key_id.hex(),
                "encryption_key_id": node.identity.peer.encryption_key_id.hex(),
            }
            for name, node in nodes.items()
        },
    }

    valid: list[dict[str, Any]] = []

    def add_valid(name: str, description: str, sealed: list[Any], items: list[Outgoing]) -> None:
        for index, (envelope, item) in enumerate(zip(sealed, items, strict=True)):
            valid.append(
                {
                    "name": name if len(sealed) == 1 else f"{name}[{index}]",
                    "description": description,
                    "sender": SENDER,
                    "recipients": sorted(item.recipients),
                    "open_at": OPEN_AT,
                    "plaintext": item.payload.hex(),
                    "message_id": envelope.message_id.hex(),
                    "digest": envelope.digest.hex(),
                    "envelope": envelope.data.hex(),
                }
            )

    single = Outgoing([RECIPIENT], PAYLOAD, "data", "application/json", 86400.0)
    add_valid(
        "single-recipient",
        "One county department to a county department of another prefecture.",
        sealer("single").seal_batch([single], SEALED_AT),
        [single],
    )
    multi = Outgoing([RECIPIENT, OTHER, HUB], b"catalog entry v3", "catalog.update", "text/plain")
    add_valid(
        "three-recipients",
        "One envelope, the content key wrapped once per recipient (sorted by name).",
        sealer("multi").seal_batch([multi], SEALED_AT),
        [multi],
    )
    empty = Outgoing([RECIPIENT], b"", "ping", "application/octet-stream", 3600.0)
    add_valid(
        "empty-payload",
        "A zero-length payload: the ciphertext is the 16-byte tag.",
        sealer("empty").seal_batch([empty], SEALED_AT),
        [empty],
    )
    batch_items = [Outgoing([RECIPIENT], f"record {i}".encode(), ttl=3600.0) for i in range(5)]
    batch = sealer("batch").seal_batch(batch_items, SEALED_AT)
    add_valid(
        "batch-of-5",
        "Five envelopes under one batch signature; one content-key epoch, so the wrapped "
        "key is the same in all five. Each opens on its own.",
        batch,
        batch_items,
    )
    files["envelopes.json"] = {
        "description": "Valid envelopes. Open each as every listed recipient at open_at "
        "(seconds since 1970): the plaintext must come out and the digest must equal "
        "SHA-256(0x00 || 'exchnode/v1 envelope' 0x00 || body).",
        "sealed_at": SEALED_AT,
        "vectors": valid,
    }

    opener = Opener(identities[RECIPIENT], directory)
    opened = [opener.open(bytes.fromhex(v["envelope"]), OPEN_AT) for v in valid[-5:]]
    receipts = issue_receipts(identities[RECIPIENT], opened, OPEN_AT)
    records = [sent_record(item) for item in opened]
    files["receipts.json"] = {
        "description": "Receipts by 522301.minzheng for the batch-of-5 envelopes, signed "
        "as one batch. Each must verify against the recipient's signing key and name "
        "the envelope's digest and the plaintext's SHA-256; and the sender, holding 'sent' "
        "(what it keeps of the message, SPEC §10.4), must accept it at check_at when "
        "'carrier' brought it.",
        "vectors": [
            {
                "name": f"receipt[{i}]",
                "envelope": valid[-5 + i]["name"],
                "envelope_digest": valid[-5 + i]["digest"],
                "plaintext_sha256": hashlib.sha256(opened[i].plaintext).hexdigest(),
                "receipt": receipt.hex(),
                "check_as": SENDER,
                "check_at": RECEIPT_CHECK_AT,
                "carrier": RECIPIENT,
                "sent": [records[i]],
            }
            for i, receipt in enumerate(receipts)
        ],
    }
    files["invalid-receipts.json"] = {
        "description": "Receipts the sender must refuse. Check each as check_as at check_at, "
        "holding the records in 'sent' (SPEC §10.4: message id, envelope digest, recipients, "
        "expiry; 'receipted' are the recipients whose receipt it already accepted), brought "
        "by 'carrier' (null: issued to itself), with the vectors' directory (minus any node "
        "in 'directory_without'), through the verification order of SPEC §10.4; the first "
        "failing check must raise the error whose code is given (SPEC §12). Receipts in "
        "'check_first' are checked (and accepted) first by the same sender; 'check_times' > 1 "
        "means the same bytes are checked repeatedly; only the last check fails.",
        "vectors": invalid_receipts(identities, directory, sealer, opened, receipts, records),
    }
    files["invalid.json"] = {
        "description": "Envelopes that must be refused. Open each as open_as at open_at, "
        "with the vectors' directory (minus any node in 'directory_without'), through the "
        "verification order of SPEC §8.1; the first failing check must raise the error "
        "whose code is given (SPEC §12). 'open_times' > 1 means the same bytes are "
        "opened repeatedly by one node; only the last open fails.",
        "vectors": invalid_vectors(identities, sealer, single),
    }
    files["catalog.json"] = catalog_vectors(identities)
    files["directory.json"] = directory_vectors(nodes, crls)
    return {
        name: json.dumps(value, indent=1, ensure_ascii=False) + "\n"
        for name, value in files.items()
    }


RECEIPT_CHECK_AT = OPEN_AT + 60.0


def sent_record(item: Any) -> dict[str, Any]:
    """What the sender keeps of a message to check receipts for it (SPEC §10.4), as JSON."""
    header = item.envelope.header
    return {
        "message_id": header.message_id.hex(),
        "digest": item.envelope.digest.hex(),
        "recipients": sorted(header.recipient_names),
        "expires_ms": header.expires_ms,
        "receipted": [],
    }


def sign_receipt(fields: list[Any], signer: LocalIdentity) -> bytes:
    body = pack(fields)
    suite = fields[0] if isinstance(fields[0], int) else 1
    (seal,) = sign_leaves(signer.signing_private_key, suite, [signed_leaf(TYPE_RECEIPT, body)])
    return encode_signed(TYPE_RECEIPT, body, seal)


def invalid_receipts(
    identities: dict[str, LocalIdentity],
    directory: Any,
    sealer: Callable[..., Sealer],
    opened: list[Any],
    receipts: list[bytes],
    records: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    genuine, first, second = receipts[0], opened[0], opened[1]
    record = records[0]
    header = first.envelope.header
    opened_ms = int(OPEN_AT * 1000)
    plaintext_digest = hashlib.sha256(first.plaintext).digest()

    def fields(signer: str, *, digest: bytes = first.envelope.digest, suite: int = 1) -> list[Any]:
        return [
            suite,
            header.message_id,
            digest,
            SENDER,
            signer,
            identities[signer].peer.signing_key_id,
            opened_ms,
            plaintext_digest,
        ]

    by_hub = sign_receipt(fields(HUB), identities[HUB])
    wrong_digest = sign_receipt(
        fields(RECIPIENT, digest=second.envelope.digest), identities[RECIPIENT]
    )
    # Another sender's message that happens to use the same id as one of the sender's own.
    theirs = Sealer(identities[OTHER], directory, random=SeededRandom("receipt-theirs"))
    other_envelope = theirs.seal(
        Outgoing([RECIPIENT], b"not yours", message_id=header.message_id), SEALED_AT
    )
    other_opened = Opener(identities[RECIPIENT], directory).open(other_envelope.data, OPEN_AT)
    (about_theirs,) = issue_receipts(identities[RECIPIENT], [other_opened], OPEN_AT)
    (from_the_future,) = issue_receipts(identities[RECIPIENT], [first], RECEIPT_CHECK_AT + 301)
    long_suite_2 = sign_receipt([*fields(RECIPIENT, suite=2), 0], identities[RECIPIENT])
    long_suite_1 = sign_receipt([*fields(RECIPIENT), 0], identities[RECIPIENT])
    expiry = record["expires_ms"] / 1000
    hub_is_recipient = {**record, "recipients": sorted([RECIPIENT, HUB])}
    other_digest = {**record, "digest": second.envelope.digest.hex()}
    cases: list[dict[str, Any]] = []

    def case(name: str, description: str, data: bytes, code: str, **extra: Any) -> None:
        vector: dict[str, Any] = {
            "name": name,
            "description": description,
            "check_as": SENDER,
            "check_at": extra.pop("check_at", RECEIPT_CHECK_AT),
            "carrier": extra.pop("carrier", RECIPIENT),
            "sent": extra.pop("sent", [record]),
            "error": code,
            "receipt": data.hex(),
        }
        vector.update(extra)
        cases.append(vector)

    case(
        "too-large",
        "4097 bytes, over the receipt limit of 4096 (and not a receipt at all).",
        b"\x94\x01\x02\xc5\x0f\xfc" + b"\x00" * 4091,
        "too-large",
    )
    case("truncated", "The last byte is missing.", genuine[:-1], "malformed")
    case(
        "format-2",
        "Receipt format version 2.",
        pack([2, *msgpack.unpackb(genuine)[1:]]),
        "unsupported-version",
    )
    case(
        "suite-2",
        "Suite 2 (reserved for SM2/SM3/SM4), validly signed by the recipient.",
        sign_receipt(fields(RECIPIENT, suite=2), identities[RECIPIENT]),
        "unsupported-suite",
    )
    case(
        "unsupported-suite-and-wrong-length",
        "Suite 2 with a ninth element: the suite is read first (SPEC §5.2, §10.4).",
        long_suite_2,
        "unsupported-suite",
        second_error="malformed",
        second_error_when={"receipt": long_suite_1.hex()},
    )
    case(
        "unknown-message",
        "A genuine receipt for a message the sender holds no record of.",
        genuine,
        "unknown-message",
        sent=[],
    )
    case(
        "another-senders-message",
        "A genuine receipt by the recipient about 520100.fagai's message, whose id the "
        "sender also used for one of its own.",
        about_theirs,
        "unknown-message",
    )
    case(
        "stale",
        "Checked at the message's expiry: the sender no longer holds it (expiry is exclusive).",
        genuine,
        "expired",
        check_at=expiry,
    )
    case(
        "from-the-future",
        "Opened 301 s after the check, beyond the 300 s clock skew.",
        from_the_future,
        "not-yet-valid",
    )
    case(
        "not-a-recipient",
        "The city hub on the path signs a receipt naming itself for an envelope it relayed, "
        "and brings it: a valid signature, but not from a recipient.",
        by_hub,
        "not-a-recipient",
        carrier=HUB,
    )
    case(
        "wrong-digest",
        "The recipient's receipt under the message's id names another envelope's digest.",
        wrong_digest,
        "wrong-digest",
    )
    case(
        "wrong-carrier",
        "A genuine receipt brought by the city hub instead of the recipient that signed it.",
        genuine,
        "wrong-carrier",
        carrier=HUB,
    )
    case(
        "unknown-signer",
        "The recipient is not in the sender's directory.",
        genuine,
        "unknown-signer",
        directory_without=[RECIPIENT],
    )
    case(
        "wrong-signer",
        "Names the recipient and its key id, signed by 520100.fagai.",
        sign_receipt(fields(RECIPIENT), identities[OTHER]),
        "bad-signature",
    )
    case(
        "replayed",
        "The same receipt checked twice: the recipient's delivery is counted once.",
        genuine,
        "replayed",
        check_times=2,
    )
    case(
        "stale-and-not-a-recipient",
        "The hub's receipt, checked at the message's expiry.",
        by_hub,
        "expired",
        carrier=HUB,
        check_at=expiry,
        second_error="not-a-recipient",
        second_error_when={"check_at": RECEIPT_CHECK_AT},
    )
    case(
        "not-a-recipient-and-bad-signature",
        "The hub's receipt with one signature bit flipped: the recipients are checked "
        "before any public-key operation.",
        flip(by_hub, len(by_hub) - 1),
        "not-a-recipient",
        carrier=HUB,
        second_error="bad-signature",
        second_error_when={"sent": [hub_is_recipient]},
    )
    case(
        "wrong-digest-and-wrong-carrier",
        "The wrong-digest receipt, brought by the city hub.",
        wrong_digest,
        "wrong-digest",
        carrier=HUB,
        second_error="wrong-carrier",
        second_error_when={"sent": [other_digest]},
    )
    case(
        "wrong-carrier-and-unknown-signer",
        "A genuine receipt brought by the city hub, its signer not in the directory.",
        genuine,
        "wrong-carrier",
        carrier=HUB,
        directory_without=[RECIPIENT],
        second_error="unknown-signer",
        second_error_when={"carrier": RECIPIENT},
    )
    case(
        "bad-signature-and-replayed",
        "After the genuine receipt, a copy with one signature bit flipped: the signature is "
        "checked before the replay window.",
        flip(genuine, len(genuine) - 1),
        "bad-signature",
        check_first=[genuine.hex()],
        second_error="replayed",
        second_error_when={"receipt": genuine.hex()},
    )
    return cases


def invalid_vectors(
    identities: dict[str, LocalIdentity],
    sealer: Callable[..., Sealer],
    single: Outgoing,
) -> list[dict[str, Any]]:
    good = sealer("invalid-base").seal(single, SEALED_AT).data
    batch = sealer("invalid-batch").seal_batch([single] * 3, SEALED_AT)
    signer = identities[SENDER]
    cases: list[tuple[str, str, bytes, str, dict[str, Any]]] = []

    def case(name: str, description: str, data: bytes, code: str, **extra: Any) -> None:
        cases.append((name, description, data, code, extra))

    case("truncated", "The last byte is missing.", good[:-1], "malformed")
    outer = msgpack.unpackb(good)
    wide = b"\x94\x01\x01\xc6" + len(outer[2]).to_bytes(4, "big") + outer[2] + pack(outer[3])
    case(
        "non-canonical-framing", "Body length in bin32 form where bin8/16 fits.", wide, "malformed"
    )
    outer_v2 = [2, *outer[1:]]
    case("format-2", "Envelope format version 2.", pack(outer_v2), "unsupported-version")
    fields = fields_of(good)
    case(
        "suite-2",
        "Suite 2 (reserved for SM2/SM3/SM4), validly signed.",
        resign([2, *fields[1:]], signer),
        "unsupported-suite",
    )
    unsorted = fields_of(
        sealer("unsorted").seal(Outgoing([RECIPIENT, OTHER], PAYLOAD), SEALED_AT).data
    )
    unsorted[4] = list(reversed(unsorted[4]))
    case(
        "recipients-unsorted",
        "Recipients not in ascending order.",
        resign(unsorted, signer),
        "malformed",
    )
    wrong_size = list(fields)
    wrong_size[9] += 1
    case(
        "plaintext-size-mismatch",
        "plaintext_size disagrees with the ciphertext length.",
        resign(wrong_size, signer),
        "malformed",
    )
    long_lived = list(fields)
    long_lived[6] = long_lived[5] + 31 * 86400 * 1000
    case(
        "lifetime-too-long",
        "A 31-day lifetime against the default 30-day maximum.",
        resign(long_lived, signer),
        "lifetime-too-long",
    )
    case(
        "expired",
        "Opened after its expiry (expiry is exclusive).",
        good,
        "expired",
        open_at=SEALED_AT + 86400.0,
    )
    case(
        "from-the-future",
        "Opened more than the 300 s clock skew before its creation.",
        good,
        "not-yet-valid",
        open_at=SEALED_AT - 301.0,
    )
    case(
        "not-a-recipient",
        "Opened by the city hub on its path.",
        good,
        "not-a-recipient",
        open_as=HUB,
    )
    case(
        "unknown-signer",
        "The sender is not in the opener's directory.",
        good,
        "unknown-signer",
        directory_without=[SENDER],
    )
    body_offset = len(good) - 66 - 10  # a byte inside the ciphertext
    case(
        "ciphertext-bit-flip",
        "One ciphertext bit flipped in transit.",
        flip(good, body_offset),
        "bad-signature",
    )
    case(
        "signature-bit-flip",
        "One signature bit flipped.",
        flip(good, len(good) - 1),
        "bad-signature",
    )
    spoofed = list(fields)
    case(
        "spoofed-sender",
        "Claims 520102.gongan and its key id, signed by 520100.fagai.",
        resign(spoofed, identities[OTHER]),
        "bad-signature",
    )
    holder = identities[RECIPIENT]
    entry = fields[4][0]
    content_key = hpke_open(
        holder.encryption_private_key, entry[2], info=wrap_info(1, SENDER, RECIPIENT, entry[1])
    )
    third = identities[OTHER].peer
    readdressed = list(fields)
    readdressed[4] = [
        [
            OTHER,
            third.encryption_key_id,
            hpke_seal(
                third.encryption_key,
                content_key,
                info=wrap_info(1, SENDER, OTHER, third.encryption_key_id),
                random=SeededRandom("readdress"),
            ),
        ]
    ]
    _, seal = decode_signed(good, TYPE_ENVELOPE, "envelope", 1 << 26)
    case(
        "re-addressed",
        "The recipient re-wrapped the content key for a third party and "
        "kept the sender's seal (surreptitious forwarding).",
        encode_signed(TYPE_ENVELOPE, pack(readdressed), seal),
        "bad-signature",
        open_as=OTHER,
    )
    b_body, b_seal = decode_signed(batch[1].data, TYPE_ENVELOPE, "envelope", 1 << 26)
    case(
        "leaf-count-changed",
        "Batch member whose leaf count was changed from 3 to 4.",
        encode_signed(TYPE_ENVELOPE, b_body, b_seal._replace(leaf_count=4)),
        "bad-signature",
    )
    case(
        "path-truncated",
        "Batch member with the last hash of its inclusion path removed.",
        encode_signed(TYPE_ENVELOPE, b_body, b_seal._replace(path=b_seal.path[:-32])),
        "bad-signature",
    )
    stale_key = list(fields)
    stale_key[4] = [[entry[0], b"\x00" * 16, entry[2]]]
    case(
        "wrapped-to-another-key",
        "Wrapped to an encryption key id the recipient does not hold (validly signed).",
        resign(stale_key, signer),
        "decryption-failed",
    )
    bad_wrap = list(fields)
    bad_wrap[4] = [[entry[0], entry[1], flip(entry[2], 40)]]
    case(
        "wrap-tampered-then-signed",
        "Wrapped key corrupted before signing.",
        resign(bad_wrap, signer),
        "decryption-failed",
    )
    bad_ct = list(fields)
    bad_ct[11] = flip(bad_ct[11], 0)
    case(
        "ciphertext-tampered-then-signed",
        "Ciphertext corrupted before signing.",
        resign(bad_ct, signer),
        "decryption-failed",
    )
    case(
        "replayed",
        "The same envelope opened twice by the same node.",
        good,
        "replayed",
        open_times=2,
    )
    # --- limits of SPEC §4.3 and signature encodings of §6.3 (one check each) -----------
    three = sealer("limit-recipients").seal(
        Outgoing([RECIPIENT, OTHER, HUB], PAYLOAD, "data", "application/json", 86400.0),
        SEALED_AT,
    )
    case(
        "too-many-recipients",
        "Three recipients against a limit of two (max_recipients in 'limits').",
        three.data,
        "too-large",
        limits={"max_recipients": 2},
    )
    t_body, t_seal = decode_signed(batch[0].data, TYPE_ENVELOPE, "envelope", 1 << 26)
    case(
        "leaf-count-too-large",
        "A seal claiming a batch of 65 537 items, one more than the limit.",
        encode_signed(TYPE_ENVELOPE, t_body, t_seal._replace(leaf_count=65537)),
        "too-large",
    )
    case(
        "path-too-long",
        "An inclusion path of 17 hashes, one more than the limit.",
        encode_signed(TYPE_ENVELOPE, t_body, t_seal._replace(path=t_seal.path + b"\x00" * 480)),
        "too-large",
    )
    signature = good[-64:]
    s_value = int.from_bytes(signature[32:], "little")
    case(
        "signature-s-not-canonical",
        "The signature's S replaced by S + L (same value mod L): S must be below the group "
        "order L (SPEC §6.3).",
        good[:-32] + (s_value + ED25519_L).to_bytes(32, "little"),
        "bad-signature",
    )
    g_body, g_seal = decode_signed(good, TYPE_ENVELOPE, "envelope", 1 << 26)
    # SPEC §6.2's signature input for a batch of one: the root is the leaf.
    root = signed_leaf(TYPE_ENVELOPE, g_body)
    signed_input = b"exchnode/v1 batch root\x00" + bytes([1]) + (1).to_bytes(4, "big") + root
    identity_r = (1 + ED25519_P).to_bytes(32, "little")  # y = p + 1: the identity, not reduced
    case(
        "signature-r-not-canonical",
        "A signature with R the identity point written with y = p + 1 instead of 1; the same "
        "signature with R written canonically verifies (SPEC §6.3).",
        encode_signed(
            TYPE_ENVELOPE,
            g_body,
            g_seal._replace(signature=sign_with_identity_r(signer, signed_input, identity_r)),
        ),
        "bad-signature",
    )
    # --- two failures each: the first in the order of SPEC §8.1 wins ---------------------
    flipped = flip(good, len(good) - 1)
    expiry = SEALED_AT + 86400.0
    case(
        "too-large-and-unsupported-suite",
        "The suite-2 envelope against a max_envelope_bytes one byte short of its size.",
        resign([2, *fields[1:]], signer),
        "too-large",
        limits={"max_envelope_bytes": len(resign([2, *fields[1:]], signer)) - 1},
        second=("unsupported-suite", {"limits": {}}),
    )
    case(
        "unsupported-version-and-wrong-length",
        "Format 2 with five elements: the format is read first (SPEC §5.1, §13).",
        pack([2, 1, outer[2], outer[3], 0]),
        "unsupported-version",
        second=("malformed", {"envelope": pack([1, 1, outer[2], outer[3], 0]).hex()}),
    )
    case(
        "unsupported-suite-and-wrong-length",
        "Suite 2 with a thirteenth element, validly signed: the suite is read first (SPEC §5.2).",
        resign([2, *fields[1:], 0], signer),
        "unsupported-suite",
        second=("malformed", {"envelope": resign([*fields, 0], signer).hex()}),
    )
    three_fields = fields_of(three.data)
    case(
        "unsupported-suite-and-too-many-recipients",
        "Suite 2 with three recipients against a limit of two: the suite comes first.",
        resign([2, *three_fields[1:]], signer),
        "unsupported-suite",
        limits={"max_recipients": 2},
        second=("too-large", {"envelope": resign(three_fields, signer).hex()}),
    )
    wide_flipped = flip(wide, len(wide) - 1)
    case(
        "malformed-and-bad-signature",
        "Non-canonical framing and a flipped signature bit: the framing comes first.",
        wide_flipped,
        "malformed",
        second=("bad-signature", {"envelope": flipped.hex()}),
    )
    case(
        "lifetime-too-long-and-expired",
        "A 31-day lifetime, opened after its expiry: the lifetime comes first (SPEC §8.2).",
        resign(long_lived, signer),
        "lifetime-too-long",
        open_at=long_lived[6] / 1000,
        second=("expired", {"freshness": {"max_lifetime": 32 * 86400.0}}),
    )
    case(
        "expired-and-not-a-recipient",
        "Opened by the city hub after its expiry.",
        good,
        "expired",
        open_as=HUB,
        open_at=expiry,
        second=("not-a-recipient", {"open_at": OPEN_AT}),
    )
    case(
        "not-yet-valid-and-not-a-recipient",
        "Opened by the city hub more than the clock skew before its creation.",
        good,
        "not-yet-valid",
        open_as=HUB,
        open_at=SEALED_AT - 301.0,
        second=("not-a-recipient", {"open_at": OPEN_AT}),
    )
    case(
        "expired-and-bad-signature",
        "A flipped signature bit, opened after expiry: freshness comes before the signature.",
        flipped,
        "expired",
        open_at=expiry,
        second=("bad-signature", {"open_at": OPEN_AT}),
    )
    case(
        "not-a-recipient-and-unknown-signer",
        "Opened by the city hub, with the sender missing from its directory.",
        good,
        "not-a-recipient",
        open_as=HUB,
        directory_without=[SENDER],
        second=("unknown-signer", {"open_as": RECIPIENT}),
    )
    case(
        "not-a-recipient-and-decryption-failed",
        "The wrapped-to-another-key envelope, opened by the city hub.",
        resign(stale_key, signer),
        "not-a-recipient",
        open_as=HUB,
        second=("decryption-failed", {"open_as": RECIPIENT}),
    )
    case(
        "unknown-signer-and-bad-signature",
        "A flipped signature bit, the sender missing from the directory.",
        flipped,
        "unknown-signer",
        directory_without=[SENDER],
        second=("bad-signature", {"directory_without": []}),
    )
    case(
        "bad-signature-and-replayed",
        "After the genuine envelope, a copy with a flipped signature bit: the signature comes "
        "before the replay window.",
        flipped,
        "bad-signature",
        open_first=[good.hex()],
        second=("replayed", {"envelope": good.hex()}),
    )
    case(
        "replayed-and-decryption-failed",
        "After the genuine envelope, one validly signed under the same id whose ciphertext "
        "was corrupted before signing: the replay window comes before decryption.",
        resign(bad_ct, signer),
        "replayed",
        open_first=[good.hex()],
        second=("decryption-failed", {"open_first": []}),
    )

    vectors = []
    for name, description, data, code, extra in cases:
        vector = {
            "name": name,
            "description": description,
            "open_as": extra.get("open_as", RECIPIENT),
            "open_at": extra.get("open_at", OPEN_AT),
            "error": code,
            "envelope": data.hex(),
        }
        for key in ("directory_without", "open_times", "open_first", "limits"):
            if key in extra:
                vector[key] = extra[key]
        if "second" in extra:
            vector["second_error"], vector["second_error_when"] = extra["second"]
        vectors.append(vector)
    return vectors


# --- catalog format 2 (SPEC §18.10-§18.12) ------------------------------------------

CATALOG_FEED = bytes(range(16))


def catalog_vectors(identities: dict[str, LocalIdentity]) -> dict[str, Any]:
    """Feed pages and lookups of catalog format 2, with records signed by the vectors' nodes."""
    entry = CatalogEntry(
        provider=SENDER,
        code="101001/000001",
        classification="101001",
        name="人口基本信息",
        provider_code="11520102MB1234567X",
        summary="户籍人口的基本信息",
        format=ResourceFormat.DATABASE,
        data_items=(DataItem("身份证号", DataType.CHARACTER, "公民身份号码"),),
        share_type=ShareType.CONDITIONAL,
        share_conditions="仅限政务部门依法履职使用",
        share_methods=frozenset({ShareMethod.SUBSCRIPTION_PUSH}),
        update_cycle=UpdateCycle.DAILY,
        publish_date=date(2026, 1, 15),
    )
    published, withdrawn = sign_records(
        identities[SENDER],
        [Publication(entry, 1), Withdrawal("101001/000002", 3, "并入新资源")],
        SEALED_AT,
    )
    query = CatalogQuery(scope="52", classification="1", keyword="人口", limit=20)
    lookup = LookupRequest(
        (Wanted(SENDER, "101001/000001", 0), Wanted(SENDER, "101001/000002", 2)), query
    )
    messages = {
        "feed_request_first": FeedRequest(None, False, 100).encode(),
        "feed_request": FeedRequest(FeedPosition(CATALOG_FEED, 7), False, 100).encode(),
        "feed_page": RecordPage(
            False, FeedPosition(CATALOG_FEED, 9), False, (published.data, withdrawn.data)
        ).encode(),
        "lookup": lookup.encode(),
        "answer": LookupAnswer(True, False, (published.data, withdrawn.data)).encode(),
    }
    invalid = [
        ("lookup", "format 1", pack([1, [], None]), "unsupported-version"),
        ("lookup", "keys not sorted", pack([2, [[SENDER, "101001/000002", 0],
                                                [SENDER, "101001/000001", 0]], None]), "malformed"),
        ("lookup", "a hub as provider", pack([2, [[HUB, "101001/000001", 0]], None]), "malformed"),
        ("lookup", "4097 keys", pack([2, [[SENDER, f"101001/{i:06}", 0] for i in range(4097)],
                                      None]), "too-large"),
        ("lookup", "scope not digits", pack([2, [], ["5a", *[None] * 8, 10]]), "malformed"),
        ("lookup", "limit 0", pack([2, [], ["", *[None] * 8, 0]]), "malformed"),
        ("feed_request", "feed id of 5 bytes", pack([2, b"12345", 0, False, 10]), "malformed"),
        ("feed_request", "limit 1025", pack([2, b"", 0, False, 1025]), "malformed"),
        ("feed_page", "empty feed id", pack([2, False, b"", 0, False, []]), "malformed"),
        ("feed_page", "1025 records", pack([2, False, CATALOG_FEED, 1, False,
                                            [published.data] * 1025]), "too-large"),
        ("answer", "complete not a boolean", pack([2, 1, False, []]), "malformed"),
    ]  # fmt: skip
    return {
        "description": "Catalog format 2 (SPEC §18.10-§18.12): each message's bytes, and "
        "messages that must be refused with the code given. Records are signed by the "
        "vectors' node 520102.gongan (pki.json) at sealed_at.",
        "sealed_at": SEALED_AT,
        "records": {"published": published.data.hex(), "withdrawn": withdrawn.data.hex()},
        "messages": {name: data.hex() for name, data in messages.items()},
        "invalid": [
            {"message": kind, "name": name, "hex": data.hex(), "error": error}
            for kind, name, data, error in invalid
        ],
    }


DIRECTORY_LIFETIME = 86400.0
DIRECTORY_FEEDS = (bytes(range(16)), bytes(range(16, 32)))


def directory_vectors(nodes: dict[str, IssuedNode], crls: list[Any]) -> dict[str, Any]:
    """Pages and lookups of directory format 2 (SPEC §14.13-§14.17), valid and invalid."""
    now = SEALED_AT
    root = nodes[HUB].root
    trust = TrustStore([root], crls)

    def make(name: str, *neighbours: tuple[str, Any]) -> NodeDirectory:
        return NodeDirectory(
            nodes[name].identity,
            clock=lambda: now,
            address=f"https://{name}.example:8443",
            neighbours=[Neighbour(NodeName.parse(n), rel) for n, rel in neighbours],
            feed_ids=DIRECTORY_FEEDS,
        )

    hub = make(HUB, (OTHER, Relation.CHILD), (RECIPIENT, Relation.LINK))
    dept = make(OTHER, (HUB, Relation.PARENT))
    far = make(RECIPIENT, (HUB, Relation.LINK))
    cas = [cert for node in nodes.values() for cert in node.chain]
    dept.add_crls(crls, trust, now, cas=cas)
    up = dept.feed_page(Audience.UP, None, now, DIRECTORY_LIFETIME)
    hub.apply_page(OTHER, up, trust, now)
    hub.apply_page(RECIPIENT, far.feed_page(Audience.UP, None, now, DIRECTORY_LIFETIME), trust, now)
    down = hub.feed_page(Audience.DOWN, None, now, DIRECTORY_LIFETIME)
    empty = hub.feed_page(Audience.DOWN, decode_page(down).next, now + 60, DIRECTORY_LIFETIME)
    asked = [RECIPIENT, "522301.nosuch"]
    lookup = encode_lookup(asked)
    answer = hub.lookup_answer(asked, now, DIRECTORY_LIFETIME)

    def body_of(page: bytes) -> list[Any]:
        return list(msgpack.unpackb(decode_page(page).body))

    def resign(fields: list[Any], signer: str = OTHER) -> bytes:
        body = pack(fields)
        key = nodes[signer].identity.signing_private_key
        return pack([2, body, key.sign(PAGE_LABEL + body)])

    first = {"feed": "", "seq": 0}
    fields = body_of(up)
    entry = fields[10][0]
    unsorted = [*fields[:10], [entry, entry], *fields[11:]]
    with_unknown = [*fields[:13], [RECIPIENT]]
    other_key = [fields[0], bytes(16), *fields[2:]]
    # The count is refused at the array's header, before any element is read (SPEC §14.14).
    huge = pack([2, b"\x9e" + b"".join(pack(f) for f in fields[:10]) + b"\xdc\x04\x01", bytes(64)])
    forged = bytearray(up)
    spot = forged.index(b"https://520100.fagai")
    forged[spot + 8] ^= 0x01
    invalid = [
        ("a flipped byte in an address", bytes(forged), OTHER, "up", first, now, "bad-signature"),
        ("format 1", pack([1, decode_page(up).body, b"\0" * 64]), OTHER, "up", first, now,
         "unsupported-version"),
        ("fetched from another node", up, HUB, "up", first, now, "wrong-issuer"),
        ("a page for the children taken as one for the parent", down, HUB, "up", first, now,
         "malformed"),
        ("answering another position", up, OTHER, "up",
         {"feed": DIRECTORY_FEEDS[0].hex(), "seq": 1}, now, "replayed"),
        ("past its expires", up, OTHER, "up", first, now + DIRECTORY_LIFETIME, "directory-expired"),
        ("issued beyond the clock skew", up, OTHER, "up", first, now - 301, "not-yet-valid"),
        ("entries not sorted and unique", resign(unsorted), OTHER, "up", first, now, "malformed"),
        ("a feed page listing unknown names", resign(with_unknown), OTHER, "up", first, now,
         "malformed"),
        ("a key id its chain does not certify", resign(other_key), OTHER, "up", first, now,
         "unknown-signer"),
        ("1025 entries", huge, OTHER, "up", first, now, "too-large"),
        ("signed by another key than the chain's", resign(fields, HUB), OTHER, "up", first, now,
         "bad-signature"),
    ]  # fmt: skip
    return {
        "description": "Directory format 2 (SPEC §14.13-§14.17), nodes and CRLs of pki.json. "
        "Each page is verified by 'asker' (SPEC §14.15) at 'check_at', fetched from 'issuer', "
        "expecting 'audience', asked from position 'since' (feed id hex, '' for a first pull); "
        "a valid page verifies, an invalid one fails with 'error'.",
        "lifetime_s": DIRECTORY_LIFETIME,
        "valid": [
            {
                "name": "a department's first page to its parent, with the CRLs it was given",
                "hex": up.hex(),
                "issuer": OTHER,
                "asker": HUB,
                "audience": "up",
                "since": first,
                "check_at": now,
                "entries": [OTHER],
            },
            {
                "name": "a hub's first page to its child: its path",
                "hex": down.hex(),
                "issuer": HUB,
                "asker": OTHER,
                "audience": "down",
                "since": first,
                "check_at": now,
                "entries": [HUB],
            },
            {
                "name": "the next page when nothing changed",
                "hex": empty.hex(),
                "issuer": HUB,
                "asker": OTHER,
                "audience": "down",
                "since": {
                    "feed": decode_page(down).next.feed.hex(),
                    "seq": decode_page(down).next.seq,
                },
                "check_at": now + 60,
                "entries": [],
            },
            {
                "name": "a lookup answer: one found, one unknown",
                "hex": answer.hex(),
                "issuer": HUB,
                "asker": OTHER,
                "audience": "lookup",
                "since": first,
                "check_at": now,
                "entries": [RECIPIENT],
                "unknown": ["522301.nosuch"],
            },
        ],
        "lookup_request": {"names": sorted(asked), "hex": lookup.hex()},
        "invalid": [
            {
                "name": name,
                "hex": data.hex(),
                "issuer": issuer,
                "audience": audience,
                "since": since,
                "check_at": at,
                "error": error,
            }
            for name, data, issuer, audience, since, at, error in invalid
        ],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    generated = generate()
    if args.check:
        stale = [n for n, text in generated.items() if (HERE / n).read_text("utf-8") != text]
        for name in stale:
            print(f"{name} differs from its regeneration", file=sys.stderr)
        return 1 if stale else 0
    for name, text in generated.items():
        (HERE / name).write_text(text, "utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
