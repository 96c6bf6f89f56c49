"""The web console end to end: real daemons on loopback, Debian's chromium driven by Playwright.

A city hub (520100) with three departments configured: two running (a
requester, 520100.gongan, and a provider, 520100.minzheng), one never started
(520100.tongji), so the hub keeps a queue for it and its link is down; and a
fourth department (520100.jiaoyu) that believes the hub is its parent but is
not configured there, so the hub refuses it.  Traffic crosses the hub, the
provider publishes a conditional resource and the requester asks for it, so
a request waits at the provider with its working-day deadline.

Then a real browser signs in to the hub's console with the administrator's
token and reads every panel (neighbours and states, the queue, the standing
refusal, the audit heads and the witnessed children, certificates and CRLs,
the catalog searched), sees the queue grow without a reload, and at the
provider the request waiting; the auditor's token reads the same; a wrong
token and the operator's are refused with a message on the page.  Around
the browser, the same API over HTTP: the security headers on every console
answer, refusals included, no route but GETs, nothing of the token in a URL.

Chromium comes from apt: installed here when missing (root, apt-get); a
machine where it cannot be skips, unless ``EXCHNODE_REQUIRE_CONSOLE=1``
(``.ci/run``), where a missing browser fails.  Playwright's own browser
downloads are never used.  ``EXCHNODE_CONSOLE_SCREENSHOT=PATH`` saves the
administrator's view of the hub there (how docs/console.png is made).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exchnode.audit import Role
from exchnode.errors import UsageError
from exchnode.node.console import SECURITY_HEADERS
from exchnode.node.operator import Handler
from tests.integration.daemons import DaemonFederation, until
from tests.integration.test_daemon_catalog import entry as catalog_entry
from tests.integration.test_daemon_errors import api_in_process

pytestmark = pytest.mark.timeout(240)

HUB = "520100"
REQUESTER = "520100.gongan"
PROVIDER = "520100.minzheng"
SILENT = "520100.tongji"  # configured at the hub, never started: its queue waits
STRANGER = "520100.jiaoyu"  # running, not configured at the hub: refused
NAMES = [HUB, REQUESTER, PROVIDER, SILENT, STRANGER]
CODE = "101001/000001"
PURPOSE = "<script>window.pwned=1</script>核验户籍"  # rendered as text, never as markup
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --- the browser --------------------------------------------------------------------------


def _apt_get(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def _install_chromium() -> str | None:
    """Install Debian's chromium if missing; None when done, else why it cannot be here."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return "chromium is not installed and there is no apt-get here"
    if os.geteuid() != 0:
        return "chromium is not installed and apt-get needs root"
    done = _apt_get("install", "-y", "chromium")  # recommends too: as it was tried here
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        _apt_get("update", timeout=600)
        done = _apt_get("install", "-y", "chromium")
    if not CHROMIUM.exists():
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return f"apt-get install chromium failed: {lines[-1] if lines else done.returncode}"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _install_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the test extra has it
        missing = missing or f"the playwright package is missing ({exc})"
    if missing is not None:
        if os.environ.get("EXCHNODE_REQUIRE_CONSOLE") == "1":
            pytest.fail(f"the console test needs chromium: {missing}")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


# --- the federation ------------------------------------------------------------------------


def _set(text: str, default: str, value: str) -> str:
    assert default in text, default
    return text.replace(default, value)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("console"), NAMES)
    hub = federation.config_path(HUB)
    text = hub.read_text("utf-8")
    text = _set(
        text,
        f'[[peers]]\nname = "{STRANGER}"\nrelation = "child"\nurl = "{federation.url(STRANGER)}"\n',
        "",
    )
    text = _set(text, "# witness_interval = 60.0", "witness_interval = 1.0")
    text = _set(text, "# witness_silent_rounds = 5", "witness_silent_rounds = 2")
    hub.write_text(_set(text, "# head_interval = 10.0", "head_interval = 1.0"), "utf-8")
    stranger = federation.config_path(STRANGER)
    text = stranger.read_text("utf-8")
    stranger.write_text(_set(text, "# refresh = 60.0", "refresh = 1.0"), "utf-8")
    with federation.serving(HUB, REQUESTER, PROVIDER, STRANGER):
        yield federation


def token(fed: DaemonFederation, name: str, role: str) -> str:
    return fed.token(name, Role(role))


