"""The layers of exchnode, read from the source: every import of ``exchnode/**`` and ``node/**``.

:data:`RULES` is the one table of who may import whom: it is read from
ARCHITECTURE.md ("The rules between layers"), so the document is the rule.
Every ``import x`` and ``from x import y`` is read with :mod:`ast`, at
module level or nested in a function or an ``if TYPE_CHECKING:`` block,
relative imports resolved (``node/`` is installed as ``exchnode.node``), and
``importlib.import_module("literal")`` counted as an import.  A failure names
the file, the line, the import and the rule it breaks.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _rules_table() -> str:
    """The table between the ``layers:begin``/``layers:end`` markers of ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text("utf-8")
    begin, end = text.find("<!-- layers:begin"), text.find("<!-- layers:end -->")
    assert 0 <= begin < end, "ARCHITECTURE.md: the layers table's markers are missing"
    return text[text.index("\n", begin) + 1 : end]


RULES = _rules_table()
"""The layers, bottom to top.  A layer is a package of ``exchnode/`` (``exchnode.core``, ...),
one of the modules ``exchnode.errors`` and ``exchnode.testing``, the root ``exchnode/__init__.py``,
or the daemon ``node/`` (installed as ``exchnode.node``).  Besides the table:

* Across layers only the public face is imported: ``exchnode.<package>`` (its ``__init__``),
  ``exchnode.errors``, ``exchnode.testing``; never ``exchnode.<package>.<module>`` nor a
  ``_name``.  A package's private modules are its own.
* Nothing under ``exchnode/`` imports the daemon (``exchnode.node``), and nothing anywhere
  imports a top-level ``node``: installed, the daemon is ``exchnode.node`` and imports itself
  relatively.
* No import cycle between layers.
* The standard library is free, but the last column: a layer marked "no" imports none of
  asyncio, ssl, sqlite3, aiohttp, structlog (the network, database and logging edges).
* The root imports its names lazily (``import exchnode`` loads no package): its row is what its
  ``TYPE_CHECKING`` imports name, the packages its lazy table points into.
"""

#: The edges the last column of RULES keeps out of a layer marked "no".
EDGE_MODULES = ("aiohttp", "asyncio", "sqlite3", "ssl", "structlog")
#: Layers that are a single module, not a package.
MODULE_LAYERS = ("errors", "testing")


@dataclass(frozen=True, slots=True)
class Rule:
    imports: frozenset[str]
    third_party: frozenset[str]
    edges_allowed: bool


def _names(cell: str) -> frozenset[str]:
    return frozenset() if cell in {"–", "-", ""} else frozenset(cell.split(", "))


def parse_rules(text: str) -> dict[str, Rule]:
    """RULES as a mapping: layer -> Rule ("–" is nothing; words in parentheses are prose)."""
    rules: dict[str, Rule] = {}
    for line in text.strip().splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"RULES: four cells expected in {line!r}"
        assert cells[3] in {"yes", "no"}, f"RULES: the last cell is yes or no in {line!r}"
        layer = cells[0].split()[0].strip("`")
        rules[layer] = Rule(_names(cells[1]), _names(cells[2]), cells[3] == "yes")
    return rules


LAYERS = parse_rules(RULES)


# --- reading the imports ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Import:
    path: str  # relative to the repository
    line: int
    source: str  # the statement, one line
    target: str  # the module imported, absolute
    names: tuple[str, ...]  # for 'from target import a, b': a, b


def module_name(path: Path) -> str:
    """The installed name of a file: node/x.py is exchnode.node.x."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "node":
        parts = ["exchnode", *parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted([*(ROOT / "exchnode").rglob("*.py"), *(ROOT / "node").rglob("*.py")])


def _one_line(node: ast.stmt | ast.expr) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 100 else text[:97] + "..."


def read_imports(
    path: str, module: str, is_package: bool, source: str, known: frozenset[str]
) -> Iterator[Import]:
    """Every import in ``source`` (the text of ``module``), absolute."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, _one_line(node), alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 > len(parts) - 1:
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the root")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            submodules = [a.name for a in node.names if f"{target}.{a.name}" in known]
            for name in submodules:  # 'from exchnode import errors' imports exchnode.errors
                yield Import(path, node.lineno, _one_line(node), f"{target}.{name}", ())
            others = tuple(a.name for a in node.names if a.name not in submodules)
            if others or not submodules:
                yield Import(path, node.lineno, _one_line(node), target, others)
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in {"import_module", "__import__"}
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            yield Import(path, node.lineno, _one_line(node), node.args[0].value, ())


