"""``exchnode envelope``: seal, open and inspect against a PKI built by the CLI itself.

The PKI (root 520000, city CAs 520100 and 522300, the departments 520102.gongan
and 522301.minzheng and the hub 520100) is built once per module; a test that
changes it (revocation) works on a copy.  Every failure goes through
:func:`fails`, which also holds the error policy: exit 1, nothing on stdout,
exactly one line ``exchnode: error: ... [code]`` on stderr, no traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from exchnode.cli import main
from exchnode.core import decode_envelope
from exchnode.pki import load_certificates_pem, load_crls_pem

GONGAN = "520102.gongan"
MINZHENG = "522301.minzheng"
HUB = "520100"

# Distinctive, so that its appearance anywhere in inspect's output is unmistakable.
SECRET_MARKER = "citizen-record-7f3a9c-CONFIDENTIAL"
PLAINTEXT = json.dumps({"id": 4471, "note": SECRET_MARKER}).encode()

SEALED_LINE = re.compile(
    r"^sealed message (?P<id>[0-9a-f]{32}) \((?P<size>\d+) bytes\) "
    r"for (?P<to>.+); digest (?P<digest>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class World:
    """The directory holding ``pki/`` (the CAs) and ``nodes/`` (the node bundles)."""

    base: Path

    @property
    def pki(self) -> Path:
        return self.base / "pki"

    def node(self, name: str) -> Path:
        return self.base / "nodes" / name


class Sealed(NamedTuple):
    path: Path
    message_id: str
    size: int
    digest: str


# --- running the CLI ------------------------------------------------------------------


def _quiet(*argv: str) -> None:
    """Run a command outside any test's capture (module fixtures); it must succeed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    assert status == 0, f"{argv}: {err.getvalue()}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert "error" not in err
    return out, err


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail under the one-line error policy; return that line."""
    status, out, err = run(capsys, *argv)
    assert status == 1, (out, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("exchnode: error: "), err
    return err.rstrip("\n")


def inspect_json(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict[str, Any]:
    out, err = ok(capsys, "envelope", "inspect", str(path), "--json", *extra)
    assert err == ""
    assert out.count("\n") == 1  # one JSON object on one line
    report: dict[str, Any] = json.loads(out)
    return report


def peer_args(*peers: Path | str) -> list[str]:
    return [arg for peer in peers for arg in ("--peer", str(peer))]


def seal(
    capsys: pytest.CaptureFixture[str],
    world: World,
    out: Path,
    *extra: str,
    to: tuple[str, ...] = (MINZHENG,),
    payload: bytes = PLAINTEXT,
) -> Sealed:
    """520102.gongan seals ``payload`` to ``to``; peers given as bundle directories."""
    source = out.with_suffix(".payload")
    source.write_bytes(payload)
    argv = ["envelope", "seal", "--identity", str(world.node(GONGAN))]
    for name in to:
        argv += ["--to", name, "--peer", str(world.node(name))]
    argv += ["--in", str(source), "--out", str(out), *extra]
    stdout, err = ok(capsys, *argv)
    assert stdout == ""
    match = SEALED_LINE.match(err.rstrip("\n"))
    assert match is not None, err
    assert match["to"] == ", ".join(sorted(to))
    return Sealed(out, match["id"], int(match["size"]), match["digest"])


def open_args(world: World, me: str, sealed: Path, out: Path, *extra: str) -> list[str]:
    return [
        "envelope",
        "open",
        "--identity",
        str(world.node(me)),
        *peer_args(world.node(GONGAN)),
        "--in",
        str(sealed),
        "--out",
        str(out),
        *extra,
    ]


def verify_args(world: World, *extra: str) -> list[str]:
    """``inspect --verify`` as a hub would run it for gongan's envelopes."""
    gongan = world.node(GONGAN)
    crls = [arg for crl in sorted((gongan / "crls").iterdir()) for arg in ("--crl", str(crl))]
    return [
        "--verify",
        "--root",
        str(gongan / "root.crt"),
        *crls,
        *peer_args(gongan / "chain.pem"),
        *extra,
    ]


