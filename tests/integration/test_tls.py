"""Mutual TLS between nodes over loopback, with the project's own Ed25519 PKI."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from exchnode.aio import TlsFiles, make_context
from exchnode.aio._tls import ALPN_PROTOCOL, peer_certificate
from exchnode.errors import UsageError
from exchnode.pki import TrustStore, verify_node_certificate
from tests.integration.pki_files import NOW, Federation


def exchange(server: ssl.SSLContext, client: ssl.SSLContext) -> dict[str, object]:
    """One request over loopback; reports what each side saw."""
    seen: dict[str, object] = {"handled": False}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["handled"] = True
        seen["server_peer"] = peer_certificate(writer.get_extra_info("ssl_object"))
        seen["alpn"] = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        await reader.readexactly(5)
        writer.write(b"world")
        await writer.drain()
        writer.close()

    async def run() -> None:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server)
        port = listener.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=client), 10
            )
            seen["client_peer"] = peer_certificate(writer.get_extra_info("ssl_object"))
            writer.write(b"hello")
            await writer.drain()
            seen["reply"] = await asyncio.wait_for(reader.read(5), 10)
            writer.close()
        except (ssl.SSLError, ConnectionError) as exc:
            seen["client_error"] = exc
        finally:
            listener.close()
            await listener.wait_closed()

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # server-side handshake failures
    try:
        loop.run_until_complete(asyncio.wait_for(run(), 30))
    finally:
        loop.close()
    return seen


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return Federation(tmp_path)


def contexts(
    federation: Federation, tweak: Callable[[Federation], None] | None = None
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    if tweak is not None:
        tweak(federation)
    server = make_context(federation.files(federation.hub), server=True)
    client = make_context(federation.files(federation.department), server=False)
    return server, client


def test_mutual_tls_identifies_both_nodes(federation: Federation) -> None:
    seen = exchange(*contexts(federation))
    assert seen["reply"] == b"world"
    assert seen["alpn"] == ALPN_PROTOCOL
    # The second layer: exchnode's own verification of what OpenSSL let through.
    trust = TrustStore(
        [federation.root.certificate],
        [federation.pki.crl(ca, this_update=NOW - timedelta(hours=1)) for ca in federation.cas],
    )
    bundle = [ca.certificate for ca in federation.cas[1:]]
    client = verify_node_certificate(seen["server_peer"], bundle, trust, NOW)  # type: ignore[arg-type]
    server = verify_node_certificate(seen["client_peer"], bundle, trust, NOW)  # type: ignore[arg-type]
    assert str(client.name) == "522301.minzheng"
    assert str(server.name) == "520100"


def test_a_revoked_client_never_reaches_the_application(federation: Federation) -> None:
    def revoke(f: Federation) -> None:
        f.pki.revoke(f.department.certificate, f.cas[2], when=NOW - timedelta(hours=2))

    seen = exchange(*contexts(federation, revoke))
    assert seen["handled"] is False
    assert seen.get("reply", b"") == b""


def test_a_revoked_server_is_refused_by_the_client(federation: Federation) -> None:
    def revoke(f: Federation) -> None:
        f.pki.revoke(f.hub.certificate, f.cas[1], when=NOW - timedelta(hours=2))

    seen = exchange(*contexts(federation, revoke))
    assert isinstance(seen["client_error"], ssl.SSLCertVerificationError)
    assert "revoked" in str(seen["client_error"])


def test_a_stale_crl_fails_closed(federation: Federation) -> None:
    server = make_context(federation.files(federation.hub), server=True)
    client = make_context(
        federation.files(federation.department, crl_age=timedelta(days=30)), server=False
    )
    seen = exchange(server, client)
    assert isinstance(seen["client_error"], ssl.SSLCertVerificationError)
    assert "expired" in str(seen["client_error"]).lower()


def test_a_peer_from_another_root_is_refused(tmp_path: Path) -> None:
    ours = Federation(tmp_path / "ours")
    theirs = Federation(tmp_path / "theirs", label="impostor")
    server = make_context(ours.files(ours.hub), server=True)
    client = make_context(theirs.files(theirs.department), server=False)
    seen = exchange(server, client)
    assert isinstance(seen["client_error"], ssl.SSLCertVerificationError)
    assert seen["handled"] is False


def test_a_client_without_a_certificate_is_refused(federation: Federation) -> None:
    server, _ = contexts(federation)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.minimum_version = ssl.TLSVersion.TLSv1_3
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cafile=federation.files(federation.department).verify)
    seen = exchange(server, anonymous)
    assert seen["handled"] is False
    assert seen.get("reply", b"") == b""


def test_tls_1_2_is_refused(federation: Federation) -> None:
    server, _ = contexts(federation)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    seen = exchange(server, old)
    # OpenSSL refuses with an alert or by resetting the connection; either way the
    # application is never reached.
    assert isinstance(seen["client_error"], ssl.SSLError | ConnectionError)
    assert seen["handled"] is False


def test_a_key_that_does_not_match_is_a_usage_error(federation: Federation) -> None:
    files = federation.files(federation.hub)
    other = federation.files(federation.department)
    with pytest.raises(UsageError, match="cannot use"):
        make_context(TlsFiles(files.chain, other.key, files.verify), server=True)
