"""What two neighbours send each other to reconcile their catalogs (SPEC §18.7).

Theory of operation
-------------------
Catalogs are large and change slowly, so neighbours compare digests before
they send records.  A node summarises what it holds per provider: the count
and a SHA-256 over its sorted (code, version, content digest) triples, and a
top digest over those.  A puller compares the summary with its own, asks for
the version lists of the providers that differ only, and then for the records
that are missing or newer only.  Each step sends less than the one before,
and a catalog that is already in sync costs one summary (or one top digest).

This module holds the digests and the wire forms of the four messages; the
decisions (which providers differ, which records are wanted, what a
neighbour may see) are ``catalog_state``'s.  Every message is a canonical
msgpack array led by a format number; decoders name the failing field and
raise only ``RejectedError`` subclasses, whatever the bytes.

    summary   = [1, top: bin(32), [[provider, count, digest: bin(32)], ...]]
    providers = [1, [provider, ...]]
    versions  = [1, [[provider, [[code, version, content_digest], ...]], ...]]
    wanted    = [1, [[provider, code, version], ...]]
    records   = [1, [record: bin, ...]]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from exchnode.catalog._entry import MAX_RECORD_BYTES, check_code, check_provider, check_version
from exchnode.core import HASH_LENGTH, framed_fields, pack, require_canonical, unpack
from exchnode.errors import MalformedError, TooLargeError

__all__ = [
    "MAX_SYNC_BYTES",
    "MAX_SYNC_ITEMS",
    "PROVIDER_LABEL",
    "SUMMARY_LABEL",
    "SYNC_FORMAT",
    "ProviderDigest",
    "Summary",
    "Version",
    "Wanted",
    "check_array",
    "decode_providers",
    "decode_records",
    "decode_versions",
    "decode_wanted",
    "encode_providers",
    "encode_records",
    "encode_versions",
    "encode_wanted",
    "provider_digest",
]

SYNC_FORMAT = 1
PROVIDER_LABEL = b"exchnode/v1 catalog provider\x00"
SUMMARY_LABEL = b"exchnode/v1 catalog summary\x00"
MAX_SYNC_BYTES = 64 * 1024 * 1024
MAX_SYNC_ITEMS = 1 << 16


class Version(NamedTuple):
    """One record as a summary sees it: enough to decide whether to fetch it."""

    code: str
    version: int
    content_digest: bytes


class Wanted(NamedTuple):
    provider: str
    code: str
    version: int


class ProviderDigest(NamedTuple):
    records: int
    digest: bytes


def provider_digest(versions: Iterable[Version]) -> ProviderDigest:
    """Count and digest of one provider's records, independent of the order given."""
    ordered = sorted(versions)
    body = pack([[v.code, v.version, v.content_digest] for v in ordered])
    return ProviderDigest(len(ordered), hashlib.sha256(PROVIDER_LABEL + body).digest())


def _top(providers: Mapping[str, ProviderDigest]) -> bytes:
    body = pack([[p, d.records, d.digest] for p, d in sorted(providers.items())])
    return hashlib.sha256(SUMMARY_LABEL + body).digest()


class Summary(NamedTuple):
    """Per-provider digests and the top digest over them."""

    top: bytes
    providers: Mapping[str, ProviderDigest]

    @classmethod
    def of(cls, providers: Mapping[str, ProviderDigest]) -> Summary:
        return cls(_top(providers), dict(providers))

    def encode(self) -> bytes:
        listed = [[p, d.records, d.digest] for p, d in sorted(self.providers.items())]
        return pack([SYNC_FORMAT, self.top, listed])

    @classmethod
    def decode(cls, data: bytes) -> Summary:
        what = "catalog.summary"
        top, listed = _framed(data, what, 2)
        if type(top) is not bytes or len(top) != HASH_LENGTH:
            raise MalformedError(f"{what}.top", f"must be {HASH_LENGTH} bytes")
        providers: dict[str, ProviderDigest] = {}
        previous = ""
        for i, item in enumerate(check_array(listed, f"{what}.providers")):
            field = f"{what}.providers[{i}]"
            provider, count, digest = _shaped(item, field, 3, "[provider, count, digest]")
            check_provider(provider, f"{field}.provider")
            if provider <= previous:
                raise MalformedError(f"{field}.provider", "providers must be sorted and unique")
            previous = provider
            if type(count) is not int or not 1 <= count <= MAX_SYNC_ITEMS:
                raise MalformedError(f"{field}.count", f"must be an integer in 1..{MAX_SYNC_ITEMS}")
            if type(digest) is not bytes or len(digest) != HASH_LENGTH:
                raise MalformedError(f"{field}.digest", f"must be {HASH_LENGTH} bytes")
            providers[provider] = ProviderDigest(count, digest)
        summary = cls.of(providers)
        if summary.top != top:
            raise MalformedError(f"{what}.top", "does not match the providers' digests")
        require_canonical([SYNC_FORMAT, top, listed], data, what=what)
        return summary


