"""systemd notifications (READY, WATCHDOG, STATUS) without a dependency: a datagram to
$NOTIFY_SOCKET. Outside systemd (no NOTIFY_SOCKET) every call is a no-op."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)  # a receiver that does not read must never stall the event loop
            s.connect(addr)
            s.send(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (systemd passes it as WATCHDOG_USEC), the usual feeding period."""
    usec = os.environ.get("WATCHDOG_USEC")
    try:
        return int(usec) / 2e6 if usec else None
    except ValueError:
        return None
