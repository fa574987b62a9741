"""The client's counters of messages sent, backported and refused, kept in the registry.

The client is where a message is fitted to a host's version, so it is the
one that knows what it backported or refused. Counts are kept in memory and
added to the registry's totals at most every ``[upgrade_levels]
counters_interval`` seconds (and when the client is cleaned up), so the
operator's ``computedctl upgrade-status`` sees every scheduler's traffic
without a database write per call.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from computed.registry import Registry
from computed.registry.api import CallCount

__all__ = ["CallCounters"]

LOG = logging.getLogger(__name__)


class CallCounters:
    """Counts per (host, version) for one client process."""

    def __init__(self, registry: Registry, interval: float, client_id: str | None = None) -> None:
        self._registry = registry
        self._interval = interval
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[int]] = {}
        self._totals: dict[tuple[str, str], list[int]] = {}
        self._flushed_at = time.monotonic()

    def count(
        self, host: str, rpc_version: str, backported: bool = False, refused: bool = False
    ) -> None:
        increment = (0 if refused else 1, int(backported), int(refused))
        with self._lock:
            for table in (self._pending, self._totals):
                counts = table.setdefault((host, rpc_version), [0, 0, 0])
                for i, n in enumerate(increment):
                    counts[i] += n
        self.flush()

    def snapshot(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """``{(host, version): (sent, backported, refused)}`` since this client started."""
        with self._lock:
            return {key: (c[0], c[1], c[2]) for key, c in self._totals.items()}

    def flush(self, force: bool = False) -> None:
        """Write the pending counts if the interval has passed (or ``force``)."""
        with self._lock:
            if not self._pending or (
                not force and time.monotonic() - self._flushed_at < self._interval
            ):
                return
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        counts = [
            CallCount(self.client_id, host, rpc_version, values[0], values[1], values[2])
            for (host, rpc_version), values in pending.items()
        ]
        try:
            self._registry.add_call_counts(counts)
        except Exception as exc:  # counters must never fail a call
            LOG.warning("Could not write RPC call counters to the registry: %s", exc)
            with self._lock:
                for (host, rpc_version), values in pending.items():
                    counts_ = self._pending.setdefault((host, rpc_version), [0, 0, 0])
                    for i, n in enumerate(values):
                        counts_[i] += n
