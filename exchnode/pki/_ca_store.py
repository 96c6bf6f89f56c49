"""The CAs' working directory on disk: the I/O shell around :mod:`exchnode.pki`.

Theory of operation
-------------------
Each CA lives in its own directory, named by its division code::

    <pki-dir>/<division>/ca.crt       this CA's certificate
                         ca.key       its Ed25519 key, PKCS#8 PEM, mode 0600
                         chain.pem    ca.crt, then its issuers up to the root
                         index.json   every certificate this CA issued
                         crl.pem      its current CRL
                         crlnumber    the last CRL number used

A CA directory is self-contained: copied to another machine (a city's own
offline CA host, say) it can go on issuing and revoking without its parent.
``ca.crt`` is written last when a CA is created, so its presence marks a
complete directory.

Every file is replaced atomically (temporary file, fsync, ``os.replace``)
and every change to a CA takes an exclusive ``flock`` on ``<division>/.lock``,
so two operators cannot hand out the same CRL number or lose each other's
index entries.  Issuance is recorded in ``index.json`` *before* the
certificate is handed out: a crash can leave an entry for a certificate
nobody received (harmless, revocable), never a certificate the CA does not
know about.

Randomness (keys, serial numbers) is drawn here; the clock is still an
argument, so the CLI owns the only ``datetime.now()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.core import NodeName, division_level
from exchnode.errors import CertificateError, InvalidNameError, NameConstraintError, UsageError
from exchnode.pki._csr import NodeRequest
from exchnode.pki._issue import (
    Revocation,
    build_crl,
    build_intermediate_ca,
    build_node_certificate,
    build_root_ca,
)
from exchnode.pki._keyfiles import load_signing_key, write_private_key, write_public_file
from exchnode.pki._profile import (
    CLOCK_SKEW_ALLOWANCE,
    CRL_VALIDITY,
    CertKind,
    ca_issuance_problem,
    node_issuance_problem,
    parse_subject,
)
from exchnode.pki._verify import load_certificates_pem, load_crl_pem

__all__ = [
    "REASONS",
    "CAStore",
    "CertificateAuthority",
    "IndexEntry",
    "IssuedCertificate",
    "NodeBundle",
]

INDEX_FORMAT = "exchnode-ca-index/1"

#: The revocation reasons an operator may give (SPEC §3.6), by CLI spelling.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
}

_DIRECTORY_MODE = 0o700


def _iso(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _parse_iso(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One certificate a CA issued, as recorded in its ``index.json``."""

    serial: int
    name: str
    kind: CertKind
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    reason: str | None = None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return f"revoked ({self.reason or 'unspecified'})"
        if now < self.not_before:
            return "not yet valid"
        if now > self.not_after:
            return "expired"
        return "valid"

    def to_json(self) -> dict[str, str | None]:
        return {
            "serial": str(self.serial),
            "name": self.name,
            "kind": self.kind.value,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "revoked_at": None if self.revoked_at is None else _iso(self.revoked_at),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, record: object) -> IndexEntry:
        if not isinstance(record, dict):
            raise ValueError("entry is not an object")
        serial, name, reason = record.get("serial"), record.get("name"), record.get("reason")
        if not isinstance(serial, str) or not serial.isdigit():
            raise ValueError("serial is not a decimal string")
        if not isinstance(name, str):
            raise ValueError("name is not a string")
        if reason is not None and reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        revoked = record.get("revoked_at")
        return cls(
            serial=int(serial),
            name=name,
            kind=CertKind(record.get("kind")),
            not_before=_parse_iso(record.get("not_before"), "not_before"),
            not_after=_parse_iso(record.get("not_after"), "not_after"),
            revoked_at=None if revoked is None else _parse_iso(revoked, "revoked_at"),
            reason=reason,
        )


@dataclass(frozen=True, slots=True, eq=False)
class CertificateAuthority:
    """A CA found in the store (its private key stays on disk until needed)."""

    division: str
    directory: Path
    certificate: x509.Certificate
    #: This CA's certificate first, then its issuers, root last.
    chain: tuple[x509.Certificate, ...]

    @property
    def is_root(self) -> bool:
        return len(self.chain) == 1

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate, for comparing a root out of band."""
        return self.certificate.fingerprint(hashes.SHA256()).hex(":")


@dataclass(frozen=True, slots=True, eq=False)
class IssuedCertificate:
    """What an issuance produced, for the CLI to report."""

    certificate: x509.Certificate
    entry: IndexEntry
    #: The notAfter asked for; later than the certificate's when it was cut to
    #: end with the issuer's (SPEC §3.5 rule 4).
    requested_not_after: datetime

    @property
    def shortened_by(self) -> timedelta:
        return max(self.requested_not_after - self.certificate.not_valid_after_utc, timedelta(0))


@dataclass(frozen=True, slots=True, eq=False)
class NodeBundle:
    """A node's files written by :meth:`CAStore.issue_node`."""

    issued: IssuedCertificate
    directory: Path
    #: Divisions of the chain's CAs whose CRL this store does not hold.
    missing_crls: tuple[str, ...]


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _check_division(division: str) -> None:
    try:
        division_level(division)
    except InvalidNameError as exc:
        raise UsageError(str(exc)) from None