def all_imports() -> tuple[list[Import], dict[str, str]]:
    """Every import of exchnode/** and node/**, and each file's module name."""
    files = source_files()
    modules = {str(p.relative_to(ROOT)): module_name(p) for p in files}
    known = frozenset(modules.values())
    imports: list[Import] = []
    for path in files:
        relative = str(path.relative_to(ROOT))
        imports += read_imports(
            relative,
            modules[relative],
            path.name == "__init__.py",
            path.read_text("utf-8"),
            known,
        )
    return imports, modules


# --- the rules ------------------------------------------------------------------------


def layer_of(module: str) -> str | None:
    """The layer an exchnode module belongs to; None outside exchnode."""
    parts = module.split(".")
    if parts[0] != "exchnode":
        return None
    return parts[1] if len(parts) > 1 else "exchnode"


def public_face(layer: str) -> str:
    return "exchnode" if layer == "exchnode" else f"exchnode.{layer}"


def third_party(module: str) -> bool:
    return module.split(".")[0] not in sys.stdlib_module_names


def check(item: Import, source_module: str) -> str | None:
    """What rule ``item`` (in ``source_module``) breaks, or None."""
    here = layer_of(source_module)
    assert here is not None
    rule = LAYERS.get(here)
    if rule is None:
        return f"layer {here!r} has no row in RULES (tests/unit/test_layers.py)"
    top = item.target.split(".")[0]
    if top == "node":
        return (
            "no top-level 'node' exists once installed: the daemon is exchnode.node, and "
            "inside node/ it imports itself relatively"
        )
    there = layer_of(item.target)
    if there is None:
        if not rule.edges_allowed and top in EDGE_MODULES:
            edges = ", ".join(layer for layer, r in LAYERS.items() if r.edges_allowed)
            return (
                f"layer {here} must not import {top} (the network, database, logging and "
                f"event-loop modules {', '.join(EDGE_MODULES)} belong to {edges})"
            )
        if third_party(item.target) and top not in rule.third_party:
            allowed = ", ".join(sorted(rule.third_party)) or "none"
            return f"layer {here} may use only these third-party packages: {allowed}"
        return None
    if there == here:
        return None  # a layer's private modules are its own
    if there == "node":
        return "nothing in exchnode/ imports the daemon (exchnode.node): it runs on top of it"
    if there not in rule.imports:
        allowed = ", ".join(sorted(rule.imports)) or "nothing of exchnode"
        return f"layer {here} may import only {allowed} (RULES)"
    face = public_face(there)
    if item.target != face:
        return (
            f"{item.target} is private to {there}: import its public names from {face} "
            "(only its own package imports a package's modules)"
        )
    private = [name for name in item.names if name.startswith("_")]
    if private:
        return f"{', '.join(private)} is private to {there}: use its public names"
    return None


def violations() -> list[str]:
    imports, modules = all_imports()
    found = []
    for item in sorted(imports, key=lambda i: (i.path, i.line)):
        broken = check(item, modules[item.path])
        if broken is not None:
            found.append(f"{item.path}:{item.line}: `{item.source}`: {broken}")
    return found


