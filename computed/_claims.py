"""One host's resources as its worker tracks them: measured, claimed, and whether it is disabled.

A spawn (and, later, a resize or an incoming migration) *claims* what it
needs before the driver is called, and holds the claim until the outcome is
known: concurrent operations on a host see each other's claims, so
together they never take it past its capacity (its totals times the
allocation ratios). A finished operation's claim is kept until a measure
of the host started after it ended has been taken (the host's use then
counts what the operation made), so nothing is counted twice or missed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Iterator

from computed import exception
from computed.objects import HostResources, InstanceInfo
from computed.objects.fleet import RESOURCES, Request, Shortfall, shortfall
from drivers import base

__all__ = ["Ratios", "HostTracker"]

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Ratios:
    """Allocation ratios (``[DEFAULT] cpu/ram/disk_allocation_ratio``)."""

    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Claim:
    request: Request
    #: Once the operation has ended: the last measure ticket handed out then.
    ended_at: int | None = None


class HostTracker:
    """The resources, claims and disabled flag of one host of a worker.

    :param on_change: called with the host's name when its resources may have
        changed (a claim ended, :meth:`changed`): the worker's inventory
        publisher measures and records it then.
    """

    def __init__(
        self,
        host: str,
        driver: base.ComputeDriver,
        ratios: Ratios = Ratios(),
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.ratios = ratios
        self._driver = driver
        self._on_change = on_change
        self._lock = threading.Lock()
        self._claims: list[_Claim] = []
        self._measured: HostResources | None = None
        #: The ticket of the measure ``_measured`` came from.
        self._measured_ticket = 0
        self._tickets = itertools.count(1)
        self._last_ticket = 0
        self._disabled: str | None = None

    # The disabled flag --------------------------------------------------------

    def set_disabled(self, reason: str | None) -> bool:
        """Record the operator's flag as the registry has it (None: enabled). True if it changed."""
        with self._lock:
            changed, self._disabled = self._disabled != reason, reason
        return changed

    def check_enabled(self) -> None:
        """:raises computed.exception.HostDisabled: if an operator disabled the host."""
        reason = self._disabled
        if reason is not None:
            raise exception.HostDisabled(host=self.host, reason=reason)

    # Measures -----------------------------------------------------------------

    def measure(self) -> HostResources:
        """Ask the driver for the host's resources now, and keep them.

        A measure that ends after a later-started one is returned but not
        kept: only a measure started after an operation ended counts what it
        made. Claims of operations that ended before this measure started
        are dropped.
        """
        with self._lock:
            ticket = self._last_ticket = next(self._tickets)
        resources = self._driver.get_host_resources(self.host)
        if not isinstance(resources, HostResources):
            raise TypeError(
                f"get_host_resources returned {type(resources).__name__}, not HostResources"
            )
        with self._lock:
            if ticket > self._measured_ticket:
                self._measured, self._measured_ticket = resources, ticket
                self._claims = [
                    c for c in self._claims if c.ended_at is None or c.ended_at >= ticket
                ]
        return resources

    @property
    def measured(self) -> HostResources | None:
        """The host's resources as last measured (None before the first measure)."""
        return self._measured

    def changed(self) -> None:
        """Say that the host's resources changed (an operation made, removed or resized
        an instance): the worker measures and records the host at once, off the
        operation's thread."""
        if self._on_change is not None:
            self._on_change(self.host)

    # Claims -------------------------------------------------------------------

    @contextlib.contextmanager
    def claim(
        self, vcpus: int = 0, memory_mb: int = 0, disk_gb: int = 0, operation: str = "spawn"
    ) -> Iterator[None]:
        """Hold ``vcpus``, ``memory_mb`` (MiB) and ``disk_gb`` (GiB) of the host for
        the ``with`` block: the driver call that uses them.

        Taken on entry, or refused; once the block ends (returning or
        raising), the claim stays counted until the host is measured again,
        which :meth:`changed` asks for.

        :raises computed.exception.InsufficientResources: on entry, if the
            request does not fit what the host has free under its
            allocation ratios, less what other operations hold; naming the
            first resource short.
        """
        claim = _Claim(Request(vcpus, memory_mb, disk_gb))
        self._take(claim, operation)
        try:
            yield
        finally:
            with self._lock:
                claim.ended_at = self._last_ticket
            self.changed()

    def _take(self, claim: _Claim, operation: str) -> None:
        if self._measured is None:
            self.measure()
        short = self._try_take(claim)
        if short is not None:
            # The figures may be old (instances gone since, claims ended): look again.
            self.measure()
            short = self._try_take(claim)
        if short is not None:
            raise exception.InsufficientResources(
                host=self.host,
                operation=operation,
                resource=short.resource,
                requested=short.requested,
                free=short.free,
                total=short.total,
                ratio=short.ratio,
            )

    def _try_take(self, claim: _Claim) -> Shortfall | None:
        with self._lock:
            measured = self._measured
            assert measured is not None
            figures = {
                name: int(getattr(measured, name)) for trio in RESOURCES for name in trio[:2]
            }
            held = Request()
            for other in self._claims:
                held = held + other.request
            short = shortfall(figures, self.ratios.as_dict(), claim.request, held)
            if short is None:
                self._claims.append(claim)
            return short

    def claimed(self) -> Request:
        """What claims hold on the host now, beyond its measured use."""
        with self._lock:
            held = Request()
            for claim in self._claims:
                held = held + claim.request
            return held

    @contextlib.contextmanager
    def admit(
        self,
        vcpus: int,
        memory_mb: int,
        disk_gb: int,
        uuid: str,
        operation: str = "spawn",
        check_enabled: bool = True,
        arrived: Callable[[InstanceInfo], bool] = lambda info: True,
    ) -> Iterator[None]:
        """Admit an operation that brings instance ``uuid`` (or its growth) here: the host
        must be enabled (unless ``check_enabled`` is false) and have room.

        One whose instance the host already has, as ``arrived`` judges it (a
        repeated spawn, idempotent by UUID; a move's step run again after a
        takeover), is admitted without a claim: it makes nothing.

        :raises computed.exception.HostDisabled: the host is disabled.
        :raises computed.exception.InsufficientResources: the host is full.
        """
        with contextlib.ExitStack() as stack:
            try:
                if check_enabled:
                    self.check_enabled()
                stack.enter_context(self.claim(vcpus, memory_mb, disk_gb, operation))
            except (exception.HostDisabled, exception.InsufficientResources):
                if not self._has(uuid, arrived):
                    raise
            yield

    def _has(self, uuid: str, arrived: Callable[[InstanceInfo], bool]) -> bool:
        try:
            info = self._driver.get_info(self.host, uuid)
        except exception.InstanceNotFound:
            return False
        return arrived(info)
