"""``admin`` verbs: the administrator's view and levers of a running node (``/v1/admin``).

``admin config`` shows the configuration the node runs with (never a secret)
and whether ``node.toml`` changed since; ``admin identity`` its certificate
and keys; ``admin peers`` its links; ``admin retry PEER`` tries a link now;
``admin reload-credentials`` re-reads the role tokens (rotation without a
restart); ``admin crl list`` shows the CRLs the node checks peers against and
what needs attention, ``admin crl add FILE`` gives the running node a CA's
fresh CRL (checked, kept, and passed on to every node), ``admin crl reload``
re-reads ``[trust] crls`` (as SIGHUP does).  They present the administrator's token (``[operator]
administrator_token_file`` of the node named by ``--config``, default
``$EXCHNODE_CONFIG``, else ``./node.toml``).  Changing verbs name the person
acting with ``--administrator`` (default ``$EXCHNODE_ADMINISTRATOR``, else the
login name), the actor of the audit record.  Output is a readable table or,
with ``--json``, the API's JSON.  Errors follow ``node.cli``'s policy: one
line, exit status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError

from .cli_common import add_verb_group, ask, common_options, person, show
from .cli_peers import PEERS_EXAMPLES, register_peer_verbs
from .cli_services import Column, render_listing, render_table, value_of

__all__ = ["register"]


def _config_text(body: dict[str, Any]) -> str:
    node, operator = body["node"], body["operator"]
    roles = ", ".join(
        f"{role} ({'yes' if role in body['credentials'] else 'NO credential'})"
        for role in operator["roles"]
    )
    lines = [
        f"{node['name']} ({node['level']}) from {body['path']}",
        f"digest {body['digest']} ({body['state_at_start']} at start)",
        "node.toml changed on disk since start: restart to apply it"
        if body["file_changed"]
        else "node.toml on disk is what runs",
        f"link {node['listen']}, operator API {operator['listen']}, "
        f"directory {body['directory']['mode']}",
        f"roles: {roles}",
        f"peers: {', '.join(p['name'] + ' (' + p['relation'] + ')' for p in body['peers'])}"
        if body["peers"]
        else "peers: none",
    ]
    return "\n".join(lines)


def _identity_text(body: dict[str, Any]) -> str:
    certificate = body["certificate"]
    lines = [f"{body['name']}: signing key {body['signing_key_id']}"]
    lines.append(f"encryption key {body['encryption_key_id']}")
    if certificate is not None:
        lines += [
            f"certificate {certificate['serial']} from {certificate['issuer']}",
            f"valid {certificate['not_before']} .. {certificate['not_after']} "
            f"({certificate['days_left']} days left)",
        ]
    return "\n".join(lines)


def _state(peer: dict[str, Any]) -> str:
    """``refused: <what was said, or the code>`` for a refused peer, else its link state."""
    refused = peer.get("refused")
    if not refused:
        return str(peer["state"])
    return f"refused: {refused.get('said') or refused['reason']}"


_PEERS: tuple[Column, ...] = (
    ("PEER", value_of("name")),
    ("RELATION", value_of("relation")),
    ("STATE", _state),
    ("FAILURES", value_of("failures")),
    ("RETRY IN", lambda p: f"{p['retry_in_ms'] / 1000:.1f}s" if p["retry_in_ms"] else ""),
    ("QUEUED", lambda p: str(p["queued"]["count"])),
    ("SOURCE", lambda p: p.get("source", "")),
    ("URL", value_of("url")),
)


def _peers_text(peers: list[dict[str, Any]]) -> str:
    return render_listing(peers, _PEERS, "no peers configured")


def _config(args: argparse.Namespace) -> int:
    return show(args, ask(args, lambda c: c.admin_config()), _config_text)


def _identity(args: argparse.Namespace) -> int:
    return show(args, ask(args, lambda c: c.admin_identity()), _identity_text)


def _peers(args: argparse.Namespace) -> int:
    return show(args, ask(args, lambda c: c.admin_peers()), _peers_text)


def _retry(args: argparse.Namespace) -> int:
    who = person(args, "administrator")
    answer = ask(args, lambda c: c.admin_retry(args.peer, who))
    return show(args, answer, lambda a: f"retrying the link to {a['peer']} now")


def _witness_reset(args: argparse.Namespace) -> int:
    who = person(args, "administrator")
    answer = ask(args, lambda c: c.admin_witness_reset(args.child, who))
    return show(
        args, answer, lambda a: f"{a['child']}: kept head dropped; its next head is a first head"
    )


def _reload(args: argparse.Namespace) -> int:
    who = person(args, "administrator")
    answer = ask(args, lambda c: c.admin_reload_credentials(who))
    return show(
        args, answer, lambda roles: "\n".join(f"{r}: {s}" for r, s in sorted(roles.items()))
    )


def _crls_text(body: dict[str, Any]) -> str:
    rows = [
        [
            c["issuer"],
            str(c["number"]),
            c["next_update"] or "",
            c["state"],
            str(c["revoked"]),
        ]
        for c in body.get("crls", body.get("current", body.get("taken", [])))
    ]
    lines = [render_table(["ISSUER", "NUMBER", "NEXT UPDATE", "STATE", "REVOKED"], rows)]
    for warning in body.get("warnings", []):
        lines.append(f"WARNING {warning['issuer']}: {warning['problem']}")
    for r in body.get("refused", []):
        lines.append(f"refused crls[{r['position']}]: {r['reason']} [{r['code']}]")
    return "\n".join(lines)


def _crl_list(args: argparse.Namespace) -> int:
    return show(args, ask(args, lambda c: c.admin_crls()), _crls_text)


def _crl_add(args: argparse.Namespace) -> int:
    who = person(args, "administrator")
    path: Path = args.file
    try:
        pem = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read a PEM CRL: {exc}") from None
    answer = ask(args, lambda c: c.admin_crl_add(pem, who))
    return show(args, answer, _crls_text)


def _crl_reload(args: argparse.Namespace) -> int:
    who = person(args, "administrator")
    return show(args, ask(args, lambda c: c.admin_crl_reload(who)), _crls_text)


def register(verbs: Any, prog: str) -> None:
    reading, changing = common_options(), common_options("administrator")
    group = add_verb_group(
        verbs,
        "admin",
        "the administrator's: configuration, identity, links, credentials",
        f"""Examples:
  {prog} admin config --config node.toml      # what runs, and whether node.toml changed since
  {prog} admin peers                          # every link: state, failures, queue
  {prog} admin retry 520100 --administrator 张工   # try that link now
  {prog} admin reload-credentials             # after writing a new token into a role's file
  {prog} admin crl add 520100.crl.pem          # a CA's fresh CRL: to this node, then every node
  {prog} admin crl list                       # the CRLs in use: next update, warnings