class CAStore:
    """The CAs kept under one PKI directory."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    # --- reading ---------------------------------------------------------------

    def ca_directory(self, division: str) -> Path:
        _check_division(division)
        return self.directory / division

    def divisions(self) -> list[str]:
        """Divisions of the complete CA directories, sorted."""
        if not self.directory.is_dir():
            return []
        found = []
        for child in self.directory.iterdir():
            with contextlib.suppress(InvalidNameError):
                division_level(child.name)
                if (child / "ca.crt").is_file():
                    found.append(child.name)
        return sorted(found)

    def load(self, division: str) -> CertificateAuthority:
        directory = self.ca_directory(division)
        if not (directory / "ca.crt").is_file():
            raise UsageError(
                f"no CA {division} in {self.directory} (expected {directory / 'ca.crt'}); "
                "create it with 'exchnode pki init-root' or 'exchnode pki issue-ca'"
            )
        try:
            certificate = load_certificates_pem((directory / "ca.crt").read_bytes())[0]
            chain = tuple(load_certificates_pem((directory / "chain.pem").read_bytes()))
        except CertificateError as exc:
            raise UsageError(f"CA directory {directory} is damaged: {exc}") from None
        if chain[0] != certificate:
            raise UsageError(
                f"CA directory {directory} is damaged: chain.pem does not start with ca.crt"
            )
        return CertificateAuthority(division, directory, certificate, chain)

    def load_key(self, ca: CertificateAuthority, passphrase: bytes | None) -> Ed25519PrivateKey:
        key = load_signing_key(ca.directory / "ca.key", passphrase=passphrase)
        if key.public_key() != ca.certificate.public_key():
            raise UsageError(f"{ca.directory / 'ca.key'} does not belong to CA {ca.division}")
        return key

    def read_index(self, division: str) -> list[IndexEntry]:
        path = self.ca_directory(division) / "index.json"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
                raise ValueError(f"not an {INDEX_FORMAT} document")
            records = document.get("certificates")
            if not isinstance(records, list):
                raise ValueError("'certificates' is not a list")
            return [IndexEntry.from_json(record) for record in records]
        except FileNotFoundError:
            raise UsageError(f"CA index {path} is missing") from None
        except (ValueError, KeyError) as exc:
            raise UsageError(f"CA index {path} is damaged: {exc}") from None

    def read_crl(self, division: str) -> x509.CertificateRevocationList | None:
        path = self.ca_directory(division) / "crl.pem"
        if not path.is_file():
            return None
        return load_crl_pem(path.read_bytes())

    def trust_material(
        self,
    ) -> tuple[
        list[x509.Certificate], list[x509.Certificate], list[x509.CertificateRevocationList]
    ]:
        """(roots, intermediates, CRLs) of every CA in the store, for verification."""
        roots: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        for division in self.divisions():
            ca = self.load(division)
            (roots if ca.is_root else intermediates).append(ca.certificate)
            crl = self.read_crl(division)
            if crl is not None:
                crls.append(crl)
        return roots, intermediates, crls

    # --- writing ---------------------------------------------------------------

    def _write_index(self, division: str, entries: list[IndexEntry]) -> None:
        document = {
            "format": INDEX_FORMAT,
            "certificates": [entry.to_json() for entry in entries],
        }
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        write_public_file(self.ca_directory(division) / "index.json", text.encode("utf-8"))

    @contextlib.contextmanager
    def _locked(self, division: str) -> Iterator[None]:
        lock_path = self.ca_directory(division) / ".lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write_crl(
        self,
        ca: CertificateAuthority,
        key: Ed25519PrivateKey,
        now: datetime,
        validity: timedelta,
    ) -> x509.CertificateRevocationList:
        """Sign and publish a fresh CRL from the index (caller holds the lock)."""
        directory = ca.directory
        counter = directory / "crlnumber"
        try:
            last = int(counter.read_text().strip()) if counter.exists() else 0
        except ValueError:
            raise UsageError(f"CRL number file {counter} is damaged") from None
        number = last + 1
        # Persist the number before using it: a crash leaves a gap, never a reuse.
        write_public_file(counter, f"{number}\n".encode())
        revoked = [
            Revocation(entry.serial, entry.revoked_at, REASONS[entry.reason or "unspecified"])
            for entry in self.read_index(ca.division)
            if entry.revoked_at is not None
        ]
        this_update = now - CLOCK_SKEW_ALLOWANCE
        crl = build_crl(ca.certificate, key, revoked, number, this_update, now + validity)
        write_public_file(directory / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def _create_ca_directory(
        self,
        division: str,
        certificate: x509.Certificate,
        chain: tuple[x509.Certificate, ...],
        key: Ed25519PrivateKey,
        passphrase: bytes | None,
        now: datetime,
    ) -> CertificateAuthority:
        directory = self.ca_directory(division)
        directory.mkdir(mode=_DIRECTORY_MODE)
        write_private_key(directory / "ca.key", key, passphrase=passphrase)
        write_public_file(directory / "chain.pem", b"".join(_pem(cert) for cert in chain))
        self._write_index(division, [])
        ca = CertificateAuthority(division, directory, certificate, chain)
        with self._locked(division):
            self._write_crl(ca, key, now, CRL_VALIDITY)
        write_public_file(directory / "ca.crt", _pem(certificate))  # last: marks it complete
        return ca

    def _check_new_ca(self, division: str) -> None:
        directory = self.ca_directory(division)
        if (directory / "ca.crt").exists():
            raise UsageError(f"CA {division} already exists in {self.directory}")
        if directory.exists():
            raise UsageError(
                f"{directory} exists but holds no complete CA (an interrupted run?); "
                "remove it and try again"
            )

    def init_root(
        self,
        division: str,
        *,
        now: datetime,
        lifetime: timedelta,
        passphrase: bytes | None = None,
    ) -> CertificateAuthority:
        """Create a self-signed root CA and its first, empty CRL."""
        now = _aware(now)
        self._check_new_ca(division)
        self.directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        start = now - CLOCK_SKEW_ALLOWANCE
        certificate = build_root_ca(
            division, key, x509.random_serial_number(), start, now + lifetime
        )
        return self._create_ca_directory(
            division, certificate, (certificate,), key, passphrase, now
        )

    def _validity(
        self, issuer: CertificateAuthority, now: datetime, lifetime: timedelta
    ) -> tuple[datetime, datetime, datetime]:
        """Backdated start, end cut to the issuer's validity, and the end asked for."""
        start = max(now - CLOCK_SKEW_ALLOWANCE, issuer.certificate.not_valid_before_utc)
        end = now + lifetime
        limit = issuer.certificate.not_valid_after_utc
        if now >= limit:
            raise UsageError(f"CA {issuer.division} expired at {_iso(limit)}; it cannot issue")
        return start, min(end, limit), end

    def _record(self, issuer: CertificateAuthority, entry: IndexEntry) -> None:
        entries = self.read_index(issuer.division)
        entries.append(entry)
        self._write_index(issuer.division, entries)

    def preflight_root(self, division: str) -> None:
        """The checks of :meth:`init_root` that need no key."""
        self._check_new_ca(division)

    def preflight_ca(self, division: str, issuer_division: str) -> CertificateAuthority:
        """The checks of :meth:`issue_ca` that need no key: run them before asking
        an operator for a passphrase.  Returns the issuer."""
        issuer = self.load(issuer_division)
        self._check_new_ca(division)
        problem = ca_issuance_problem(issuer_division, division)
        if problem is not None:
            raise UsageError(f"refusing to issue: {problem}")
        return issuer

    def preflight_node(
        self, name: str, issuer_division: str, out_dir: Path | str
    ) -> CertificateAuthority:
        """The checks of :meth:`issue_node` that need no key.  Returns the issuer."""
        try:
            node = NodeName.parse(name)
        except InvalidNameError as exc:
            raise UsageError(str(exc)) from None
        issuer = self.load(issuer_division)
        problem = node_issuance_problem(issuer_division, node)
        if problem is not None:
            raise UsageError(f"refusing to issue: {problem}")
        out = Path(out_dir)
        targets = ["node.crt", "chain.pem", "root.crt", "signing.key", "encryption.key"]
        targets += [f"crls/{_division_of(cert)}.crl.pem" for cert in issuer.chain]
        for target in targets:
            if (out / target).exists():
                raise UsageError(f"{out / target} already exists; choose an empty --out directory")
        return issuer

    def issue_ca(
        self,
        division: str,
        issuer_division: str,
        *,
        now: datetime,
        lifetime: timedelta,
        issuer_passphrase: bytes | None = None,
        passphrase: bytes | None = None,
    ) -> tuple[CertificateAuthority, IssuedCertificate]:
        """Create sub-CA ``division`` under ``issuer_division``, with its first CRL."""
        now = _aware(now)
        issuer = self.preflight_ca(division, issuer_division)
        issuer_key = self.load_key(issuer, issuer_passphrase)
        key = Ed25519PrivateKey.generate()
        with self._locked(issuer.division):
            start, end, requested = self._validity(issuer, now, lifetime)
            certificate = build_intermediate_ca(
                division,
                key.public_key(),
                issuer.certificate,
                issuer_key,
                x509.random_serial_number(),
                start,
                end,
            )
            entry = _entry_for(certificate, division, CertKind.CA)
            self._record(issuer, entry)
        ca = self._create_ca_directory(
            division, certificate, (certificate, *issuer.chain), key, passphrase, now
        )
        return ca, IssuedCertificate(certificate, entry, requested)

    def issue_node(
        self,
        name: str,
        issuer_division: str,
        out_dir: Path | str,
        *,
        now: datetime,
        lifetime: timedelta,
        issuer_passphrase: bytes | None = None,
        passphrase: bytes | None = None,
    ) -> NodeBundle:
        """Generate a node's two keys, certify them, and write the node's files to ``out_dir``."""
        now = _aware(now)
        issuer = self.preflight_node(name, issuer_division, out_dir)
        node = NodeName.parse(name)
        out = Path(out_dir)
        issuer_key = self.load_key(issuer, issuer_passphrase)
        signing = Ed25519PrivateKey.generate()
        encryption = X25519PrivateKey.generate()
        with self._locked(issuer.division):
            start, end, requested = self._validity(issuer, now, lifetime)
            certificate = build_node_certificate(
                node,
                signing.public_key(),
                encryption.public_key(),
                issuer.certificate,
                issuer_key,
                x509.random_serial_number(),
                start,
                end,
            )
            entry = _entry_for(certificate, str(node), CertKind.NODE)
            self._record(issuer, entry)

        out.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        write_private_key(out / "signing.key", signing, passphrase=passphrase)
        write_private_key(out / "encryption.key", encryption, passphrase=passphrase)
        missing = self._write_node_files(out, certificate, issuer)
        return NodeBundle(IssuedCertificate(certificate, entry, requested), out, missing)

    def _write_node_files(
        self, out: Path, certificate: x509.Certificate, issuer: CertificateAuthority
    ) -> tuple[str, ...]:
        """node.crt, chain.pem, root.crt and crls/ into ``out``; the CAs without a CRL here."""
        intermediates = issuer.chain[:-1]  # the root travels separately, as root.crt
        write_public_file(out / "node.crt", _pem(certificate))
        write_public_file(
            out / "chain.pem", b"".join(_pem(c) for c in (certificate, *intermediates))
        )
        write_public_file(out / "root.crt", _pem(issuer.root))
        (out / "crls").mkdir(mode=_DIRECTORY_MODE, exist_ok=True)
        missing = []
        for cert in issuer.chain:
            division = _division_of(cert)
            crl = self._crl_of(division, cert)
            if crl is None:
                missing.append(division)
                continue
            write_public_file(
                out / "crls" / f"{division}.crl.pem", crl.public_bytes(serialization.Encoding.PEM)
            )
        return tuple(missing)

    def preflight_request(
        self, request: NodeRequest, issuer_division: str, out_dir: Path | str
    ) -> CertificateAuthority:
        """The checks of :meth:`sign_request` that need no key.  Returns the issuer."""
        issuer = self.load(issuer_division)
        problem = node_issuance_problem(issuer_division, request.name)
        if problem is not None:
            raise NameConstraintError(f"name outside the CA's division: {problem}")
        out = Path(out_dir)
        targets = ["node.crt", "chain.pem", "root.crt"]
        targets += [f"crls/{_division_of(cert)}.crl.pem" for cert in issuer.chain]
        for target in targets:
            if (out / target).exists():
                raise UsageError(f"{out / target} already exists; choose an empty --out directory")
        return issuer

    def sign_request(
        self,
        request: NodeRequest,
        issuer_division: str,
        out_dir: Path | str,
        *,
        now: datetime,
        lifetime: timedelta,
        issuer_passphrase: bytes | None = None,
    ) -> NodeBundle:
        """Certify the keys of a verified request (``pki.read_node_request``) under the profile.

        Only the request's name and public keys are used; the certificate is
        built as :meth:`issue_node` builds one, and written with its chain, the
        root and the CRLs, without any key, to ``out_dir``.
        """
        now = _aware(now)
        issuer = self.preflight_request(request, issuer_division, out_dir)
        issuer_key = self.load_key(issuer, issuer_passphrase)
        with self._locked(issuer.division):
            start, end, requested = self._validity(issuer, now, lifetime)
            certificate = build_node_certificate(
                request.name,
                request.signing_key,
                request.encryption_key,
                issuer.certificate,
                issuer_key,
                x509.random_serial_number(),
                start,
                end,
            )
            entry = _entry_for(certificate, str(request.name), CertKind.NODE)
            self._record(issuer, entry)
        out = Path(out_dir)
        out.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        missing = self._write_node_files(out, certificate, issuer)
        return NodeBundle(IssuedCertificate(certificate, entry, requested), out, missing)

    def _crl_of(
        self, division: str, certificate: x509.Certificate
    ) -> x509.CertificateRevocationList | None:
        """The store's CRL of the CA holding ``certificate``, if this store runs that CA."""
        with contextlib.suppress(UsageError):
            if self.load(division).certificate == certificate:
                return self.read_crl(division)
        return None

    def revoke(
        self,
        issuer_division: str,
        serial_or_name: str,
        *,
        reason: str,
        now: datetime,
        issuer_passphrase: bytes | None = None,
        crl_validity: timedelta = CRL_VALIDITY,
    ) -> tuple[IndexEntry, x509.CertificateRevocationList]:
        """Mark a certificate revoked in the index and re-sign the CRL at once."""
        now = _aware(now)
        if reason not in REASONS:
            raise UsageError(f"unknown reason {reason!r}; choose one of {', '.join(REASONS)}")
        issuer = self.load(issuer_division)
        key = self.load_key(issuer, issuer_passphrase)
        with self._locked(issuer.division):
            entries = self.read_index(issuer.division)
            position = _find_entry(issuer.division, entries, serial_or_name)
            target = entries[position]
            if target.revoked_at is not None:
                raise UsageError(
                    f"certificate {target.serial} ({target.name}) was already revoked on "
                    f"{_iso(target.revoked_at)}"
                )
            entries[position] = replace(target, revoked_at=now.astimezone(UTC), reason=reason)
            self._write_index(issuer.division, entries)
            crl = self._write_crl(issuer, key, now, crl_validity)
        return entries[position], crl

    def refresh_crl(
        self,
        issuer_division: str,
        *,
        now: datetime,
        validity: timedelta = CRL_VALIDITY,
        issuer_passphrase: bytes | None = None,
    ) -> x509.CertificateRevocationList:
        """Re-sign the CRL with a new number and nextUpdate (the periodic refresh)."""
        now = _aware(now)
        issuer = self.load(issuer_division)
        key = self.load_key(issuer, issuer_passphrase)
        with self._locked(issuer.division):
            return self._write_crl(issuer, key, now, validity)


