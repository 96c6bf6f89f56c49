"""The catalog and subscriptions through the daemon: real processes, the operator API, the CLI.

Five daemons on loopback, two cities under one province: a department of
Guiyang (520100) finds and subscribes to a resource of a department of
Qiannan (522300), whose hub is the sharing authority.  Every step goes
through ``python -m exchnode.node catalog|sub ...`` processes, as an operator would:
requests and decisions, records, corrections (校核) and gap repair.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchnode.node import operator_services
from exchnode.node.cli_services import parse_mask, render_table
from exchnode.node.config import ConfigError, load_config
from exchnode.node.forms import FormError, entry_from_json, entry_json, masks_from_json, parse_time
from exchnode.sharing import CorrectionState
from tests.integration.daemons import DaemonFederation, node_cli, until

pytestmark = pytest.mark.timeout(180)

PROVINCE = "520000"
GUIYANG = "520100"
REQUESTER = "520100.gongan"
QIANNAN = "522300"  # the provider's division hub: its sharing authority
PROVIDER = "522300.minzheng"
NAMES = [PROVINCE, GUIYANG, REQUESTER, QIANNAN, PROVIDER]


def entry(sequence: int, share_type: str = "conditional", **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "code": f"101001/{sequence:06d}",
        "name": "人口基本信息",
        "provider_code": "11522300MB0000001X",
        "summary": "户籍人口的基本信息 Population register",
        "format": "database",
        "data_items": [
            {"name": "身份证号", "type": "C", "description": "公民身份号码"},
            {"name": "姓名", "type": "C"},
            {"name": "出生日期", "type": "D"},
        ],
        "share_type": share_type,
        "share_conditions": "仅限政务部门依法履职使用" if share_type != "unconditional" else "",
        "share_methods": ["subscription_push"] if share_type != "not_shared" else [],
        "update_cycle": "daily",
        "publish_date": "2026-01-05",
    }
    document.update(changes)
    return document


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("daemons"), NAMES)
    with federation.serving(*NAMES):
        yield federation


def cli(fed: DaemonFederation, name: str, *argv: str, stdin: bytes | None = None) -> Any:
    """``python -m exchnode.node ARGV --config <name's config>``."""
    verb, step, *rest = argv
    return node_cli(verb, step, "--config", str(fed.config_path(name)), *rest, stdin=stdin)


def ok_json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def one_line_error(result: Any) -> str:
    """An error as the CLI must print it: status 1, one line on stderr, no traceback."""
    err: str = result.stderr.decode()
    assert result.returncode == 1, (result.returncode, err)
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("python -m exchnode.node: error: ")
    return err


def publish(fed: DaemonFederation, tmp_path: Path, document: dict[str, Any]) -> str:
    path = tmp_path / f"entry-{document['code'].replace('/', '-')}.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    (record,) = ok_json(cli(fed, PROVIDER, "catalog", "publish", str(path), "--json"))
    assert record["provider"] == PROVIDER
    code: str = record["code"]
    listed = until(lambda: beyond(fed, code, "--provider", PROVIDER), f"{code} at {REQUESTER}")
    assert [r["version"] for r in listed] == [record["version"]]
    return code


def beyond(fed: DaemonFederation, code: str, *flags: str) -> Any:
    """The requester's ``catalog list --beyond --code CODE FLAGS --json``."""
    return ok_json(
        cli(fed, REQUESTER, "catalog", "list", "--beyond", "--code", code, *flags, "--json")
    )


