"""``python -m exchnode.node <verb>`` (or ``exchnode node <verb>``, ``exchnode send``, ...).

Verbs: ``init``, ``run``, ``send``, ``receive``; ``status``, ``health`` and
``message status`` (``node.cli_status``); ``openapi`` (``node.openapi``);
``catalog ...`` and ``sub ...`` (``node.cli_services``), ``audit ...``
(``node.cli_audit``, ``audit trace`` in ``node.cli_trace``), ``admin ...``
(``node.cli_admin``), ``backup`` and ``restore`` (``node.cli_backup``) and
``completion-tree`` for ``exchnode completion`` (``node.completion``);
every leaf's help has an example (``node.cli_examples``).  Each call to the
API presents the token of the role it needs (``node.client``).  One
error policy, as in ``exchnode.cli``: an exchnode error, a configuration
error or an ``OSError`` is ONE line ``<prog>: error: <message>`` on stderr
and exit status 1, never a traceback; argparse reports usage errors itself
(status 2).  ``send --wait`` exits 3 when no answer came in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchnode.errors import ExchnodeError, RejectedError
from exchnode.pki import read_passphrase_file

from .cli_admin import register as register_admin
from .cli_audit import register as register_audit
from .cli_backup import register as register_backup
from .cli_common import add_config_option, add_verb
from .cli_examples import add_examples
from .cli_services import register as register_services
from .cli_status import register as register_status
from .client import OperatorClient, OperatorError, Received
from .completion import register as register_completion
from .config import DEFAULT_LISTEN, DEFAULT_OPERATOR, DIRECTORY_MODES, LEVELS, load_config
from .content_types import content_type_of
from .forms import iso_ms
from .openapi import register as register_openapi
from .scaffold import TOKEN_NAMES, InitOptions, init_node

__all__ = ["build_parser", "main"]

EXIT_TIMEOUT = 3
DRAIN_PAGE = 100  # deliveries asked for at a time by receive --drain
_RAW = argparse.RawDescriptionHelpFormatter


def _prog() -> str:
    # The launcher (exchnode.cli.launcher) says how the user spelled the command.
    return os.environ.get("EXCHNODE_PROG", "python -m exchnode.node")


def _peer_arg(relation: str) -> Any:
    def parse(text: str) -> tuple[str, str, str]:
        name, sep, url = text.partition("=")
        if not sep or not name or not url:
            raise argparse.ArgumentTypeError(f"expected NAME=URL, got {text!r}")
        return relation, name, url

    return parse


def build_parser() -> argparse.ArgumentParser:
    prog = _prog()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The exchnode reference daemon: one node per process, one TOML config "
        "per node (node/README.md).",
        formatter_class=_RAW,
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB")
    verbs.required = True

    p = add_verb(
        verbs,
        "init",
        _init,
        "write a starter config, the role tokens and (with --ca-dir) keys and certificate",
        f"""Examples:
  {prog} init --name 520102.gongan --level county --dir /srv/exchnode/gongan \\
      --ca-dir /srv/exchnode-pki --parent 520102=https://10.1.0.2:7443
  {prog} init --name 520100 --level city --dir ./520100   # certificate from your CA later

Without --ca-dir the config points at DIR/identity and DIR/trust, and the
next steps printed say what your CA operator provides.""",
    )
    p.add_argument("--name", required=True, help="node name: DIVISION or DIVISION.department")
    p.add_argument("--level", required=True, choices=list(LEVELS), help="checked against --name")
    p.add_argument("--dir", required=True, type=Path, help="the node's folder (created)")
    p.add_argument("--ca-dir", type=Path, help="a CA store ('exchnode pki'): issue the node now")
    p.add_argument("--issuer", help="the issuing CA's division (default: the nearest CA above)")
    p.add_argument("--issuer-passphrase-file", type=Path, help="unlocks the issuing CA's key")
    p.add_argument("--passphrase-file", type=Path, help="protect the node's keys with this")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="link address (default %(default)s)")
    p.add_argument(
        "--operator", default=DEFAULT_OPERATOR, help="operator API address (default %(default)s)"
    )
    p.add_argument("--parent", type=_peer_arg("parent"), metavar="NAME=URL", action="append")
    p.add_argument("--child", type=_peer_arg("child"), metavar="NAME=URL", action="append")
    p.add_argument("--link", type=_peer_arg("link"), metavar="NAME=URL", action="append")
    p.add_argument("--trust", type=Path, help="use this shared trust folder instead of a copy")
    p.add_argument("--peer-directory", type=Path, help="use this shared folder of peer chains")
    p.add_argument(
        "--directory-mode",
        choices=list(DIRECTORY_MODES),
        default="signed",
        help="signed (default): the federation's signed directory; static: chains in a folder",
    )

    p = add_verb(
        verbs,
        "run",
        _run,
        "serve the node until SIGTERM (JSON logs on stderr)",
        f"""Example:
  {prog} run --config /srv/exchnode/gongan/node.toml

