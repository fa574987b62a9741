"""Versioned payloads of the compute RPC contract (oslo.versionedobjects).

Every argument and result that crosses the bus is one of these objects, so
each side can tell which version of a payload it holds and backport it with
``obj_make_compatible`` when the other side is older.
"""

from __future__ import annotations

from computed.objects.base import ComputedObject, ComputedObjectSerializer
from computed.objects.devices import (
    BlockDevice,
    DeviceKind,
    NetworkInterface,
    VolumeConnection,
    VolumeConnector,
)
from computed.objects.fields import PowerState
from computed.objects.fleet import HostState
from computed.objects.host import HostCapabilities, HostResources, PingResult
from computed.objects.image import ConsoleConnection, ConsoleKind, ImageRef
from computed.objects.instance import InstanceInfo, InstanceInfoList, InstanceSpec
from computed.objects.migration import Flavor, Migration, MigrationKind, MigrationStatus
from computed.objects.notification import InstanceActionPayload, InstanceStatePayload

__all__ = [
    "BlockDevice",
    "DeviceKind",
    "NetworkInterface",
    "VolumeConnection",
    "VolumeConnector",
    "ComputedObject",
    "ConsoleConnection",
    "ConsoleKind",
    "ImageRef",
    "ComputedObjectSerializer",
    "HostCapabilities",
    "HostResources",
    "HostState",
    "InstanceActionPayload",
    "InstanceInfo",
    "InstanceInfoList",
    "InstanceSpec",
    "InstanceStatePayload",
    "Flavor",
    "Migration",
    "MigrationKind",
    "MigrationStatus",
    "PingResult",
    "PowerState",
]