def request(fed: DaemonFederation, code: str, items: str = "身份证号,姓名,出生日期") -> str:
    answer = ok_json(
        cli(
            fed,
            REQUESTER,
            "sub",
            "request",
            PROVIDER,
            code,
            "--purpose",
            "核验户籍 household checks for benefits",
            "--scope",
            "本县低保申请人",
            "--items",
            items,
            "--operator",
            "clerk-li",
            "--json",
        )
    )
    request_id: str = answer["request_id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0
    return request_id


def sent_state(fed: DaemonFederation, request_id: str) -> dict[str, Any]:
    (item,) = [
        r
        for r in ok_json(cli(fed, REQUESTER, "sub", "list", "--json"))
        if r["request_id"] == request_id
    ]
    return dict(item)


def wait_sent_state(fed: DaemonFederation, request_id: str, state: str) -> dict[str, Any]:
    return dict(
        until(
            lambda: (item := sent_state(fed, request_id))["state"] == state and item,
            f"{request_id} {state} at {REQUESTER}",
        )
    )


def wait_incoming(fed: DaemonFederation, request_id: str, state: str) -> dict[str, Any]:
    def check() -> Any:
        found = ok_json(cli(fed, PROVIDER, "sub", "list", "--incoming", "--state", state, "--json"))
        return next((r for r in found if r["request_id"] == request_id), None)

    return dict(until(check, f"{request_id} {state} at {PROVIDER}"))


def decide(
    fed: DaemonFederation, verb: str, request_id: str, *flags: str, then: str
) -> tuple[str, dict[str, Any]]:
    """The provider's ``sub VERB REQUEST_ID FLAGS``, then the requester's item in state ``then``.

    Returns what the CLI printed and that item.
    """
    done = cli(fed, PROVIDER, "sub", verb, request_id, *flags)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode(), wait_sent_state(fed, request_id, then)


def audit(fed: DaemonFederation, name: str) -> list[dict[str, Any]]:
    return [e for e in fed.log_events(name) if e.get("event") == "audit event"]


# --- across two cities ----------------------------------------------------------------------


def test_published_in_one_city_listed_and_shown_by_cli_in_another(
    fed: DaemonFederation, tmp_path: Path
) -> None:
    code = publish(fed, tmp_path, entry(1, "unconditional", name="婚姻登记信息"))

    table = cli(
        fed, REQUESTER, "catalog", "list", "--beyond", "--keyword", "婚姻", "--level", "city"
    )
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.decode().splitlines()
    assert header.split() == ["PROVIDER", "CODE", "V", "STATUS", "SHARE", "UPDATE", "NAME"]
    assert [row.split() for row in rows] == [
        [PROVIDER, code, "1", "published", "unconditional", "daily", "婚姻登记信息"]
    ]
    shown = cli(fed, REQUESTER, "catalog", "show", PROVIDER, code)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "公民身份号码" in text
    assert "subscription_push" in text

    # Filters that exclude it, and the JSON form round-trips the entry.
    for flags in (
        ["--share-type", "conditional"],
        ["--level", "county"],
        ["--classification", "2"],
    ):
        assert beyond(fed, code, *flags) == [], flags
    record = ok_json(cli(fed, REQUESTER, "catalog", "show", PROVIDER, code, "--json"))
    assert record["entry"]["data_items"][0] == {
        "name": "身份证号",
        "type": "C",
        "description": "公民身份号码",
    }

    # Withdrawn at the provider: a tombstone that reaches the other city too.
    withdrawn = ok_json(
        cli(fed, PROVIDER, "catalog", "withdraw", code, "--reason", "合并到新目录", "--json")
    )
    assert (withdrawn["status"], withdrawn["version"]) == ("withdrawn", 2)
    until(lambda: beyond(fed, code, "--status", "withdrawn"), "the tombstone")
    assert beyond(fed, code) == []


def test_conditional_request_approved_with_a_mask_by_cli(
    fed: DaemonFederation, tmp_path: Path
) -> None:
    code = publish(fed, tmp_path, entry(2))
    request_id = request(fed, code)
    incoming = wait_incoming(fed, request_id, "pending")
    assert incoming["requester"] == REQUESTER
    assert incoming["purpose"] == "核验户籍 household checks for benefits"
    listed = cli(fed, PROVIDER, "sub", "list", "--incoming")
    assert request_id in listed.stdout.decode()
    assert wait_sent_state(fed, request_id, "pending")["provider"] == PROVIDER

    approved = ok_json(
        cli(
            fed,
            PROVIDER,
            "sub",
            "approve",
            request_id,
            "--items",
            "身份证号,姓名",
            "--mask",
            "身份证号=keep:6:4",
            "--expires",
            "2030-12-31",
            "--operator",
            "director-wang",
            "--json",
        )
    )
    assert approved["state"] == "granted"
    assert approved["grant"]["expires"] == "2031-01-01T00:00:00+08:00"

    granted = wait_sent_state(fed, request_id, "granted")
    grant = granted["grant"]
    assert sorted(grant["items"]) == ["姓名", "身份证号"]
    assert grant["masks"] == {"身份证号": {"rule": "keep", "first": 6, "last": 4, "char": "*"}}
    assert grant["expires_ms"] == parse_time("2030-12-31", "expires")
    table = cli(fed, REQUESTER, "sub", "list", "--state", "granted").stdout.decode()
    assert request_id in table
    assert "身份证号" in table

    # Who decided is in the audit trail of each side.
    until(
        lambda: any(
            e["action"] == "grant" and e["actor"] == "director-wang" for e in audit(fed, PROVIDER)
        ),
        "the provider's grant event",
    )
    assert any(e["action"] == "request" and e["actor"] == "clerk-li" for e in audit(fed, REQUESTER))

    # Records pushed by the provider arrive projected and masked, decoded by 'receive'.
    records = [
        {"身份证号": "110101199003071234", "姓名": "张三", "出生日期": "1990-03-07"},
        {"身份证号": "52230119851201002X", "姓名": "李四", "出生日期": None},
    ]
    pushed = push(fed, code, *records)
    assert (pushed["first_seq"], pushed["last_seq"], pushed["subscribers"]) == (1, 2, 1)
    meta = receive_one(fed, tmp_path / "inbox")
    assert meta["kind"] == "sub.records"
    assert (meta["provider"], meta["resource_code"], meta["records"]) == (PROVIDER, code, 2)
    assert meta["refused"] == []
    assert Path(meta["file"]).suffix == ".jsonl"
    received = [json.loads(line) for line in Path(meta["file"]).read_text().splitlines()]
    assert received == [
        {"seq": 1, "fields": {"姓名": "张三", "身份证号": "110101********1234"}},
        {"seq": 2, "fields": {"姓名": "李四", "身份证号": "522301********002X"}},
    ]

    # A granted request cannot be refused; it can be revoked.
    late = cli(
        fed, PROVIDER, "sub", "refuse", request_id, "--reason", "too late", "--operator", "x"
    )
    assert "cannot refuse" in one_line_error(late)
    assert "HTTP 409" in late.stderr.decode()
    decide(
        fed, "revoke", request_id, "--reason", "用途已结束", "--operator", "wang", then="revoked"
    )
    assert push(fed, code, *records)["subscribers"] == 0


def test_refused_then_escalated_and_upheld_at_the_hub(
    fed: DaemonFederation, tmp_path: Path
) -> None:
    code = publish(fed, tmp_path, entry(3))
    request_id = request(fed, code, "姓名")
    wait_incoming(fed, request_id, "pending")
    said, item = decide(
        fed, "refuse", request_id, "--reason", "用途不在共享条件之内",
        "--operator", "director-wang", then="refused",
    )  # fmt: skip
    assert "refused" in said
    assert item["reason"] == "用途不在共享条件之内"

    escalated = cli(
        fed, REQUESTER, "sub", "escalate", request_id, "--reason", "用途合规", "--operator", "li"
    )
    assert escalated.returncode == 0, escalated.stderr

    def case() -> Any:
        cases = ok_json(cli(fed, QIANNAN, "sub", "cases", "--json"))
        return next((c for c in cases if c["request_id"] == request_id), None)

    found = until(case, "the case at the sharing authority")
    assert (found["requester"], found["provider"], found["grounds"]) == (
        REQUESTER,
        PROVIDER,
        "refused",
    )
    assert request_id in cli(fed, QIANNAN, "sub", "cases").stdout.decode()
    upheld = cli(
        fed, QIANNAN, "sub", "uphold", request_id, "--reason", "维持原决定", "--operator", "zhao"
    )
    assert upheld.returncode == 0, upheld.stderr
    wait_sent_state(fed, request_id, "closed")
    assert ok_json(cli(fed, QIANNAN, "sub", "cases", "--json")) == []


def approve(fed: DaemonFederation, request_id: str, items: str) -> None:
    wait_incoming(fed, request_id, "pending")
    decide(fed, "approve", request_id, "--items", items, "--operator", "wang", then="granted")


def subscribed(fed: DaemonFederation, code: str, items: str) -> str:
    """A request for ``items`` of ``code``, granted as asked: its id."""
    request_id = request(fed, code, items)
    approve(fed, request_id, items)
    return request_id


def push(fed: DaemonFederation, code: str, *records: dict[str, Any]) -> dict[str, Any]:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    return dict(
        ok_json(
            cli(fed, PROVIDER, "sub", "publish", code, "-", "--operator", "wang", "--json",
                stdin=lines)
        )
    )  # fmt: skip


def receive_one(fed: DaemonFederation, inbox: Path) -> dict[str, Any]:
    got = node_cli(
        "receive", "--config", str(fed.config_path(REQUESTER)), "--out", str(inbox),
        "--timeout", "30",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr.decode()
    (meta,) = [json.loads(line) for line in got.stdout.decode().splitlines()]
    return dict(meta)


def test_correction_reported_listed_answered_and_seen_by_cli(
    fed: DaemonFederation, tmp_path: Path
) -> None:
    code = publish(fed, tmp_path, entry(5))
    subscribed(fed, code, "身份证号,姓名")
    pushed = push(fed, code, {"身份证号": "110101199003071234", "姓名": "张叁"})
    assert (pushed["first_seq"], pushed["subscribers"]) == (1, 1)
    meta = receive_one(fed, tmp_path / "inbox")
    assert (meta["records"], meta["missing"]) == (1, [])

    # The subscriber flags record 1: its name looks wrong.
    reported = ok_json(
        cli(fed, REQUESTER, "sub", "correct", PROVIDER, code, "1", "--items", "姓名",
            "--text", "姓名与户籍登记不符 name misspelt", "--operator", "clerk-li", "--json")
    )  # fmt: skip
    correction_id = reported["correction_id"]
    assert len(correction_id) == 32
    assert (reported["state"], reported["answer"], reported["seq"]) == ("open", None, 1)
    assert (reported["provider"], reported["items"]) == (PROVIDER, ["姓名"])

    # The provider sees it among the open corrections, and answers it once.
    def received() -> Any:
        found = ok_json(cli(fed, PROVIDER, "sub", "corrections", "--json"))
        return next((c for c in found if c["correction_id"] == correction_id), None)

    incoming = until(received, f"correction {correction_id} at {PROVIDER}")
    assert (incoming["subscriber"], incoming["resource_code"], incoming["seq"]) == (
        REQUESTER,
        code,
        1,
    )
    assert incoming["text"] == "姓名与户籍登记不符 name misspelt"
    table = cli(fed, PROVIDER, "sub", "corrections").stdout.decode()
    assert table.splitlines()[0].split()[:3] == ["CORRECTION", "STATE", "SUBSCRIBER"]
    assert correction_id in table
    answered = ok_json(
        cli(fed, PROVIDER, "sub", "answer", correction_id, "--accept", "--text",
            "已更正，将重新推送", "--operator", "director-wang", "--json")
    )  # fmt: skip
    assert answered["state"] == "accepted"
    assert answered["answer"] == {"outcome": "accepted", "text": "已更正，将重新推送"}
    assert ok_json(cli(fed, PROVIDER, "sub", "corrections", "--json")) == []
    again = cli(fed, PROVIDER, "sub", "answer", correction_id, "--reject", "--text", "x")
    assert "cannot answer" in one_line_error(again)
    assert "HTTP 409" in again.stderr.decode()
    unknown = cli(fed, PROVIDER, "sub", "answer", "00" * 16, "--accept", "--text", "x")
    assert "received no correction" in one_line_error(unknown)
    assert "HTTP 404" in unknown.stderr.decode()

    # The subscriber sees the answer, by id and in its list of reported corrections.
    def answered_here() -> Any:
        shown = ok_json(cli(fed, REQUESTER, "sub", "correction", correction_id, "--json"))
        return shown if shown["state"] == "accepted" else None

    seen = until(answered_here, f"the answer to {correction_id} at {REQUESTER}")
    assert seen["answer"]["outcome"] == "accepted"
    assert seen["answer"]["text"] == "已更正，将重新推送"
    assert seen["operator"] == "clerk-li"
    text = cli(fed, REQUESTER, "sub", "correction", correction_id).stdout.decode()
    assert "answer      accepted" in text
    assert "已更正，将重新推送" in text
    (listed,) = [
        c
        for c in ok_json(
            cli(fed, REQUESTER, "sub", "corrections", "--reported", "--state", "accepted", "--json")
        )
        if c["correction_id"] == correction_id
    ]
    assert listed["answer"] == seen["answer"]
    assert any(
        e["action"] == "sub.correction" and e["actor"] == "clerk-li" for e in audit(fed, REQUESTER)
    )
    until(
        lambda: any(
            e["action"] == "answer" and e["actor"] == "director-wang" for e in audit(fed, PROVIDER)
        ),
        "the provider's answer event",
    )

    # Refused before anything is sent: an item the resource lacks, a bad number, no such id.
    err = one_line_error(
        cli(fed, REQUESTER, "sub", "correct", PROVIDER, code, "1", "--items", "住址",
            "--text", "t", "--operator", "li")
    )  # fmt: skip
    assert "no data item 住址" in err
    assert "HTTP 400" in err
    err = one_line_error(
        cli(fed, REQUESTER, "sub", "correct", PROVIDER, "101001/999999", "1", "--items", "姓名",
            "--text", "t", "--operator", "li")
    )  # fmt: skip
    assert "HTTP 404" in err
    bad_seq = cli(fed, REQUESTER, "sub", "correct", PROVIDER, code, "0", "--items", "a",
                  "--text", "t")  # fmt: skip
    assert bad_seq.returncode == 2
    assert b"record number" in bad_seq.stderr
    err = one_line_error(cli(fed, REQUESTER, "sub", "correction", "ab" * 16))
    assert "reported no correction" in err
    assert "HTTP 404" in err


def test_records_between_two_grants_are_not_gaps_and_fill_gaps_says_so(
    fed: DaemonFederation, tmp_path: Path
) -> None:
    code = publish(fed, tmp_path, entry(6))
    first = subscribed(fed, code, "姓名")
    inbox = tmp_path / "inbox"
    assert push(fed, code, {"姓名": "甲"})["last_seq"] == 1
    assert (receive_one(fed, inbox)["missing"], cli_gaps(fed, code)["asked"]) == ([], [])

    # Record 2 is published while the subscriber holds no grant; record 3 under a new one.
    decide(fed, "revoke", first, "--reason", "暂停", "--operator", "w", then="revoked")
    assert push(fed, code, {"姓名": "乙"})["subscribers"] == 0
    subscribed(fed, code, "姓名")
    assert push(fed, code, {"姓名": "丙"})["first_seq"] == 3
    meta = receive_one(fed, inbox)
    # Record 2 was never this subscriber's to receive: not a gap, nothing to ask for.
    assert (meta["records"], meta["missing"]) == (1, [])
    asked = cli_gaps(fed, code)
    assert (asked["provider"], asked["resource_code"], asked["asked"]) == (PROVIDER, code, [])
    shown = cli(fed, REQUESTER, "sub", "fill-gaps", PROVIDER, code, "--operator", "li")
    assert shown.returncode == 0, shown.stderr.decode()
    assert "nothing to ask" in shown.stdout.decode()
    assert "is a hub" in one_line_error(cli(fed, QIANNAN, "sub", "fill-gaps", PROVIDER, code))


def cli_gaps(fed: DaemonFederation, code: str) -> dict[str, Any]:
    return dict(
        ok_json(
            cli(fed, REQUESTER, "sub", "fill-gaps", PROVIDER, code, "--operator", "li", "--json")
        )
    )


def test_errors_are_one_readable_line(fed: DaemonFederation, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(entry(9, format="scroll"), ensure_ascii=False), encoding="utf-8")
    err = one_line_error(cli(fed, PROVIDER, "catalog", "publish", str(bad), "--operator", "w"))
    assert "catalog.format" in err
    assert "database" in err
    assert "HTTP 400" in err

    # A rule of the library, named by its field: conditional sharing needs its conditions.
    bad.write_text(json.dumps(entry(9, share_conditions=""), ensure_ascii=False), encoding="utf-8")
    err = one_line_error(cli(fed, PROVIDER, "catalog", "publish", str(bad), "--operator", "w"))
    assert "catalog.share_conditions" in err

    bad.write_text("{not json", encoding="utf-8")
    assert "is not JSON" in one_line_error(cli(fed, PROVIDER, "catalog", "publish", str(bad)))

    err = one_line_error(cli(fed, REQUESTER, "catalog", "show", PROVIDER, "101001/999999"))
    assert "holds no catalog entry" in err
    assert "HTTP 404" in err
    err = one_line_error(
        cli(fed, REQUESTER, "catalog", "withdraw", "101001/000001", "--reason", "x")
    )
    assert "no published entry" in err

    err = one_line_error(
        cli(fed, REQUESTER, "sub", "request", PROVIDER, "101001/999999", "--purpose", "p",
            "--scope", "s", "--items", "姓名")
    )  # fmt: skip
    assert "not in" in err
    assert "catalog" in err
    err = one_line_error(cli(fed, PROVIDER, "sub", "approve", "00" * 16, "--operator", "w"))
    assert "received no request" in err
    assert "HTTP 404" in err
    assert "not hex" in one_line_error(cli(fed, PROVIDER, "sub", "approve", "xyz"))
    assert "is a department" in one_line_error(cli(fed, PROVIDER, "sub", "cases"))
    assert "is a hub" in one_line_error(cli(fed, QIANNAN, "sub", "list", "--incoming"))

    bad.write_text('{"姓名": "张三"}\n{"姓名": [1]}\n', encoding="utf-8")
    err = one_line_error(cli(fed, PROVIDER, "sub", "publish", "101001/000002", str(bad)))
    assert "records[1].姓名" in err
    bad.write_text('{"姓名": "张三"}\nnope\n', encoding="utf-8")
    assert "line 2: not JSON" in one_line_error(
        cli(fed, PROVIDER, "sub", "publish", "101001/000002", str(bad))
    )
    err = one_line_error(
        cli(fed, PROVIDER, "sub", "publish", "101001/999999", "-", stdin=b'{"a": 1}\n')
    )
    assert "101001/999999" in err

    usage = cli(fed, PROVIDER, "sub", "approve", "00" * 16, "--mask", "姓名=blur")
    assert usage.returncode == 2
    assert b"unknown mask rule" in usage.stderr

    # The API itself: the person acting is required, and the token.
    config = fed.config(PROVIDER)
    token = config.operator.token_file.read_text().strip()
    url = fed.operator_url(PROVIDER) + "/v1/catalog/withdraw"
    body = json.dumps({"code": "101001/000002", "reason": "x"}).encode()
    for headers, status, text in (
        ({"Authorization": f"Bearer {token}"}, 400, "operator"),
        ({}, 401, "token"),
    ):
        call = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(call, timeout=10)
        assert caught.value.code == status
        assert text in json.loads(caught.value.read())["error"]


# --- pieces without daemons -----------------------------------------------------------------


def test_entry_json_round_trips_and_names_fields() -> None:
    document = entry(4, related=["101001/000001"], openness="conditional", open_conditions="申请")
    built = entry_from_json(document, PROVIDER)
    again = entry_json(built)
    assert again["provider"] == PROVIDER
    assert again["classification"] == "101001"
    assert {k: v for k, v in again.items() if k in document} == {
        **document,
        "data_items": [{"description": "", **item} for item in document["data_items"]],
    }
    for change, field in (
        ({"colour": "red"}, "catalog.colour"),
        ({"data_items": [{"name": "x", "type": "Q"}]}, "catalog.data_items[0].type"),
        ({"share_methods": ["pigeon"]}, "catalog.share_methods[0]"),
        ({"publish_date": "05/01/2026"}, "catalog.publish_date"),
        ({"name": 7}, "catalog.name"),
    ):
        with pytest.raises(FormError, match=field.replace("[", r"\[").replace("]", r"\]")):
            entry_from_json({**document, **change}, PROVIDER)


def test_masks_from_cli_and_json() -> None:
    assert parse_mask("身份证号=keep:6:4") == ("身份证号", {"rule": "keep", "first": 6, "last": 4})
    assert parse_mask("a=redact") == ("a", {"rule": "redact", "replacement": "***"})
    assert parse_mask("a=year_only") == ("a", {"rule": "year_only"})
    masks = masks_from_json({"b": {"rule": "hash"}, "a": {"rule": "keep", "first": 3, "last": 0}})
    assert [item for item, _ in masks.rules] == ["a", "b"]
    with pytest.raises(FormError, match=r"masks\.a\.rule"):
        masks_from_json({"a": {"rule": "blur"}})
    with pytest.raises(FormError, match=r"masks\.a\.size"):
        masks_from_json({"a": {"rule": "hash", "size": 3}})
    assert render_table(["A", "NAME"], [["1", "人口"]]).splitlines() == ["A  NAME", "1  人口"]


def test_reported_corrections_are_kept_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's list of reported corrections drops the oldest answered ones first."""
    states = {f"{i:032x}": CorrectionState.OPEN for i in range(5)}
    states[f"{1:032x}"] = states[f"{3:032x}"] = CorrectionState.ACCEPTED

    class Sharing:
        def correction_answer(self, correction_id: bytes) -> None:
            return None

        def correction_state(self, correction_id: bytes) -> CorrectionState:
            return states[correction_id.hex()]

    api = operator_services.ServicesApi.__new__(operator_services.ServicesApi)
    api.sharing = Sharing()  # type: ignore[assignment]
    monkeypatch.setattr(operator_services, "MAX_REPORTED", 3)
    ledger = {cid: {"correction_id": cid, "at_ms": i} for i, cid in enumerate(states)}
    api._keep_bounded(ledger)
    assert list(ledger) == [f"{i:032x}" for i in (0, 2, 4)]
    monkeypatch.setattr(operator_services, "MAX_REPORTED", 1)
    api._keep_bounded(ledger)
    assert list(ledger) == [f"{4:032x}"]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[sharing]\nanswer_days = 0", "sharing.answer_days", "positive"),
        ("[sharing]\nanswer_days = 400", "sharing.answer_days", "at most"),
        ('[sharing]\nholidays = ["2026-13-01"]', "sharing.holidays[0]", "not a date"),
        ("[sharing]\nworkdays = [2026-10-08]", "sharing.workdays", "not a weekend"),
        ('[sharing]\nsecret = "x"', "sharing.secret", "unknown"),
        ("[catalog]\nrefresh = -1", "catalog.refresh", "positive"),
    ],
)
def test_catalog_and_sharing_config_errors_name_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "520102.gongan"\nlevel = "county"\n' + text + "\n")
    with pytest.raises(ConfigError, match=problem) as caught:
        load_config(path)
    assert f"{path}: {key}:" in str(caught.value)