def _division_of(certificate: x509.Certificate) -> str:
    try:
        return parse_subject(certificate.subject)[1]
    except (ValueError, InvalidNameError) as exc:
        raise UsageError(f"CA certificate outside the profile in the store: {exc}") from None


def _entry_for(certificate: x509.Certificate, name: str, kind: CertKind) -> IndexEntry:
    return IndexEntry(
        serial=certificate.serial_number,
        name=name,
        kind=kind,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def _find_entry(division: str, entries: list[IndexEntry], serial_or_name: str) -> int:
    """Index of the one entry ``serial_or_name`` designates, or a UsageError saying why not."""
    by_serial = [
        i
        for i, entry in enumerate(entries)
        if serial_or_name.isdigit() and entry.serial == int(serial_or_name)
    ]
    by_name = [i for i, entry in enumerate(entries) if entry.name == serial_or_name]
    if by_serial and by_name:
        raise UsageError(f"{serial_or_name!r} is both a serial number and a name; ambiguous")
    if by_serial:
        return by_serial[0]
    if not by_name:
        raise UsageError(
            f"CA {division} issued no certificate with serial or name {serial_or_name!r}"
        )
    active = [i for i in by_name if entries[i].revoked_at is None]
    if not active:
        raise UsageError(f"every certificate named {serial_or_name} is already revoked")
    if len(active) > 1:
        serials = ", ".join(str(entries[i].serial) for i in active)
        raise UsageError(
            f"{len(active)} unrevoked certificates are named {serial_or_name} "
            f"(serials {serials}); give the serial number"
        )
    return active[0]
