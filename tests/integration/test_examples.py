"""The runnable examples and benchmarks, as real processes: they run and report correctly.

Only what they report is checked, never how fast: speed belongs in the benchmarks.
"""

from __future__ import annotations

import re
from typing import Any

from tests.integration.scripts import run_script


def test_demo_delivers_everything_exactly_once() -> None:
    messages = 5
    demo = run_script("examples/demo.py", "--json", "--messages", str(messages))
    human, summary = demo.lines, demo.report

    departments = summary["departments"]
    assert departments == 6
    assert summary["hubs"] == 7
    assert summary["nodes"] == 13
    pairs = departments * (departments - 1)
    assert summary["sent"] == summary["delivered"] == pairs * messages == 150
    assert summary["lost"] == 0
    assert summary["duplicated"] == 0
    assert summary["replays_refused"] == 150
    assert summary["hub_reads"] == 0
    assert summary["hub_verifications"] >= summary["sent"]  # at least one hub on every path
    assert summary["receipts_verified"] == 150
    assert summary["revoked_refused"] == 2
    assert summary["tampered_refused"] == 1

    # The readable summary comes first and agrees with the JSON.
    rows = {line[:22].strip(): line[22:].split()[0] for line in human if line.strip()}
    assert rows["envelopes sent"] == str(summary["sent"])
    assert rows["delivered"] == str(summary["delivered"])
    assert rows["lost"] == "0"
    assert rows["duplicated"] == "0"
    assert rows["receipts verified"] == "150"
    assert rows["tampered refused"] == "1"
    assert rows["revoked node refused"] == "2"
    # Progress goes to stderr, one line per ordered pair.
    assert demo.stderr.count(" delivered via ") == pairs


def test_seal_open_benchmark_quick_json() -> None:
    benchmark = run_script("benchmarks/seal_open.py", "--quick", "--json")
    table, report = benchmark.lines, benchmark.report

    assert report["benchmark"] == "seal_open"
    assert report["quick"] is True
    rows = report["rows"]
    assert len(rows) == 6
    sizes = {"1KiB": 1024, "64KiB": 64 * 1024, "1MiB": 1024 * 1024}
    assert {(row["payload"], row["recipients"]) for row in rows} == {
        (payload, count) for payload in sizes for count in (1, 10)
    }
    for row in rows:
        assert row["payload_bytes"] == sizes[row["payload"]]
        assert row["envelope_bytes"] > row["payload_bytes"]
        rates = [key for key in row if key.endswith("_per_s")]
        assert len(rates) >= 7
        for key in rates:
            assert row[key] > 0, (row["payload"], row["recipients"], key)
        assert row["epoch_setup_ms"] > 0
        assert 0 < row["ratio"] < 1

    # A readable table above the JSON: a header, a rule, and one line per row.
    (header_index,) = [i for i, line in enumerate(table) if "seal/s" in line]
    header = table[header_index]
    assert "open/s" in header
    assert "ratio" in header
    assert set(table[header_index + 1]) == {"-"}
    body = [line.split() for line in table[header_index + 2 : header_index + 2 + len(rows)]]
    assert [(cells[0], int(cells[1])) for cells in body] == [
        (row["payload"], row["recipients"]) for row in rows
    ]


def _assert_sharing(summary: dict[str, Any], records: int) -> None:
    """The catalog and subscription part of the federation demo."""
    assert summary["catalog_entries"] == 4
    assert summary["catalog_levels"] == {"province": 1, "city": 1, "county": 2}
    assert summary["catalog_converged_s"] > 0
    sub = summary["subscription"]
    assert (sub["requested"], sub["granted"], sub["refused"]) == (3, 2, 1)
    assert sub["states"] == {
        "conditional": "granted",
        "not_shared": "not_shared",
        "unconditional": "granted",
    }
    assert sub["items_asked"] == ["身份证号", "姓名", "出生日期"]
    assert sub["items_granted"] == ["身份证号", "姓名"]  # fewer than asked
    assert sub["masks"] == {"身份证号": {"rule": "keep", "first": 6, "last": 4, "char": "*"}}
    assert "第九十二条" in sub["refusal_reason"]  # the catalog's legal basis
    assert sub["revoked"] is True
    assert summary["records_subscribers"] == 1
    assert summary["records_sent"] == summary["records_delivered"] == records
    assert summary["records_lost"] == 0
    assert summary["records_duplicated"] == 0
    assert summary["records_corrupted"] == 0
    assert summary["records_unmasked"] == 0
    assert summary["records_ungranted_items"] == 0
    assert summary["records_refused"] == 0
    sample = summary["records_sample"]
    assert set(sample) == {"身份证号", "姓名"}
    assert re.fullmatch(r"520102\*{8}\d{3}[\dX]", sample["身份证号"]), sample
    assert summary["records_after_revocation_sent"] == 20
    assert summary["records_after_revocation_subscribers"] == 0
    assert summary["records_after_revocation"] == 0
    assert summary["after_revocation_settled"] is True
    _assert_oversight(summary, records)