def call(
    fed: DaemonFederation,
    name: str,
    path: str,
    *,
    role: str | None = None,
    secret: str | None = None,
    body: Any = None,
    method: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to ``name``'s operator API as ``role`` (or with ``secret``)."""
    if role is not None:
        secret = token(fed, name, role)
    return fed.http(name, path, secret=secret, body=body, method=method, timeout=20)


def ok(answer: tuple[int, dict[str, str], bytes]) -> Any:
    status, _, data = answer
    assert status == 200, (status, data[:500])
    return json.loads(data)


def entry() -> dict[str, Any]:
    """The resource the provider publishes: the catalog tests' entry, of this division."""
    published = catalog_entry(1, provider_code="11520100MB0000001X")
    assert published["code"] == CODE
    return published


@pytest.fixture(scope="module")
def traffic(fed: DaemonFederation) -> dict[str, Any]:
    """Messages across the hub and into the silent department's queue, and a request waiting."""
    for _ in range(3):
        ok(call(fed, REQUESTER, f"/v1/send?to={SILENT}", role="operator", body={"n": 1}))
    ok(call(fed, REQUESTER, f"/v1/send?to={PROVIDER}", role="operator", body={"n": 2}))
    ok(
        call(
            fed,
            PROVIDER,
            "/v1/catalog/publish",
            role="operator",
            body={"operator": "clerk-wang", "entry": entry()},
        )
    )
    until(
        lambda: ok(call(fed, HUB, "/v1/audit/catalog", role="auditor"))["records"],
        f"{CODE} in the hub's catalog",
    )
    request = ok(
        call(
            fed,
            REQUESTER,
            "/v1/sub/requests",
            role="operator",
            body={
                "operator": "clerk-li",
                "provider": PROVIDER,
                "code": CODE,
                "purpose": PURPOSE,
                "scope": "本县低保申请人",
                "items": ["身份证号", "姓名"],
            },
        )
    )
    until(
        lambda: ok(call(fed, PROVIDER, "/v1/sub/incoming?state=pending", role="operator"))[
            "requests"
        ],
        "the request pending at the provider",
    )
    until(
        lambda: ok(call(fed, HUB, "/health")).get("outbound", {}).get(SILENT, {}).get("count") == 3,
        f"three messages queued at the hub for {SILENT}",
    )
    until(lambda: ok(call(fed, HUB, "/health"))["refusals"], f"the hub refusing {STRANGER}")
    return {"request_id": request["request_id"]}


# --- the API around the page -----------------------------------------------------------------


def test_console_answers_carry_the_security_headers_and_only_two_roles_read(
    fed: DaemonFederation,
) -> None:
    answers = {
        "page": call(fed, HUB, "/console/"),
        "page without slash": call(fed, HUB, "/console"),
        "script": call(fed, HUB, "/console/console.js"),
        "style": call(fed, HUB, "/console/console.css"),
        "overview": call(fed, HUB, "/v1/console/overview", role="administrator"),
        "catalog": call(fed, HUB, "/v1/console/catalog?q=x", role="auditor"),
        "no token": call(fed, HUB, "/v1/console/overview"),
        "wrong token": call(fed, HUB, "/v1/console/overview", secret="w" * 32),
        "operator": call(fed, HUB, "/v1/console/overview", role="operator"),
        "a write": call(fed, HUB, "/v1/console/overview", role="administrator", body={}),
    }
    for what, (_, headers, _) in answers.items():
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (what, name, headers)
    assert "default-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    statuses = {what: answer[0] for what, answer in answers.items()}
    assert statuses == {
        "page": 200,
        "page without slash": 200,
        "script": 200,
        "style": 200,
        "overview": 200,
        "catalog": 200,
        "no token": 401,
        "wrong token": 401,
        "operator": 403,
        "a write": 405,
    }
    assert answers["page"][1]["Content-Type"].startswith("text/html")
    assert answers["script"][1]["Content-Type"].startswith("text/javascript")
    assert answers["style"][1]["Content-Type"].startswith("text/css")
    page = answers["page"][2].decode()
    assert "<script>" not in page  # the policy allows no inline script ...
    assert "style=" not in page  # ... nor style
    refused = json.loads(answers["operator"][2])
    assert refused["code"] == "forbidden"
    assert "needs the administrator or auditor role" in refused["error"]
    # The page and its files hold nothing of the node: the same bytes whoever asks.
    assert call(fed, PROVIDER, "/console/")[2] == answers["page"][2]
    # Elsewhere the API is unchanged: health carries no console header.
    assert "Content-Security-Policy" not in call(fed, HUB, "/health")[1]


def test_overview_json(fed: DaemonFederation, traffic: dict[str, Any]) -> None:
    overview = ok(call(fed, HUB, "/v1/console/overview", role="auditor"))
    assert overview["node"]["name"] == HUB
    assert overview["node"]["role"] == "auditor"
    assert overview["node"]["utc_offset_minutes"] == 480
    neighbours = {p["name"]: p for p in overview["neighbours"]}
    assert set(neighbours) == {REQUESTER, PROVIDER, SILENT}
    assert neighbours[SILENT]["queued"]["count"] == 3
    (queue,) = [q for q in overview["queues"]["next_hops"] if q["next_hop"] == SILENT]
    assert queue["next_hop"] == SILENT
    assert queue["count"] == 3
    assert queue["bytes"] > 0
    assert 0 <= queue["oldest_age_s"] < 120
    (refusal,) = [r for r in overview["refusals"] if r["peer"] == STRANGER]
    assert (refusal["refused_by"], refusal["reason"]) == (HUB, "not-a-neighbour")
    assert overview["certificates"]["certificates"][0]["kind"] == "node"
    assert {c["kind"] for c in overview["certificates"]["certificates"]} == {"node", "ca", "root"}
    assert overview["catalog"] == {"published": 1, "withdrawn": 0}
    waiting = ok(call(fed, PROVIDER, "/v1/console/overview", role="administrator"))
    (request,) = waiting["subscriptions"]["waiting"]
    assert request["request_id"] == traffic["request_id"]
    assert request["requester"] == REQUESTER
    assert request["purpose"] == PURPOSE
    assert request["working_days_left"] == 10  # it arrived today
    assert request["overdue"] is False
    assert request["deadline"].endswith("T00:00:00+08:00")
    found = ok(
        call(fed, HUB, "/v1/console/catalog?q=%E4%BA%BA%E5%8F%A3+population", role="auditor")
    )
    assert (found["found"], found["held"]) == (1, 1)
    assert found["records"][0]["code"] == CODE
    none = ok(call(fed, HUB, "/v1/console/catalog?q=nothing-like-it", role="administrator"))
    assert (none["found"], none["records"]) == (0, [])
    status, _, data = call(fed, HUB, "/v1/console/catalog?limit=0", role="administrator")
    assert status == 400
    assert "limit" in json.loads(data)["error"]


class Writer:
    """A route group that would write in the console's area."""

    async def _write(self, request: web.Request) -> web.Response:
        return web.json_response({})

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/v1/console/a", self._write), ("POST", "/v1/console/x", self._write)]


@pytest.mark.asyncio
async def test_the_api_refuses_to_start_with_a_route_that_writes_in_the_console_area() -> None:
    api = api_in_process(console=Writer())
    with pytest.raises(UsageError, match=r"POST /v1/console/x: its area's readers only read"):
        await api.start()
    await api.close()


# --- the page in a browser ---------------------------------------------------------------------


def rows(page: Any, table: str) -> list[list[str]]:
    """The text of every cell of a table's body, row by row."""
    result: list[list[str]] = page.eval_on_selector_all(
        f"#{table} tbody tr",
        "trs => trs.map(tr => Array.from(tr.cells, td => td.textContent))",
    )
    return result


def sign_in(page: Any, url: str, secret: str) -> None:
    page.goto(url + "/console/")
    page.fill("#token", secret)
    page.click("#sign-in-button")


def signed_in(page: Any, role: str) -> None:
    page.wait_for_selector("#console:not([hidden])", timeout=15_000)
    page.wait_for_function("role => document.getElementById('role').textContent === role", arg=role)


@contextlib.contextmanager
def console_as(browser: Any, fed: DaemonFederation, name: str, role: str) -> Iterator[Any]:
    """A page of a fresh browser context, signed in to ``name``'s console as ``role``."""
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, fed.operator_url(name), token(fed, name, role))
        signed_in(page, role)
        yield page
    finally:
        context.close()


