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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.cli._times import iso_time
from exchnode.core import NodeName, division_level
from exchnode.errors import CertificateError, InvalidNameError, UsageError
from exchnode.pki import (
    CA_VALIDITY,
    CRL_VALIDITY,
    NODE_VALIDITY,
    REASONS,
    ROOT_VALIDITY,
    CAStore,
    CertificateAuthority,
    CertKind,
    Expiry,
    ExpiryState,
    IssuedCertificate,
    NodeBundle,
    TrustStore,
    build_node_request,
    certificate_expiry,
    crl_expiry,
    load_certificates_pem,
    load_crls_pem,
    load_local_identity,
    load_request_pem,
    parse_subject,
    read_node_request,
    read_passphrase_file,
    verify_ca_certificate,
    verify_chain,
    verify_node_certificate,
    write_private_key,
    write_public_file,
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


def _whole_number(unit: str, lowest: int, highest: int) -> Callable[[str], int]:
    """An argparse type: a whole number of ``unit`` from ``lowest`` to ``highest``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {unit}") from None
        if not lowest <= number <= highest:
            raise argparse.ArgumentTypeError(f"{unit} must be between {lowest} and {highest}")
        return number

    return parse


_days = _whole_number("days", 1, 36500)
_hours = _whole_number("hours", 0, 8760)


def _division(text: str) -> str:
    try:
        division_level(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# --- passphrases ----------------------------------------------------------------


def _add_passphrase_source(
    parser: argparse.ArgumentParser, prefix: str, file_help: str, prompt_help: str
) -> None:
    """``--{prefix}passphrase-file FILE`` or ``--prompt-{prefix}passphrase``, not both."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{prefix}passphrase-file", type=Path, metavar="FILE", help=file_help)
    group.add_argument(f"--prompt-{prefix}passphrase", action="store_true", help=prompt_help)


def _add_new_key_passphrase(parser: argparse.ArgumentParser, what: str) -> None:
    _add_passphrase_source(
        parser,
        "",
        f"encrypt {what} with the passphrase on the first line of FILE (mode 0600)",
        f"ask on the terminal for a passphrase to encrypt {what}",
    )


