"""``exchnode pki``: run the CAs of the province → city → county hierarchy.

Theory of operation
-------------------
A thin shell: each verb parses its arguments, reads the clock once, gets
passphrases from a file or a prompt, and calls :class:`exchnode.pki.CAStore`
(which calls the pure builders) or :mod:`exchnode.pki`.  All policy
-- who may certify whom, what verification checks -- lives in those modules
and SPEC §3, not here.  Errors propagate to :func:`exchnode.cli.main`, which
prints them as one line.

Passphrases never appear on the command line (where ``ps`` and shell history
would show them): ``--passphrase-file``/``--prompt-passphrase`` protect a key
being created, ``--issuer-passphrase-file``/``--prompt-issuer-passphrase``
unlock the issuing CA's key.
"""

from __future__ import annotations

import argparse
import getpass
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from exchnode.cli._times import iso_time
from exchnode.core import division_level
from exchnode.errors import InvalidNameError, UsageError
from exchnode.pki import (
    CA_VALIDITY,
    CRL_VALIDITY,
    NODE_VALIDITY,
    REASONS,
    ROOT_VALIDITY,
    CAStore,
    CertificateAuthority,
    CertKind,
    IssuedCertificate,
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    parse_subject,
    read_passphrase_file,
    verify_ca_certificate,
    verify_chain,
    verify_node_certificate,
)

if TYPE_CHECKING:
    from exchnode.cli import Subparsers

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _para(text: str) -> str:
    # RawDescriptionHelpFormatter keeps the examples' layout; wrap prose ourselves.
    return textwrap.fill(text, width=78)


def _now() -> datetime:
    # The only clock read of the PKI: everything below takes `now` as an argument.
    return datetime.now(UTC).replace(microsecond=0)


def _time(moment: datetime) -> str:
    return iso_time(moment)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= 36500:
        raise argparse.ArgumentTypeError("days must be between 1 and 36500")
    return days


def _division(text: str) -> str:
    try:
        division_level(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# --- passphrases ----------------------------------------------------------------


def _add_new_key_passphrase(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help=f"encrypt {what} with the passphrase on the first line of FILE (mode 0600)",
    )
    group.add_argument(
        "--prompt-passphrase",
        action="store_true",
        help=f"ask on the terminal for a passphrase to encrypt {what}",
    )


def _add_issuer(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--issuer", required=True, type=_division, metavar="DIVISION", help="the issuing CA"
    )


def _add_pki_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir", required=True, type=Path, metavar="PKI_DIR", help="the CAs' working directory"
    )


def _add_issuer_passphrase(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--issuer-passphrase-file",
        type=Path,
        metavar="FILE",
        help="unlock the issuing CA's key with the passphrase on the first line of FILE",
    )
    group.add_argument(
        "--prompt-issuer-passphrase",
        action="store_true",
        help="ask on the terminal for the issuing CA's key passphrase",
    )


def _new_key_passphrase(args: argparse.Namespace, what: str) -> bytes | None:
    if args.passphrase_file is not None:
        return read_passphrase_file(args.passphrase_file)
    if not args.prompt_passphrase:
        return None
    first = getpass.getpass(f"passphrase for {what}: ")
    if not first:
        raise UsageError("the passphrase is empty")
    if getpass.getpass("repeat the passphrase: ") != first:
        raise UsageError("the two passphrases differ")
    return first.encode("utf-8")


def _issuer_passphrase(args: argparse.Namespace) -> bytes | None:
    if args.issuer_passphrase_file is not None:
        return read_passphrase_file(args.issuer_passphrase_file)
    if args.prompt_issuer_passphrase:
        return getpass.getpass(f"passphrase of CA {args.issuer}'s key: ").encode("utf-8")
    return None


# --- reporting ------------------------------------------------------------------


