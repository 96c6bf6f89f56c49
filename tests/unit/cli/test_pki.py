"""``exchnode pki``: the operator's flow end to end, and the one-line error policy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exchnode.cli import main
from exchnode.pki import CAStore, TrustStore, load_certificates_pem, load_local_identity
from exchnode.pki._verify import load_crl_pem

VERBS = [
    "init-root",
    "issue-ca",
    "issue-node",
    "csr",
    "sign",
    "install",
    "revoke",
    "crl",
    "list",
    "verify",
    "expiry",
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert err == ""
    return out


def issue_gongan(pki: str, out: str) -> list[str]:
    """``pki issue-node`` for 520102.gongan: the fixture runs it, and one test runs it again."""
    return ["pki", "issue-node", "520102.gongan", "--issuer", "520102", "--dir", pki, "--out", out]


def ca_chain(capsys: pytest.CaptureFixture[str], pki: str, root: str, *below: str) -> None:
    """CA ``root`` with ``init-root``, then each CA of ``below`` certified by the one before."""
    ok(capsys, "pki", "init-root", root, "--dir", pki)
    for issuer, division in zip((root, *below), below, strict=False):
        ok(capsys, "pki", "issue-ca", division, "--issuer", issuer, "--dir", pki)


@pytest.fixture
def national(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """000000 → 520000 → 520100 → 520102 and the node 520102.gongan under ``tmp_path``."""
    pki = str(tmp_path / "pki")
    ca_chain(capsys, pki, "000000", "520000", "520100", "520102")
    ok(capsys, *issue_gongan(pki, str(tmp_path / "gongan")))
    return tmp_path


def node_verify_args(node: Path) -> list[str]:
    """``pki verify`` of a node folder's chain as a peer checks it: its root, its CRLs."""
    crls = sorted(str(path) for path in (node / "crls").iterdir())
    return [
        "pki",
        "verify",
        str(node / "chain.pem"),
        "--root",
        str(node / "root.crt"),
        "--crl",
        *crls,
    ]


