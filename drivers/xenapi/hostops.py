"""The host side: capacity and hypervisor identity from xapi's host records."""

from __future__ import annotations

import logging
from typing import Any

from computed.objects import HostResources, InstanceInfo
from drivers.xenapi import constants
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import resolve_host

__all__ = ["HostOps", "hypervisor_version"]

LOG = logging.getLogger(__name__)

_MiB = 1024**2
_GiB = 1024**3


def hypervisor_version(software_version: dict[str, str]) -> str:
    """Xen's version from a host's ``software_version``, else the product's."""
    return software_version.get("xen") or software_version.get("product_version") or "unknown"


class HostOps:
    """Host-wide queries, given the pool's session and the host's target."""

    def describe(self, session: PoolSession, target: Target) -> str:
        """One line naming the xapi host and its versions, for the logs."""
        record = session.call("host.get_record", resolve_host(session, target))
        software = record["software_version"]
        return (
            f"xapi host {record['name_label']} of pool {target.pool} at {session.url} "
            f"({software.get('product_brand', 'xapi')} {software.get('product_version', '?')}, "
            f"Xen {hypervisor_version(software)})"
        )

    def get_host_resources(
        self, session: PoolSession, target: Target, instances: list[InstanceInfo]
    ) -> HostResources:
        """Capacity from the xapi host, use summed over its instances in any power state.

        Use is what the instances were given, as the other drivers count it,
        not what xapi reports free: the scheduler places by allocation.
        Memory is the host's total (``host_metrics.memory_total``); the control
        domain's share is not subtracted. Disk is the pool's default SR.
        """
        record = session.call("host.get_record", resolve_host(session, target))
        metrics = session.call("host_metrics.get_record", record["metrics"])
        return HostResources(
            host=target.host,
            hypervisor_type=constants.HYPERVISOR_TYPE,
            hypervisor_version=hypervisor_version(record["software_version"]),
            vcpus=len(record["host_CPUs"]),
            vcpus_used=sum(i.vcpus for i in instances),
            memory_mb=int(metrics["memory_total"]) // _MiB,
            memory_mb_used=sum(i.memory_mb for i in instances),
            disk_gb=self._disk_gb(session),
            disk_gb_used=sum(i.disk_gb for i in instances),
            instances=len(instances),
        )

    @staticmethod
    def _disk_gb(session: PoolSession) -> int:
        pool_ref = session.call("pool.get_all")[0]
        sr: Any = session.call("pool.get_default_SR", pool_ref)
        if sr == constants.NULL_REF:
            return 0
        return int(session.call("SR.get_physical_size", sr)) // _GiB
