"""Host payloads: resources, capabilities and liveness."""

from __future__ import annotations

from oslo_versionedobjects import fields

from computed.objects.base import ComputedObject, ComputedObjectRegistry

__all__ = ["HostResources", "HostCapabilities", "PingResult"]


@ComputedObjectRegistry.register
class HostResources(ComputedObject):
    """Capacity and use of one host. Memory in MiB, disk in GiB.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "host": fields.StringField(),
        "hypervisor_type": fields.StringField(),
        "hypervisor_version": fields.StringField(),
        "vcpus": fields.IntegerField(),
        "vcpus_used": fields.IntegerField(),
        "memory_mb": fields.IntegerField(),
        "memory_mb_used": fields.IntegerField(),
        "disk_gb": fields.IntegerField(),
        "disk_gb_used": fields.IntegerField(),
        "instances": fields.IntegerField(),
    }


@ComputedObjectRegistry.register
class HostCapabilities(ComputedObject):
    """What a host's driver can do.

    ``operations`` names the contract operations the driver supports (an
    operation left out fails with UnsupportedOperation); ``features`` names
    finer-grained abilities such as ``reboot.soft``.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "host": fields.StringField(),
        "driver": fields.StringField(),
        "driver_version": fields.StringField(),
        "support_tier": fields.StringField(),
        "operations": fields.ListOfStringsField(),
        "features": fields.ListOfStringsField(default=[]),
    }


@ComputedObjectRegistry.register
class PingResult(ComputedObject):
    """Who answered for a host, and which contract it speaks.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "host": fields.StringField(),
        "worker_id": fields.StringField(),
        "driver": fields.StringField(),
        "rpc_version": fields.StringField(),
    }