def test_sharing_config_defaults_and_calendar(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\nname = "520102.gongan"\nlevel = "county"\n'
        '[sharing]\nanswer_days = 5\nholidays = [2026-10-01, "2026-10-02"]\n'
        'workdays = ["2026-09-27"]\n'
    )
    config = load_config(path)
    assert config.sharing.answer_days == 5
    assert config.sharing.masking_secret == tmp_path / "masking.secret"
    assert config.catalog.refresh == 60.0
    calendar = config.sharing.calendar
    # The lists are overrides of chinese-calendar's (node.workdays): 10-01 and 10-02 are its
    # holidays already; 09-27, a holiday there, is made a working day here, and said so.
    assert {dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 7)} <= calendar.holidays
    assert calendar.is_working_day(dt.date(2026, 9, 27))
    assert dt.date(2026, 9, 20) in calendar.makeup_workdays  # the library's
    (note,) = config.sharing.calendar_notes
    assert note.startswith("2026-09-27: a holiday in chinese-calendar ")
    assert note.endswith(", a make-up working day here")


def test_init_writes_the_masking_secret_and_run_checks_it(tmp_path: Path) -> None:
    federation = DaemonFederation(tmp_path, [QIANNAN])
    secret = federation.folder(QIANNAN) / "masking.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_bytes()) == 32
    config = federation.config_path(QIANNAN)
    assert 'masking_secret = "masking.secret"' in config.read_text()
    assert "# answer_days = 10" in config.read_text()

    secret.write_bytes(b"short")
    err = node_cli("run", "--config", str(config)).stderr.decode()
    assert err.count("\n") == 1
    assert f"{config}: sharing.masking_secret:" in err
    assert "not 32 random bytes" in err
    secret.unlink()
    err = node_cli("run", "--config", str(config)).stderr.decode()
    assert "sharing.masking_secret" in err
    assert "head -c 32 /dev/urandom" in err