def ciphertext_offset(data: bytes) -> tuple[int, int]:
    """Where the ciphertext lies in an envelope's bytes: (offset, length)."""
    ciphertext = decode_envelope(data).ciphertext
    offset = data.find(ciphertext)
    assert offset > 0
    assert data.find(ciphertext, offset + 1) == -1
    return offset, len(ciphertext)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# --- the PKI -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    world = World(tmp_path_factory.mktemp("envelope-cli"))
    pki = str(world.pki)
    _quiet("pki", "init-root", "520000", "--dir", pki)
    _quiet("pki", "issue-ca", "520100", "--issuer", "520000", "--dir", pki)
    _quiet("pki", "issue-ca", "522300", "--issuer", "520000", "--dir", pki)
    for name, issuer in ((GONGAN, "520100"), (MINZHENG, "522300"), (HUB, "520100")):
        out = str(world.node(name))
        _quiet("pki", "issue-node", name, "--issuer", issuer, "--dir", pki, "--out", out)
    return world


@pytest.fixture
def own_world(world: World, tmp_path: Path) -> World:
    """A private copy of the PKI, for tests that change it."""
    copy = World(tmp_path / "world")
    shutil.copytree(world.base, copy.base)
    return copy


def key_ids(capsys: pytest.CaptureFixture[str], bundle: Path) -> tuple[str, str]:
    """(signing key id, encryption key id) of a node, as ``pki verify`` reports them."""
    crls = [arg for crl in sorted((bundle / "crls").iterdir()) for arg in ("--crl", str(crl))]
    out, _ = ok(
        capsys,
        "pki",
        "verify",
        str(bundle / "chain.pem"),
        "--root",
        str(bundle / "root.crt"),
        *crls,
    )
    rows = dict(line.strip().split("  ", 1) for line in out.splitlines()[1:])
    return rows["signing key id"].strip(), rows["encryption key id"].strip()


# --- seal and open --------------------------------------------------------------------


