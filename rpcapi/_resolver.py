"""Finding the worker that serves a host, through a short-lived copy of the registry."""

from __future__ import annotations

import datetime
import threading
import time

from computed import exception
from computed.conf.conformance import TIERS
from computed.registry import Registry, WorkerRecord
from computed.registry.api import (
    STATE_DRAINING,
    STATE_STOPPED,
    STATE_UP,
    TIER_UNTESTED,
    utcnow,
)

__all__ = ["HostResolver"]

#: A host missing from the copy forces a re-read, but not more often than this.
_MIN_REFRESH_INTERVAL = 0.2


class HostResolver:
    """Resolves host names to their live worker.

    A host is served by its recorded owner while that worker is live (up,
    enabled, a heartbeat within ``down_time``). A host no worker has claimed
    yet is served by its freshest live candidate (an enabled worker that
    declares it).

    A host is *changing hands*, not unavailable, when its recorded owner is
    no longer live but another live candidate will take it over at its next
    heartbeat, or when its worker is draining or has just stopped (a
    restart, an upgrade): :meth:`resolve` then waits for a worker to record
    that it serves the host, up to ``handover_timeout`` seconds, so a
    message's timeout starts only once a live worker consumes its queue.

    The whole registry is read at once and kept for ``ttl`` seconds, so a call
    costs no database round trip. Liveness is judged at each lookup from the
    cached heartbeat, so a worker that stops heartbeating is noticed after
    ``down_time`` even between reads.
    """

    def __init__(
        self,
        registry: Registry,
        ttl: float,
        down_time: float,
        required_tier: str = TIER_UNTESTED,
        handover_timeout: float = 0.0,
    ) -> None:
        self._registry = registry
        self._ttl = ttl
        self._down_time = down_time
        self._handover_timeout = handover_timeout
        self._required = TIERS.index(required_tier)
        self._lock = threading.Lock()
        self._by_host: dict[str, list[WorkerRecord]] = {}
        #: The workers that declare some host, once each.
        self._workers: list[WorkerRecord] = []
        self._tiers: dict[tuple[str, str], str] = {}
        self._owners: dict[str, str | None] = {}
        self._read_at = float("-inf")
        #: Bumped at each re-read, so callers can cache what they derive from the copy.
        self.generation = 0

    def resolve(self, host: str) -> WorkerRecord:
        """The live worker serving ``host``, waiting while the host changes hands.

        :raises computed.exception.HostUnavailable: with the reason: at once
            for a host nobody serves (unknown, disabled, down), or once a
            host changing hands has found no new worker within
            ``handover_timeout`` seconds.
        """
        if time.monotonic() - self._read_at > self._ttl:
            self.refresh()
        owner = self._serving(host)
        if owner is None and time.monotonic() - self._read_at > _MIN_REFRESH_INTERVAL:
            self.refresh()
            owner = self._serving(host)
        if owner is None and self._changing_hands(host):
            owner = self._wait_for_owner(host)
        if owner is None:
            raise exception.HostUnavailable(host=host, reason=self._why_unavailable(host))
        tier = self.tier(owner)
        if TIERS.index(tier) < self._required:
            raise exception.HostUnavailable(
                host=host,
                reason=f"driver {owner.driver} {owner.driver_version} is {tier}, and this deployment "
                f"requires {TIERS[self._required]} ([conformance] required_tier); run "
                f"'computed-conformance --host {host} --record' against it, or lower the requirement",
            )
        return owner

    def tier(self, worker: WorkerRecord) -> str:
        """The tier recorded for the worker's driver version (untested without a run)."""
        return self.recorded_tier(worker.driver, worker.driver_version)

    def recorded_tier(self, driver: str, driver_version: str) -> str:
        """The tier recorded for a driver version (untested without a run)."""
        return self._tiers.get((driver, driver_version), TIER_UNTESTED)

    def live_hosts(self) -> set[str]:
        """The hosts some live worker declares, from a copy at most ``ttl`` seconds old."""
        if time.monotonic() - self._read_at > self._ttl:
            self.refresh()
        return {host for worker in self.live_workers() for host in worker.hosts}

    def refresh(self) -> None:
        with self._lock:
            workers = self._registry.list_workers()
            tiers = {key: run.tier for key, run in self._registry.latest_conformance().items()}
            try:
                owners = {h: o.worker_id for h, o in self._registry.list_owners().items()}
            except exception.RegistryError:  # a schema older than host ownership
                owners = {}
            self._index(workers)
            self._tiers = tiers
            self._owners = owners
            self._read_at = time.monotonic()
            self.generation += 1

    def _index(self, workers: list[WorkerRecord]) -> None:
        """Keep the registry's ``workers`` by host, and once each."""
        by_host: dict[str, list[WorkerRecord]] = {}
        for worker in workers:
            for host in worker.hosts:
                by_host.setdefault(host, []).append(worker)
        self._by_host = by_host
        self._workers = [w for w in workers if w.hosts]

    def _live(self, host: str) -> list[WorkerRecord]:
        now = utcnow()
        return [w for w in self._by_host.get(host, ()) if w.is_alive(self._down_time, now)]

    def _serving(self, host: str) -> WorkerRecord | None:
        """The live worker that consumes ``host``'s queue now, or None.

        That is the recorded owner. For a host no worker has claimed yet (or
        a registry without ownership records), or when the client holds
        nothing (``handover_timeout`` 0), a live candidate will do, the one
        with the freshest heartbeat: it claims the host at its next heartbeat.
        """
        live = self._live(host)
        recorded = self._owners.get(host)
        owner = next((w for w in live if w.id == recorded), None)
        if owner is not None or (host in self._owners and self._handover_timeout > 0):
            return owner
        return max(live, key=lambda w: w.heartbeat_at or utcnow(), default=None)

    def _changing_hands(self, host: str) -> bool:
        """Whether a worker is about to serve ``host`` again.

        Either a live candidate (its recorded owner died, was disabled or
        released it: a candidate takes it over at its next heartbeat), or a
        worker of the host draining or stopped within the handover timeout.
        The last heartbeat of the latter (a worker heartbeats until it has
        stopped) says when: a worker that stopped long ago, or died while
        draining, is not coming back by itself.
        """
        if self._handover_timeout <= 0:
            return False
        if self._live(host):
            return True
        now = utcnow()
        return any(
            w.state in (STATE_DRAINING, STATE_STOPPED)
            and not w.disabled
            and (w.heartbeat_age(now) or 0.0) <= self._handover_timeout
            for w in self._by_host.get(host, ())
        )

    def _wait_for_owner(self, host: str) -> WorkerRecord | None:
        """Re-read the registry until ``host`` has a live worker again, or give up."""
        deadline = time.monotonic() + self._handover_timeout
        while time.monotonic() < deadline:
            time.sleep(_MIN_REFRESH_INTERVAL)
            self.refresh()
            owner = self._serving(host)
            if owner is not None:
                return owner
            if not self._changing_hands(host):
                return None
        return None

    def _why_unavailable(self, host: str) -> str:
        workers = self._by_host.get(host)
        if not workers:
            return "no worker has registered it"
        now = utcnow()
        reasons = []
        for worker in workers:
            status = worker.status(self._down_time, now)
            if status == "down":
                age = worker.heartbeat_age(now) or 0.0
                status = f"down, last heartbeat {age:.0f} s ago (down after {self._down_time:g} s)"
            elif status == "disabled" and worker.disabled_reason:
                status = f"disabled: {worker.disabled_reason}"
            elif status in (STATE_DRAINING, STATE_STOPPED) and self._handover_timeout > 0:
                age = worker.heartbeat_age(now) or 0.0
                status = (
                    f"{status}, last heartbeat {age:.0f} s ago, and no worker served the host "
                    f"again within the handover timeout of {self._handover_timeout:g} s"
                )
            elif status == "up":
                status = (
                    "up but did not take the host over within the handover timeout of "
                    f"{self._handover_timeout:g} s"
                )
            reasons.append(f"worker {worker.id} is {status}")
        return "; ".join(reasons)

    # Versions ---------------------------------------------------------------

    def consumers(self, host: str) -> list[WorkerRecord]:
        """The workers that may be consuming ``host``'s queue right now or next.

        That is every worker that declares the host, not only its recorded
        owner: any live candidate may take the host over at its next
        heartbeat, while a message sent now still waits in the queue.
        Besides the live candidates that includes a disabled worker (it stops
        being chosen at once, consuming only at its next heartbeat) and a draining one (it may still hold
        a message): the version sent to the host must suit all of them. A
        worker is out once it is stopped or its heartbeat is older than the
        down time.
        """
        now = utcnow()
        return [
            w
            for w in self._by_host.get(host, ())
            if w.state in (STATE_UP, STATE_DRAINING)
            and (w.heartbeat_age(now) or 0.0) <= self._down_time
        ]

    def stable_until(self) -> datetime.datetime:
        """The first moment a worker in the copy may count as down (heartbeat + down time)."""
        limit = datetime.timedelta(seconds=self._down_time)
        beats = [w.heartbeat_at for w in self._workers if w.heartbeat_at]
        return min(beats) + limit if beats else datetime.datetime.min

    def live_workers(self) -> list[WorkerRecord]:
        """Every live worker of the deployment, once each."""
        now = utcnow()
        return [w for w in self._workers if w.is_alive(self._down_time, now)]
