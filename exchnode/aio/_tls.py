"""Mutual TLS between nodes: the contexts and the peer's certificate (federation layer).

Theory of operation
-------------------
Every connection between nodes is TLS 1.3 with certificates on both sides,
verified in two layers:

1. **In the handshake, by OpenSSL.** The chain must reach a configured root,
   every CA in it must have a current CRL, and no certificate may be on one
   (``VERIFY_CRL_CHECK_CHAIN``). RFC 5280 checks are strict
   (``VERIFY_X509_STRICT``). A peer that fails never sends a byte of
   application data. Our Ed25519 chains and CRLs pass this path; the
   integration tests show it, revoked and untrusted peers included.
2. **After the handshake, by exchnode.** ``pki_verify.verify_node_certificate``
   re-checks the peer's leaf with the rules OpenSSL does not know: the
   division name constraints (SPEC §3.5) and the node profile with its
   encryption key. It yields the peer's name from the certificate.

Hostname checking is off on purpose. Nodes are named by division codes, not
DNS names, and a node's identity is the name in its verified certificate,
never the address it was dialled at. The caller compares that name with the
neighbour it expected.

Python 3.11's ``ssl`` exposes only the peer's leaf certificate; the whole
verified chain arrives in 3.13. So the second layer takes the intermediates
from the federation's CA bundle, which is public material distributed with
the CRLs.

The verify bundle (roots and CRLs in one PEM file) changes whenever a CRL is
refreshed. Contexts are cheap to rebuild, and new connections pick up the new
bundle.

**Refused handshakes leave a trace.**  An asyncio server given an SSL context
drops a failed handshake silently.  :class:`TlsAcceptor` accepts plain TCP
and runs the handshake itself (``loop.start_tls``), so a handshake OpenSSL
refuses is reported with the address it came from and the reason as an
error code (:func:`refusal_code`: ``revoked``, ``untrusted``,
``revocation-unavailable``...); a good one is handed to the application's
protocol.  It also keeps each open connection's peer certificate, so that a
certificate revoked while its connection is open can be cut
(:meth:`TlsAcceptor.close_where`): revocation reaches open links too, not
only new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.errors import MalformedCertificateError, UsageError

__all__ = [
    "ALPN_PROTOCOL",
    "TlsAcceptor",
    "TlsFiles",
    "address_token",
    "make_context",
    "peer_certificate",
    "refusal_code",
    "write_verify_bundle",
]

ALPN_PROTOCOL = "exchnode/1"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a node's TLS material lives.

    ``chain`` is the node certificate followed by its intermediates (the
    ``chain.pem`` of ``exchnode pki issue-node``). ``key`` is the node's
    signing key, the certificate's subject key. ``verify`` holds the trusted
    roots and the current CRLs of every CA (``write_verify_bundle``).
    """

    chain: Path
    key: Path
    verify: Path
    passphrase: bytes | None = field(default=None, repr=False)


