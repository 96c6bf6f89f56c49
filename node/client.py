"""A client of the operator API (``node.operator``): for the verbs, ``send``, ``receive``, the demo.

Each call presents the credential of the role its path needs (``node.roles``:
``/v1/audit`` the auditor's, ``/v1/admin`` the administrator's, the rest the
operator's), so callers never choose a token.  :meth:`OperatorClient.for_config`
holds every token file a node's config names and reads each on first use (a
person who may read only their own role's file is not stopped by the others);
``OperatorClient(url, token)`` presents one token for every call, whatever
role it is.

Every failure is an :class:`OperatorError` with one readable line: the
server's own message when it answered, else what went wrong on the way
(``cannot reach the operator API at ...: is the node running?``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from exchnode.audit import Role
from exchnode.errors import ExchnodeError
from exchnode.pki import read_private_file

from .config import DaemonConfig
from .roles import area_of, token_key

__all__ = ["OperatorClient", "OperatorError", "Received"]


class OperatorError(ExchnodeError):
    """The operator API refused a request or could not be reached."""

    code = "operator"

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.remote_code = code

    @classmethod
    def refusal(cls, status: int, reason: str | None, body: Any) -> OperatorError:
        """An answer of ``status``: the API's words and code when ``body`` is its error object."""
        message = body.get("error") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        return cls(f"{message or reason} (HTTP {status})", status, code)


@dataclass(frozen=True, slots=True)
class Received:
    """One delivery as the operator API hands it out."""

    id: str
    sender: str
    message_id: str
    kind: str
    content_type: str
    created_ms: int
    expires_ms: int
    receipt_requested: bool
    payload: bytes
    records: dict[str, Any] | None = None  # sub.records: as the node's sharing service read them
    records_error: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Received:
        return cls(
            id=item["id"],
            sender=item["sender"],
            message_id=item["message_id"],
            kind=item["kind"],
            content_type=item["content_type"],
            created_ms=item["created_ms"],
            expires_ms=item["expires_ms"],
            receipt_requested=item["receipt_requested"],
            payload=base64.b64decode(item["payload"]),
            records=item.get("records"),
            records_error=item.get("records_error"),
        )


def read_token(path: Path) -> str:
    return read_private_file(path).decode("utf-8", "replace").strip()