def _assert_oversight(summary: dict[str, Any], records: int) -> None:
    """The oversight report at the end: the same figures, counted from the verified logs."""
    ov = summary["oversight"]
    assert ov["logs_read"] == 14
    assert ov["logs_not_verified"] == []
    assert ov["departments"] == 7  # the quiet hubs are nodes, not departments
    assert ov["resources"] == summary["catalog_entries"] == 4
    assert (ov["unconditional"], ov["conditional"], ov["not_shared"]) == (2, 1, 1)
    assert ov["shared_ratio"] == 0.75
    assert ov["levels"] == summary["catalog_levels"]
    assert (ov["requested"], ov["granted"], ov["refused"]) == (3, 2, 1)
    assert (ov["expired"], ov["pending"]) == (0, 0)
    assert ov["conditional_answers"] == ov["answers_within_rule"] == 1
    assert ov["answers_over_rule"] == 0
    assert ov["records_published"] == records + summary["records_after_revocation_sent"]
    assert ov["records_sent"] == ov["records_used"] == summary["records_delivered"] == records
    assert ov["stale_resources"] == 0
    assert ov["zombie_nodes"] == 0


def test_federation_demo_runs_daemons_and_loses_nothing() -> None:
    messages, records = 3, 60
    demo = run_script(
        "examples/federation.py", "--json", "--messages", str(messages), "--records", str(records)
    )
    human, summary = demo.lines, demo.report

    assert summary["nodes"] == summary["processes"] == 14
    assert summary["directory"] == "signed"
    assert (summary["hubs"], summary["departments"]) == (7, 7)
    pairs = 7 * 6
    assert summary["sent"] == pairs * messages
    assert summary["delivered"] == summary["sent"]
    assert summary["lost"] == 0
    assert summary["duplicated"] == 0
    assert summary["corrupted"] == 0
    assert summary["receipts_requested"] == summary["receipts_confirmed"] == pairs
    assert summary["hub_app_deliveries"] == 0
    assert summary["hub_custody_steps"] >= summary["sent"]  # a hub on every path
    assert summary["revoked_refused"] is True
    assert summary["spoof_refused"] is True
    assert summary["clean_exits"] == 14
    assert summary["audit_logs_verified"] == 14
    assert summary["audit_records"] > 0
    assert summary["seconds"] > 0
    # Both directions across every level, each path kind delivered in full.
    kinds = summary["by_category"]
    for kind in (
        "county → county, other city",
        "county → province",
        "province → county",
        "city → county, same city",
        "county → city, other city",
    ):
        assert kinds[kind][0] == kinds[kind][1] > 0, kind

    _assert_sharing(summary, records)

    rows = {line[:20].strip(): line[20:].strip() for line in human if line[:20].strip()}
    assert rows["sent"] == str(summary["sent"])
    assert rows["lost"] == "0"
    assert rows["duplicated"] == "0"
    assert rows["clean exits"].startswith("14 of 14")
    assert rows["catalog entries"].startswith("4 ")
    assert rows["records sent"] == rows["records delivered"] == str(records)
    assert rows["records lost"] == rows["records duplicated"] == rows["records unmasked"] == "0"
    assert rows["after revocation"] == "0 of 20 arrived"
    assert rows["conditional"].startswith("520302.shebao → 520102.gongan 人口基本信息: granted")
    # The demo ends with the oversight report's table.
    start = next(i for i, line in enumerate(human) if line.startswith("oversight report at "))
    assert human[start].endswith("14 node logs (14 verified, 0 failed, 0 unreachable)")
    report = human[start:]
    provider = next(line for line in report if line.startswith("520102.gongan "))
    assert provider.split()[1:6] == ["county", "1", "0/1/0", "100%", "1"]
    assert provider.split()[-3:] == [str(records + 20), str(records), "verified"]
    assert report[-1].startswith("zombie nodes (no traffic for 30 d): 0;")


def test_federation_demo_with_a_static_directory() -> None:
    summary = run_script(
        "examples/federation.py", "--json", "--messages", "1", "--directory", "static"
    ).report
    assert summary["directory"] == "static"
    assert summary["sent"] == summary["delivered"] == 42
    assert (summary["lost"], summary["duplicated"], summary["corrupted"]) == (0, 0, 0)
    assert summary["clean_exits"] == 14
    assert summary["audit_logs_verified"] == 14
    assert summary["audit_records"] > 0
    _assert_sharing(summary, 200)  # the default number of records
