"""systemd's notify protocol: readiness, stopping and the watchdog, for ``Type=notify`` units.

A datagram of ``KEY=value`` lines to the socket named by ``NOTIFY_SOCKET``
(sd_notify(3)); nothing happens when the worker does not run under systemd.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify", "watchdog_period"]

LOG = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send ``states`` (``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=...``).

    :returns: whether a notify socket was there to take them.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        LOG.warning("Could not notify systemd (%s): %s", ", ".join(states), exc)
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec``), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000