def _show(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")


def _show_ca(ca: CertificateAuthority, protected: bool) -> None:
    cert = ca.certificate
    crl_path = ca.directory / "crl.pem"
    _show(
        [
            ("serial", str(cert.serial_number)),
            ("valid", f"{_time(cert.not_valid_before_utc)} .. {_time(cert.not_valid_after_utc)}"),
            ("SHA-256", ca.fingerprint),
            (
                "key",
                f"{ca.directory / 'ca.key'} (mode 0600, "
                f"{'passphrase-protected' if protected else 'NOT encrypted'})",
            ),
            ("CRL", str(crl_path)),
        ]
    )


def _clamp_note(issued: IssuedCertificate) -> None:
    # Default lifetimes nest only to within seconds; mention cuts that matter.
    if issued.shortened_by > timedelta(days=1):
        print(
            f"note: validity cut by {issued.shortened_by.days} days to end with the issuer's, "
            f"at {_time(issued.entry.not_after)}"
        )


# --- verbs ------------------------------------------------------------------------


def _init_root(args: argparse.Namespace) -> int:
    store = CAStore(args.dir)
    store.preflight_root(args.division)
    passphrase = _new_key_passphrase(args, f"the key of root CA {args.division}")
    ca = store.init_root(
        args.division, now=_now(), lifetime=timedelta(days=args.days), passphrase=passphrase
    )
    print(f"created root CA {ca.division} in {ca.directory}")
    _show_ca(ca, passphrase is not None)
    print(
        f"Distribute {ca.directory / 'ca.crt'} as the trust anchor; have every operator compare "
        "its SHA-256 fingerprint out of band."
    )
    return 0


def _issue_ca(args: argparse.Namespace) -> int:
    store = CAStore(args.dir)
    store.preflight_ca(args.division, args.issuer)  # refuse before asking for passphrases
    issuer_passphrase = _issuer_passphrase(args)
    passphrase = _new_key_passphrase(args, f"the key of CA {args.division}")
    ca, issued = store.issue_ca(
        args.division,
        args.issuer,
        now=_now(),
        lifetime=timedelta(days=args.days),
        issuer_passphrase=issuer_passphrase,
        passphrase=passphrase,
    )
    print(f"created CA {ca.division} under CA {args.issuer} in {ca.directory}")
    _show_ca(ca, passphrase is not None)
    _clamp_note(issued)
    return 0


def _issue_node(args: argparse.Namespace) -> int:
    store = CAStore(args.dir)
    store.preflight_node(args.name, args.issuer, args.out)  # refuse before asking
    issuer_passphrase = _issuer_passphrase(args)
    passphrase = _new_key_passphrase(args, f"the keys of node {args.name}")
    bundle = store.issue_node(
        args.name,
        args.issuer,
        args.out,
        now=_now(),
        lifetime=timedelta(days=args.days),
        issuer_passphrase=issuer_passphrase,
        passphrase=passphrase,
    )
    cert = bundle.issued.certificate
    out = bundle.directory
    print(f"issued node certificate {args.name} (CA {args.issuer}) into {out}")
    protection = "passphrase-protected" if passphrase is not None else "NOT encrypted"
    _show(
        [
            ("serial", str(cert.serial_number)),
            ("valid", f"{_time(cert.not_valid_before_utc)} .. {_time(cert.not_valid_after_utc)}"),
            ("node.crt", "the node certificate"),
            ("chain.pem", "node certificate + intermediate CAs (present to peers)"),
            ("root.crt", "the trust anchor"),
            ("signing.key", f"Ed25519 signing key (mode 0600, {protection})"),
            ("encryption.key", f"X25519 encryption key (mode 0600, {protection})"),
            ("crls/", "current CRLs of the CAs above the node"),
        ]
    )
    _clamp_note(bundle.issued)
    for division in bundle.missing_crls:
        print(f"warning: this store has no CRL of CA {division}; fetch it from its operator")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = CAStore(args.dir)
    entry, crl = store.revoke(
        args.issuer,
        args.serial_or_name,
        reason=args.reason,
        now=_now(),
        issuer_passphrase=_issuer_passphrase(args),
    )
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    print(
        f"revoked {entry.kind.value} certificate {entry.name} (serial {entry.serial}), "
        f"reason {entry.reason}"
    )
    next_update = crl.next_update_utc
    until = "" if next_update is None else f", next update due {_time(next_update)}"
    print(f"published CRL number {number} at {store.ca_directory(args.issuer) / 'crl.pem'}{until}")
    print("Distribute the new CRL to every node now: peers learn of the revocation only from it.")
    return 0


def _crl(args: argparse.Namespace) -> int:
    store = CAStore(args.dir)
    crl = store.refresh_crl(
        args.issuer,
        now=_now(),
        validity=timedelta(days=args.days),
        issuer_passphrase=_issuer_passphrase(args),
    )
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    next_update = crl.next_update_utc
    print(
        f"signed CRL number {number} of CA {args.issuer} listing {len(list(crl))} revoked "
        f"certificate(s), next update due {_time(next_update) if next_update else '-'}"
    )
    print(f"written to {store.ca_directory(args.issuer) / 'crl.pem'}; distribute it to every node")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = CAStore(args.dir)
    divisions = [args.issuer] if args.issuer else store.divisions()
    if not divisions:
        raise UsageError(f"no CA in {args.dir}")
    now = _now()
    header = ("ISSUER", "SERIAL", "NAME", "KIND", "NOT AFTER", "STATUS")
    rows = [header]
    for division in divisions:
        store.load(division)
        for entry in store.read_index(division):
            rows.append(
                (
                    division,
                    str(entry.serial),
                    entry.name,
                    entry.kind.value,
                    _time(entry.not_after),
                    entry.status(now),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if len(rows) == 1:
        print("(no certificates issued yet)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    if not args.root and args.dir is None:
        raise UsageError("verify needs a trust anchor: --root FILE or --dir PKI_DIR")
    certificates = load_certificates_pem(Path(args.cert_file).read_bytes())
    leaf, intermediates = certificates[0], list(certificates[1:])
    for path in args.chain:
        intermediates += load_certificates_pem(Path(path).read_bytes())
    roots = [cert for path in args.root for cert in load_certificates_pem(Path(path).read_bytes())]
    crls = [crl for path in args.crl for crl in load_crls_pem(Path(path).read_bytes())]
    if args.dir is not None:
        store = CAStore(args.dir)
        if not store.divisions():
            raise UsageError(f"no CA in {args.dir}")
        store_roots, store_intermediates, store_crls = store.trust_material()
        if not args.root:
            roots = store_roots
        intermediates += store_intermediates
        crls += store_crls
    trust = TrustStore(roots, crls)
    now = _now()
    try:
        kind = parse_subject(leaf.subject)[0]
    except (ValueError, InvalidNameError):
        kind = CertKind.NODE  # let the verifier name what is wrong with it
    if kind is CertKind.CA:
        verified = verify_ca_certificate(leaf, intermediates, trust, now)
        path = verified.path
        rows = [
            ("verified", f"CA {verified.division}"),
            ("level", verified.level.name.lower()),
            ("scope", f"{verified.scope or '(everything)'}"),
        ]
    else:
        peer = verify_node_certificate(leaf, intermediates, trust, now)
        path = verify_chain(leaf, intermediates, trust, now)
        rows = [
            ("verified", f"node {peer.name}"),
            ("level", peer.name.level.name.lower() + (" hub" if peer.name.is_hub else "")),
            ("signing key id", peer.signing_key_id.hex()),
            ("encryption key id", peer.encryption_key_id.hex()),
        ]
    rows += [
        ("serial", str(leaf.serial_number)),
        ("valid until", _time(leaf.not_valid_after_utc)),
        ("SHA-256", leaf.fingerprint(hashes.SHA256()).hex(":")),
        ("chain", " <- ".join(parse_subject(cert.subject)[1] for cert in path)),
        ("revocation", "checked against CRLs of every issuer"),
    ]
    print("OK")
    _show(rows)
    return 0


# --- the parser ------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    """Add ``exchnode pki`` and its verbs."""
    pki = subparsers.add_parser(
        "pki",
        help="run the certificate authorities (province → city → county) and verify certificates",
        description=_para(
            "Run the certificate authorities of the national → province → city → county "
            "hierarchy, issue node certificates, revoke them, and verify certificates "
            "exactly as a peer would."
        ),
        formatter_class=_RAW,
        epilog=PKI_EPILOG,
    )
    verbs = pki.add_subparsers(title="verbs", metavar="VERB")
    verbs.required = True
    for verb in _VERBS:
        p = verbs.add_parser(
            verb.name,
            help=verb.help,
            description=_para(verb.description),
            formatter_class=_RAW,
            epilog=verb.epilog,
        )
        for add in verb.options:
            add(p)
        p.set_defaults(handler=verb.handler)


_Option = Callable[[argparse.ArgumentParser], None]


def _arg(*names: str, **options: Any) -> _Option:
    """An argument of a verb, declared when its parser is built."""

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*names, **options)

    return add


def _days_arg(default: timedelta, what: str = "lifetime in days") -> _Option:
    return _arg("--days", type=_days, default=default.days, help=what)


def _new_key_args(what: str) -> _Option:
    return lambda parser: _add_new_key_passphrase(parser, what)


@dataclass(frozen=True)
class _Verb:
    """One verb of ``exchnode pki``: its help texts, its arguments in order, its handler."""

    name: str
    handler: Callable[[argparse.Namespace], int]
    options: tuple[_Option, ...]
    help: str
    description: str
    epilog: str


_VERBS = (
    _Verb(
        "init-root",
        _init_root,
        (
            _arg("division", metavar="DIVISION", type=_division, help="6-digit division code"),
            _add_pki_dir,
            _days_arg(ROOT_VALIDITY),
            _new_key_args("the new CA key"),
        ),
        help="create a self-signed root CA",
        description=(
            "Create a self-signed root CA for DIVISION (000000 for the national level, "
            "or a province such as 520000 for a province-rooted deployment), with its "
            "first, empty CRL."
        ),
        epilog=f"""Example:
  exchnode pki init-root 520000 --dir /srv/exchnode-pki --prompt-passphrase

Writes PKI_DIR/DIVISION/{{ca.crt,ca.key,chain.pem,index.json,crl.pem}}.  Default
lifetime {ROOT_VALIDITY.days} days.  Keep ca.key offline and passphrase-protected.""",
    ),
    _Verb(
        "issue-ca",
        _issue_ca,
        (
            _arg("division", metavar="DIVISION", type=_division, help="the new CA's division"),
            _add_issuer,
            _add_pki_dir,
            _days_arg(CA_VALIDITY),
            _add_issuer_passphrase,
            _new_key_args("the new CA key"),
        ),
        help="create a subordinate CA (city or county)",
        description=(
            "Create CA DIVISION, certified by CA --issuer.  The new CA must lie within "
            "the issuer's division and at a strictly lower level (SPEC §3.5): a province CA "
            "certifies city and county CAs, a city CA county CAs."
        ),
        epilog=f"""Example:
  exchnode pki issue-ca 520100 --issuer 520000 --dir /srv/exchnode-pki \\
      --prompt-issuer-passphrase --prompt-passphrase

Default lifetime {CA_VALIDITY.days} days, cut to end with the issuer's.""",
    ),
    _Verb(
        "issue-node",
        _issue_node,
        (
            _arg("name", metavar="NAME", help="node name: DIVISION or DIVISION.department"),
            _add_issuer,
            _add_pki_dir,
            _arg("--out", required=True, type=Path, metavar="DIR", help="where to write files"),
            _days_arg(NODE_VALIDITY),
            _add_issuer_passphrase,
            _new_key_args("the node's keys"),
        ),
        help="generate a node's keys and certificate",
        description=(
            "Generate the Ed25519 signing key and X25519 encryption key of node NAME "
            "(a hub '520100' or a department '520102.gongan'), certify them with CA --issuer, "
            "and write node.crt, chain.pem, root.crt, signing.key, encryption.key and crls/ "
            "into --out."
        ),
        epilog=f"""Example:
  exchnode pki issue-node 520102.gongan --issuer 520102 --dir /srv/exchnode-pki \\
      --out ./520102.gongan --passphrase-file ./node-passphrase

The node must lie within the issuer's division.  Default lifetime
{NODE_VALIDITY.days} days.  Carry --out to the node over a trusted channel.""",
    ),
    _Verb(
        "revoke",
        _revoke,
        (
            _arg(
                "serial_or_name",
                metavar="SERIAL_OR_NAME",
                help="the certificate's serial number (decimal), or its name if unambiguous",
            ),
            _add_issuer,
            _add_pki_dir,
            _arg(
                "--reason",
                choices=list(REASONS),
                default="unspecified",
                help="(default: unspecified)",
            ),
            _add_issuer_passphrase,
        ),
        help="revoke a certificate and re-sign the CRL",
        description=(
            "Revoke a certificate issued by CA --issuer, named by serial number or by "
            "name, and publish a new CRL at once."
        ),
        epilog="""Example:
  exchnode pki revoke 520102.gongan --issuer 520102 --dir /srv/exchnode-pki \\
      --reason key-compromise

Then distribute PKI_DIR/520102/crl.pem to every node.""",
    ),
    _Verb(
        "crl",
        _crl,
        (
            _add_issuer,
            _add_pki_dir,
            _days_arg(CRL_VALIDITY, "days to nextUpdate"),
            _add_issuer_passphrase,
        ),
        help="re-sign a fresh CRL (run before nextUpdate)",
        description=(
            "Sign a new CRL for CA --issuer from its index, with a new CRL number and "
            "nextUpdate DAYS ahead.  Run it periodically (e.g. daily from cron): nodes "
            "refuse certificates once their issuer's CRL is stale."
        ),
        epilog=f"""Example:
  exchnode pki crl --issuer 520100 --dir /srv/exchnode-pki --days 7

Default nextUpdate {CRL_VALIDITY.days} days ahead.""",
    ),
    _Verb(
        "list",
        _list,
        (
            _add_pki_dir,
            _arg("--issuer", type=_division, metavar="DIVISION", help="only this CA's"),
        ),
        help="list the certificates the CAs issued",
        description=(
            "Print a table of every certificate issued by the CAs in PKI_DIR "
            "(or by --issuer only): issuer, serial, name, kind, not after, status."
        ),
        epilog="""Example:
  exchnode pki list --dir /srv/exchnode-pki --issuer 520100""",
    ),
    _Verb(
        "verify",
        _verify,
        (
            _arg("cert_file", metavar="CERT_FILE", help="PEM: the certificate [+ intermediates]"),
            _arg(
                "--root",
                action="append",
                default=[],
                metavar="ROOT_FILE",
                help="a trusted root (PEM)",
            ),
            _arg(
                "--chain",
                action="extend",
                nargs="+",
                default=[],
                metavar="FILE",
                help="intermediates",
            ),
            _arg("--crl", action="extend", nargs="+", default=[], metavar="FILE", help="CRLs"),
            _arg(
                "--dir",
                type=Path,
                metavar="PKI_DIR",
                help="take roots, intermediates and CRLs from here",
            ),
        ),
        help="verify a certificate as a peer would",
        description=(
            "Verify CERT_FILE (a PEM certificate, optionally followed by its "
            "intermediates) with the algorithm of SPEC §3.7, revocation included.  Trust "
            "anchors and CRLs come from --root/--crl files and/or a CA directory (--dir; "
            "its roots are used unless --root is given).  Prints the verified name, level "
            "and key ids, or the failing check on one line with exit status 1."
        ),
        epilog="""Example:
  exchnode pki verify ./520102.gongan/chain.pem --root ./520102.gongan/root.crt \\
      --crl ./520102.gongan/crls/*.crl.pem
  exchnode pki verify ./520102.gongan/node.crt --dir /srv/exchnode-pki""",
    ),
)


PKI_EPILOG = """Example: a province-rooted hierarchy down to a district's public-security node
  exchnode pki init-root 520000 --dir pki
  exchnode pki issue-ca 520100 --issuer 520000 --dir pki
  exchnode pki issue-ca 520102 --issuer 520100 --dir pki
  exchnode pki issue-node 520102.gongan --issuer 520102 --dir pki --out node-gongan
  exchnode pki verify node-gongan/chain.pem --dir pki

See certs/README.md for the operator's guide and SPEC §3 for the profile."""
