"""``exchnode envelope``: seal, open and inspect envelopes from the shell.

For reviewers and operators: every check the library makes is reachable from
here, against real certificates.  A node is given as the directory that
``exchnode pki issue-node`` writes (``chain.pem``, ``signing.key``,
``encryption.key``, ``root.crt``, ``crls/``); peers as their ``chain.pem``
(or their bundle directory).  Peer chains are verified to the root and the
CRLs of the identity's bundle before any key of theirs is used.

``inspect`` shows the routing header and the structure -- what a hub sees --
and never the plaintext; with ``--verify`` it also checks the sender's
signature the way a hub does, without any content key.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from exchnode.cli import Subparsers
from exchnode.cli._times import iso_ms
from exchnode.core import (
    TYPE_ENVELOPE,
    TYPE_RECEIPT,
    EnvelopeVerifier,
    LocalIdentity,
    Opener,
    Outgoing,
    ReceiptVerifier,
    Sealer,
    StaticDirectory,
    decode_envelope,
    decode_receipt,
    issue_receipts,
)
from exchnode.errors import UsageError
from exchnode.pki import (
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    load_local_identity,
    read_passphrase_file,
    verify_node_certificate,
)

__all__ = ["register"]

SUITE_NAMES = {1: "EXN1-X25519-AES256GCM-ED25519-SHA256"}
_FORMATTER = argparse.RawDescriptionHelpFormatter


def register(groups: Subparsers) -> None:
    group = groups.add_parser(
        "envelope",
        help="seal, open and inspect envelopes",
        description=__doc__,
        formatter_class=_FORMATTER,
    )
    verbs = group.add_subparsers(title="verbs", metavar="VERB")
    verbs.required = True

    seal = verbs.add_parser(
        "seal",
        help="encrypt and sign a payload for one or more recipients",
        formatter_class=_FORMATTER,
        description="Seal a payload (a file or stdin) into an envelope that only the named "
        "recipients can open, signed by this node.",
        epilog="Example:\n  exchnode envelope seal --identity nodes/520102.gongan \\\n"
        "      --to 522301.minzheng --peer nodes/522301.minzheng \\\n"
        "      --in record.json --content-type application/json --out record.env",
    )
    _identity_arguments(seal)
    seal.add_argument("--to", action="append", required=True, metavar="NAME", help="recipient")
    seal.add_argument("--in", dest="input", default="-", help="payload file (default: stdin)")
    seal.add_argument("--out", default="-", help="envelope file (default: stdout)")
    seal.add_argument("--kind", default="data", help="message kind (default: data)")
    seal.add_argument("--content-type", default="application/octet-stream")
    seal.add_argument("--ttl", type=float, default=None, help="lifetime in seconds")
    seal.set_defaults(handler=_seal)

    open_ = verbs.add_parser(
        "open",
        help="verify and decrypt an envelope addressed to this node",
        formatter_class=_FORMATTER,
        description="Verify an envelope's sender and signature, decrypt it, and write the "
        "plaintext.  The header goes to stderr.  Fails with the name of the check that failed.",
        epilog="Example:\n  exchnode envelope open --identity nodes/522301.minzheng \\\n"
        "      --peer nodes/520102.gongan --in record.env --out record.json \\\n"
        "      --receipt record.receipt",
    )
    _identity_arguments(open_)
    open_.add_argument("--in", dest="input", default="-", help="envelope file (default: stdin)")
    open_.add_argument("--out", default="-", help="plaintext file (default: stdout)")
    open_.add_argument("--receipt", help="also write a signed delivery receipt to this file")
    open_.add_argument("--at", help="verify as of this ISO 8601 time instead of now")
    open_.set_defaults(handler=_open)

    inspect = verbs.add_parser(
        "inspect",
        help="show an envelope's or receipt's header and structure, never its plaintext",
        formatter_class=_FORMATTER,
        description="Decode an envelope or receipt and show what a hub sees: the routing "
        "header, recipients, sizes and the batch seal.  With --verify, also check the "
        "signature against the given peer chains, as a hub does (no content key needed).",
        epilog="Example:\n  exchnode envelope inspect record.env\n"
        "  exchnode envelope inspect record.env --json\n"
        "  exchnode envelope inspect record.env --verify --root pki/520000/ca.crt \\\n"
        "      --crl pki/520000/crl.pem --peer nodes/520102.gongan/chain.pem",
    )
    inspect.add_argument("input", nargs="?", default="-", help="file (default: stdin)")
    inspect.add_argument("--json", action="store_true", help="one JSON object")
    inspect.add_argument("--verify", action="store_true", help="check the signature too")
    inspect.add_argument("--root", help="trusted root certificate for --verify")
    inspect.add_argument("--crl", action="append", default=[], help="CRL file(s) for --verify")
    inspect.add_argument("--peer", action="append", default=[], help="signer chain(s)")
    inspect.add_argument("--at", help="verify as of this ISO 8601 time instead of now")
    inspect.set_defaults(handler=_inspect)


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identity", required=True, metavar="DIR", help="this node's bundle (pki issue-node)"
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="CHAIN",
        help="a peer's chain.pem or bundle directory (repeatable)",
    )
    parser.add_argument(
        "--crl",
        action="append",
        default=[],
        help="extra CRL file(s); a peer given as a bundle directory adds its crls/ itself",
    )
    parser.add_argument("--passphrase-file", help="file holding the private keys' passphrase")


# --- loading identities and peers ------------------------------------------------


def _now(at: str | None) -> float:
    if at is None:
        return time.time()
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise UsageError(f"--at {at!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _crl_files(args: argparse.Namespace) -> list[Path]:
    """CRLs from the identity's bundle, from peers' bundles and from --crl.

    Taking CRLs from anywhere is safe: each is checked against its issuing
    CA's signature before it counts (SPEC §3.7 step 6).
    """
    files = [Path(path) for path in args.crl]
    for directory in [args.identity, *args.peer]:
        path = Path(directory)
        if path.is_dir():
            files.extend(sorted((path / "crls").glob("*.pem")))
    return files


def _load_identity(args: argparse.Namespace, now: float) -> tuple[LocalIdentity, TrustStore]:
    bundle = Path(args.identity)
    root_file = bundle / "root.crt"
    if not root_file.is_file():
        raise UsageError(f"{bundle} has no root.crt: is it a node bundle from 'pki issue-node'?")
    crls = [crl for path in _crl_files(args) for crl in load_crls_pem(path.read_bytes())]
    trust = TrustStore(load_certificates_pem(root_file.read_bytes()), crls)
    passphrase = read_passphrase_file(args.passphrase_file) if args.passphrase_file else None
    identity = load_local_identity(
        bundle / "chain.pem",
        bundle / "signing.key",
        bundle / "encryption.key",
        passphrase,
        trust=trust,
        now=datetime.fromtimestamp(now, UTC),
    )
    return identity, trust


def _peer_directory(
    paths: Iterable[str], trust: TrustStore, now: float, *also: LocalIdentity
) -> StaticDirectory:
    directory = StaticDirectory(identity.peer for identity in also)
    moment = datetime.fromtimestamp(now, UTC)
    for given in paths:
        path = Path(given)
        chain_file = path / "chain.pem" if path.is_dir() else path
        certificates = load_certificates_pem(chain_file.read_bytes())
        directory.add(verify_node_certificate(certificates[0], certificates[1:], trust, moment))
    return directory


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def _write(name: str, data: bytes) -> None:
    if name == "-":
        out: BinaryIO = sys.stdout.buffer
        out.write(data)
        out.flush()
    else:
        Path(name).write_bytes(data)


# --- the verbs ----------------------------------------------------------------------


def _seal(args: argparse.Namespace) -> int:
    now = time.time()
    identity, trust = _load_identity(args, now)
    directory = _peer_directory(args.peer, trust, now, identity)
    item = Outgoing(args.to, _read(args.input), args.kind, args.content_type, args.ttl)
    sealed = Sealer(identity, directory).seal(item, now)
    _write(args.out, sealed.data)
    print(
        f"sealed message {sealed.message_id.hex()} ({len(sealed.data)} bytes) "
        f"for {', '.join(sorted(args.to))}; digest {sealed.digest.hex()}",
        file=sys.stderr,
    )
    return 0


def _open(args: argparse.Namespace) -> int:
    now = _now(args.at)
    identity, trust = _load_identity(args, now)
    directory = _peer_directory(args.peer, trust, now, identity)
    opened = Opener(identity, directory).open(_read(args.input), now)
    _write(args.out, opened.plaintext)
    header = opened.header
    print(
        f"opened message {header.message_id.hex()} from {header.sender} "
        f"({header.kind}, {header.content_type}, {header.plaintext_size} bytes)",
        file=sys.stderr,
    )
    if args.receipt:
        (receipt,) = issue_receipts(identity, [opened], now)
        Path(args.receipt).write_bytes(receipt)
        print(f"receipt written to {args.receipt}", file=sys.stderr)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    data = _read(args.input)
    kind = data[2] if len(data) > 2 and data[:2] == b"\x94\x01" else TYPE_ENVELOPE
    report = _describe_receipt(data) if kind == TYPE_RECEIPT else _describe_envelope(data)
    if args.verify:
        if not args.root:
            raise UsageError("--verify needs --root (and the signer's --peer chain)")
        now = _now(args.at)
        crls = [crl for path in args.crl for crl in load_crls_pem(Path(path).read_bytes())]
        trust = TrustStore(load_certificates_pem(Path(args.root).read_bytes()), crls)
        directory = _peer_directory(args.peer, trust, now)
        if kind == TYPE_RECEIPT:
            ReceiptVerifier(directory).verify(data)
        else:
            EnvelopeVerifier(directory).verify(data, now)
        report["verified"] = "signature valid; signer's chain verified to the root"
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=False))
    else:
        _print_table(report)
    return 0


def _time_ms(value: int) -> str:
    return iso_ms(value)


def _describe_envelope(data: bytes) -> dict[str, Any]:
    envelope = decode_envelope(data)
    header, seal = envelope.header, envelope.seal
    return {
        "type": "envelope",
        "size": len(data),
        "suite": f"{header.suite} ({SUITE_NAMES.get(header.suite, 'unknown')})",
        "message_id": header.message_id.hex(),
        "digest": envelope.digest.hex(),
        "sender": header.sender,
        "sender_key_id": header.sender_key_id.hex(),
        "recipients": [
            {"name": r.name, "key_id": r.key_id.hex(), "wrapped_key_bytes": len(r.wrapped_key)}
            for r in header.recipients
        ],
        "created": _time_ms(header.created_ms),
        "expires": _time_ms(header.expires_ms),
        "kind": header.kind,
        "content_type": header.content_type,
        "plaintext_size": header.plaintext_size,
        "ciphertext_size": len(envelope.ciphertext),
        "nonce": header.nonce.hex(),
        "seal": _describe_seal(seal.leaf_index, seal.leaf_count, seal.path, seal.signature),
    }


def _describe_receipt(data: bytes) -> dict[str, Any]:
    receipt, seal = decode_receipt(data)
    return {
        "type": "receipt",
        "size": len(data),
        "suite": f"{receipt.suite} ({SUITE_NAMES.get(receipt.suite, 'unknown')})",
        "message_id": receipt.message_id.hex(),
        "envelope_digest": receipt.envelope_digest.hex(),
        "digest": receipt.digest.hex(),
        "sender": receipt.sender,
        "recipient": receipt.recipient,
        "recipient_key_id": receipt.recipient_key_id.hex(),
        "opened": _time_ms(receipt.opened_ms),
        "plaintext_digest": receipt.plaintext_digest.hex(),
        "seal": _describe_seal(seal.leaf_index, seal.leaf_count, seal.path, seal.signature),
    }


def _describe_seal(index: int, count: int, path: bytes, signature: bytes) -> dict[str, Any]:
    return {
        "leaf_index": index,
        "leaf_count": count,
        "path_hashes": len(path) // 32,
        "signature": signature.hex(),
    }


def _print_table(report: dict[str, Any]) -> None:
    width = max(len(key) for key in report)
    for key, value in report.items():
        if key == "recipients":
            print(f"{key:<{width}}  {len(value)}")
            for entry in value:
                print(f"{'':<{width}}    {entry['name']}  key {entry['key_id']}")
        elif isinstance(value, dict):
            print(f"{key:<{width}}  " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            print(f"{key:<{width}}  {value}")
