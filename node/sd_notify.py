"""The service manager's readiness protocol (``sd_notify``), without libsystemd.

Under systemd with ``Type=notify`` the daemon says ``READY=1`` once it
serves (after the node started, the audit log verified and ``ready.json``
written: what ``/health`` calls serving) and ``STOPPING=1`` when the drain
begins, as datagrams to the socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` in the abstract namespace).  Without that variable nothing is sent.
A failure to tell is logged and never stops the daemon: readiness is a
courtesy to the service manager, which otherwise times the start out.
"""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["notify"]


def notify(state: str, log: Any) -> bool:
    """Send ``state`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``) if systemd asked; sent?"""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET not used: neither a path nor @abstract", notify_socket=address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("service manager not told", state=state.split("\n", 1)[0], error=str(exc))
        return False
    return True