def test_seal_then_open_round_trip(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env", "--content-type", "application/json")
    data = sealed.path.read_bytes()
    assert len(data) == sealed.size
    assert PLAINTEXT not in data
    assert SECRET_MARKER.encode() not in data

    plain = tmp_path / "record.json"
    out, err = ok(capsys, *open_args(world, MINZHENG, sealed.path, plain))
    assert out == ""
    assert plain.read_bytes() == PLAINTEXT
    (header,) = err.splitlines()
    assert header == (
        f"opened message {sealed.message_id} from {GONGAN} "
        f"(data, application/json, {len(PLAINTEXT)} bytes)"
    )


def test_binary_payload_through_stdin_and_stdout(
    world: World,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = bytes(range(256)) + b"\xff\xfe\x00 not utf-8 \x80"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    argv = ["envelope", "seal", "--identity", str(world.node(GONGAN)), "--to", MINZHENG]
    assert main([*argv, *peer_args(world.node(MINZHENG))]) == 0
    captured = capsysbinary.readouterr()
    envelope = captured.out
    assert captured.err.startswith(b"sealed message ")
    assert decode_envelope(envelope).header.plaintext_size == len(payload)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(envelope)))
    argv = ["envelope", "open", "--identity", str(world.node(MINZHENG))]
    assert main([*argv, *peer_args(world.node(GONGAN))]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out == payload
    assert captured.err.startswith(b"opened message ")
    assert f"from {GONGAN}".encode() in captured.err


def test_open_writes_a_receipt_naming_the_envelope(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env")
    receipt_file = tmp_path / "record.receipt"
    _, err = ok(
        capsys,
        *open_args(world, MINZHENG, sealed.path, tmp_path / "out", "--receipt", str(receipt_file)),
    )
    assert f"receipt written to {receipt_file}" in err

    envelope = inspect_json(capsys, sealed.path)
    receipt = inspect_json(capsys, receipt_file)
    assert receipt["type"] == "receipt"
    assert receipt["envelope_digest"] == sealed.digest == envelope["digest"]
    assert receipt["message_id"] == sealed.message_id == envelope["message_id"]
    assert receipt["sender"] == GONGAN
    assert receipt["recipient"] == MINZHENG
    assert receipt["plaintext_digest"] == hashlib.sha256(PLAINTEXT).hexdigest()
    assert receipt["size"] == receipt_file.stat().st_size
    assert receipt["digest"] != sealed.digest

    # The sender checks the receipt against the recipient's chain, as it would a signature.
    minzheng = world.node(MINZHENG)
    crls = [arg for crl in sorted((minzheng / "crls").iterdir()) for arg in ("--crl", str(crl))]
    verified = inspect_json(
        capsys,
        receipt_file,
        "--verify",
        "--root",
        str(minzheng / "root.crt"),
        *crls,
        *peer_args(minzheng / "chain.pem"),
    )
    assert verified["verified"].startswith("signature valid")


# --- inspect ---------------------------------------------------------------------------


def _assert_no_plaintext(text: str) -> None:
    assert SECRET_MARKER not in text
    assert PLAINTEXT.decode() not in text
    assert PLAINTEXT.hex() not in text
    assert SECRET_MARKER.encode().hex() not in text


def test_inspect_table_shows_the_header_and_never_the_plaintext(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env", "--kind", "catalog.update")
    out, err = ok(capsys, "envelope", "inspect", str(sealed.path))
    assert err == ""
    _assert_no_plaintext(out)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:1] != " "}
    assert rows["type"] == ["envelope"]
    assert rows["sender"] == [GONGAN]
    assert rows["message_id"] == [sealed.message_id]
    assert rows["digest"] == [sealed.digest]
    assert rows["kind"] == ["catalog.update"]
    assert rows["size"] == [str(sealed.size)]
    assert rows["plaintext_size"] == [str(len(PLAINTEXT))]
    assert rows["ciphertext_size"] == [str(len(PLAINTEXT) + 16)]
    assert rows["recipients"] == ["1"]
    (recipient_line,) = [line for line in out.splitlines() if line.startswith(" ")]
    assert recipient_line.split()[0] == MINZHENG
    assert "verified" not in rows  # only with --verify


def test_inspect_json_shows_sender_recipients_and_sizes(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env", "--ttl", "3600", to=(MINZHENG, HUB))
    out, _ = ok(capsys, "envelope", "inspect", str(sealed.path), "--json")
    _assert_no_plaintext(out)
    report = json.loads(out)
    assert report["type"] == "envelope"
    assert report["sender"] == GONGAN
    assert report["message_id"] == sealed.message_id
    assert report["digest"] == sealed.digest
    assert report["size"] == sealed.size == sealed.path.stat().st_size
    assert report["plaintext_size"] == len(PLAINTEXT)
    assert report["ciphertext_size"] == len(PLAINTEXT) + 16
    assert report["kind"] == "data"
    assert report["content_type"] == "application/octet-stream"
    created = datetime.fromisoformat(report["created"])
    assert datetime.fromisoformat(report["expires"]) - created == timedelta(hours=1)
    assert report["seal"]["leaf_count"] == 1

    # The key ids are the ones the certificates carry.
    signing, _ = key_ids(capsys, world.node(GONGAN))
    assert report["sender_key_id"] == signing
    recipients = {entry["name"]: entry for entry in report["recipients"]}
    assert set(recipients) == {MINZHENG, HUB}
    for name, entry in recipients.items():
        assert entry["key_id"] == key_ids(capsys, world.node(name))[1]
        assert entry["wrapped_key_bytes"] > 32  # an encapsulated key and a sealed content key


def test_inspect_verify_reports_a_valid_signature(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env")
    out, err = ok(capsys, "envelope", "inspect", str(sealed.path), *verify_args(world))
    assert err == ""
    _assert_no_plaintext(out)
    (line,) = [line for line in out.splitlines() if line.startswith("verified")]
    assert "signature valid; signer's chain verified to the root" in line
    report = inspect_json(capsys, sealed.path, *verify_args(world))
    assert report["verified"] == "signature valid; signer's chain verified to the root"


def test_inspect_verify_refuses_a_flipped_ciphertext_byte(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env")
    data = bytearray(sealed.path.read_bytes())
    offset, length = ciphertext_offset(bytes(data))
    data[offset + length // 2] ^= 0x01
    tampered = tmp_path / "tampered.env"
    tampered.write_bytes(bytes(data))

    # The structure still decodes (a hub sees the same header) ...
    assert inspect_json(capsys, tampered)["digest"] != sealed.digest
    # ... but the signature no longer covers it, for a hub and for the recipient.
    line = fails(capsys, "envelope", "inspect", str(tampered), *verify_args(world))
    assert line.endswith("[bad-signature]")
    plain = tmp_path / "out"
    line = fails(capsys, *open_args(world, MINZHENG, tampered, plain))
    assert line.endswith("[bad-signature]")
    assert not plain.exists()


# --- refusals -----------------------------------------------------------------------------


def test_the_hub_cannot_open_an_envelope_it_relays(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env")
    plain = tmp_path / "out"
    line = fails(capsys, *open_args(world, HUB, sealed.path, plain))
    assert line.endswith("[not-a-recipient]")
    assert HUB in line
    assert not plain.exists()


def test_open_after_the_sender_is_revoked(
    own_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = own_world
    sealed = seal(capsys, world, tmp_path / "record.env")
    ok(capsys, "pki", "revoke", GONGAN, "--issuer", "520100", "--dir", str(world.pki))
    fresh_crl = str(world.pki / "520100" / "crl.pem")

    # With only the CRLs the bundles were issued with, the recipient does not know yet ...
    ok(capsys, *open_args(world, MINZHENG, sealed.path, tmp_path / "before"))
    # ... the fresh CRL is what refuses the sender.
    plain = tmp_path / "after"
    line = fails(capsys, *open_args(world, MINZHENG, sealed.path, plain, "--crl", fresh_crl))
    assert line.endswith("[revoked]")
    assert GONGAN in line
    assert not plain.exists()


def test_seal_to_a_peer_whose_crl_is_unavailable(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(PLAINTEXT)
    out = tmp_path / "record.env"
    argv = [
        "envelope",
        "seal",
        "--identity",
        str(world.node(GONGAN)),
        "--to",
        MINZHENG,
        # The chain file alone: gongan's bundle has no CRL of CA 522300, and none is given.
        *peer_args(world.node(MINZHENG) / "chain.pem"),
        "--in",
        str(payload),
        "--out",
        str(out),
    ]
    line = fails(capsys, *argv)
    assert line.endswith("[revocation-unavailable]")
    assert "522300" in line
    assert not out.exists()
    # Given that CRL, the same chain file is accepted.
    ok(capsys, *argv, "--crl", str(world.pki / "522300" / "crl.pem"))
    assert decode_envelope(out.read_bytes()).header.sender == GONGAN


@pytest.mark.parametrize("keep", [0, 1, 2, 3, 40, -1], ids=lambda keep: f"keep{keep}")
def test_truncated_envelope_is_malformed(
    keep: int, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env")
    data = sealed.path.read_bytes()
    truncated = tmp_path / "truncated.env"
    truncated.write_bytes(data[:keep])
    assert len(truncated.read_bytes()) < len(data)
    line = fails(capsys, "envelope", "inspect", str(truncated))
    assert line.endswith("[malformed]")
    line = fails(capsys, *open_args(world, MINZHENG, truncated, tmp_path / "out"))
    assert line.endswith("[malformed]")


def _validity_start(world: World) -> datetime:
    """The earliest moment at which every certificate and CRL of both bundles is valid."""
    moments = []
    for name in (GONGAN, MINZHENG):
        bundle = world.node(name)
        for file in ("chain.pem", "root.crt"):
            certificates = load_certificates_pem((bundle / file).read_bytes())
            moments += [certificate.not_valid_before_utc for certificate in certificates]
        for crl_file in (bundle / "crls").iterdir():
            moments += [crl.last_update_utc for crl in load_crls_pem(crl_file.read_bytes())]
    return max(moments)


def test_open_at_a_time_before_creation_is_not_yet_valid(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env")
    created = datetime.fromisoformat(inspect_json(capsys, sealed.path)["created"])
    # Certificates and CRLs are backdated by the 5 minutes of clock skew a receiver also
    # allows an envelope, so their common start lies just over 5 minutes before creation.
    at = _validity_start(world)
    assert created - at > timedelta(minutes=5)
    line = fails(
        capsys, *open_args(world, MINZHENG, sealed.path, tmp_path / "out", "--at", iso(at))
    )
    assert line.endswith("[not-yet-valid]")
    line = fails(
        capsys, "envelope", "inspect", str(sealed.path), *verify_args(world, "--at", iso(at))
    )
    assert line.endswith("[not-yet-valid]")
    # Within the allowed skew of its creation the same envelope opens.
    within = iso(created - timedelta(minutes=4))
    plain = tmp_path / "within"
    ok(capsys, *open_args(world, MINZHENG, sealed.path, plain, "--at", within))
    assert plain.read_bytes() == PLAINTEXT


def test_open_at_a_time_after_expiry_is_expired(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal(capsys, world, tmp_path / "record.env", "--ttl", "60")
    report = inspect_json(capsys, sealed.path)
    created = datetime.fromisoformat(report["created"])
    expires = datetime.fromisoformat(report["expires"])
    assert expires - created == timedelta(seconds=60)

    before = tmp_path / "before"
    ok(
        capsys,
        *open_args(
            world, MINZHENG, sealed.path, before, "--at", iso(expires - timedelta(seconds=1))
        ),
    )
    assert before.read_bytes() == PLAINTEXT
    after = iso(expires + timedelta(seconds=1))
    line = fails(
        capsys, *open_args(world, MINZHENG, sealed.path, tmp_path / "after", "--at", after)
    )
    assert line.endswith("[expired]")
    line = fails(
        capsys, "envelope", "inspect", str(sealed.path), *verify_args(world, "--at", after)
    )
    assert line.endswith("[expired]")


# --- help and the error policy ----------------------------------------------------------


@pytest.mark.parametrize("verb", ["seal", "open", "inspect"])
def test_every_verb_has_help_with_an_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["envelope", verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out
    assert f"exchnode envelope {verb}" in out


def _bad_invocations(world: World, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Failing command lines and a fragment each error line must contain."""
    garbage = tmp / "garbage.env"
    garbage.write_bytes(b"\x00\x01 definitely not an envelope")
    gongan, minzheng = str(world.node(GONGAN)), str(world.node(MINZHENG))
    payload = tmp / "payload"
    payload.write_bytes(PLAINTEXT)
    seal_ = [
        "envelope",
        "seal",
        "--identity",
        gongan,
        "--in",
        str(payload),
        "--out",
        str(tmp / "x"),
    ]
    envelope = tmp / "record.env"  # a good envelope, for the checks made after decoding
    _quiet(*seal_[:-1], str(envelope), "--to", MINZHENG, "--peer", minzheng)
    return {
        "missing-input": (
            ["envelope", "inspect", str(tmp / "absent.env")],
            "No such file or directory",
        ),
        "garbage": (["envelope", "inspect", str(garbage)], "[malformed]"),
        "verify-without-root": (["envelope", "inspect", str(envelope), "--verify"], "--root"),
        "bad-at": (
            ["envelope", "open", "--identity", minzheng, "--in", str(garbage), "--at", "noon"],
            "ISO 8601",
        ),
        "not-a-bundle": (
            ["envelope", "open", "--identity", str(tmp), "--in", str(garbage)],
            "root.crt",
        ),
        "unknown-recipient": ([*seal_, "--to", MINZHENG], MINZHENG),
        "bad-ttl": ([*seal_, "--to", MINZHENG, "--peer", minzheng, "--ttl", "-5"], "ttl"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing-input",
        "garbage",
        "verify-without-root",
        "bad-at",
        "not-a-bundle",
        "unknown-recipient",
        "bad-ttl",
    ],
)
def test_errors_are_one_line(
    case: str, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, fragment = _bad_invocations(world, tmp_path)[case]
    line = fails(capsys, *argv)
    assert fragment in line
    assert not (tmp_path / "x").exists()


def test_subprocess_reports_garbage_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.env"
    garbage.write_bytes(b"\x94\x01\x01 truncated, then \xff\xfe nonsense")
    completed = subprocess.run(
        [sys.executable, "-m", "exchnode.cli", "envelope", "inspect", str(garbage)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("exchnode: error: ")
    assert lines[0].endswith("[malformed]")