SIGTERM or SIGINT drains (operator requests under way finish, the node stops
taking transfers and commits what it took) and exits 0.

A node whose stored audit log does not verify refuses to start.  After an
upgrade from a version without the audit seal, records that version left under
no head when it crashed are such a finding; if that is ALL the start reports,
run once with --accept-unsigned-audit-tail: a head is signed over them and the
acceptance is itself on the record.""",
    )
    add_config_option(p)
    p.add_argument(
        "--accept-unsigned-audit-tail",
        action="store_true",
        help="this start only: accept audit records no head covers (see above)",
    )
    p.add_argument(
        "--worker",
        type=int,
        metavar="I",
        help="internal: run as worker I of a hub with [store] workers > 1 (worker 0 starts them)",
    )

    p = add_verb(
        verbs,
        "check",
        _check,
        "validate a config without starting, like nginx -t (exit 0: run would start)",
        f"""Examples:
  {prog} check --config /srv/exchnode/gongan/node.toml
  {prog} check --config node.toml && systemctl restart exchnode-node@gongan

Checks what run reads and binds: the file, every file it names, the role
tokens, the trust material (every CRL by the one CRL check, a CRL for every
CA), the node's keys against its certificate and its chain against the trust,
in static mode each peer chain, the state directory not locked by a running
daemon and the store openable, both listening addresses free.  Prints one
line "<config>: ok: ..." and exits 0, or one line per problem and exits 1.
Nothing is written.""",
    )
    add_config_option(p)

    p = add_verb(
        verbs,
        "send",
        _send,
        "send a file or stdin to one or more nodes through the local node",
        f"""Examples:
  {prog} send --config node.toml --to 522301.minzheng report.json
  tar c data | {prog} send --config node.toml --to 520000.tongji --receipt --wait -
  {prog} send --config node.toml --to 522301.minzheng --idempotency-key batch-2026-12-07 f.json

Prints the message id.  With --idempotency-key, running the same command again
(after a timeout, say) prints the first message's id and sends nothing new.
The content type follows the file's extension (report.json: application/json,
.csv: text/csv, ...; stdin or an unknown one: application/octet-stream)
unless --content-type names it.

--wait waits for each recipient's RECEIPT: the recipient node's signed
statement that the recipient's application took the message (acknowledged it
after 'receive'), which the recipient node sends back.  A non-delivery report
(refused, expired, unknown recipient) ends the wait for that recipient too.
Exit 0 if every recipient sent a receipt, 1 if any got a report, {EXIT_TIMEOUT} if
--timeout passed first (the network still holds the message; the receipt may
come later: '{prog} message status ID').""",
    )
    add_config_option(p)
    p.add_argument("--to", required=True, action="append", help="recipient (repeatable)")
    p.add_argument("--kind", default="data")
    p.add_argument(
        "--content-type",
        help="default: from the file's extension, else application/octet-stream",
    )
    p.add_argument("--ttl", type=float, help="seconds the network keeps trying")
    p.add_argument("--receipt", action="store_true", help="ask every recipient for a receipt")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for every recipient's receipt, i.e. its application's acknowledgement "
        "(implies --receipt)",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds, for --wait (default %(default)s)"
    )
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="your name for this send: a retry with the same key never sends twice",
    )
    p.add_argument("file", metavar="FILE", help="the payload, or - for stdin")

    p = add_verb(
        verbs,
        "receive",
        _receive,
        "take messages from the local node into files or stdout",
        f"""Examples:
  {prog} receive --config node.toml --count 10 --out inbox/
  {prog} receive --config node.toml > message.bin
  {prog} receive --drain --out inbox/              # cron: what is waiting, then exit 0
  {prog} receive --drain --jsonl > batch.jsonl      # the same as JSON lines on stdout

--drain takes every message waiting now, waits for none, and exits 0 (also
when there was nothing).  Without it, receive waits for --count messages.
--jsonl writes each message to stdout as one JSON object: sender,
message_id, kind, content_type, created, expires (ISO 8601), and payload
(base64) or, for subscription records, records.

