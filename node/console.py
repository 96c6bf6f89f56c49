"""The web console: one read-only page of the node's state, for the administrator and the auditor.

Theory of operation
-------------------
An operations team watches its nodes all day the way it watches a message
broker: a page in a browser that says what is up, what waits, what was
refused and what runs out soon.  The daemon serves that page itself, from
the operator API's address, with nothing fetched from anywhere else (the
machines are offline): one HTML page, one script and one style sheet shipped
inside the package (``console.html``, ``console.js``, ``console.css``), no
build step, no framework.

**Two areas** (``node.roles.AREAS``).  ``/console`` serves the page, the
script and the style sheet without a token: they hold no data, only code a
browser needs before it can ask for one.  Everything the page shows comes
from ``GET /v1/console/...``, which the administrator's and the auditor's
tokens read (the area's role and its one reader) and no other: the
operator's token is refused 403 and put on the record like every refusal,
a wrong or missing token 401.  The API refuses at start any route of that
area that is not a GET, so the console can never change anything.

**Two reads.**

* ``GET /v1/console/overview`` -- everything but the catalog's entries in one
  answer, so a refresh every few seconds is one round trip: the node (name,
  level, uptime, who is signed in, the time zone offset times are shown in);
  the neighbours (relation, URL, state ``up``/``down``/``unknown``/``refused``
  with the refusal, as ``/v1/admin/peers`` has them); the queues per next hop
  (count, bytes, and the age of the oldest message waiting: the time since
  its sender created it, read from the head of the queue), the inbox and the
  counters (as ``/health``); the standing refusals (as ``/health``); the
  subscription requests this node received and has not answered, each with
  its working-day deadline, the working days left and whether it is overdue,
  and the open escalations a hub holds as sharing authority; the audit log's
  size and last signed head (the records since it are under the seal), and
  per child of a hub the head it keeps and its last verdict (as
  ``/v1/audit/witnessed``, without the head's bytes); every certificate the
  node runs with (its own, its chain, the roots) with the days left, and
  ``expiring`` within ``[trust] certificate_warning_days`` or ``expired``; the CRLs
  with their states and warnings (as ``/v1/admin/crls``).
* ``GET /v1/console/catalog?q=TEXT&status=published|withdrawn|all&limit=N``
  -- the catalog records this node holds whose code, provider,
  classification, name, summary or a data item's name holds every word of
  ``q`` (ignoring case), at most ``limit`` (default and most
  :data:`MAX_CATALOG_SHOWN`) with the number found (``forms.record_json``).

These are new reads rather than the page calling the existing endpoints
because each of those belongs to one role (``/v1/admin`` the
administrator's, ``/v1/audit`` the auditor's, ``/v1/catalog`` and
``/v1/sub`` the operator's), and the console is for both the administrator
and the auditor.  They build their JSON with the same functions those
endpoints use, so both say the same.

**Headers.**  Every answer on a console path, refusals included, carries
:data:`SECURITY_HEADERS`: a Content-Security-Policy that lets the page load
only its own script and style sheet and talk only to its own origin (no
inline script, no frames, no form submission), ``nosniff``, no referrer and
``no-store``.  The page keeps the token in ``sessionStorage`` and sends it
as ``Authorization: Bearer``; nothing secret is ever in a URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.catalog import CatalogRecord
from exchnode.core import NodeName, decode_envelope
from exchnode.errors import ExchnodeError
from exchnode.pki import certificate_expiry
from exchnode.sharing import CHINA_STANDARD_TIME, RequestState, WorkCalendar, local_date
from exchnode.store import PeerState

from .api import CALLER_ROLE, HTTPProblem, integer, peer_state_json
from .forms import escalation_json, iso_ms, record_json, request_json, status_named
from .operator_audit import head_json, witness_json
from .peer_health import refusal_json, refusals_by_peer, with_refusal
from .trust import crl_health

if TYPE_CHECKING:
    from exchnode.aio import CatalogService, Node, SharingService, WitnessService
    from exchnode.store import QueueDepth

    from .config import DaemonConfig

__all__ = [
    "MAX_CATALOG_SHOWN",
    "SECURITY_HEADERS",
    "ConsoleApi",
    "catalog_matches",
    "certificate_json",
    "console_headers",
    "deadline_json",
    "working_days_left",
]

#: Catalog records one search answers at most (the page shows them in one table).
MAX_CATALOG_SHOWN = 200
#: The console's files, served from the package, and their media types.
FILES = {
    "console.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_CONSOLE_PREFIXES = ("/console", "/v1/console")
_DAY_S = 86_400.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _on_console_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in _CONSOLE_PREFIXES)


async def console_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the security headers on every answer of a console path."""
    if _on_console_path(request.path):
        response.headers.update(SECURITY_HEADERS)


