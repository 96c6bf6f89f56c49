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
* ``receipts.json``  valid receipts for some of them
* ``invalid.json``   envelopes that must be refused, each with the error code it must produce
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from exchnode.core import (
    TYPE_ENVELOPE,
    LocalIdentity,
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
from exchnode.pki import verify_node_certificate
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
    files["receipts.json"] = {
        "description": "Receipts by 522301.minzheng for the batch-of-5 envelopes, signed "
        "as one batch. Each must verify against the recipient's signing key and name "
        "the envelope's digest and the plaintext's SHA-256.",
        "vectors": [
            {
                "name": f"receipt[{i}]",
                "envelope": valid[-5 + i]["name"],
                "envelope_digest": valid[-5 + i]["digest"],
                "plaintext_sha256": hashlib.sha256(opened[i].plaintext).hexdigest(),
                "receipt": receipt.hex(),
            }
            for i, receipt in enumerate(receipts)
        ],
    }
    files["invalid.json"] = {
        "description": "Envelopes that must be refused. Open each as open_as at open_at, "
        "with the vectors' directory (minus any node in 'directory_without'), through the "
        "verification order of SPEC §8.1; the first failing check must raise the error "
        "whose code is given (SPEC §12). 'open_times' > 1 means the same bytes are "
        "opened repeatedly by one node; only the last open fails.",
        "vectors": invalid_vectors(identities, sealer, single),
    }
    return {
        name: json.dumps(value, indent=1, ensure_ascii=False) + "\n"
        for name, value in files.items()
    }


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
        for key in ("directory_without", "open_times"):
            if key in extra:
                vector[key] = extra[key]
        vectors.append(vector)
    return vectors


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