def encode_providers(providers: Iterable[str]) -> bytes:
    return pack([SYNC_FORMAT, sorted(set(providers))])


def decode_providers(data: bytes) -> tuple[str, ...]:
    what = "catalog.providers"
    (listed,) = _framed(data, what, 1)
    names = check_array(listed, what)
    for i, name in enumerate(names):
        check_provider(name, f"{what}[{i}]")
        if i and name <= names[i - 1]:
            raise MalformedError(f"{what}[{i}]", "providers must be sorted and unique")
    require_canonical([SYNC_FORMAT, listed], data, what=what)
    return tuple(names)


def encode_versions(versions: Mapping[str, Sequence[Version]]) -> bytes:
    listed = [
        [p, [[v.code, v.version, v.content_digest] for v in sorted(vs)]]
        for p, vs in sorted(versions.items())
    ]
    return pack([SYNC_FORMAT, listed])


def decode_versions(data: bytes) -> dict[str, tuple[Version, ...]]:
    what = "catalog.versions"
    (listed,) = _framed(data, what, 1)
    result: dict[str, tuple[Version, ...]] = {}
    previous = ""
    for i, item in enumerate(check_array(listed, what)):
        field = f"{what}[{i}]"
        provider, entries = _shaped(item, field, 2, "[provider, versions]")
        check_provider(provider, f"{field}.provider")
        if provider <= previous:
            raise MalformedError(f"{field}.provider", "providers must be sorted and unique")
        previous = provider
        result[provider] = _versions(entries, f"{field}.versions")
    require_canonical([SYNC_FORMAT, listed], data, what=what)
    return result


def _versions(value: object, what: str) -> tuple[Version, ...]:
    versions: list[Version] = []
    for i, item in enumerate(check_array(value, what)):
        field = f"{what}[{i}]"
        code, version, digest = _shaped(item, field, 3, "[code, version, content_digest]")
        check_code(code, f"{field}.code")
        if versions and code <= versions[-1].code:
            raise MalformedError(f"{field}.code", "codes must be sorted and unique")
        check_version(version, f"{field}.version")
        if type(digest) is not bytes or len(digest) != HASH_LENGTH:
            raise MalformedError(f"{field}.content_digest", f"must be {HASH_LENGTH} bytes")
        versions.append(Version(code, version, digest))
    return tuple(versions)


def encode_wanted(wanted: Iterable[Wanted]) -> bytes:
    return pack([SYNC_FORMAT, [list(w) for w in sorted(set(wanted))]])


def decode_wanted(data: bytes) -> tuple[Wanted, ...]:
    what = "catalog.wanted"
    (listed,) = _framed(data, what, 1)
    wanted: list[Wanted] = []
    for i, item in enumerate(check_array(listed, what)):
        field = f"{what}[{i}]"
        provider, code, version = _shaped(item, field, 3, "[provider, code, version]")
        check_provider(provider, f"{field}.provider")
        check_code(code, f"{field}.code")
        check_version(version, f"{field}.version")
        one = Wanted(provider, code, version)
        if wanted and one <= wanted[-1]:
            raise MalformedError(field, "must be sorted and unique")
        wanted.append(one)
    require_canonical([SYNC_FORMAT, listed], data, what=what)
    return tuple(wanted)


def encode_records(records: Iterable[bytes]) -> bytes:
    return pack([SYNC_FORMAT, list(records)])


def decode_records(data: bytes) -> tuple[bytes, ...]:
    """Split a bundle into signed records; each is then verified on its own."""
    what = "catalog.records"
    (listed,) = _framed(data, what, 1)
    records = check_array(listed, what)
    for i, record in enumerate(records):
        if type(record) is not bytes or not record or len(record) > MAX_RECORD_BYTES:
            raise MalformedError(f"{what}[{i}]", f"must be 1..{MAX_RECORD_BYTES} bytes")
    require_canonical([SYNC_FORMAT, listed], data, what=what)
    return tuple(records)


# --- shapes -------------------------------------------------------------------------


def _framed(data: bytes, what: str, fields: int) -> list[Any]:
    value = unpack(
        data, what=what, max_size=MAX_SYNC_BYTES, max_array=MAX_SYNC_ITEMS, long_array=TooLargeError
    )
    return framed_fields(value, what, fields, SYNC_FORMAT)


def check_array(value: object, what: str) -> list[Any]:
    if type(value) is not list:
        raise MalformedError(what, "must be an array")
    return value


def _shaped(value: object, field: str, count: int, shape: str) -> list[Any]:
    if type(value) is not list or len(value) != count:
        raise MalformedError(field, f"expected {shape}")
    return value
