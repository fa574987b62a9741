"""A worker's hosts in the registry's inventory: measured on a cadence and when they change.

The publisher runs on a thread of its own. At every heartbeat interval it
reads the operators' disabled flags of the hosts the worker serves (one
query) and records the hosts whose resources an operation changed; every
``[DEFAULT] inventory_interval`` it measures every host. Only a host whose
figures differ from what the worker last recorded is written; the others
have their measure time stamped in one statement per worker, so a quiet
fleet costs one read per worker per heartbeat and one write per worker per
inventory interval.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from computed._claims import HostTracker
from computed.registry import Registry
from computed.registry._db import utcnow
from computed.registry.inventory import RATIOS, RESOURCES, ROWS_PER_STATEMENT, HostInventoryRecord

__all__ = ["InventoryPublisher"]

LOG = logging.getLogger(__name__)


class InventoryPublisher:
    """Measures and records the inventory of a worker's hosts.

    :param trackers: the trackers of the hosts the worker serves now.
    :param identity: what the worker records of itself with each host: a
        record whose ``worker_id``, ``driver``, ``driver_version``,
        ``support_tier`` and ``capabilities`` are set.
    """

    def __init__(
        self,
        registry: Registry,
        trackers: Callable[[], dict[str, HostTracker]],
        identity: HostInventoryRecord,
        heartbeat_interval: float,
        inventory_interval: float,
    ) -> None:
        self._registry = registry
        self._trackers = trackers
        self._identity = identity
        self._heartbeat_interval = heartbeat_interval
        self._inventory_interval = inventory_interval
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        #: What this worker last wrote of each host (the figures, not the time).
        self._written: dict[str, tuple[object, ...]] = {}
        self._thread: threading.Thread | None = None
        #: Statements sent to the registry since the start, and rows they changed
        #: (written with new figures, or stamped with a new measure time).
        self.statements = 0
        self.rows_written = 0
        self.rows_stamped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inventory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def changed(self, host: str) -> None:
        """Have ``host`` measured and recorded at once (an operation changed its resources)."""
        with self._lock:
            self._dirty.add(host)
        self._wake.set()

    def _run(self) -> None:
        due = 0.0  # the first pass measures every host
        flags_due = 0.0
        while not self._stopped.is_set():
            # Cleared before the work: a change said meanwhile wakes the next wait.
            self._wake.clear()
            now = time.monotonic()
            try:
                if now >= flags_due:
                    flags_due = now + self._heartbeat_interval
                    self.read_flags()
                if now >= due:
                    due = now + self._inventory_interval
                    self.publish(everything=True)
                elif self._dirty:
                    self.publish(everything=False)
            except Exception as exc:
                LOG.warning("Recording the host inventory failed: %s", exc)
            self._wake.wait(max(0.0, min(flags_due, due) - time.monotonic()))

    def read_flags(self) -> None:
        """Learn the operators' disabled flags of the hosts served now."""
        trackers = self._trackers()
        flags = self._registry.host_flags(trackers)
        for host, tracker in trackers.items():
            flag = flags.get(host)
            reason = (flag.reason or "disabled by an operator") if flag is not None else None
            if tracker.set_disabled(reason):
                if reason is None:
                    LOG.info("Host %s is enabled again: it takes new instances", host)
                else:
                    LOG.info("Host %s is disabled: it takes no new instance (%s)", host, reason)

    def publish(self, everything: bool) -> int:
        """Measure and record the hosts that changed, or every host; returns the rows written."""
        trackers = self._trackers()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        hosts = sorted(trackers) if everything else sorted(dirty & set(trackers))
        changed: list[HostInventoryRecord] = []
        unchanged: list[str] = []
        at = utcnow()
        for host in hosts:
            tracker = trackers[host]
            try:
                resources = tracker.measure()
            except Exception as exc:
                LOG.warning("Measuring host %s failed: %s", host, exc)
                continue
            # Compared as a tuple: a quiet pass builds no record.
            ratios = tracker.ratios
            figures = (
                *(getattr(resources, name) for name in RESOURCES),
                *(getattr(ratios, name) for name in RATIOS),
            )
            if self._written.get(host) == figures:
                unchanged.append(host)
                continue
            changed.append(
                dataclasses.replace(
                    self._identity,
                    host=host,
                    measured_at=at,
                    **dict(zip(RESOURCES + RATIOS, figures, strict=True)),
                )
            )
            self._written[host] = figures
        try:
            self._registry.record_inventory(changed)
        except Exception:
            for record in changed:  # measured again, and written, next time
                self._written.pop(record.host, None)
            raise
        if everything and unchanged:
            self._registry.confirm_inventory(str(self._identity.worker_id), unchanged, at)
        self.statements += -(-len(changed) // ROWS_PER_STATEMENT) + (
            1 if everything and unchanged else 0
        )
        self.rows_written += len(changed)
        self.rows_stamped += len(unchanged) if everything else 0
        return len(changed)

    def forget(self, hosts: list[str]) -> None:
        """Hosts this worker no longer serves: their next owner records them."""
        for host in hosts:
            self._written.pop(host, None)