These need the administrator's token ([operator] administrator_token_file);
retry, reload-credentials, crl add and crl reload are audit records naming
--administrator.""",
    )
    p = group.add_parser(
        "config", parents=[reading], help="the configuration the node runs with, no secrets"
    )
    p.set_defaults(handler=_config)
    p = group.add_parser("identity", parents=[reading], help="the node's certificate and keys")
    p.set_defaults(handler=_identity)
    p = group.add_parser(
        "peers",
        parents=[reading],
        help="every link and its state; add, remove, reload",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=PEERS_EXAMPLES.format(prog=prog),
    )
    p.set_defaults(handler=_peers)
    register_peer_verbs(p, reading, changing)
    p = group.add_parser("retry", parents=[changing], help="try the link to PEER now")
    p.add_argument("peer", metavar="PEER", help="a neighbour's node name")
    p.set_defaults(handler=_retry)
    p = group.add_parser(
        "witness-reset",
        parents=[changing],
        help="a hub forgets the head it keeps for CHILD (after a flagged rewrite was dealt with)",
    )
    p.add_argument("child", metavar="CHILD", help="a child's node name")
    p.set_defaults(handler=_witness_reset)
    p = group.add_parser(
        "reload-credentials",
        parents=[changing],
        help="re-read every role's token file (rotation without a restart)",
    )
    p.set_defaults(handler=_reload)
    crl_verbs = add_verb_group(
        group, "crl", "revocation lists: list, add a CA's fresh CRL, reload [trust] crls"
    )
    p = crl_verbs.add_parser(
        "list", parents=[reading], help="the CRLs the node checks peers against, and warnings"
    )
    p.set_defaults(handler=_crl_list)
    p = crl_verbs.add_parser(
        "add",
        parents=[changing],
        help="give the running node CRLs (PEM); checked, kept, passed on to every node",
    )
    p.add_argument("file", metavar="FILE", type=Path, help="a PEM file of one or more CRLs")
    p.set_defaults(handler=_crl_add)
    p = crl_verbs.add_parser(
        "reload", parents=[changing], help="read [trust] crls again (as SIGHUP does)"
    )
    p.set_defaults(handler=_crl_reload)