class OperatorClient:
    """``async with OperatorClient.for_config(config) as client: await client.send(...)``.

    ``token`` is presented on every call whose role has no entry in
    ``credentials`` (a role's token, or the file holding it).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        credentials: Mapping[Role, str | Path] | None = None,
        timeout: float = 330.0,
        config_path: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._credentials: dict[Role, str | Path] = dict(credentials or {})
        self._config_path = config_path
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_config(cls, config: DaemonConfig, *, timeout: float = 330.0) -> OperatorClient:
        """A client with every role's token file the config names (read on first use)."""
        return cls(
            config.operator.url,
            credentials=dict(config.operator.token_files()),
            timeout=timeout,
            config_path=config.path,
        )

    def _headers(self, method: str, path: str) -> dict[str, str]:
        area = area_of(path)
        if area is None or area.role is None:  # /health needs none; an unknown path: 401/404
            token = self._token
        else:
            token = self._token_for(area.role, method, path)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def _token_for(self, role: Role, method: str, path: str) -> str:
        held = self._credentials.get(role)
        if isinstance(held, Path):
            held = self._credentials[role] = read_token(held)
        if held is not None:
            return held
        if self._token is not None:
            return self._token
        where = (
            f"{self._config_path} names no {role.value} token file ([operator] {token_key(role)})"
            if self._config_path is not None
            else f"this client holds no {role.value} credential"
        )
        raise OperatorError(f"{method} {path} needs the {role.value} role, and {where}")

    async def __aenter__(self) -> OperatorClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _step(self, path: str, role: str, person: str, **fields: Any) -> dict[str, Any]:
        """A POST that changes something: the body names who acts under their role
        (``operator``, ``administrator``), for the audit record, then the step's fields."""
        return dict(await self._answer("POST", path, json_body={role: person, **fields}))

    async def _answer(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
    ) -> Any:
        """The JSON the API answers a call with (status 200)."""
        _, body = await self._call(method, path, params=params, json_body=json_body)
        return body

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        data: bytes | None = None,
        json_body: Any = None,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        if self._session is None:
            raise OperatorError("the client is not open (use 'async with')")
        try:
            async with self._session.request(
                method,
                self.url + path,
                params=params,
                data=data,
                json=json_body,
                headers={**self._headers(method, path), **(headers or {})},
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status not in ok:
                    raise OperatorError.refusal(response.status, response.reason, body)
                return response.status, body
        except aiohttp.ClientConnectionError as exc:
            raise OperatorError(
                f"cannot reach the operator API at {self.url}: {exc.__class__.__name__}; "
                "is the node running?"
            ) from None
        except TimeoutError:
            raise OperatorError(f"the operator API at {self.url} did not answer in time") from None

    async def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 while serving, 503 while starting or draining."""
        status, body = await self._call("GET", "/health", ok=(200, 503))
        return status, body if isinstance(body, dict) else {}

    async def send(
        self,
        recipients: Sequence[str],
        payload: bytes,
        *,
        kind: str = "data",
        content_type: str = "application/octet-stream",
        ttl: float | None = None,
        receipt: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One message; with ``idempotency_key`` a retry after a lost answer returns the first
        message (``"repeated": true``) and never makes a second."""
        params = [("to", r) for r in recipients]
        params += [("kind", kind), ("content_type", content_type)]
        if ttl is not None:
            params.append(("ttl", repr(float(ttl))))
        if receipt:
            params.append(("receipt", "1"))
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        _, body = await self._call("POST", "/v1/send", params=params, data=payload, headers=headers)
        return dict(body)

    async def send_many(self, messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each message: to (list), payload (bytes), and optionally kind, content_type, ttl,
        receipt, idempotency_key.  One signature and one commit on the node for all of them."""
        encoded = []
        for message in messages:
            item = dict(message)
            item["payload"] = base64.b64encode(item["payload"]).decode("ascii")
            encoded.append(item)
        _, body = await self._call("POST", "/v1/send-many", json_body={"messages": encoded})
        return list(body["sent"])

    async def receive(self, limit: int = 1, wait: float = 0.0, ack: bool = False) -> list[Received]:
        params = [("max", str(limit)), ("wait", repr(float(wait)))]
        if ack:
            params.append(("ack", "1"))
        _, body = await self._call("GET", "/v1/receive", params=params)
        return [Received.from_json(item) for item in body["deliveries"]]

    async def ack(self, ids: Iterable[str]) -> tuple[int, list[str]]:
        _, body = await self._call("POST", "/v1/ack", json_body={"ids": list(ids)})
        return int(body["acked"]), list(body["unknown"])

    async def status(
        self, message_id: str, recipients: Sequence[str] = (), wait: float = 0.0
    ) -> dict[str, Any]:
        params = [("recipient", r) for r in recipients]
        if wait:
            params.append(("wait", repr(float(wait))))
        return dict(await self._answer("GET", f"/v1/status/{message_id}", params=params))

    # --- the catalog ---------------------------------------------------------------------

    async def catalog_publish(
        self, entries: Sequence[Mapping[str, Any]], operator: str
    ) -> list[dict[str, Any]]:
        """Publish entries (their JSON form, ``node.forms``) as this node; the signed records."""
        answer = await self._step(
            "/v1/catalog/publish", "operator", operator, entries=list(entries)
        )
        return list(answer["records"])

    async def catalog_withdraw(self, code: str, reason: str, operator: str) -> dict[str, Any]:
        return await self._step(
            "/v1/catalog/withdraw", "operator", operator, code=code, reason=reason
        )

    async def catalog_search(self, **criteria: str | None) -> list[dict[str, Any]]:
        """Records this node holds: code, provider, classification, share_type, keyword,
        level, status (published, withdrawn or all)."""
        params = [(k, v) for k, v in criteria.items() if v is not None]
        _, answer = await self._call("GET", "/v1/catalog", params=params)
        return list(answer["records"])

    async def catalog_show(self, provider: str, code: str) -> dict[str, Any]:
        path = f"/v1/catalog/{quote(provider, safe='')}/{quote(code, safe='/')}"
        return dict(await self._answer("GET", path))

    # --- subscriptions -------------------------------------------------------------------

    async def sub_request(
        self,
        provider: str,
        code: str,
        *,
        purpose: str,
        scope: str,
        items: Sequence[str],
        operator: str,
    ) -> dict[str, Any]:
        asked = {"purpose": purpose, "scope": scope, "items": list(items)}
        return await self._step(
            "/v1/sub/requests", "operator", operator, provider=provider, code=code, **asked
        )

    async def sub_list(self, *, incoming: bool = False, state: str | None = None) -> list[Any]:
        """This node's requests (sent, or with ``incoming`` received as provider)."""
        params = [("state", state)] if state else []
        path = "/v1/sub/incoming" if incoming else "/v1/sub/requests"
        _, answer = await self._call("GET", path, params=params)
        return list(answer["requests"])

    async def sub_show(self, request_id: str) -> dict[str, Any]:
        return dict(await self._answer("GET", f"/v1/sub/requests/{quote(request_id, safe='')}"))

    async def sub_decide(
        self, where: str, request_id: str, step: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One decision: ``where`` is requests (escalate), incoming (approve, refuse, revoke)
        or cases (re-review, uphold); ``body`` carries ``operator`` and the step's fields."""
        path = f"/v1/sub/{where}/{quote(request_id, safe='')}/{step}"
        return dict(await self._answer("POST", path, json_body=dict(body)))

    async def sub_publish(
        self, code: str, records: Sequence[Mapping[str, Any]], operator: str
    ) -> dict[str, Any]:
        """Publish records (data item -> value) of one of this node's resources to its grants."""
        return await self._step(
            "/v1/sub/publish", "operator", operator, code=code, records=list(records)
        )

    async def sub_cases(self) -> list[dict[str, Any]]:
        _, answer = await self._call("GET", "/v1/sub/cases")
        return list(answer["cases"])

    async def sub_fill_gaps(self, provider: str, code: str, operator: str) -> dict[str, Any]:
        """Ask ``provider`` to resend what this node misses of ``code``: the ranges asked."""
        return await self._step(
            "/v1/sub/fill-gaps", "operator", operator, provider=provider, code=code
        )

    # --- corrections (校核) ------------------------------------------------------------------

    async def sub_correct(
        self,
        provider: str,
        code: str,
        seq: int,
        *,
        items: Sequence[str],
        text: str,
        operator: str,
    ) -> dict[str, Any]:
        """Report record ``seq`` of ``code`` as wrong to ``provider``; the correction (its id)."""
        wrong = {"seq": seq, "items": list(items), "text": text}
        return await self._step(
            "/v1/sub/corrections", "operator", operator, provider=provider, code=code, **wrong
        )

    async def sub_corrections(
        self, *, reported: bool = False, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Open corrections received as provider, or (``reported``) those this node sent."""
        if not reported:
            _, answer = await self._call("GET", "/v1/sub/incoming-corrections")
        else:
            params = [("state", state)] if state else []
            _, answer = await self._call("GET", "/v1/sub/corrections", params=params)
        return list(answer["corrections"])

    async def sub_correction(self, correction_id: str) -> dict[str, Any]:
        """One correction this node reported: its state and the provider's answer."""
        path = f"/v1/sub/corrections/{quote(correction_id, safe='')}"
        return dict(await self._answer("GET", path))

    async def sub_answer(
        self, correction_id: str, *, accepted: bool, text: str, operator: str
    ) -> dict[str, Any]:
        """Answer a correction received as provider, once: accepted or rejected, with a text."""
        path = f"/v1/sub/incoming-corrections/{quote(correction_id, safe='')}/answer"
        return await self._step(path, "operator", operator, accepted=accepted, text=text)

    # --- the audit log -------------------------------------------------------------------

    async def audit_verify(self, witnessed: list[str] | None = None) -> dict[str, Any]:
        """The node's audit log checked end to end (after storing and signing what is pending):
        ``ok``, ``size``, ``records``, ``heads``, ``last_head``, ``findings``.  ``witnessed``:
        heads of this node its parent keeps (base64url), checked like its own."""
        params = [("witnessed", head) for head in witnessed or ()]
        return dict(await self._answer("GET", "/v1/audit/verify", params=params))

    async def audit_records(self, first: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of the node's audit records, decoded: ``size``, ``records``, ``next``."""
        params = [("from", str(first)), ("limit", str(limit))]
        return dict(await self._answer("GET", "/v1/audit/records", params=params))

    async def audit_export(self, first: int = 0, limit: int = 10_000) -> dict[str, Any]:
        """A page of stored records as they are (base64), for the oversight report."""
        params = [("from", str(first)), ("limit", str(limit))]
        return dict(await self._answer("GET", "/v1/audit/export", params=params))

    async def audit_catalog(self) -> dict[str, Any]:
        """The catalog the node holds, tombstones included (the auditor's view of it)."""
        return dict(await self._answer("GET", "/v1/audit/catalog"))

    async def audit_witnessed(self) -> list[dict[str, Any]]:
        """A hub's view of its children's logs: kept head, last verdict, last problem."""
        _, answer = await self._call("GET", "/v1/audit/witnessed")
        return list(answer["children"])

    # --- administration (the administrator's credential) --------------------------------

    async def admin_config(self) -> dict[str, Any]:
        """The configuration the node runs with (no secrets), its digest and whether it changed."""
        return dict(await self._answer("GET", "/v1/admin/config"))

    async def admin_identity(self) -> dict[str, Any]:
        """The node's certificate (serial, issuer, validity, days left), chain and key ids."""
        return dict(await self._answer("GET", "/v1/admin/identity"))

    async def admin_peers(self) -> list[dict[str, Any]]:
        """Every configured link: relation, url, state, failures, retry time, queue."""
        _, answer = await self._call("GET", "/v1/admin/peers")
        return list(answer["peers"])

    async def admin_retry(self, peer: str, administrator: str) -> dict[str, Any]:
        """Try the link to ``peer`` now (its backoff reset); on the record with the person."""
        path = f"/v1/admin/peers/{quote(peer, safe='')}/retry"
        return await self._step(path, "administrator", administrator)

    async def admin_peer_add(
        self, name: str, relation: str, url: str, administrator: str
    ) -> dict[str, Any]:
        """Take a neighbour now, kept in the node's store (audited)."""
        return await self._step(
            "/v1/admin/peers", "administrator", administrator, name=name, relation=relation, url=url
        )

    async def admin_peer_remove(self, name: str, administrator: str) -> dict[str, Any]:
        """End a neighbour added or admitted while the node ran (audited)."""
        path = f"/v1/admin/peers/{quote(name, safe='')}/remove"
        return await self._step(path, "administrator", administrator)

    async def admin_peers_reload(self, administrator: str) -> dict[str, Any]:
        """``[[peers]]`` of node.toml read again, all or nothing (as SIGHUP)."""
        return await self._step("/v1/admin/peers/reload", "administrator", administrator)

    async def admin_witness_reset(self, child: str, administrator: str) -> dict[str, Any]:
        """Forget the head kept for ``child``: its next head is a first head (audited)."""
        path = f"/v1/admin/witnessed/{quote(child, safe='')}/reset"
        return await self._step(path, "administrator", administrator)

    async def admin_reload_credentials(self, administrator: str) -> dict[str, str]:
        """Re-read every role's token file: each role's state (unchanged, changed, new)."""
        answer = await self._step("/v1/admin/credentials/reload", "administrator", administrator)
        return dict(answer["roles"])

    async def admin_crls(self) -> dict[str, Any]:
        """The CRLs the node checks peers against, newest per CA, and their warnings."""
        return dict(await self._answer("GET", "/v1/admin/crls"))

    async def admin_crl_add(self, pem: str, administrator: str) -> dict[str, Any]:
        """Give the running node CRLs (PEM): checked, kept, passed on to every node."""
        return await self._step("/v1/admin/crls", "administrator", administrator, pem=pem)

    async def admin_backup(self, administrator: str, target: Path) -> int:
        """``POST /v1/admin/backup`` streamed into the new file ``target``; its size in bytes."""
        if self._session is None:
            raise OperatorError("the client is not open (use 'async with')")
        path = "/v1/admin/backup"
        size = 0
        try:
            async with self._session.post(
                self.url + path,
                json={"administrator": administrator},
                headers=self._headers("POST", path),
            ) as response:
                if response.status != 200:
                    body = await response.json(content_type=None)
                    raise OperatorError.refusal(response.status, response.reason, body)
                with target.open("xb") as out:
                    try:
                        async for chunk in response.content.iter_chunked(1 << 20):
                            out.write(chunk)
                            size += len(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    except BaseException:
                        target.unlink(missing_ok=True)  # never leave half a backup behind
                        raise
        except aiohttp.ClientConnectionError as exc:
            raise OperatorError(
                f"cannot reach the operator API at {self.url}: {exc.__class__.__name__}; "
                "is the node running?"
            ) from None
        return size

    async def admin_crl_reload(self, administrator: str) -> dict[str, Any]:
        """Read ``[trust] crls`` again (as SIGHUP does): what is current, what was refused."""
        return await self._step("/v1/admin/crls/reload", "administrator", administrator)
