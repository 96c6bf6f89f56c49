"""A node whose signing key was rotated still verifies, and starts on, its own audit log.

Its heads were signed with the key it had then.  The node keeps each
certificate it has run with and accepts heads signed under any of them that
still verifies against its trust store; without that a rotated node refuses
to start (its start verifies the whole log).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.aio import OWN_CERTIFICATES, AuditService, Node
from exchnode.errors import InconsistentLogError
from exchnode.store import SqliteStore
from tests.audit_entries import config_loaded
from tests.integration.federation import Federation

CHILD = "520102.gongan"


def quick_audit() -> AuditService:
    """An audit service that flushes and signs heads within the tests' waits."""
    return AuditService(flush=0.05, head_interval=0.2)


async def grow(node: Node, audit: AuditService, n: int) -> None:
    for _ in range(n):
        audit.append_entry(config_loaded(int(node.now() * 1000), node.name))
    await audit.sync()


async def logged_before_rotation(federation: Federation, n: int) -> None:
    """The child runs once with its first key and logs ``n`` entries (heads signed)."""
    audit = quick_audit()
    async with federation.node(CHILD, services=[audit]) as node:
        await grow(node, audit, n)


@pytest.mark.asyncio
async def test_heads_signed_before_a_key_rotation_still_verify(tmp_path: Path) -> None:
    federation = Federation(tmp_path, [CHILD])
    await logged_before_rotation(federation, 5)
    # A new certificate with new keys, from the same CA: a routine rotation.
    rotated = federation.pki.node(CHILD, federation.cas["520100"], generation=1)
    audit = quick_audit()
    async with federation.node(CHILD, identity=rotated.identity, services=[audit]) as node:
        await grow(node, audit, 3)
        report = await audit.verify()
        assert report.ok, report.findings
    audit = quick_audit()
    async with federation.node(CHILD, identity=rotated.identity, services=[audit]):
        pass  # and again: both keys' heads verify at every start


@pytest.mark.asyncio
async def test_without_the_kept_certificate_the_old_heads_do_not_verify(tmp_path: Path) -> None:
    """The kept certificate is what makes the old heads verify (and a forged one would not)."""
    federation = Federation(tmp_path, [CHILD])
    await logged_before_rotation(federation, 2)
    # A genuine certificate, but another node's: it vouches for no key of this one.
    forged = federation.pki.node("520102.minzheng", federation.cas["520100"]).certificate
    with SqliteStore(federation.directory / f"{CHILD}.sqlite") as store:
        from cryptography.hazmat.primitives.serialization import Encoding

        from exchnode.core import pack

        store.set_meta(OWN_CERTIFICATES, pack([forged.public_bytes(Encoding.DER)]))
    rotated = federation.pki.node(CHILD, federation.cas["520100"], generation=1)
    with pytest.raises(InconsistentLogError, match="bad-head"):
        await federation.node(CHILD, identity=rotated.identity, services=[AuditService()]).start()