def make_context(files: TlsFiles, *, server: bool) -> ssl.SSLContext:
    """A TLS 1.3, mutually authenticated, CRL-checking context for one side."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # identity is the verified certificate's name, see above
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT
    context.set_alpn_protocols([ALPN_PROTOCOL])
    try:
        context.load_cert_chain(files.chain, files.key, password=files.passphrase)
    except ssl.SSLError as exc:
        raise UsageError(
            f"cannot use {files.chain} with {files.key}: {exc.reason or exc} "
            "(wrong key, wrong passphrase, or not a PEM chain)"
        ) from None
    try:
        context.load_verify_locations(cafile=files.verify)
    except ssl.SSLError as exc:
        raise UsageError(f"cannot load the verify bundle {files.verify}: {exc}") from None
    return context


def write_verify_bundle(
    path: Path | str,
    roots: Iterable[x509.Certificate],
    crls: Iterable[x509.CertificateRevocationList],
) -> Path:
    """Write roots and CRLs as one PEM file, atomically (public material, mode 0644)."""
    target = Path(path)
    pem = b"".join(root.public_bytes(Encoding.PEM) for root in roots)
    pem += b"".join(crl.public_bytes(Encoding.PEM) for crl in crls)
    if b"CERTIFICATE" not in pem:
        raise UsageError("a verify bundle needs at least one root certificate")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate:
    """The certificate the peer presented (already verified by OpenSSL in the handshake)."""
    if ssl_object is None:
        raise MalformedCertificateError("the connection is not TLS")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise MalformedCertificateError("the peer presented no certificate")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise MalformedCertificateError(f"the peer's certificate does not parse: {exc}") from None


# --- refused handshakes --------------------------------------------------------------------

# OpenSSL's X509_V_ERR_* verify results, as the error codes of SPEC §3.8 and §12.
_VERIFY_CODES = {
    2: "untrusted",  # unable to get issuer certificate
    3: "revocation-unavailable",  # unable to get CRL
    4: "bad-certificate-signature",
    6: "untrusted",  # unable to decode issuer public key
    7: "bad-certificate-signature",
    8: "revocation-unavailable",  # CRL signature failure
    9: "certificate-not-yet-valid",
    10: "certificate-expired",
    11: "revocation-unavailable",  # CRL not yet valid
    12: "revocation-unavailable",  # CRL has expired
    13: "malformed-certificate",
    14: "malformed-certificate",
    18: "untrusted",  # self-signed leaf
    19: "untrusted",  # self-signed certificate in chain
    20: "untrusted",  # unable to get local issuer certificate
    21: "untrusted",  # unable to verify the first certificate
    23: "revoked",
    24: "not-a-ca",
    25: "untrusted",  # path length exceeded
    26: "malformed-certificate",  # unsuitable purpose
    32: "not-a-ca",  # key usage does not include certificate signing
    35: "revocation-unavailable",  # key usage does not include CRL signing
    47: "name-constraint",  # permitted subtree violation
    48: "name-constraint",  # excluded subtree violation
}


def refusal_code(exc: BaseException) -> str | None:
    """The error code of a handshake refused over the peer's certificate or the protocol.

    None for what is no refusal: the peer went away (EOF, reset) or was too slow.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(exc.verify_code, "certificate")
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return None
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "no-certificate"
        if exc.reason in {"UNEXPECTED_EOF_WHILE_READING", "UNEXPECTED_EOF"}:
            return None
        return "tls-handshake"
    return None


_TOKEN = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}\Z")


def address_token(host: object) -> str | None:
    """A peer's IP address as the audit log writes it (IPv6 in full, no zone), or None."""
    if not isinstance(host, str):
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    text = address.exploded if address.version == 6 else str(address)
    return text if _TOKEN.match(text) else None


OnRefused = Callable[[str | None, str], None]
"""Called with the address a refused handshake came from (if known) and the error code."""