def _add_key_passphrase(parser: argparse.ArgumentParser) -> None:
    _add_passphrase_source(
        parser,
        "",
        "unlock the node's keys with the passphrase on the first line of FILE",
        "ask on the terminal for the passphrase of the node's keys",
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
    _add_passphrase_source(
        parser,
        "issuer-",
        "unlock the issuing CA's key with the passphrase on the first line of FILE",
        "ask on the terminal for the issuing CA's key passphrase",
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


def _existing_passphrase(file: Path | None, prompt: bool, question: str) -> bytes | None:
    """The passphrase of a key that exists: from ``file``, asked once, or none."""
    if file is not None:
        return read_passphrase_file(file)
    if prompt:
        return getpass.getpass(question).encode("utf-8")
    return None


def _issuer_passphrase(args: argparse.Namespace) -> bytes | None:
    return _existing_passphrase(
        args.issuer_passphrase_file,
        args.prompt_issuer_passphrase,
        f"passphrase of CA {args.issuer}'s key: ",
    )


# --- reporting ------------------------------------------------------------------


def _show(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")


def _certificate_rows(cert: x509.Certificate) -> list[tuple[str, str]]:
    return [
        ("serial", str(cert.serial_number)),
        ("valid", f"{_time(cert.not_valid_before_utc)} .. {_time(cert.not_valid_after_utc)}"),
    ]


def _show_ca(ca: CertificateAuthority, protected: bool) -> None:
    crl_path = ca.directory / "crl.pem"
    _show(
        [
            *_certificate_rows(ca.certificate),
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


def _show_node_bundle(
    bundle: NodeBundle,
    first: list[tuple[str, str]],
    node_crt: str,
    keys: list[tuple[str, str]],
) -> None:
    """What issue-node and sign wrote into --out, then what the operator should know."""
    _show(
        [
            *first,
            *_certificate_rows(bundle.issued.certificate),
            ("node.crt", node_crt),
            ("chain.pem", "node certificate + intermediate CAs (present to peers)"),
            ("root.crt", "the trust anchor"),
            *keys,
            ("crls/", "current CRLs of the CAs above the node"),
        ]
    )


def _missing_crls_warning(bundle: NodeBundle) -> None:
    for division in bundle.missing_crls:
        print(f"warning: this store has no CRL of CA {division}; fetch it from its operator")


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
    print(f"issued node certificate {args.name} (CA {args.issuer}) into {bundle.directory}")
    protection = "passphrase-protected" if passphrase is not None else "NOT encrypted"
    _show_node_bundle(
        bundle,
        [],
        "the node certificate",
        [
            ("signing.key", f"Ed25519 signing key (mode 0600, {protection})"),
            ("encryption.key", f"X25519 encryption key (mode 0600, {protection})"),
        ],
    )
    _clamp_note(bundle.issued)
    _missing_crls_warning(bundle)
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


# --- the request flow: keys born on the node ------------------------------------------

_REQUEST_FILE = "request.csr"


def _request_fingerprint(request: x509.CertificateSigningRequest) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(request.public_bytes(serialization.Encoding.DER))
    return digest.finalize().hex(":")


def _csr(args: argparse.Namespace) -> int:
    try:
        name = NodeName.parse(args.name)
    except InvalidNameError as exc:
        raise UsageError(str(exc)) from None
    out: Path = args.out
    for target in ("signing.key", "encryption.key", _REQUEST_FILE):
        if (out / target).exists():
            raise UsageError(f"{out / target} already exists; choose an empty --out directory")
    passphrase = _new_key_passphrase(args, f"the keys of node {name}")
    signing = Ed25519PrivateKey.generate()
    encryption = X25519PrivateKey.generate()
    request = build_node_request(name, signing, encryption.public_key())
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_key(out / "signing.key", signing, passphrase=passphrase)
    write_private_key(out / "encryption.key", encryption, passphrase=passphrase)
    write_public_file(out / _REQUEST_FILE, request.public_bytes(serialization.Encoding.PEM))
    protection = "passphrase-protected" if passphrase is not None else "NOT encrypted"
    print(f"generated the keys of node {name} and its certificate signing request in {out}")
    _show(
        [
            ("signing.key", f"Ed25519 signing key (mode 0600, {protection}); stays here"),
            ("encryption.key", f"X25519 encryption key (mode 0600, {protection}); stays here"),
            (_REQUEST_FILE, "the request (PKCS#10): send it to the CA's operator"),
            ("SHA-256", _request_fingerprint(request)),
        ]
    )
    print(
        "Have the CA operator compare the SHA-256 above out of band before signing; then "
        f"'exchnode pki install SIGNED_DIR --keys {out}'."
    )
    return 0


def _sign(args: argparse.Namespace) -> int:
    path = Path(args.request)
    try:
        request = load_request_pem(path.read_bytes())
        wanted = read_node_request(request)
    except CertificateError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    store = CAStore(args.dir)
    store.preflight_request(wanted, args.issuer, args.out)  # refuse before asking
    bundle: NodeBundle = store.sign_request(
        wanted,
        args.issuer,
        args.out,
        now=_now(),
        lifetime=timedelta(days=args.days),
        issuer_passphrase=_issuer_passphrase(args),
    )
    print(f"signed the request of node {wanted.name} (CA {args.issuer}) into {bundle.directory}")
    _show_node_bundle(
        bundle,
        [("request SHA-256", _request_fingerprint(request))],
        "the node certificate (the profile's extensions, not the request's)",
        [],
    )
    if wanted.ignored:
        print(f"note: requested extensions not copied: {', '.join(wanted.ignored)}")
    _clamp_note(bundle.issued)
    _missing_crls_warning(bundle)
    return 0


def _install(args: argparse.Namespace) -> int:
    signed: Path = args.signed
    keys: Path = args.keys
    names = ["node.crt", "chain.pem", "root.crt"]
    for name in names:
        if not (signed / name).is_file():
            raise UsageError(f"{signed / name} is missing: give the directory 'pki sign' wrote")
        if (keys / name).exists():
            raise UsageError(f"{keys / name} already exists; this node has a certificate")
    roots = load_certificates_pem((signed / "root.crt").read_bytes())
    crl_files = sorted((signed / "crls").glob("*.crl.pem")) if (signed / "crls").is_dir() else []
    crls = [crl for path in crl_files for crl in load_crls_pem(path.read_bytes())]
    passphrase = _key_passphrase(args)
    # The whole check a node makes at start: the chain verifies and both keys match it.
    identity = load_local_identity(
        signed / "chain.pem",
        keys / "signing.key",
        keys / "encryption.key",
        passphrase,
        trust=TrustStore(roots, crls),
        now=_now(),
    )
    for name in names:
        write_public_file(keys / name, (signed / name).read_bytes())
    if crl_files:
        (keys / "crls").mkdir(mode=0o700, exist_ok=True)
        for path in crl_files:
            write_public_file(keys / "crls" / path.name, path.read_bytes())
    print(f"installed the certificate of node {identity.name} beside its keys in {keys}")
    _show(
        [
            ("matches", "signing.key and encryption.key are the keys it certifies"),
            ("verified", f"chain to {parse_subject(roots[0].subject)[1]}, CRLs checked"),
            (
                "valid until",
                _time(identity.peer.certificate.not_valid_after_utc)
                if identity.peer.certificate
                else "-",
            ),
        ]
    )
    return 0


def _key_passphrase(args: argparse.Namespace) -> bytes | None:
    return _existing_passphrase(
        args.passphrase_file, args.prompt_passphrase, "passphrase of the node's keys: "
    )


# --- expiry of files --------------------------------------------------------------------


def _expiry(args: argparse.Namespace) -> int:
    now = _now()
    cert_window = timedelta(days=args.warn_days)
    crl_window = timedelta(hours=args.crl_warn_hours)
    found: list[tuple[Path, Expiry]] = []
    for path in _pem_files(args.files):
        data = path.read_bytes()
        certificates = _quietly(load_certificates_pem, data) if b"CERTIFICATE-" in data else []
        crls = _quietly(load_crls_pem, data) if b"X509 CRL-" in data else []
        if not certificates and not crls:
            raise UsageError(f"{path} holds no PEM certificate or CRL")
        found += [(path, certificate_expiry(c, now, cert_window)) for c in certificates]
        found += [(path, crl_expiry(c, now, crl_window)) for c in crls]
    header = ("FILE", "WHAT", "SUBJECT", "ENDS", "DAYS LEFT", "STATE")
    rows = [header]
    for path, expiry in found:
        left = "-" if expiry.seconds_left is None else f"{expiry.seconds_left / 86400:.1f}"
        ends = "-" if expiry.ends is None else _time(expiry.ends)
        rows.append((str(path), expiry.kind, expiry.subject, ends, left, expiry.state.value))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    attention = [expiry for _, expiry in found if expiry.state.needs_attention]
    for expiry in attention:
        print(f"{expiry.state.value}: {expiry.describe()}")
    expired = [e for e in attention if e.state in {ExpiryState.EXPIRED, ExpiryState.EARLY}]
    if expired:
        raise UsageError(f"{len(expired)} of {len(found)} not valid now: {expired[0].describe()}")
    return 0


def _quietly(loader: Callable[[bytes], list[Any]], data: bytes) -> list[Any]:
    try:
        return loader(data)
    except CertificateError:
        return []


def _pem_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            out += sorted(
                p for p in path.rglob("*") if p.suffix in {".pem", ".crt"} and p.is_file()
            )
        else:
            out.append(path)
    return out


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


# issue-node and sign: CA --issuer of PKI_DIR certifies a node, the files go to --out
_NODE_ISSUER_ARGS = (
    _add_issuer,
    _add_pki_dir,
    _arg("--out", required=True, type=Path, metavar="DIR", help="where to write files"),
    _days_arg(NODE_VALIDITY),
    _add_issuer_passphrase,
)


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
            *_NODE_ISSUER_ARGS,
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
        "csr",
        _csr,
        (
            _arg("name", metavar="NAME", help="node name: DIVISION or DIVISION.department"),
            _arg("--out", required=True, type=Path, metavar="DIR", help="where the keys stay"),
            _new_key_args("the node's keys"),
        ),
        help="on the node: generate its keys and a certificate signing request",
        description=(
            "On the node's own machine: generate the Ed25519 signing key and the X25519 "
            "encryption key of node NAME into --out (mode 0600, never to leave it) and write "
            "request.csr, a PKCS#10 request naming the node as the profile does, signed by "
            "the signing key and carrying the encryption key.  Send request.csr to the CA's "
            "operator ('exchnode pki sign'), then install what comes back ('exchnode pki "
            "install')."
        ),
        epilog="""Example:
  exchnode pki csr 520102.gongan --out /etc/exchnode/identity --prompt-passphrase
  # send /etc/exchnode/identity/request.csr to the operator of CA 520102""",
    ),
    _Verb(
        "sign",
        _sign,
        (
            _arg("request", metavar="REQUEST", help="the node's request.csr (PEM)"),
            *_NODE_ISSUER_ARGS,
        ),
        help="on the CA: check a node's request and issue its certificate",
        description=(
            "Check REQUEST (its signature under the key it asks to certify, the node name "
            "in the profile's shape, Ed25519 and X25519 keys) and that the node lies within "
            "the division of CA --issuer, then issue the node certificate under the profile: "
            "only the name and the two public keys are taken from the request, never its "
            "extensions.  Writes node.crt, chain.pem, root.crt and crls/ into --out, no key."
        ),
        epilog=f"""Example:
  exchnode pki sign request.csr --issuer 520102 --dir /srv/exchnode-pki \\
      --out ./520102.gongan-signed --prompt-issuer-passphrase

Compare the request's SHA-256 with the one the node's operator read out.
Default lifetime {NODE_VALIDITY.days} days.""",
    ),
    _Verb(
        "install",
        _install,
        (
            _arg("signed", type=Path, metavar="SIGNED_DIR", help="the directory 'sign' wrote"),
            _arg("--keys", required=True, type=Path, metavar="DIR", help="where 'csr' put keys"),
            _add_key_passphrase,
        ),
        help="on the node: install its signed certificate beside its keys",
        description=(
            "Check that the certificate in SIGNED_DIR certifies the keys in --keys (both of "
            "them) and that its chain verifies to root.crt under the CRLs, then copy "
            "node.crt, chain.pem, root.crt and crls/ beside the keys.  The node's "
            "[identity] then points at --keys."
        ),
        epilog="""Example:
  exchnode pki install ./520102.gongan-signed --keys /etc/exchnode/identity \\
      --prompt-passphrase""",
    ),
    _Verb(
        "expiry",
        _expiry,
        (
            _arg(
                "files",
                nargs="+",
                metavar="FILE",
                help="PEM certificates and CRLs, or directories of *.pem and *.crt",
            ),
            _arg(
                "--warn-days",
                type=_days,
                default=30,
                help="warn of a certificate ending within this many days (default 30)",
            ),
            _arg(
                "--crl-warn-hours",
                type=_hours,
                default=24,
                help="warn of a CRL whose nextUpdate is within this many hours (default 24)",
            ),
        ),
        help="show when certificates and CRLs run out",
        description=(
            "Print, for every certificate and CRL in the files, when it ends (notAfter, "
            "nextUpdate), the days left and its state: current, expiring (within the "
            "warning window), expired (for a CRL: past nextUpdate), early (not valid yet).  "
            "Exit status 1 when one is expired or not valid yet, for monitoring."
        ),
        epilog="""Example:
  exchnode pki expiry /etc/exchnode/identity/chain.pem /etc/exchnode/trust --warn-days 60""",
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

Or keep a node's keys on its own machine: 'pki csr' there, 'pki sign' at the
CA, 'pki install' back on the node.

See certs/README.md for the operator's guide and SPEC §3 for the profile."""