Each message is written (to DIR/<sender>.<message id>, atomically, fsynced)
before it is acknowledged; if this command dies in between, the node offers
the message again and the same file is rewritten: exactly-once in effect.
Records of a subscription (kind sub.records) are written decoded, one JSON
object {{"seq", "fields"}} per line (DIR/<sender>.<message id>.jsonl).""",
    )
    add_config_option(p)
    p.add_argument("--count", type=int, default=1, help="how many messages (default 1)")
    p.add_argument(
        "--drain",
        action="store_true",
        help="take every message waiting now, wait for none, exit 0 (for cron)",
    )
    p.add_argument("--out", default="-", help="a directory, or - for stdout (default)")
    p.add_argument(
        "--jsonl", action="store_true", help="stdout: one JSON object per message, payload base64"
    )
    p.add_argument(
        "--no-ack",
        dest="ack",
        action="store_false",
        help="write but do not acknowledge: the node offers the messages again (no receipt)",
    )
    p.add_argument("--timeout", type=float, help="give up after this many seconds")

    register_status(verbs, prog)

    register_services(verbs, prog)
    register_audit(verbs, prog)
    register_admin(verbs, prog)
    register_backup(verbs, prog)
    register_openapi(verbs, prog)
    register_completion(verbs, prog)
    add_examples(parser, prog)
    return parser


# --- init and run ----------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    issuer_passphrase = (
        read_passphrase_file(args.issuer_passphrase_file) if args.issuer_passphrase_file else None
    )
    passphrase = read_passphrase_file(args.passphrase_file) if args.passphrase_file else None
    peers = tuple((args.parent or []) + (args.child or []) + (args.link or []))
    result = init_node(
        InitOptions(
            name=args.name,
            level=args.level,
            directory=args.dir,
            now=datetime.now(UTC).replace(microsecond=0),
            ca_dir=args.ca_dir,
            issuer=args.issuer,
            issuer_passphrase=issuer_passphrase,
            passphrase=passphrase,
            passphrase_file=args.passphrase_file,
            listen=args.listen,
            operator=args.operator,
            peers=peers,
            trust=args.trust,
            peer_directory=args.peer_directory,
            directory_mode=args.directory_mode,
        )
    )
    print(f"wrote {result.config}")
    for role, token_name in TOKEN_NAMES.items():
        print(f"wrote {result.config.parent / token_name} (mode 0600): the {role.value}'s token")
    print(f"wrote {result.config.parent / 'masking.secret'} (mode 0600)")
    if result.issued_by is not None:
        print(
            f"issued the certificate of {args.name} by CA {result.issued_by} into "
            f"{result.config.parent / 'identity'} (keys mode 0600)"
        )
    for number, step in enumerate(result.next_steps, 1):
        print(f"next {number}: {step}")
    print(f"then: {_prog()} run --config {result.config}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from exchnode.aio import run as run_loop

    from .daemon import serve
    from .logs import configure_logging

    config = load_config(args.config)
    index = 0 if args.worker is None else args.worker
    # A hub's workers write to one stderr: every line says whose it is.
    fields = {"worker": index} if config.store.workers > 1 or args.worker is not None else {}
    configure_logging(config.log.level, config.log.format, fields=fields)
    if args.worker is not None:
        import structlog

        from .worker import serve_worker

        try:
            return run_loop(serve_worker(config, args.worker))
        except ExchnodeError as exc:  # on the hub's log, with the worker's number
            structlog.get_logger("node.worker").error("worker stopped by an error", error=str(exc))
            return 1
    return run_loop(serve(config, accept_unsigned_tail=args.accept_unsigned_audit_tail))


def _check(args: argparse.Namespace) -> int:
    from .check import check_config

    problems, summary = check_config(args.config)
    if problems:
        for line in problems:
            print(f"{_prog()}: error: {line}", file=sys.stderr)
        return 1
    print(f"{Path(args.config).resolve()}: ok: {summary}")
    return 0


# --- clients of the operator API -------------------------------------------------------


def _client(args: argparse.Namespace) -> OperatorClient:
    return OperatorClient.for_config(load_config(args.config))


def _send(args: argparse.Namespace) -> int:
    payload = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    if args.content_type is None:
        args.content_type = content_type_of(args.file)
    return asyncio.run(_send_async(args, payload))


async def _send_async(args: argparse.Namespace, payload: bytes) -> int:
    async with _client(args) as client:
        sent = await client.send(
            args.to,
            payload,
            kind=args.kind,
            content_type=args.content_type,
            ttl=args.ttl,
            receipt=args.receipt or args.wait,
            idempotency_key=args.idempotency_key,
        )
        print(sent["message_id"], flush=True)
        if not args.wait:
            return 0
        recipients = ", ".join(sent["recipients"])
        print(
            f"waiting up to {args.timeout:g} s for the receipt of {recipients} (each "
            "recipient's acknowledgement that its application took the message)",
            file=sys.stderr,
        )
        deadline = time.monotonic() + args.timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            wait = min(deadline - time.monotonic(), 30.0)
            status = await client.status(sent["message_id"], sent["recipients"], wait=wait)
            if status["settled"]:
                break
        for recipient in status.get("delivered_to", []):
            print(f"receipt from {recipient}: delivered and acknowledged", file=sys.stderr)
        for report in status.get("reports", []):
            print(
                f"not delivered to {', '.join(report['targets'])}: {report['code']} "
                f"({report['reason']}, reported by {report['reporter']})",
                file=sys.stderr,
            )
        if not status.get("settled"):
            answered = set(status.get("delivered_to", [])) | set(status.get("failed_for", []))
            missing = [r for r in sent["recipients"] if r not in answered]
            print(
                f"{_prog()}: error: timed out after {args.timeout:g} s waiting for the receipt "
                f"of {', '.join(missing) or recipients}; the network still holds the message "
                f"({_prog()} message status {sent['message_id']})",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        return 1 if status.get("failed_for") else 0


def _receive(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise OperatorError("--count must be at least 1")
    out = None if args.out == "-" else Path(args.out)
    if out is not None and args.jsonl:
        raise OperatorError("--jsonl writes to stdout: leave out --out DIR")
    if out is None and args.drain and not args.jsonl:
        raise OperatorError(
            "--drain may take many messages: give --out DIR (a file each) or --jsonl (stdout)"
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_receive_async(args, out))


def _records_lines(item: Received) -> bytes:
    """A ``sub.records`` delivery's new records, one JSON object per line: {"seq", "fields"}."""
    assert item.records is not None
    return b"".join(
        json.dumps(record, ensure_ascii=False).encode() + b"\n"
        for record in item.records["records"]
    )


