"""How the daemon says that a listening address is taken: by the setting that names it."""

from __future__ import annotations

__all__ = ["address_in_use"]


def address_in_use(key: str, host: str, port: int) -> str:
    """``[node] listen 127.0.0.1:7000 is already in use ...`` for ``key`` ``node.listen``."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    section, _, name = key.partition(".")
    return f"[{section}] {name} {shown} is already in use (another process listens there)"
