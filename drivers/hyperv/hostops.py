"""The host side: capacity from ``Get-VMHost``, use summed over the host's VMs."""

from __future__ import annotations

from typing import Any

from computed.objects import HostResources, InstanceInfo
from drivers.hyperv import constants
from drivers.hyperv import powershell as ps
from drivers.hyperv.winrmclient import HostClient

__all__ = ["HostOps"]

#: Get-VMHost reports no Windows or Hyper-V version, and the driver asks for
#: nothing outside its fixed vocabulary to find one.
UNKNOWN_VERSION = "unknown"


class HostOps:
    """Host-wide queries, given the served host's :class:`HostClient`."""

    def describe(self, client: HostClient) -> str:
        """One line naming the Hyper-V host and its capacity, for the logs."""
        facts = self._vmhost(client)
        return (
            f"Hyper-V host {facts.get('Name')} with {facts.get('LogicalProcessorCount')} "
            f"logical processors and {int(facts.get('MemoryCapacity') or 0) // constants.MIB} MiB"
        )

    def get_host_resources(
        self, client: HostClient, host: str, instances: list[InstanceInfo]
    ) -> HostResources:
        """Capacity from the host, use summed over its VMs in any power state.

        Use is what the VMs were given, as the fake driver counts it, not what
        the host has free: the scheduler places by allocation. The driver does
        not ask the host for its volumes' capacity, so it reports 0 GiB of disk.
        """
        facts = self._vmhost(client)
        return HostResources(
            host=host,
            hypervisor_type=constants.HYPERVISOR_TYPE,
            hypervisor_version=UNKNOWN_VERSION,
            vcpus=int(facts.get("LogicalProcessorCount") or 0),
            vcpus_used=sum(i.vcpus for i in instances),
            memory_mb=int(facts.get("MemoryCapacity") or 0) // constants.MIB,
            memory_mb_used=sum(i.memory_mb for i in instances),
            disk_gb=0,
            disk_gb_used=sum(i.disk_gb for i in instances),
            instances=len(instances),
        )

    @staticmethod
    def _vmhost(client: HostClient) -> dict[str, Any]:
        found = client.run(ps.get_host())
        return found[0] if found else {}
