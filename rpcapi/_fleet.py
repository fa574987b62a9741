"""The fleet view: every host's inventory from the registry, filtered, with no RPC.

Workers record what their hosts have and use (:mod:`computed._inventory`);
this reads it in one query, and judges liveness and tiers from the
client's cached copy of the registry's workers
(:class:`rpcapi._resolver.HostResolver`), so listing ten thousand hosts
costs one database round trip, not ten thousand calls.
"""

from __future__ import annotations

from collections.abc import Iterable

from computed.conf.conformance import TIERS
from computed.objects import HostState
from computed.objects.fleet import RESOURCES, Request, shortfall
from computed.registry import Registry
from computed.registry.inventory import HostInventoryRecord
from rpcapi._resolver import HostResolver

__all__ = ["Fleet"]


class Fleet:
    """Lists hosts from the registry's inventory."""

    def __init__(self, registry: Registry, resolver: HostResolver) -> None:
        self._registry = registry
        self._resolver = resolver

    def list_hosts(
        self,
        *,
        driver: str | None = None,
        tier: str | None = None,
        supports: Iterable[str] = (),
        vcpus: int = 0,
        memory_mb: int = 0,
        disk_gb: int = 0,
        alive: bool | None = True,
        include_disabled: bool = False,
        hosts: Iterable[str] | None = None,
    ) -> list[HostState]:
        """See :meth:`rpcapi.ComputeAPI.list_hosts`."""
        if tier is not None and tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
        wanted = set(hosts) if hosts is not None else None
        needs = tuple(supports)
        request = Request(vcpus, memory_mb, disk_gb)
        live = self._resolver.live_hosts()
        found = []
        for record in self._registry.list_inventory():
            if not record.measured or (wanted is not None and record.host not in wanted):
                continue
            if driver is not None and record.driver != driver:
                continue
            if record.disabled and not include_disabled:
                continue
            if alive is not None and (record.host in live) != alive:
                continue
            recorded = self._resolver.recorded_tier(
                record.driver or "", record.driver_version or ""
            )
            if tier is not None and TIERS.index(recorded) < TIERS.index(tier):
                continue
            declared = {
                *record.capabilities.get("operations", ()),
                *record.capabilities.get("features", ()),
            }
            if not declared.issuperset(needs):
                continue
            if request != Request() and shortfall(_figures(record), _ratios(record), request):
                continue
            # Only what matches becomes an object: building one is most of the cost.
            found.append(host_state(record, record.host in live, recorded))
        return found


def _figures(record: HostInventoryRecord) -> dict[str, int]:
    return {name: getattr(record, name) or 0 for trio in RESOURCES for name in trio[:2]}


def _ratios(record: HostInventoryRecord) -> dict[str, float]:
    return {trio[2]: getattr(record, trio[2]) or 0.0 for trio in RESOURCES}


def host_state(record: HostInventoryRecord, alive: bool, tier: str) -> HostState:
    """A measured inventory row as the scheduler's object."""
    state = HostState(alive=alive, tier=tier)
    state.assign(
        host=record.host,
        worker_id=record.worker_id or "",
        driver=record.driver or "",
        driver_version=record.driver_version or "",
        support_tier=record.support_tier or "",
        operations=list(record.capabilities.get("operations", [])),
        features=list(record.capabilities.get("features", [])),
        hypervisor_type=record.hypervisor_type or "",
        hypervisor_version=record.hypervisor_version or "",
        vcpus=record.vcpus or 0,
        vcpus_used=record.vcpus_used or 0,
        memory_mb=record.memory_mb or 0,
        memory_mb_used=record.memory_mb_used or 0,
        disk_gb=record.disk_gb or 0,
        disk_gb_used=record.disk_gb_used or 0,
        instances=record.instances or 0,
        cpu_allocation_ratio=record.cpu_allocation_ratio or 0.0,
        ram_allocation_ratio=record.ram_allocation_ratio or 0.0,
        disk_allocation_ratio=record.disk_allocation_ratio or 0.0,
        disabled=record.disabled,
        disabled_reason=record.disabled_reason,
        measured_at=record.measured_at,
    )
    state.obj_reset_changes()
    return state