# --- pure pieces: certificates, deadlines, catalog search ------------------------------------


def certificate_json(
    certificate: x509.Certificate, kind: str, now: datetime, warning_days: float
) -> dict[str, Any]:
    """A certificate's validity as the console shows it, in ``/health``'s words.

    The state is :func:`exchnode.pki.certificate_expiry`'s (``current``,
    ``expiring``, ``expired``, or ``early`` for one whose notBefore is still
    ahead: a clock to check), the one judgement ``/health`` and the log use.
    """
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    left_s = (not_after - now).total_seconds()
    state = certificate_expiry(certificate, now, timedelta(days=warning_days)).state.value
    serial = certificate.serial_number
    return {
        "kind": kind,
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": serial.to_bytes(max((serial.bit_length() + 7) // 8, 1), "big").hex(),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": round(left_s / _DAY_S, 1),
        "state": state,
    }


def _certificates(node: Node, now: datetime, warning_days: float) -> dict[str, Any]:
    """The node's own certificate, the CAs above it, and the roots: each once, in that order."""
    seen: set[bytes] = set()
    listed: list[dict[str, Any]] = []
    own = node.identity.peer.certificate
    kinds = [(own, "node")] if own is not None else []
    kinds += [(ca, "ca") for ca in node.identity.chain]  # the intermediates above it
    kinds += [(root, "root") for root in node.trust.roots]
    for certificate, kind in kinds:
        der = certificate.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            listed.append(certificate_json(certificate, kind, now, warning_days))
    warnings = [item for item in listed if item["state"] != "valid"]
    return {"warning_days": warning_days, "certificates": listed, "warnings": warnings}


def working_days_left(calendar: WorkCalendar, now_ms: int, deadline_ms: int) -> int:
    """Working days after today (CST) up to the deadline's last day: 0 on that day, and after.

    Counted as the rule counts them (day 1 is the first working day after the
    request's date), so a request that arrived today has ``answer_days`` left.
    A deadline is 00:00 CST after the last working day it allows
    (``WorkCalendar.deadline``).
    """
    if now_ms >= deadline_ms:
        return 0
    day, last = local_date(now_ms) + timedelta(days=1), local_date(deadline_ms - 1)
    count = 0
    while day <= last:
        count += calendar.is_working_day(day)
        day += timedelta(days=1)
    return count


def deadline_json(calendar: WorkCalendar, deadline_ms: int | None, now_ms: int) -> dict[str, Any]:
    """When an unanswered request expires, in working days left and as a time."""
    if deadline_ms is None:
        return {"deadline_ms": None, "deadline": None, "working_days_left": None, "overdue": False}
    return {
        "deadline_ms": deadline_ms,
        "deadline": iso_ms(deadline_ms),
        "working_days_left": working_days_left(calendar, now_ms, deadline_ms),
        "overdue": now_ms >= deadline_ms,
    }


def catalog_matches(record: CatalogRecord, words: Sequence[str]) -> bool:
    """Whether every word (lower case) is in the record's code, provider, names or summary."""
    fields = [record.code, record.provider]
    entry = record.entry
    if entry is not None:
        fields += [entry.classification, entry.name, entry.summary]
        fields += [item.name for item in entry.data_items]
    text = "\n".join(fields).lower()
    return all(word in text for word in words)


