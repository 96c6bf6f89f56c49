"""A node on a static directory (chains verified at load) honours CRLs applied later.

Without it a revoked department stayed in the keys: its envelopes verified at
every hop and messages were still sealed to it, though TLS refused it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from exchnode.aio import AuditService
from exchnode.audit import decode_record
from exchnode.errors import UnknownSignerError, UsageError
from exchnode.store import SqliteStore
from tests.integration.federation import Federation

HUB, GONGAN, MINZHENG = "520102", "520102.gongan", "520102.minzheng"


@pytest.mark.asyncio
async def test_a_crl_applied_later_takes_the_revoked_identity_out_of_a_static_directory(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path, [HUB, GONGAN, MINZHENG])
    revoked = federation.nodes[GONGAN]
    ca = federation.cas["520100"]
    key_id = revoked.identity.peer.signing_key_id
    audit = AuditService(flush=0.05, head_interval=0.2)
    async with federation.node(HUB, services=[audit]) as hub:
        await hub.send([GONGAN], b"before: still a recipient")
        federation.pki.revoke(revoked.certificate, ca, when=federation.now - timedelta(hours=1))
        hub.apply_crls([federation.pki.crl(ca, this_update=federation.now, number=2)])
        with pytest.raises(UsageError, match="not in the directory"):
            await hub.send([GONGAN], b"after: refused before sealing")
        with pytest.raises(UnknownSignerError):
            hub.directory.signer(GONGAN, key_id)
        hub.directory.recipient(MINZHENG)  # the others stay
    with SqliteStore(federation.directory / f"{HUB}.sqlite", read_only=True) as store:
        entries = [decode_record(d).entry for _, d in store.audit_records(0, 1000)]
    dropped = [e for e in entries if e.action == "directory.dropped"]
    assert [(e.subject.value, e.outcome.code) for e in dropped] == [(GONGAN, "revoked")]
