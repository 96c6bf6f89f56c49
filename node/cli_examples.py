"""An example for every leaf verb's ``--help``, kept in one table.

Verbs whose module writes its own epilog (``init``, ``send``, ``backup``, ...)
keep it; a leaf without one gets its lines from :data:`EXAMPLES` here.
``tests/unit/node/test_cli_tree.py`` walks the whole argparse tree and fails on
a leaf whose help has no "Example", so a verb added without one is noticed.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from .cli_common import RAW

__all__ = ["EXAMPLES", "add_examples", "leaves"]

#: verb path -> example command lines (after the program's name)
EXAMPLES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("admin", "peers", "list"): ("admin peers list --json",),
    ("admin", "peers", "add"): (
        "admin peers add 520102.gongan --relation child --url https://10.1.2.3:7000",
    ),
    ("admin", "peers", "remove"): ("admin peers remove 520102.gongan",),
    ("admin", "peers", "reload"): ("admin peers reload   # [[peers]] again, as SIGHUP",),
    ("openapi",): ("openapi > openapi.json   # the API's OpenAPI 3.1 document, no node needed",),
    ("catalog", "publish"): ("catalog publish --config node.toml entry.json --operator 张工",),
    ("catalog", "withdraw"): (
        'catalog withdraw 101001/000001 --reason "superseded by 101001/000002"',
    ),
    ("catalog", "list"): (
        "catalog list --keyword 人口 --share-type conditional",
        "catalog list --beyond --scope 52 --json",
    ),
    ("catalog", "show"): ("catalog show 522301.minzheng 101001/000001",),
    ("sub", "request"): (
        'sub request 522301.minzheng 101001/000001 --purpose "低保核验" --scope "本县申请人" '
        "--items 身份证号,姓名",
    ),
    ("sub", "list"): ("sub list", "sub list --incoming --state pending"),
    ("sub", "show"): ("sub show 5f0c2a9e41b7d3c8a0f6e2b19d4c7a53",),
    ("sub", "approve"): (
        "sub approve 5f0c2a9e... --items 身份证号,姓名 --mask 身份证号=keep:6:4 "
        "--expires 2026-12-31",
    ),
    ("sub", "refuse"): ('sub refuse 5f0c2a9e... --reason "purpose not covered by the conditions"',),
    ("sub", "revoke"): ('sub revoke 5f0c2a9e... --reason "the agreement ended"',),
    ("sub", "escalate"): ('sub escalate 5f0c2a9e... --reason "no answer within the deadline"',),
    ("sub", "re-review"): ('sub re-review 5f0c2a9e... --reason "the purpose is covered"',),
    ("sub", "uphold"): ('sub uphold 5f0c2a9e... --reason "the refusal stands"',),
    ("sub", "publish"): ("sub publish 101001/000001 records.jsonl",),
    ("sub", "cases"): ("sub cases --json",),
    ("sub", "fill-gaps"): ("sub fill-gaps 522301.minzheng 101001/000001",),
    ("sub", "correct"): (
        'sub correct 522301.minzheng 101001/000001 17 --items 姓名 --text "姓名与户籍不符"',
    ),
    ("sub", "corrections"): ("sub corrections --state open", "sub corrections --reported"),
    ("sub", "answer"): ('sub answer 9a41c0d2... --accept --text "已更正，将重新推送"',),
    ("sub", "correction"): ("sub correction 9a41c0d2...",),
    ("audit", "verify"): (
        "audit verify --config node.toml",
        "audit verify --offline --config node.toml     # the daemon stopped",
    ),
    ("audit", "witnessed"): ("audit witnessed --json > witnessed.json",),
    ("audit", "records"): ("audit records --from 0 --limit 50",),
    ("audit", "report"): (
        "audit report --node nodes/520102.gongan --node nodes/520302.shebao --since 2026-11-01",
    ),
    ("admin", "config"): ("admin config --config node.toml",),
    ("admin", "identity"): ("admin identity --json",),
    ("admin", "peers"): ("admin peers",),
    ("admin", "retry"): ("admin retry 520100 --administrator 张工",),
    ("admin", "witness-reset"): ("admin witness-reset 520102.gongan --administrator 张工",),
    ("admin", "reload-credentials"): ("admin reload-credentials --administrator 张工",),
    ("admin", "crl", "list"): ("admin crl list",),
    ("admin", "crl", "add"): ("admin crl add 520100.crl.pem --administrator 张工",),
    ("admin", "crl", "reload"): ("admin crl reload --administrator 张工",),
}


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf verb of the tree under ``parser``, with its path of verb names."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
        return
    for group in groups:
        for name, child in group.choices.items():
            yield from leaves(child, (*path, name))


def add_examples(parser: argparse.ArgumentParser, prog: str) -> None:
    """Give each leaf without an example in its epilog the lines :data:`EXAMPLES` holds."""
    for path, leaf in leaves(parser):
        if "Example" in (leaf.epilog or ""):
            continue
        lines = EXAMPLES.get(path)
        if lines is None:
            continue  # the test names it
        heading = "Example:" if len(lines) == 1 else "Examples:"
        examples = "\n".join(f"  {prog} {line}" for line in lines)
        leaf.epilog = f"{heading}\n{examples}" + (f"\n\n{leaf.epilog}" if leaf.epilog else "")
        leaf.formatter_class = RAW