def _depth(depth: QueueDepth | None) -> dict[str, int]:
    return {"count": depth.count if depth else 0, "bytes": depth.bytes if depth else 0}


# --- the endpoints ------------------------------------------------------------------------


class ConsoleApi:
    """The console's page and its two reads, for one node's operator API."""

    def __init__(
        self,
        node: Node,
        config: DaemonConfig,
        *,
        catalog: CatalogService,
        sharing: SharingService,
        witness: WitnessService | None,
    ) -> None:
        self.node = node
        self.config = config
        self.catalog = catalog
        self.sharing = sharing
        self.witness = witness
        self.started = time.monotonic()
        package = resources.files(__package__ or "exchnode.node")
        # Read once: a package without its console files fails at start, not on a click.
        self._files = {name: (package / name).read_bytes() for name in FILES}

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/console", self._page),
            ("GET", "/console/", self._page),
            ("GET", "/console/console.js", self._file),
            ("GET", "/console/console.css", self._file),
            ("GET", "/v1/console/overview", self._overview),
            ("GET", "/v1/console/catalog", self._catalog),
        ]

    def _serve(self, name: str) -> web.Response:
        return web.Response(body=self._files[name], headers={"Content-Type": FILES[name]})

    async def _page(self, request: web.Request) -> web.Response:
        return self._serve("console.html")

    async def _file(self, request: web.Request) -> web.Response:
        return self._serve(request.path.rsplit("/", 1)[-1])

    # --- the overview -------------------------------------------------------------------

    async def _overview(self, request: web.Request) -> web.Response:
        try:
            stats = await self.node.stats()
            oldest = await self._oldest(stats.outbound)
            audit = await self._audit()
        except ExchnodeError as exc:  # stopping between the guard and the store call
            raise HTTPProblem(503, str(exc), "unavailable") from None
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        role = request.get(CALLER_ROLE)
        body = {
            "node": {
                "name": self.node.name,
                "level": self.config.level.name.lower(),
                "link_url": self.node.url if self.node.address else None,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "now_ms": now_ms,
                "utc_offset_minutes": _offset_minutes(now),
                "role": role.value if role is not None else None,
            },
            "neighbours": self._neighbours(stats, now_ms),
            "queues": {
                "next_hops": [
                    _depth(depth) | {"next_hop": hop} | _age(oldest.get(hop), now_ms)
                    for hop, depth in sorted(stats.outbound.items())
                ],
                "total": _depth(stats.queued),
                "inbox": _depth(stats.inbox),
            },
            "counters": dict(stats.counters),
            "refusals": [refusal_json(r) for r in stats.refusals],
            "subscriptions": self._subscriptions(now_ms),
            "audit": audit,
            "certificates": _certificates(
                self.node, now, self.config.trust.certificate_warning_days
            ),
            "crls": crl_health(self.node, self.config.trust.crl_warning_hours, now),
            "catalog": self._catalog_counts(),
        }
        return web.json_response(body)

    def _neighbours(self, stats: Any, now_ms: int) -> list[dict[str, Any]]:
        """Every configured neighbour, and any other peer the node holds a link state for."""
        refused = refusals_by_peer(stats.refusals)
        configured = {p.name: p for p in self.config.peers}
        names = [p.name for p in self.config.peers]
        names += sorted(name for name in stats.peers if name not in configured)
        out = []
        for name in names:
            peer = configured.get(name)
            state = peer_state_json(stats.peers.get(name, PeerState()), now_ms)
            out.append(
                {
                    "name": name,
                    "relation": peer.relation.value if peer is not None else None,
                    "url": peer.url if peer is not None else None,
                    **with_refusal(state, refused.get(name)),
                    "queued": _depth(stats.outbound.get(name)),
                }
            )
        return out

    async def _oldest(self, outbound: dict[str, QueueDepth]) -> dict[str, int]:
        """Per next hop with entries, when its oldest waiting message was created (ms)."""
        hops = [hop for hop, depth in outbound.items() if depth.count]
        if not hops:
            return {}
        store, now_ms = self.node.store, int(time.time() * 1000)

        def heads() -> dict[str, bytes]:
            found = {}
            for hop in hops:
                entries = store.pending(hop, now_ms, 1, 1)
                if entries:
                    found[hop] = entries[0].data
            return found

        created = {}
        for hop, data in (await self.node.run_in_store(heads)).items():
            try:
                created[hop] = decode_envelope(data).header.created_ms
            except ExchnodeError:  # stored, so it decoded once; never fail the page over it
                continue
        return created

    def _subscriptions(self, now_ms: int) -> dict[str, Any]:
        """A department's requests waiting for its answer; a hub's escalations to decide."""
        calendar = self.config.sharing.calendar
        waiting, cases = [], []
        if NodeName.parse(self.node.name).is_hub:  # the sharing authority of its division
            cases = [escalation_json(case) for case in self.sharing.cases()]
        else:  # a provider
            for received in self.sharing.requests(state=RequestState.PENDING):
                deadline = self.sharing.deadline(received.request_id)
                item = request_json(received, RequestState.PENDING)
                del item["grant"]
                waiting.append(item | deadline_json(calendar, deadline, now_ms))
        return {"answer_days": self.config.sharing.answer_days, "waiting": waiting, "cases": cases}

    async def _audit(self) -> dict[str, Any]:
        store = self.node.store

        def facts() -> tuple[int, list[bytes]]:
            return store.audit_size(), store.tree_heads(1)

        size, heads = await self.node.run_in_store(facts)
        head = head_json(heads[-1], timespec="seconds") if heads else None
        statuses = self.witness.witnessed() if self.witness is not None else {}
        children = []
        for _, status in sorted(statuses.items()):
            child = witness_json(status)
            del child["kept_head"]  # base64 for 'audit verify --witnessed': nothing to read
            children.append(child)
        signed = head.get("tree_size", 0) if head is not None else 0
        return {
            "size": size,
            "last_head": head,
            "unsigned_records": max(size - signed, 0) if isinstance(signed, int) else None,
            "head_interval": self.config.audit.head_interval,
            "witnessed": children,
        }

    def _catalog_counts(self) -> dict[str, int]:
        records = self.catalog.search(status=None)
        published = sum(1 for r in records if r.entry is not None)
        return {"published": published, "withdrawn": len(records) - published}

    # --- the catalog --------------------------------------------------------------------

    async def _catalog(self, request: web.Request) -> web.Response:
        status = status_named(request.query.get("status", "published"))
        limit = integer(request, "limit", MAX_CATALOG_SHOWN, 1, MAX_CATALOG_SHOWN)
        query = request.query.get("q", "")
        if len(query) > 200:
            raise HTTPProblem(400, "q must be at most 200 characters")
        words = query.lower().split()
        records = self.catalog.search(status=status)
        # A hub holds its subtree's catalog: searching it is work for the loop, in slices.
        found: list[CatalogRecord] = []
        for start in range(0, len(records), 2000):
            found += [r for r in records[start : start + 2000] if catalog_matches(r, words)]
            await asyncio.sleep(0)
        return web.json_response(
            {
                "query": query,
                "found": len(found),
                "held": len(records),
                "records": [record_json(r) for r in found[:limit]],
            }
        )


def _age(created_ms: int | None, now_ms: int) -> dict[str, Any]:
    if created_ms is None:
        return {"oldest_ms": None, "oldest": None, "oldest_age_s": None}
    return {
        "oldest_ms": created_ms,
        "oldest": iso_ms(created_ms),
        "oldest_age_s": round(max(now_ms - created_ms, 0) / 1000, 1),
    }


def _offset_minutes(now: datetime) -> int:
    """The offset of China Standard Time, in which the console shows every time (as ``forms``)."""
    offset = now.astimezone(CHINA_STANDARD_TIME).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0