class TlsAcceptor:
    """Server-side TLS with a report of each refused handshake (see the module docstring).

    ``protocol(factory)`` is the protocol factory to give ``loop.create_server``
    (with no ``ssl``): each connection is handshaken with ``context``, then
    handed to a protocol from ``factory``.  ``on_refused(address, code)`` hears
    of every handshake refused.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        on_refused: OnRefused | None = None,
        *,
        handshake_timeout: float = 30.0,
    ) -> None:
        self.context = context
        self._on_refused = on_refused
        self._timeout = handshake_timeout
        self._pending: set[asyncio.Task[None]] = set()
        #: open connections and their peer's certificate, swept as connections close
        self._open: dict[asyncio.BaseTransport, x509.Certificate] = {}
        # Closed connections are swept when the map has doubled since the last sweep: a hub
        # with a thousand children open must not walk them all at every handshake.
        self._sweep_at = 64

    def protocol(self, factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], Any]:
        return lambda: _Handshake(self, factory)

    def open_connections(self) -> int:
        self._sweep()
        return len(self._open)

    def close_where(self, refused: Callable[[x509.Certificate], bool]) -> int:
        """Close every open connection whose peer certificate ``refused`` refuses now."""
        self._sweep()
        closing = [t for t, certificate in self._open.items() if refused(certificate)]
        for transport in closing:
            del self._open[transport]
            transport.close()
        return len(closing)

    async def close(self) -> None:
        """Abandon the handshakes under way (the server is closing)."""
        for task in list(self._pending):
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _sweep(self) -> None:
        for transport in [t for t in self._open if t.is_closing()]:
            del self._open[transport]

    async def _handshake(
        self,
        connection: _Handshake,
        transport: asyncio.Transport,
        factory: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        address = address_token(peer[0]) if isinstance(peer, tuple) and peer else None
        connection.starting_tls(transport)
        try:
            tls = await loop.start_tls(
                transport,
                connection,
                self.context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            transport.abort()
            code = refusal_code(exc)
            if code is not None and self._on_refused is not None:
                self._on_refused(address, code)
            return
        if tls is None or tls.is_closing() or connection.lost:
            if tls is not None:
                tls.abort()
            return
        ssl_object = tls.get_extra_info("ssl_object")
        with contextlib.suppress(ValueError, MalformedCertificateError):
            if len(self._open) >= self._sweep_at:
                self._sweep()
                self._sweep_at = max(64, 2 * len(self._open))
            self._open[tls] = peer_certificate(ssl_object)
        connection.hand_over(tls, factory())


class _Handshake(asyncio.Protocol):
    """One incoming connection until its handshake is done; then the application's protocol's.

    What arrives between the handshake's end and the hand-over (a request sent
    right after the client's Finished) is kept and passed on.

    So are the bytes that arrive *before* the handshake starts.  asyncio honours
    the ``pause_reading`` of :meth:`connection_made`, so nothing arrives then;
    uvloop starts reading after ``connection_made`` returns, so the client's
    first flight (its ClientHello) can reach this protocol before
    :meth:`asyncio.AbstractEventLoop.start_tls` has put its TLS protocol on
    the transport.  Those bytes belong to the TLS layer, not to the
    application: they are kept apart and fed to the TLS protocol once it is in
    place (:meth:`starting_tls`), or the handshake would wait for a hello the
    client already sent.
    """

    def __init__(self, acceptor: TlsAcceptor, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._acceptor = acceptor
        self._factory = factory
        self._held: list[bytes] = []
        self._early: list[bytes] | None = []  # raw bytes before start_tls; None once started
        self._eof = False
        self._app: asyncio.BaseProtocol | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's subclass asyncio.Transport, uvloop's only have its API.
        transport = cast(asyncio.Transport, transport)
        transport.pause_reading()  # start_tls resumes it, reading for the handshake
        task = asyncio.get_running_loop().create_task(
            self._acceptor._handshake(self, transport, self._factory), name="tls-handshake"
        )
        pending = self._acceptor._pending
        pending.add(task)
        task.add_done_callback(pending.discard)

    def hand_over(self, transport: asyncio.BaseTransport, app: asyncio.BaseProtocol) -> None:
        transport.set_protocol(app)
        self._app = app
        app.connection_made(transport)
        held, self._held = self._held, []
        if isinstance(app, asyncio.Protocol):
            for data in held:
                app.data_received(data)
            if self._eof and not app.eof_received():
                transport.close()

    def starting_tls(self, transport: asyncio.Transport) -> None:
        """``start_tls`` is about to take the transport: hand it what came before.

        ``start_tls`` puts its TLS protocol on the transport at once and calls
        its ``connection_made`` in the next turn of the loop; a callback
        scheduled from a callback scheduled now runs after that, with the TLS
        protocol ready to read.
        """
        early, self._early = self._early, None
        if early:
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, _feed, transport, early)

    def data_received(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
        elif isinstance(self._app, asyncio.Protocol):
            self._app.data_received(data)
        else:
            self._held.append(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return True  # keep the transport open until the application's protocol decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._app is not None:
            self._app.connection_lost(exc)


def _feed(transport: asyncio.Transport, chunks: list[bytes]) -> None:
    """Give ``chunks`` to the transport's protocol as if read from the socket."""
    if transport.is_closing():
        return
    protocol: Any = transport.get_protocol()
    for data in chunks:
        if hasattr(protocol, "get_buffer"):  # asyncio's and uvloop's TLS protocols are buffered
            view = memoryview(data)
            while view:
                buffer = protocol.get_buffer(len(view))
                size = min(len(buffer), len(view))
                if size == 0:  # a protocol that takes nothing more: the transport is going
                    return
                buffer[:size] = view[:size]
                protocol.buffer_updated(size)
                view = view[size:]
        else:
            protocol.data_received(data)
