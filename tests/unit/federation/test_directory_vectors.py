"""Directory format 2's vectors (``protocol/vectors/directory.json``), replayed from the JSON alone.

``tests/unit/test_vectors.py`` regenerates every vector file byte for byte;
this replays the directory's pages as another implementation would: the
trust store from ``pki.json``'s PEM, each page verified (SPEC §14.15) by its
asker at its time, each invalid one refused with its code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exchnode.errors import RejectedError
from exchnode.federation import Audience, FeedPosition, decode_lookup
from exchnode.federation._directory_trust import ChainMemo, verify_page
from exchnode.pki import TrustStore, load_certificates_pem
from exchnode.pki._verify import load_crl_pem

VECTORS = Path(__file__).resolve().parents[3] / "protocol" / "vectors"
PKI: dict[str, Any] = json.loads((VECTORS / "pki.json").read_text("utf-8"))
DIRECTORY: dict[str, Any] = json.loads((VECTORS / "directory.json").read_text("utf-8"))
TRUST = TrustStore(
    load_certificates_pem(PKI["root"].encode()),
    [load_crl_pem(crl.encode()) for crl in PKI["crls"]],
)


def check(vector: dict[str, Any]) -> Any:
    since = vector["since"]
    position = FeedPosition(bytes.fromhex(since["feed"]), since["seq"]) if since["feed"] else None
    return verify_page(
        bytes.fromhex(vector["hex"]),
        TRUST,
        vector["check_at"],
        vector["issuer"],
        Audience[vector["audience"].upper()],
        memo=ChainMemo(),
        since=position,
    )


@pytest.mark.parametrize("vector", DIRECTORY["valid"], ids=[v["name"] for v in DIRECTORY["valid"]])
def test_each_valid_page_verifies_with_what_it_says(vector: dict[str, Any]) -> None:
    page = check(vector)
    assert [entry.name for entry in page.entries] == vector["entries"]
    assert list(page.unknown) == vector.get("unknown", [])
    assert page.dropped == ()


@pytest.mark.parametrize(
    "vector", DIRECTORY["invalid"], ids=[v["name"] for v in DIRECTORY["invalid"]]
)
def test_each_invalid_page_is_refused_with_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(RejectedError) as caught:
        check(vector)
    assert caught.value.code == vector["error"]


def test_the_first_page_carries_crls_with_their_cas_chains() -> None:
    page = check(DIRECTORY["valid"][0])
    assert len(page.crls) == len(PKI["crls"])
    assert any(crl.ca_chain for crl in page.crls)  # a sub-CA's CRL travels with its CA


def test_the_lookup_request_decodes_to_its_names() -> None:
    request = DIRECTORY["lookup_request"]
    assert list(decode_lookup(bytes.fromhex(request["hex"]))) == request["names"]
