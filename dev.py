#!/usr/bin/env python3
"""Set up the project's virtual environment on demand, then run one job in it.

    python3 dev.py demo [args...]   run the main job (see README)
    python3 dev.py test [args...]   lint, type-check and run the whole test suite
    python3 dev.py bench NAME [...] run benchmarks/NAME.py (with the "bench" extra: plots)
    python3 dev.py shell            print the path of the environment's python

A newcomer needs only Python >= 3.11 and git: the environment lives in .venv,
is built from pyproject.toml pinned by constraints.txt, and is rebuilt when
either file changes.  Everything CI needs is installed here, never by hand.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".exchnode-setup"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def fail(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr)
    raise SystemExit(1)


def setup_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment(extra: str | None = None) -> None:
    """The test environment; with ``extra`` (e.g. "bench"), that optional extra as well."""
    if sys.version_info < (3, 11):
        fail(f"Python >= 3.11 is required, this is {sys.version.split()[0]}")
    wanted = setup_fingerprint()
    stamp = STAMP if extra is None else VENV / f".exchnode-setup-{extra}"
    if STAMP.exists() and STAMP.read_text() == wanted and PY.exists():
        if stamp.exists() and stamp.read_text() == wanted:
            return
    if not PY.exists():
        print("dev.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    extras = "test" if extra is None else f"test,{extra}"
    print(f"dev.py: installing exchnode[{extras}] into .venv", file=sys.stderr)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(pip + ["-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[{extras}]"])
    STAMP.write_text(wanted)
    stamp.write_text(wanted)


def run(argv: list[str]) -> None:
    completed = subprocess.run(argv, cwd=ROOT, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return
    job, rest = argv[0], argv[1:]
    ensure_environment("bench" if job == "bench" else None)
    python = str(PY)
    if job == "demo":
        run([python, "examples/federation.py", *rest])
    elif job == "test":
        lint = ["exchnode", "node", "tests", "benchmarks", "examples", "protocol"]
        run([python, "-m", "ruff", "check", *lint])
        run([python, "-m", "mypy"])
        run([python, "-m", "mypy", "--strict", "node", "examples/federation.py"])
        # The whole suite on every core, each module's tests on one worker (their daemons and
        # fixtures are the module's); a selection (arguments given) runs as asked.
        parallel = [] if rest else ["-n", "auto", "--dist", "loadfile"]
        run([python, "-m", "pytest", *parallel, *rest])
    elif job == "bench":
        if not rest:
            fail("bench needs a benchmark name, e.g. 'python3 dev.py bench seal_open'")
        run([python, f"benchmarks/{rest[0]}.py", *rest[1:]])
    elif job == "shell":
        print(python)
    else:
        fail(f"unknown job {job!r}; try 'python3 dev.py --help'")


if __name__ == "__main__":
    main(sys.argv[1:])
