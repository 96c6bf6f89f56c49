"""The daemon's links are always mutual TLS: it never builds a Node on the simulated network.

``Node(network=...)`` exists for ``exchnode simulate`` (real nodes over an
in-memory network, no sockets and no TLS).  A daemon that passed one would
run its links without TLS, so the daemon's source must not name it, and the
daemon's node must be built with TLS files.
"""

from __future__ import annotations

import ast
from pathlib import Path

NODE = Path(__file__).resolve().parents[3] / "node"


def _node_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        call
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name | ast.Attribute)
        and (call.func.id if isinstance(call.func, ast.Name) else call.func.attr) == "Node"
    ]


def test_the_daemon_never_builds_a_node_on_a_simulated_network() -> None:
    built = []
    for path in sorted(NODE.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for call in _node_calls(tree):
            keywords = {keyword.arg for keyword in call.keywords}
            where = f"{path.name}:{call.lineno}"
            assert "network" not in keywords, f"{where} passes network= to Node"
            assert "tls" in keywords, f"{where} builds a Node without its TLS files"
            built.append(where)
        for name in ast.walk(tree):
            if (
                isinstance(name, ast.ImportFrom)
                and name.module
                and name.module.startswith("exchnode.sim")
            ):
                raise AssertionError(f"{path.name} imports the simulator")
    assert built, "the daemon builds its Node somewhere: this test must see it"
