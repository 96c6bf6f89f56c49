"""Where a node finds other nodes' keys: the peer directory interface.

Sealing needs a recipient's current encryption key; opening needs the
signing key a sender used, named by its key id.  The protocol core only asks
a :class:`Directory`; where the answers come from -- certificates checked by
``pki_verify``, the signed directory the hubs distribute, a test fixture --
is the caller's business.  Whatever a directory returns is trusted, so only
verified identities may go into one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from exchnode.core._identity import PeerIdentity
from exchnode.errors import UnknownSignerError, UsageError

__all__ = ["Directory", "StaticDirectory"]


class Directory(Protocol):
    def signer(self, name: str, key_id: bytes) -> PeerIdentity:
        """The identity whose signing key has ``key_id``; raise ``UnknownSignerError``."""
        ...

    def recipient(self, name: str) -> PeerIdentity:
        """The identity to encrypt to now; raise ``UsageError`` if unknown."""
        ...


class StaticDirectory:
    """An in-memory directory of already verified peers.

    Keeps every identity of a name, so that envelopes signed with a key
    that has just been rotated out still verify while its certificate is
    valid; the most recently added one is the one sealed to.
    """

    def __init__(self, peers: Iterable[PeerIdentity] = ()) -> None:
        self._by_name: dict[str, list[PeerIdentity]] = {}
        for peer in peers:
            self.add(peer)

    def add(self, peer: PeerIdentity) -> None:
        self._by_name.setdefault(str(peer.name), []).append(peer)

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)

    def discard(self, peer: PeerIdentity) -> None:
        """Forget one identity of a name (a revoked certificate), keeping its others."""
        name = str(peer.name)
        kept = [p for p in self._by_name.get(name, ()) if p is not peer]
        if kept:
            self._by_name[name] = kept
        else:
            self._by_name.pop(name, None)

    def peers(self) -> list[PeerIdentity]:
        """Every identity held, in name order."""
        return [peer for name in self.names() for peer in self._by_name[name]]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def signer(self, name: str, key_id: bytes) -> PeerIdentity:
        for peer in reversed(self._by_name.get(name, ())):
            if peer.signing_key_id == key_id:
                return peer
        raise UnknownSignerError(f"no verified signing key {key_id.hex()} for sender {name}")

    def recipient(self, name: str) -> PeerIdentity:
        peers = self._by_name.get(name)
        if not peers:
            raise UsageError(f"recipient {name} is not in the directory: no key to encrypt to")
        return peers[-1]
