"""Sealing and opening envelopes: the protocol's cryptographic core (SPEC §7, §8).

Theory of operation
-------------------
A *sender* encrypts each payload with AES-256-GCM under a content key and
signs the envelope body, which holds the routing header, the content key
wrapped once per recipient, and the ciphertext.  Two shortcuts keep a steady
flow from being bound by public-key operations, and SPEC §7.4 states what
each keeps and gives up:

* **Content-key epochs.**  The content key for a given set of recipients is
  reused for a bounded *epoch* (by default an hour or 2**24 messages,
  whichever ends first), and so is its HPKE wrap for each recipient.  Every
  envelope still carries the wrapped key, so each one opens on its own; a
  recipient unwraps a given wrap once and caches the result.  Per message
  that leaves one AES-GCM encryption and a fresh 96-bit random nonce.

* **Batch signatures** (``batch``): one Ed25519 signature per batch of
  envelopes, over a Merkle root.

An *opener* checks, in the order SPEC §8.1 fixes: shape and limits (cheap,
before any cryptography), suite, freshness, that it is a recipient, the
sender's key, the seal, replay, then unwraps and decrypts.  Each failure is a
distinct typed error.  A hub, which holds no content key, runs the same
checks up to the seal (:class:`EnvelopeVerifier`) and can tell a spoofed
sender from a genuine one without reading any payload.

Everything here is pure: the clock (``now``) and the randomness source are
arguments, which is how the test vectors are reproducible.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchnode.core._batch import MAX_BATCH, SealVerifier, sign_leaves
from exchnode.core._directory import Directory
from exchnode.core._encoding import pack
from exchnode.core._envelope import (
    _CONTENT_TYPE,
    _KIND,
    DEFAULT_LIMITS,
    MESSAGE_ID_LENGTH,
    NONCE_LENGTH,
    SUITE_X25519_AES256GCM_ED25519,
    SUPPORTED_SUITES,
    TYPE_ENVELOPE,
    Envelope,
    Header,
    Limits,
    decode_envelope,
    encode_signed,
    find_recipient,
    signed_leaf,
)
from exchnode.core._hpke import hpke_open, hpke_seal
from exchnode.core._identity import LocalIdentity, PeerIdentity
from exchnode.core._names import NodeName
from exchnode.core._replay import DEFAULT_FRESHNESS, FreshnessPolicy, ReplayWindow, check_freshness
from exchnode.errors import (
    DecryptionError,
    InvalidNameError,
    ReplayError,
    UnsupportedSuiteError,
    UsageError,
)

__all__ = [
    "EnvelopeVerifier",
    "OpenPolicy",
    "Opened",
    "Opener",
    "Outgoing",
    "SealPolicy",
    "SealedEnvelope",
    "Sealer",
    "wrap_info",
]

WRAP_INFO_LABEL = b"exchnode/v1 content key\x00"
_MEMO_LIMIT = 4096  # distinct recipient sets / labels / epochs a sealer remembers
_SUITE = SUITE_X25519_AES256GCM_ED25519


def wrap_info(suite: int, sender: str, recipient: str, recipient_key_id: bytes) -> bytes:
    """HPKE ``info`` binding a wrapped content key to its sender and recipient (SPEC §7.2)."""
    return WRAP_INFO_LABEL + pack([suite, sender, recipient, recipient_key_id])


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to seal."""

    recipients: Sequence[str]
    payload: bytes
    kind: str = "data"
    content_type: str = "application/octet-stream"
    ttl: float | None = None
    message_id: bytes | None = None


class SealedEnvelope(NamedTuple):
    message_id: bytes
    digest: bytes
    data: bytes
    expires_ms: int = 0
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SealPolicy:
    """How a sender seals (SPEC §7.4 for what the epoch bounds protect)."""

    default_ttl: float = 7 * 86400.0
    max_ttl: float = 30 * 86400.0
    epoch_lifetime: float = 3600.0
    epoch_max_messages: int = 1 << 24
    max_batch: int = 1024
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not 0 < self.default_ttl <= self.max_ttl:
            raise UsageError("default_ttl must be positive and at most max_ttl")
        if self.epoch_lifetime <= 0 or not 1 <= self.epoch_max_messages <= 1 << 32:
            raise UsageError("epoch bounds must be positive and at most 2**32 messages")
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise UsageError(f"max_batch must be in 1..{MAX_BATCH}")