def wait_rows(page: Any, table: str, check: Any, what: str) -> list[list[str]]:
    """The table's rows once ``check(rows)`` holds (the page refreshes every few seconds)."""
    found: list[list[str]] = until(
        lambda: (shown := rows(page, table)) and check(shown) and shown, what, 30
    )
    return found


def test_administrator_reads_every_panel_of_the_hub(
    browser: Any, fed: DaemonFederation, traffic: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:  # a CSP violation or a failed load is one of these
        if message.type == "error":
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    secret = token(fed, HUB, "administrator")
    sign_in(page, fed.operator_url(HUB), secret)
    signed_in(page, "administrator")
    assert secret not in page.url
    assert page.evaluate("sessionStorage.getItem('exchnode.console.token')") == secret
    assert page.evaluate("localStorage.length") == 0
    assert page.text_content("#node-name") == f"{HUB} (city)"

    neighbours = {r[0]: r for r in rows(page, "neighbours")}
    assert set(neighbours) == {REQUESTER, PROVIDER, SILENT}
    assert neighbours[REQUESTER][1:3] == ["child", "up"]
    assert neighbours[SILENT][2] in {"down", "unknown"}
    assert neighbours[SILENT][6].startswith("3 (")

    (queue,) = [q for q in rows(page, "queues") if q[0] == SILENT]
    assert queue[0:2] == [SILENT, "3"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", queue[3]), queue
    (refusal,) = [r for r in rows(page, "refusals") if r[0] == STRANGER]
    assert refusal[2:4] == [HUB, "not-a-neighbour"]

    # The audit heads, and the children witnessed: the silent one is flagged.
    audit = page.text_content("#audit-facts")
    assert "signed 20" in (audit or "")
    witnessed = wait_rows(
        page,
        "witnessed",
        lambda found: (
            {r[0]: r[3] for r in found}.get(SILENT) == "silent"
            and {r[0]: r[3] for r in found}.get(REQUESTER) in {"first-head", "consistent"}
        ),
        "the children witnessed, the silent one flagged",
    )
    assert {r[0] for r in witnessed} == {REQUESTER, PROVIDER, SILENT}
    attention = page.text_content("#attention") or ""
    assert f"Child {SILENT}'s audit log: silent" in attention
    assert f"Neighbour {SILENT} is down" in attention or SILENT in attention

    certificates = rows(page, "certificates")
    assert certificates[0][0] == "node"
    assert {c[0] for c in certificates} == {"node", "ca", "root"}
    assert all(c[5] == "current" for c in certificates)
    assert HUB in certificates[0][1]
    crls = rows(page, "crls")
    assert crls
    assert all(c[6] == "current" for c in crls)

    (record,) = rows(page, "catalog")
    assert record[0:3] == [CODE, PROVIDER, "人口基本信息"]
    page.fill("#catalog-q", "nothing-like-it")
    wait_rows(page, "catalog", lambda found: found[0][0] == "No catalog entry matches.", "no match")
    page.fill("#catalog-q", "身份证号")  # a data item's name
    wait_rows(page, "catalog", lambda found: found[0][0] == CODE, "found by a data item")

    # Auto-refresh: one more message for the silent department shows without a reload.
    ok(call(fed, REQUESTER, f"/v1/send?to={SILENT}", role="operator", body={"n": 3}))
    wait_rows(page, "queues", lambda found: [SILENT, "4"] in [q[:2] for q in found], "4 queued")

    screenshot = page.screenshot(full_page=True)
    assert screenshot.startswith(b"\x89PNG")
    target = os.environ.get("EXCHNODE_CONSOLE_SCREENSHOT")
    if target:
        Path(target).write_bytes(screenshot)

    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert page.evaluate("sessionStorage.length") == 0
    assert problems == []
    context.close()


def test_provider_shows_the_request_waiting_with_its_deadline(
    browser: Any, fed: DaemonFederation, traffic: dict[str, Any]
) -> None:
    with console_as(browser, fed, PROVIDER, "administrator") as page:
        (waiting,) = rows(page, "waiting")
        _, request_id, requester, resource, purpose, items, deadline, left = waiting
        assert traffic["request_id"].startswith(request_id)
        assert (requester, resource) == (REQUESTER, f"{CODE} of {PROVIDER}")
        assert purpose == PURPOSE  # shown as text ...
        assert page.evaluate("window.pwned") is None  # ... never run
        assert page.locator("#waiting script").count() == 0
        assert set(items.split(", ")) == {"身份证号", "姓名"}
        assert deadline.endswith("T00:00:00+08:00")
        assert left == "10"
        assert "10 working days" in (page.text_content("#answer-days") or "")
        assert rows(page, "queues") == [["Nothing waiting for any next hop."]]


def test_auditor_reads_the_console_too(
    browser: Any, fed: DaemonFederation, traffic: dict[str, Any]
) -> None:
    with console_as(browser, fed, HUB, "auditor") as page:
        assert {r[0] for r in rows(page, "neighbours")} == {REQUESTER, PROVIDER, SILENT}
        assert {r[0] for r in rows(page, "witnessed")} == {REQUESTER, PROVIDER, SILENT}
        queued = [q[1] for q in rows(page, "queues") if q[0] == SILENT]
        assert queued in (["3"], ["4"])  # before or after the administrator's test sent one more
        assert "signed 20" in (page.text_content("#audit-facts") or "")


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("wrong", "Sign-in refused: this node does not know that token."),
        ("operator", "needs the administrator or auditor role; this credential is the operator's"),
    ],
)
def test_other_tokens_are_refused_with_a_visible_message(
    browser: Any, fed: DaemonFederation, who: str, message: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    secret = "x" * 32 if who == "wrong" else token(fed, HUB, "operator")
    sign_in(page, fed.operator_url(HUB), secret)
    page.wait_for_selector("#problem:not([hidden])", timeout=15_000)
    assert message in (page.text_content("#problem") or "")
    assert page.is_visible("#sign-in")
    assert not page.is_visible("#console")
    assert page.evaluate("sessionStorage.length") == 0  # a refused token is not kept
    assert rows(page, "neighbours") == []
    context.close()
