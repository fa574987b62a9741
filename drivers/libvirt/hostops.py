"""The host side: capacity, hypervisor identity, and the domain type to create."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import libvirt
from oslo_config import cfg

from computed.objects import HostResources, InstanceInfo

__all__ = ["HostOps", "domain_type", "pick_domain_type", "format_version"]

LOG = logging.getLogger(__name__)

_GIB = 1024**3
#: Domain types in order of preference when the configuration names none.
_PREFERRED_TYPES = ("kvm", "qemu")


def format_version(number: int) -> str:
    """libvirt's ``major * 1,000,000 + minor * 1,000 + release`` as ``major.minor.release``."""
    return f"{number // 1_000_000}.{number // 1_000 % 1_000}.{number % 1_000}"


def domain_type(conn: libvirt.virConnect, configured: str | None) -> str:
    """The domain type for new hvm domains: ``configured``, else the best the host offers."""
    if configured:
        return configured
    return pick_domain_type(conn.getCapabilities())


def pick_domain_type(capabilities: str) -> str:
    """The preferred hvm domain type in a host's capabilities XML (kvm, qemu, else the first)."""
    caps = ET.fromstring(capabilities)
    offered: list[str] = []
    for guest in caps.findall("guest"):
        if guest.findtext("os_type") != "hvm":
            continue
        for domain in guest.iterfind("arch/domain"):
            kind = domain.get("type")
            if kind and kind not in offered:
                offered.append(kind)
    for kind in _PREFERRED_TYPES:
        if kind in offered:
            return kind
    if offered:
        return offered[0]
    return "kvm"  # let defineXML explain what the host lacks


class HostOps:
    """Host-wide queries, given an open connection to the host's libvirtd."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf

    def describe(self, conn: libvirt.virConnect) -> str:
        """One line naming the hypervisor and libvirt versions, for the logs."""
        return (
            f"{conn.getType()} {format_version(conn.getVersion())}, "
            f"libvirt {format_version(conn.getLibVersion())}"
        )

    def get_host_resources(
        self, conn: libvirt.virConnect, host: str, instances: list[InstanceInfo]
    ) -> HostResources:
        """Capacity from the host, use summed over its instances in any power state.

        Use is what the instances were given, as the fake driver counts it, not
        what the host has free: the scheduler places by allocation.
        """
        _model, memory_mb, cpus, *_rest = conn.getInfo()
        return HostResources(
            host=host,
            hypervisor_type=conn.getType().lower(),
            hypervisor_version=format_version(conn.getVersion()),
            vcpus=cpus,
            vcpus_used=sum(i.vcpus for i in instances),
            memory_mb=memory_mb,
            memory_mb_used=sum(i.memory_mb for i in instances),
            disk_gb=self._disk_gb(conn),
            disk_gb_used=sum(i.disk_gb for i in instances),
            instances=len(instances),
        )

    def _disk_gb(self, conn: libvirt.virConnect) -> int:
        pool_name = self._conf.libvirt.storage_pool
        if not pool_name:
            return 0
        _state, capacity, _allocation, _available = conn.storagePoolLookupByName(pool_name).info()
        return int(capacity // _GIB)