def layer_graph() -> dict[str, dict[str, Import]]:
    """layer -> layer it imports -> one import that makes the arrow (self arrows left out)."""
    imports, modules = all_imports()
    graph: dict[str, dict[str, Import]] = {}
    for item in imports:
        here, there = layer_of(modules[item.path]), layer_of(item.target)
        assert here is not None
        if there is not None and there != here:
            graph.setdefault(here, {}).setdefault(there, item)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return [*stack[stack.index(succ) :], succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle is not None:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


# --- the tests --------------------------------------------------------------------------


def test_every_layer_has_a_row_and_the_rules_are_acyclic() -> None:
    packages = {p.parent.name for p in (ROOT / "exchnode").glob("*/__init__.py")}
    layers = {*packages, *MODULE_LAYERS, "exchnode", "node"}
    missing = layers - set(LAYERS)
    assert not missing, f"RULES has no row for {sorted(missing)}: add one"
    stale = set(LAYERS) - layers
    assert not stale, f"RULES has rows for layers that do not exist: {sorted(stale)}"
    for name in MODULE_LAYERS:
        assert (ROOT / "exchnode" / f"{name}.py").is_file()
    for layer, rule in LAYERS.items():
        unknown = rule.imports - set(LAYERS)
        assert not unknown, f"RULES: {layer} may import unknown layers {sorted(unknown)}"
    assert find_cycle({k: set(v.imports) for k, v in LAYERS.items()}) is None


def test_every_import_follows_the_layers() -> None:
    found = violations()
    assert not found, f"{len(found)} import(s) against the layers:\n" + "\n".join(found)


def test_no_import_cycle_between_layers() -> None:
    graph = layer_graph()
    cycle = find_cycle({k: set(v) for k, v in graph.items()})
    if cycle is not None:
        arrows = [
            f"  {a} -> {b}: {graph[a][b].path}:{graph[a][b].line}: `{graph[a][b].source}`"
            for a, b in itertools.pairwise(cycle)
        ]
        pytest.fail("import cycle between layers " + " -> ".join(cycle) + ":\n" + "\n".join(arrows))


# --- the checker itself, on sources written here -----------------------------------------

KNOWN = frozenset(
    {"exchnode", "exchnode.errors", "exchnode.testing", "exchnode.core", "exchnode.catalog._entry"}
)


def _check_source(module: str, source: str, is_package: bool = False) -> list[str]:
    path = module.replace(".", "/") + ".py"
    items = sorted(read_imports(path, module, is_package, source, KNOWN), key=lambda i: i.line)
    return [
        f"{item.line}: {broken}" for item in items if (broken := check(item, module)) is not None
    ]


def test_the_checker_sees_nested_relative_and_dynamic_imports() -> None:
    source = """
import aiohttp

def later():
    from exchnode.aio import Node
    from .. import testing

if True:
    import importlib
    importlib.import_module("exchnode.node.daemon")
"""
    found = _check_source("exchnode.core._merkle", source)
    assert [line.split(":")[0] for line in found] == ["2", "5", "6", "10"], found
    assert "must not import aiohttp" in found[0]
    assert "may import only errors" in found[1]
    assert "may import only errors" in found[2]  # ..testing from exchnode.core = exchnode.testing
    assert "daemon" in found[3]


def test_the_checker_refuses_private_modules_and_names_across_layers() -> None:
    found = _check_source(
        "exchnode.sharing._book",
        "from exchnode.catalog._entry import CatalogEntry\nfrom exchnode.core import _pack\n",
    )
    assert len(found) == 2, found
    assert "private to catalog" in found[0]
    assert "_pack is private to core" in found[1]
    assert _check_source("exchnode.catalog._state", "from ._entry import CatalogEntry\n") == []


def test_the_checker_holds_the_daemon_to_public_names() -> None:
    found = _check_source(
        "exchnode.node.daemon",
        "from exchnode.aio._node import Node\nfrom exchnode.testing import free_port\n"
        "import node.config\nfrom .config import load_config\nfrom exchnode import errors\n",
    )
    assert [line.split(":")[0] for line in found] == ["1", "2", "3"], found
    assert "private to aio" in found[0]
    assert "may import only" in found[1]
    assert "top-level 'node'" in found[2]


def test_the_checker_refuses_a_third_party_package_a_layer_does_not_list() -> None:
    assert _check_source("exchnode.pki._verify", "import msgpack\n") == [
        "1: layer pki may use only these third-party packages: cryptography"
    ]
    assert _check_source("exchnode.store._sqlite", "import sqlite3\n") == []


def test_no_cycle_is_found_in_a_dag_and_one_is_in_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
