"""Importing a pure package loads no network, database, logging or event-loop library.

Each package is imported in a fresh interpreter (``sys.modules`` of this one
is whatever the other tests loaded) with ``-X importtime``, so a failure can
say which chain of imports brought the module in.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What a pure import must not load: aiohttp, TLS, the SQLite driver, structlog, and
#: asyncio's event loop (asyncio.base_events; structlog, for one, imports asyncio).
FORBIDDEN = ("aiohttp", "ssl", "sqlite3", "structlog", "psycopg", "asyncio.base_events")

PURE = (
    "exchnode",
    "exchnode.errors",
    "exchnode.core",
    "exchnode.pki",
    "exchnode.federation",
    "exchnode.catalog",
    "exchnode.sharing",
    "exchnode.audit",
    # the store's records and interface; its backends are imported on first use
    "exchnode.store",
)

PROBE = """
import json, sys
import {module}
print(json.dumps([name for name in {forbidden!r} if name in sys.modules]))
"""


def import_chain(importtime: str, module: str) -> str:
    """From ``-X importtime`` output: who imported ``module``, outermost first."""
    rows = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        name = line.rsplit("|", 1)[1]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((depth, name.strip()))
    # -X importtime lists a module after everything it imported: the importer of the row
    # at depth d is the next row at depth d - 1.
    for index, (depth, name) in enumerate(rows):
        if name == module:
            chain = [name]
            want = depth - 1
            for later_depth, later in rows[index + 1 :]:
                if later_depth == want:
                    chain.append(later)
                    want -= 1
            return " <- ".join(chain)
    return f"{module} (not in the -X importtime output)"


@pytest.mark.parametrize("module", PURE)
def test_a_pure_import_loads_no_edge_library(module: str) -> None:
    probe = PROBE.format(module=module, forbidden=FORBIDDEN)
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    chains = "\n".join(f"  {import_chain(completed.stderr, name)}" for name in loaded)
    assert not loaded, f"import {module} loads {', '.join(loaded)}:\n{chains}"


def test_the_chain_is_read_from_importtime() -> None:
    output = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:        10 |         10 |         asyncio.base_events",
            "import time:        10 |         20 |       asyncio",
            "import time:        10 |         30 |     structlog",
            "import time:        10 |         40 |   exchnode.core._events",
            "import time:        10 |         10 |   exchnode.core._names",
            "import time:        10 |         60 | exchnode.core",
        ]
    )
    assert import_chain(output, "asyncio.base_events") == (
        "asyncio.base_events <- asyncio <- structlog <- exchnode.core._events <- exchnode.core"
    )
