"""The operator API's view of parked sharing messages, on a real daemon (issue 13).

Parking itself (a message the node refuses for good) is shown on in-process nodes in
``test_sharing_rows.py``; here: the three endpoints, their role and their errors.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemons import DaemonFederation

pytestmark = pytest.mark.timeout(120)

HUB = "522300"
PROVIDER = "522300.minzheng"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("daemons"), [HUB, PROVIDER])
    try:
        federation.start(HUB, PROVIDER)
        federation.wait_ready(HUB, PROVIDER)
        yield federation
    finally:
        federation.kill_all()


def call(
    fed: DaemonFederation, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    token = fed.config(PROVIDER).operator.token_file.read_text().strip()
    request = urllib.request.Request(
        fed.operator_url(PROVIDER) + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_parked_messages_are_listed_retried_and_dropped_through_the_api(
    fed: DaemonFederation,
) -> None:
    assert call(fed, "GET", "/v1/sub/parked") == (200, {"parked": []})
    status, answer = call(fed, "POST", "/v1/sub/parked/retry", {"operator": "王"})
    assert (status, answer) == (200, {"sent": [], "parked": 0})
    status, answer = call(fed, "POST", "/v1/sub/parked/retry", {})
    assert status == 400
    assert "operator" in answer["error"]
    status, answer = call(fed, "POST", "/v1/sub/parked/drop", {"operator": "王"})
    assert status == 400
    assert "numbers" in answer["error"]
    status, answer = call(fed, "POST", "/v1/sub/parked/drop", {"operator": "王", "numbers": [7]})
    assert status == 400
    assert "no parked sharing message numbered 7" in answer["error"]