def _content(item: Received) -> tuple[bytes, str]:
    """What 'receive' writes of a delivery, and the file suffix: decoded records or the payload."""
    if item.records is not None:
        return _records_lines(item), ".jsonl"
    return item.payload, ""


def _store(out: Path, item: Received) -> Path:
    """Write durably under a name fixed by (sender, message id): a redelivery rewrites it."""
    content, suffix = _content(item)
    target = out / f"{item.sender}.{item.message_id}{suffix}"
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=out)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _meta(item: Received) -> dict[str, Any]:
    """What 'receive' says of a delivery: who, which, what, when (ISO 8601, +08:00)."""
    meta: dict[str, Any] = {
        "sender": item.sender,
        "message_id": item.message_id,
        "kind": item.kind,
        "content_type": item.content_type,
        "created": iso_ms(item.created_ms),
        "expires": iso_ms(item.expires_ms),
        "bytes": len(item.payload),
    }
    if item.records is not None:
        meta.update(
            provider=item.records["provider"],
            resource_code=item.records["resource_code"],
            records=len(item.records["records"]),
            repeated=item.records["repeated"],
            refused=item.records["refused"],
            missing=item.records["missing"],
        )
    elif item.records_error is not None:
        meta["records_error"] = item.records_error
    return meta


def _write(item: Received, out: Path | None, jsonl: bool) -> None:
    """One delivery durably where it goes, before it is acknowledged."""
    meta = _meta(item)
    if jsonl:
        if item.records is not None:
            meta["records"] = item.records["records"]
        else:
            meta["payload"] = base64.b64encode(item.payload).decode("ascii")
        sys.stdout.write(json.dumps(meta, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    elif out is None:
        sys.stdout.buffer.write(_content(item)[0])
        sys.stdout.buffer.flush()
        print(json.dumps(meta, ensure_ascii=False), file=sys.stderr)
    else:
        meta["file"] = str(_store(out, item))
        print(json.dumps(meta, ensure_ascii=False), flush=True)


async def _receive_async(args: argparse.Namespace, out: Path | None) -> int:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    got = 0
    async with _client(args) as client:
        while args.drain or got < args.count:
            if args.drain:
                # What is waiting now, a page at a time; an empty page ends the run.
                wait, limit = 0.0, DRAIN_PAGE
            else:
                wait = 30.0 if deadline is None else min(deadline - time.monotonic(), 30.0)
                limit = args.count - got
            if wait < 0 or (wait == 0 and not args.drain):
                print(
                    f"{_prog()}: error: timed out after {args.timeout:g} s with "
                    f"{got} of {args.count} messages",
                    file=sys.stderr,
                )
                return 1
            items = await client.receive(limit, wait)
            if args.drain and not items:
                break
            for item in items:
                _write(item, out, args.jsonl)
                if args.ack:
                    await client.ack([item.id])
                got += 1
    if args.drain:
        print(f"received {got} message(s)", file=sys.stderr)
    return 0


# --- the error policy --------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RejectedError):
        text = f"{exc} [{exc.code}]"
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        text = f"{exc.strerror or exc}{where}"
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (ExchnodeError, OSError) as exc:
        print(f"{_prog()}: error: {_describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_prog()}: interrupted", file=sys.stderr)
        return 130