def test_full_flow(national: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki, node = national / "pki", national / "gongan"

    # The node's bundle is complete, its keys private, its chain without the root.
    names = sorted(p.name for p in node.iterdir())
    assert names == ["chain.pem", "crls", "encryption.key", "node.crt", "root.crt", "signing.key"]
    for key in ("signing.key", "encryption.key"):
        assert stat.S_IMODE((node / key).stat().st_mode) == 0o600
    assert stat.S_IMODE((pki / "520102" / "ca.key").stat().st_mode) == 0o600
    assert len(load_certificates_pem((node / "chain.pem").read_bytes())) == 4
    assert sorted(p.name for p in (node / "crls").iterdir()) == [
        "000000.crl.pem",
        "520000.crl.pem",
        "520100.crl.pem",
        "520102.crl.pem",
    ]
    identity = load_local_identity(
        node / "chain.pem", node / "signing.key", node / "encryption.key"
    )
    assert str(identity.name) == "520102.gongan"

    # The CA directory has the documented layout.
    assert sorted(p.name for p in (pki / "520100").iterdir() if not p.name.startswith(".")) == [
        "ca.crt",
        "ca.key",
        "chain.pem",
        "crl.pem",
        "crlnumber",
        "index.json",
    ]
    assert len(load_certificates_pem((pki / "520102" / "chain.pem").read_bytes())) == 4
    index = json.loads((pki / "520102" / "index.json").read_text())
    (entry,) = index["certificates"]
    assert entry["name"] == "520102.gongan"
    assert entry["kind"] == "node"
    assert entry["serial"].isdigit()
    assert entry["revoked_at"] is None

    # Verification from the node's own files, and from the CA directory.
    out = ok(capsys, *node_verify_args(node))
    assert "node 520102.gongan" in out
    assert "520102.gongan <- 520102 <- 520100 <- 520000 <- 000000" in out
    assert "signing key id" in out
    out = ok(capsys, "pki", "verify", str(node / "node.crt"), "--dir", str(pki))
    assert "node 520102.gongan" in out
    out = ok(capsys, "pki", "verify", str(pki / "520100" / "ca.crt"), "--dir", str(pki))
    assert "CA 520100" in out
    assert "city" in out

    out = ok(capsys, "pki", "list", "--dir", str(pki))
    assert "520102.gongan" in out
    assert out.splitlines()[0].split() == [
        "ISSUER",
        "SERIAL",
        "NAME",
        "KIND",
        "NOT",
        "AFTER",
        "STATUS",
    ]
    assert "valid" in out

    # Revoke by name; the CRL is re-signed at once and verification now fails.
    out = ok(
        capsys,
        "pki",
        "revoke",
        "520102.gongan",
        "--issuer",
        "520102",
        "--dir",
        str(pki),
        "--reason",
        "key-compromise",
    )
    assert "published CRL number 2" in out
    assert (
        load_crl_pem(
            (pki / "520102" / "crl.pem").read_bytes()
        ).get_revoked_certificate_by_serial_number(int(entry["serial"]))
        is not None
    )
    status, out, err = run(capsys, "pki", "verify", str(node / "node.crt"), "--dir", str(pki))
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("exchnode: error: ")
    assert "revoked" in err
    assert "key-compromise" in err
    out = ok(capsys, "pki", "list", "--dir", str(pki), "--issuer", "520102")
    assert "revoked (key-compromise)" in out

    # Revoking twice is refused, with the reason.
    status, _, err = run(
        capsys, "pki", "revoke", entry["serial"], "--issuer", "520102", "--dir", str(pki)
    )
    assert status == 1
    assert "already revoked" in err


def test_revoke_an_intermediate_by_serial(
    national: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = national / "pki"
    city = load_certificates_pem((pki / "520100" / "ca.crt").read_bytes())[0]
    ok(
        capsys,
        "pki",
        "revoke",
        str(city.serial_number),
        "--issuer",
        "520000",
        "--dir",
        str(pki),
        "--reason",
        "superseded",
    )
    status, _, err = run(
        capsys, "pki", "verify", str(national / "gongan" / "node.crt"), "--dir", str(pki)
    )
    assert status == 1
    assert "CA certificate 520100" in err
    assert "[revoked]" in err


def test_crl_refresh_increments_the_number(
    national: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = national / "pki"
    out = ok(capsys, "pki", "crl", "--issuer", "520100", "--dir", str(pki), "--days", "3")
    assert "CRL number 2" in out
    out = ok(capsys, "pki", "crl", "--issuer", "520100", "--dir", str(pki))
    assert "CRL number 3" in out
    assert (pki / "520100" / "crlnumber").read_text().strip() == "3"
    crl = load_crl_pem((pki / "520100" / "crl.pem").read_bytes())
    assert crl.next_update_utc is not None
    days = (crl.next_update_utc - crl.last_update_utc).days
    assert days == 7  # 7 days plus the 5-minute backdating


def test_issuance_outside_scope_is_refused(
    national: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = str(national / "pki")
    status, _, err = run(
        capsys,
        "pki",
        "issue-node",
        "520103.gongan",
        "--issuer",
        "520102",
        "--dir",
        pki,
        "--out",
        str(national / "x"),
    )
    assert status == 1
    assert "may not certify node 520103.gongan" in err
    assert not (national / "x").exists()
    status, _, err = run(capsys, "pki", "issue-ca", "520200", "--issuer", "520100", "--dir", pki)
    assert status == 1
    assert "outside its scope" in err
    status, _, err = run(capsys, "pki", "issue-ca", "520101", "--issuer", "520102", "--dir", pki)
    assert status == 1
    assert not (national / "pki" / "520101").exists()


def test_issue_node_refuses_a_used_out_directory(
    national: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = str(national / "pki")
    before = (national / "pki" / "520102" / "index.json").read_text()
    status, _, err = run(capsys, *issue_gongan(pki, str(national / "gongan")))
    assert status == 1
    assert "already exists" in err
    assert (national / "pki" / "520102" / "index.json").read_text() == before


def test_province_rooted_with_passphrases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = str(tmp_path / "pki")
    secret = tmp_path / "passphrase"
    secret.write_text("s3cret phrase\n")
    secret.chmod(0o600)
    ok(capsys, "pki", "init-root", "520000", "--dir", pki, "--passphrase-file", str(secret))
    assert b"ENCRYPTED" in (tmp_path / "pki" / "520000" / "ca.key").read_bytes()

    status, out, err = run(capsys, "pki", "issue-ca", "520100", "--issuer", "520000", "--dir", pki)
    assert status == 1
    assert "passphrase-protected" in err
    # A request the rules forbid is refused before any key (or passphrase) is needed.
    status, _, err = run(capsys, "pki", "issue-ca", "530000", "--issuer", "520000", "--dir", pki)
    assert status == 1
    assert "outside its scope" in err
    assert "s3cret" not in out + err

    ok(
        capsys,
        "pki",
        "issue-ca",
        "520100",
        "--issuer",
        "520000",
        "--dir",
        pki,
        "--issuer-passphrase-file",
        str(secret),
    )
    out = ok(
        capsys,
        "pki",
        "issue-node",
        "520100.fagai",
        "--issuer",
        "520100",
        "--dir",
        pki,
        "--out",
        str(tmp_path / "fagai"),
        "--passphrase-file",
        str(secret),
    )
    assert "s3cret" not in out
    node = tmp_path / "fagai"
    assert b"ENCRYPTED" in (node / "signing.key").read_bytes()
    identity = load_local_identity(
        node / "chain.pem", node / "signing.key", node / "encryption.key", b"s3cret phrase"
    )
    assert str(identity.name) == "520100.fagai"
    assert len(identity.chain) == 1  # the city CA; the root travels as root.crt
    out = ok(capsys, *node_verify_args(node))
    assert "520100.fagai <- 520100 <- 520000" in out

    # A hub's own node certificate, issued by the CA of the same division.
    ok(
        capsys,
        "pki",
        "issue-node",
        "520100",
        "--issuer",
        "520100",
        "--dir",
        pki,
        "--out",
        str(tmp_path / "hub"),
    )
    out = ok(capsys, *node_verify_args(tmp_path / "hub"))
    assert "node 520100" in out
    assert "city hub" in out


def test_ca_store_trust_material(national: Path) -> None:
    roots, intermediates, crls = CAStore(national / "pki").trust_material()
    assert len(roots) == 1
    assert len(intermediates) == 3
    assert len(crls) == 4
    TrustStore(roots, crls)


def test_verify_without_trust_anchor(national: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "pki", "verify", str(national / "gongan" / "node.crt"))
    assert status == 1
    assert "--root" in err


def test_verify_with_a_missing_crl(national: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = national / "gongan"
    status, _, err = run(
        capsys, "pki", "verify", str(node / "chain.pem"), "--root", str(node / "root.crt")
    )
    assert status == 1
    assert "[revocation-unavailable]" in err


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys,
        "pki",
        "verify",
        str(tmp_path / "absent.crt"),
        "--root",
        str(tmp_path / "absent.crt"),
    )
    assert status == 1
    assert err.startswith("exchnode: error: No such file or directory")
    assert err.count("\n") == 1


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_an_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pki", verb, "--help"])
    assert exited.value.code == 0
    assert "Example" in capsys.readouterr().out


def test_group_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pki", "--help"])
    assert exited.value.code == 0
    assert "Example" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["pki"],
        ["pki", "init-root", "52", "--dir", "x"],
        ["pki", "init-root", "520000"],
        [
            "pki",
            "issue-node",
            "520100.x",
            "--issuer",
            "520100",
            "--dir",
            "x",
            "--out",
            "y",
            "--days",
            "0",
        ],
        ["pki", "revoke", "1", "--issuer", "520100", "--dir", "x", "--reason", "bored"],
        [
            "pki",
            "init-root",
            "520000",
            "--dir",
            "x",
            "--passphrase-file",
            "f",
            "--prompt-passphrase",
        ],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    capsys.readouterr()


def _subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "exchnode.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_subprocess_reports_garbage_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00\x01 definitely not a certificate")
    completed = _subprocess("pki", "verify", str(garbage), "--root", str(garbage))
    assert completed.returncode == 1
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("exchnode: error: ")
    assert "[malformed-certificate]" in lines[0]
    assert "Traceback" not in completed.stderr


def test_subprocess_reports_revocation(national: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = national / "pki"
    ok(capsys, "pki", "revoke", "520102.gongan", "--issuer", "520102", "--dir", str(pki))
    completed = _subprocess(
        "pki", "verify", str(national / "gongan" / "node.crt"), "--dir", str(pki)
    )
    assert completed.returncode == 1
    lines = completed.stderr.splitlines()
    assert len(lines) == 1
    assert "revoked" in lines[0]


def test_lifetime_is_cut_to_the_issuers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = str(tmp_path / "pki")
    ok(capsys, "pki", "init-root", "520000", "--dir", pki, "--days", "30")
    out = ok(capsys, "pki", "issue-ca", "520100", "--issuer", "520000", "--dir", pki)
    assert "validity cut by 1795 days" in out
    root = load_certificates_pem((tmp_path / "pki" / "520000" / "ca.crt").read_bytes())[0]
    city = load_certificates_pem((tmp_path / "pki" / "520100" / "ca.crt").read_bytes())[0]
    assert city.not_valid_after_utc == root.not_valid_after_utc