class _Epoch:
    __slots__ = ("aead", "entries", "expires_at", "remaining")

    def __init__(self, aead: AESGCM, entries: list[list[object]], expires_at: float, uses: int):
        self.aead = aead
        self.entries = entries
        self.expires_at = expires_at
        self.remaining = uses


class Sealer:
    """Seals envelopes from one local identity; holds the sender's epoch state."""

    def __init__(
        self,
        identity: LocalIdentity,
        directory: Directory,
        policy: SealPolicy | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.policy = policy or SealPolicy()
        self._random = random
        self._sender = str(identity.name)
        self._epochs: dict[tuple[str, ...], _Epoch] = {}
        self._recipient_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._labels: set[tuple[str, str]] = set()

    def seal(self, item: Outgoing, now: float) -> SealedEnvelope:
        return self.seal_batch([item], now)[0]

    def seal_batch(self, items: Sequence[Outgoing], now: float) -> list[SealedEnvelope]:
        """Seal many messages under one signature per ``policy.max_batch`` of them."""
        sealed: list[SealedEnvelope] = []
        step = self.policy.max_batch
        for start in range(0, len(items), step):
            sealed.extend(self._seal_chunk(items[start : start + step], now))
        return sealed

    def rotate(self) -> None:
        """Forget every content-key epoch, so the next message starts a fresh one."""
        self._epochs.clear()

    def _seal_chunk(self, items: Sequence[Outgoing], now: float) -> list[SealedEnvelope]:
        created = int(now * 1000)
        random = self._random
        sender, sender_key_id = self._sender, self.identity.peer.signing_key_id
        bodies: list[bytes] = []
        ids: list[bytes] = []
        expiries: list[int] = []
        addressed: list[tuple[str, ...]] = []
        for item in items:
            recipients = self._check(item)
            epoch = self._epoch(recipients, now)
            if item.message_id is None:
                fresh = random(MESSAGE_ID_LENGTH + NONCE_LENGTH)
                message_id, nonce = fresh[:MESSAGE_ID_LENGTH], fresh[MESSAGE_ID_LENGTH:]
            else:
                message_id, nonce = item.message_id, random(NONCE_LENGTH)
            ttl = self.policy.default_ttl if item.ttl is None else item.ttl
            payload = item.payload
            body = pack(
                [
                    _SUITE,
                    message_id,
                    sender,
                    sender_key_id,
                    epoch.entries,
                    created,
                    created + int(ttl * 1000),
                    item.kind,
                    item.content_type,
                    len(payload),
                    nonce,
                    epoch.aead.encrypt(nonce, payload, message_id),
                ]
            )
            bodies.append(body)
            ids.append(message_id)
            expiries.append(created + int(ttl * 1000))
            addressed.append(recipients)
        leaves = [signed_leaf(TYPE_ENVELOPE, body) for body in bodies]
        seals = sign_leaves(self.identity.signing_private_key, _SUITE, leaves)
        return [
            SealedEnvelope(
                message_id, leaf, encode_signed(TYPE_ENVELOPE, body, seal), expires, recipients
            )
            for message_id, leaf, body, seal, expires, recipients in zip(
                ids, leaves, bodies, seals, expiries, addressed, strict=True
            )
        ]

    def _check(self, item: Outgoing) -> tuple[str, ...]:
        """Refuse, before any cryptography, what the receiver would refuse.

        Recipient sets and (kind, content type) pairs repeat in a flow, so
        each distinct one is validated once and remembered.
        """
        given = item.recipients
        key = given if type(given) is tuple else tuple(given)
        recipients = self._recipient_sets.get(key)
        if recipients is None:
            recipients = self._check_recipients(key)
        payload = item.payload
        if type(payload) is not bytes:
            raise UsageError(f"payload must be bytes, got {type(payload).__name__}")
        if len(payload) > self.policy.limits.max_payload_bytes:
            raise UsageError(
                f"payload of {len(payload)} bytes exceeds the limit of "
                f"{self.policy.limits.max_payload_bytes}"
            )
        if (item.kind, item.content_type) not in self._labels:
            self._check_labels(item.kind, item.content_type)
        if item.ttl is not None and not 0 < item.ttl <= self.policy.max_ttl:
            raise UsageError(f"ttl must be in (0, {self.policy.max_ttl:.0f}] seconds")
        if item.message_id is not None and (
            type(item.message_id) is not bytes or len(item.message_id) != MESSAGE_ID_LENGTH
        ):
            raise UsageError(f"message_id must be {MESSAGE_ID_LENGTH} bytes")
        return recipients

    def _check_recipients(self, given: tuple[str, ...]) -> tuple[str, ...]:
        recipients = tuple(sorted(given))
        limits = self.policy.limits
        if not 1 <= len(recipients) <= limits.max_recipients:
            raise UsageError(f"an envelope needs 1..{limits.max_recipients} recipients")
        if len(set(recipients)) != len(recipients):
            raise UsageError(f"duplicate recipient in {list(given)}")
        for name in recipients:
            try:
                NodeName.parse(name)
            except InvalidNameError as exc:
                raise UsageError(f"recipient {name!r}: {exc}") from None
        if len(self._recipient_sets) >= _MEMO_LIMIT:
            self._recipient_sets.clear()
        self._recipient_sets[given] = recipients
        return recipients

    def _check_labels(self, kind: str, content_type: str) -> None:
        if type(kind) is not str or not _KIND.match(kind):
            raise UsageError(f"kind {kind!r} must be 1-32 of a-z 0-9 . - from a letter")
        if type(content_type) is not str or not _CONTENT_TYPE.match(content_type):
            raise UsageError(f"content_type {content_type!r} must be 1-127 printable ASCII")
        if len(self._labels) >= _MEMO_LIMIT:
            self._labels.clear()
        self._labels.add((kind, content_type))

    def _epoch(self, recipients: tuple[str, ...], now: float) -> _Epoch:
        epoch = self._epochs.get(recipients)
        if epoch is None or epoch.remaining <= 0 or now >= epoch.expires_at:
            if len(self._epochs) >= _MEMO_LIMIT:
                self._epochs = {k: e for k, e in self._epochs.items() if now < e.expires_at}
                if len(self._epochs) >= _MEMO_LIMIT:
                    self._epochs.clear()
            epoch = self._new_epoch(recipients, now)
            self._epochs[recipients] = epoch
        epoch.remaining -= 1
        return epoch

    def _new_epoch(self, recipients: tuple[str, ...], now: float) -> _Epoch:
        content_key = self._random(32)
        entries: list[list[object]] = []
        for name in recipients:
            peer = self.directory.recipient(name)
            info = wrap_info(_SUITE, self._sender, name, peer.encryption_key_id)
            wrapped = hpke_seal(peer.encryption_key, content_key, info=info, random=self._random)
            entries.append([name, peer.encryption_key_id, wrapped])
        policy = self.policy
        return _Epoch(
            AESGCM(content_key), entries, now + policy.epoch_lifetime, policy.epoch_max_messages
        )


@dataclass(frozen=True, slots=True)
class OpenPolicy:
    """What a receiving node accepts."""

    freshness: FreshnessPolicy = DEFAULT_FRESHNESS
    limits: Limits = DEFAULT_LIMITS
    suites: frozenset[int] = SUPPORTED_SUITES


class Opened(NamedTuple):
    """An envelope that passed every check, with its plaintext."""

    envelope: Envelope
    sender: PeerIdentity
    plaintext: bytes

    @property
    def header(self) -> Header:
        return self.envelope.header

    @property
    def message_id(self) -> bytes:
        return self.envelope.header.message_id

    @property
    def digest(self) -> bytes:
        return self.envelope.digest


class EnvelopeVerifier:
    """Every check that needs no content key: what a hub can verify (SPEC §8.1 steps 1-6)."""

    def __init__(self, directory: Directory, policy: OpenPolicy | None = None) -> None:
        self.directory = directory
        self.policy = policy or OpenPolicy()
        self._seals = SealVerifier()

    def verify(self, data: bytes, now: float, *, recipient: str | None = None) -> Envelope:
        envelope, _ = self.verify_sender(data, now, recipient=recipient)
        return envelope

    def verify_sender(
        self, data: bytes, now: float, *, recipient: str | None = None
    ) -> tuple[Envelope, PeerIdentity]:
        policy = self.policy
        envelope = decode_envelope(data, policy.limits)
        header = envelope.header
        if header.suite not in policy.suites:
            raise UnsupportedSuiteError(f"suite {header.suite} is not accepted by this node")
        check_freshness(header.created_ms, header.expires_ms, now, policy.freshness, "envelope")
        if recipient is not None:
            find_recipient(header, recipient)
        sender = self.directory.signer(header.sender, header.sender_key_id)
        self._seals.verify(
            sender.signing_key,
            sender.signing_key_raw,
            header.suite,
            envelope.digest,
            envelope.seal,
            lambda: f"envelope {header.message_id.hex()} from {header.sender}",
        )
        return envelope, sender


class Opener:
    """Opens envelopes addressed to one local identity."""

    def __init__(
        self,
        identity: LocalIdentity,
        directory: Directory,
        policy: OpenPolicy | None = None,
        replay: ReplayWindow | None = None,
        key_cache_size: int = 4096,
    ) -> None:
        self.identity = identity
        self.verifier = EnvelopeVerifier(directory, policy)
        self.replay = replay
        self._name = str(identity.name)
        self._key_id = identity.peer.encryption_key_id
        self._keys: OrderedDict[tuple[str, bytes], AESGCM] = OrderedDict()
        self._key_cache_size = key_cache_size

    def open(self, data: bytes, now: float) -> Opened:
        envelope, sender = self.verifier.verify_sender(data, now, recipient=self._name)
        return self.open_verified(envelope, sender, now)

    def open_verified(self, envelope: Envelope, sender: PeerIdentity, now: float) -> Opened:
        """Finish opening an envelope that ``self.verifier`` has verified (SPEC §8.1 from step 7).

        A node verifies every envelope when it takes custody; the ones it then
        delivers itself need not be parsed and verified a second time.
        """
        header = envelope.header
        find_recipient(header, self._name)
        replay = self.replay
        if replay is not None and (header.sender, header.message_id) in replay:
            raise ReplayError(
                f"message {header.message_id.hex()} from {header.sender} was already accepted"
            )
        aead = self._content_key(header)
        try:
            plaintext = aead.decrypt(header.nonce, envelope.ciphertext, header.message_id)
        except InvalidTag:
            raise DecryptionError(
                f"payload of message {header.message_id.hex()} does not decrypt"
            ) from None
        if replay is not None:
            replay.record(header.sender, header.message_id, header.expires_ms, now)
        return Opened(envelope, sender, plaintext)

    def _content_key(self, header: Header) -> AESGCM:
        entry = find_recipient(header, self._name)
        if entry.key_id != self._key_id:
            raise DecryptionError(
                f"content key is wrapped to encryption key {entry.key_id.hex()}, "
                f"this node holds {self._key_id.hex()}"
            )
        cache_key = (header.sender, entry.wrapped_key)
        aead = self._keys.get(cache_key)
        if aead is not None:
            self._keys.move_to_end(cache_key)
            return aead
        info = wrap_info(header.suite, header.sender, self._name, entry.key_id)
        content_key = hpke_open(self.identity.encryption_private_key, entry.wrapped_key, info=info)
        if len(content_key) != 32:
            raise DecryptionError("unwrapped content key is not 32 bytes")
        aead = AESGCM(content_key)
        self._keys[cache_key] = aead
        if len(self._keys) > self._key_cache_size:
            self._keys.popitem(last=False)
        return aead
