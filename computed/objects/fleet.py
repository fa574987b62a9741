"""The scheduler's view of a host, and the arithmetic of free resources under allocation ratios.

A worker claims resources on a host with :func:`shortfall`, and the fleet
API (:meth:`rpcapi.ComputeAPI.list_hosts`) filters hosts with the same
function, so the hosts a scheduler is offered are those whose worker would
take the request at the moment of the measure.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any

from oslo_versionedobjects import fields

from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.host import HostResources

__all__ = ["HostState", "Request", "Shortfall", "RESOURCES", "capacity", "shortfall"]

#: Each claimed resource: its total field, its used field, and the ratio that scales the total.
RESOURCES = (
    ("vcpus", "vcpus_used", "cpu_allocation_ratio"),
    ("memory_mb", "memory_mb_used", "ram_allocation_ratio"),
    ("disk_gb", "disk_gb_used", "disk_allocation_ratio"),
)


@dataclasses.dataclass(frozen=True)
class Request:
    """What an operation asks of a host: vCPUs, memory (MiB), disk (GiB)."""

    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0

    def __add__(self, other: Request) -> Request:
        return Request(
            self.vcpus + other.vcpus,
            self.memory_mb + other.memory_mb,
            self.disk_gb + other.disk_gb,
        )


@dataclasses.dataclass(frozen=True)
class Shortfall:
    """The first resource a request does not fit in, with the figures that say so."""

    resource: str
    requested: int
    free: int
    total: int
    ratio: float


def capacity(total: int, ratio: float) -> int | None:
    """What a host may give out of ``total`` under ``ratio``; None if it is not limited.

    A total of 0 means the driver does not measure the resource (the Hyper-V
    driver reports no disk): it is not claimed.
    """
    if total <= 0:
        return None
    return math.floor(total * ratio + 1e-9)


def shortfall(
    figures: Mapping[str, int],
    ratios: Mapping[str, float],
    request: Request,
    claimed: Request = Request(),
) -> Shortfall | None:
    """The first resource of ``request`` that does not fit, or None if it all fits.

    :param figures: the host's totals and use, by :data:`RESOURCES`' field names.
    :param ratios: the allocation ratios, by the same names.
    :param claimed: what operations in flight hold besides the host's use.
    """
    for total_name, used_name, ratio_name in RESOURCES:
        wanted = getattr(request, total_name)
        limit = capacity(figures[total_name], ratios[ratio_name])
        if wanted <= 0 or limit is None:
            continue
        free = limit - figures[used_name] - getattr(claimed, total_name)
        if wanted > free:
            return Shortfall(
                total_name, wanted, max(free, 0), figures[total_name], ratios[ratio_name]
            )
    return None


@ComputedObjectRegistry.register
class HostState(ComputedObject):
    """A host as the registry's inventory has it: what its worker last measured and recorded.

    Memory in MiB, disk in GiB. ``measured_at`` (naive UTC) says how fresh
    the figures are; ``alive`` whether a live worker serves the host now;
    ``tier`` the conformance tier recorded for its driver version
    (``support_tier`` is what the driver declares). A total of 0 is a
    resource the driver does not measure: it does not limit the host.

    Version 1.0: initial version.
    """

    VERSION = "1.0"
    carried_by_rpc = False

    fields = {
        "host": fields.StringField(),
        "worker_id": fields.StringField(),
        "driver": fields.StringField(),
        "driver_version": fields.StringField(),
        "support_tier": fields.StringField(),
        "tier": fields.StringField(),
        "operations": fields.ListOfStringsField(default=[]),
        "features": fields.ListOfStringsField(default=[]),
        # hypervisor_type and _version, each resource's total and use, instances
        **{name: field for name, field in HostResources.fields.items() if name != "host"},
        "cpu_allocation_ratio": fields.FloatField(),
        "ram_allocation_ratio": fields.FloatField(),
        "disk_allocation_ratio": fields.FloatField(),
        "alive": fields.BooleanField(),
        "disabled": fields.BooleanField(default=False),
        "disabled_reason": fields.StringField(nullable=True, default=None),
        "measured_at": fields.DateTimeField(tzinfo_aware=False),
    }

    def free(self, resource: str) -> int | None:
        """What the host has free of ``resource`` (``vcpus``, ``memory_mb``, ``disk_gb``)
        under its allocation ratio; None if the driver does not measure it."""
        for total_name, used_name, ratio_name in RESOURCES:
            if total_name == resource:
                limit = capacity(getattr(self, total_name), getattr(self, ratio_name))
                return None if limit is None else max(limit - getattr(self, used_name), 0)
        raise ValueError(f"unknown resource {resource!r}")

    def fits(self, vcpus: int = 0, memory_mb: int = 0, disk_gb: int = 0) -> bool:
        """Whether a spawn of this shape fits the host as measured."""
        return (
            shortfall(self._figures(), self._ratios(), Request(vcpus, memory_mb, disk_gb)) is None
        )

    def supports(self, operation: str) -> bool:
        """Whether the host's driver declares ``operation`` or feature (``reboot.hard``)."""
        return operation in self.operations or operation in self.features

    def age(self, now: datetime.datetime) -> float:
        """Seconds since the figures were measured, at ``now`` (naive UTC)."""
        measured: datetime.datetime = self.measured_at
        return (now - measured).total_seconds()

    def _figures(self) -> dict[str, int]:
        return {name: getattr(self, name) for trio in RESOURCES for name in trio[:2]}

    def _ratios(self) -> dict[str, float]:
        return {trio[2]: getattr(self, trio[2]) for trio in RESOURCES}

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON has them, with what is free."""
        data = self.to_dict()
        data["measured_at"] = self.measured_at.isoformat() + "Z"
        for total_name, _used, _ratio in RESOURCES:
            data[f"free_{total_name}"] = self.free(total_name)
        return data
