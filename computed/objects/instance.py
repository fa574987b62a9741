"""Instance payloads: what to build (:class:`InstanceSpec`) and what exists (:class:`InstanceInfo`)."""

from __future__ import annotations

import typing
from typing import Any

from oslo_utils import versionutils
from oslo_versionedobjects import fields

from computed import exception
from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.devices import (
    MAX_BLOCK_DEVICES,
    MAX_NETWORK_INTERFACES,
    BlockDevice,
    DeviceKind,
    NetworkInterface,
)
from computed.objects.fields import PowerState, PowerStateField

__all__ = ["InstanceSpec", "InstanceInfo", "InstanceInfoList", "MAX_NAME_LENGTH"]

MAX_NAME_LENGTH = 255
MAX_VCPUS = 1024
MAX_MEMORY_MB = 16 * 1024 * 1024
MAX_DISK_GB = 1024 * 1024
MAX_METADATA_ITEMS = 128
MAX_METADATA_LENGTH = 1024


@ComputedObjectRegistry.register
class InstanceSpec(ComputedObject):
    """The instance a scheduler asks a host to build.

    Version 1.0: initial version.
    Version 1.1: added ``description``, free text for operators (shown in the
    console log); a 1.0 host gets the spec without it.
    Version 1.2: added ``block_devices`` and ``network_interfaces``. Without
    them, ``image`` and ``disk_gb`` describe the root disk, as before; with
    an ``image`` root device, :meth:`validate` fills ``image`` and
    ``disk_gb`` from it. A 1.1 host gets the spec without them only when
    that loses nothing (:meth:`backport_loss`).
    """

    VERSION = "1.2"

    fields = {
        "uuid": fields.UUIDField(),
        "name": fields.StringField(),
        "vcpus": fields.IntegerField(),
        "memory_mb": fields.IntegerField(),
        "disk_gb": fields.IntegerField(default=0),
        "image": fields.StringField(nullable=True, default=None),
        "metadata": fields.DictOfStringsField(default={}),
        "description": fields.StringField(nullable=True, default=None),
        "block_devices": fields.ListOfObjectsField("BlockDevice", default=[]),
        "network_interfaces": fields.ListOfObjectsField("NetworkInterface", default=[]),
    }
    obj_relationships = {
        "block_devices": [("1.2", "1.0")],
        "network_interfaces": [("1.2", "1.0")],
    }

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        if target < (1, 2):
            root = self.root_device
            if root is not None and root.kind == DeviceKind.IMAGE:
                # What the root device says, in the fields a 1.1 host reads.
                primitive["image"], primitive["disk_gb"] = root.image, root.size_gb
            primitive.pop("block_devices", None)
            primitive.pop("network_interfaces", None)
        if target < (1, 1):
            primitive.pop("description", None)

    def backport_loss(self, target_version: str) -> str | None:
        """What a host at ``target_version`` would not build, or None if nothing.

        A 1.1 host builds the root disk from ``image`` and ``disk_gb``; any
        other device, or an interface, would be silently missing from the
        instance, so the client refuses such a spawn instead of dropping them.
        """
        if versionutils.convert_version_to_tuple(target_version) >= (1, 2):
            return None
        extra = self.extra_devices()
        if extra:
            return f"the spec has {len(extra)} block device(s) besides a root disk from an image"
        if self.obj_attr_is_set("network_interfaces") and self.network_interfaces:
            return f"the spec has {len(self.network_interfaces)} network interface(s)"
        return None

    def extra_devices(self) -> list[BlockDevice]:
        """The block devices that ``image`` and ``disk_gb`` do not already describe."""
        if not self.obj_attr_is_set("block_devices"):
            return []
        return [
            device
            for device in self.block_devices
            if not (
                device.kind == DeviceKind.IMAGE
                and device.boot_index == 0
                and self._field("image") in (None, device.image)
                and self._field("disk_gb") in (None, 0, device.size_gb)
            )
        ]

    def _field(self, name: str) -> Any:
        return getattr(self, name) if self.obj_attr_is_set(name) else None

    @property
    def root_device(self) -> BlockDevice | None:
        """The block device with boot index 0, if the spec lists one."""
        for device in self.block_devices if self.obj_attr_is_set("block_devices") else ():
            if device.boot_index == 0:
                return typing.cast(BlockDevice, device)
        return None

    def validate(self) -> None:
        """Check the limits a driver relies on.

        :raises computed.exception.InvalidRequest: naming the offending field.
        """
        for name in ("uuid", "name", "vcpus", "memory_mb"):
            if not self.obj_attr_is_set(name):
                _invalid(f"field {name!r} is required")
        self.obj_set_defaults()
        if not 0 < len(self.name) <= MAX_NAME_LENGTH:
            _invalid(f"name must be 1 to {MAX_NAME_LENGTH} characters")
        _check_range("vcpus", self.vcpus, 1, MAX_VCPUS)
        _check_range("memory_mb", self.memory_mb, 1, MAX_MEMORY_MB)
        _check_range("disk_gb", self.disk_gb, 0, MAX_DISK_GB)
        if self.image is not None and len(self.image) > MAX_METADATA_LENGTH:
            _invalid(f"image must be at most {MAX_METADATA_LENGTH} characters")
        if self.description is not None and len(self.description) > MAX_METADATA_LENGTH:
            _invalid(f"description must be at most {MAX_METADATA_LENGTH} characters")
        if len(self.metadata) > MAX_METADATA_ITEMS:
            _invalid(f"metadata may hold at most {MAX_METADATA_ITEMS} items")
        for key, value in self.metadata.items():
            if len(key) > MAX_NAME_LENGTH or len(value) > MAX_METADATA_LENGTH:
                _invalid(f"metadata item {key[:40]!r} is too long")
        self._validate_devices()

    def _validate_devices(self) -> None:
        devices, interfaces = self.block_devices, self.network_interfaces
        if len(devices) > MAX_BLOCK_DEVICES:
            _invalid(f"at most {MAX_BLOCK_DEVICES} block devices")
        if len(interfaces) > MAX_NETWORK_INTERFACES:
            _invalid(f"at most {MAX_NETWORK_INTERFACES} network interfaces")
        for device in devices:
            device.validate("spawn")
        _unique("block device name", [d.short_name for d in devices if d.device_name])
        _unique("boot_index", [d.boot_index for d in devices if d.boot_index is not None])
        _unique("volume_id", [d.volume_id for d in devices if d.volume_id is not None])
        for interface in interfaces:
            interface.validate("spawn")
        _unique("port_id", [i.port_id for i in interfaces])
        _unique("mac_address", [i.mac_address for i in interfaces])
        root = self.root_device
        if root is not None and root.kind == DeviceKind.BLANK:
            _invalid("the boot device (boot_index 0) must be an image disk or a volume")
        if root is not None and root.kind == DeviceKind.IMAGE:
            if self.image not in (None, root.image) or self.disk_gb not in (0, root.size_gb):
                _invalid("image and disk_gb differ from the root block device")
            self.assign(image=root.image, disk_gb=root.size_gb)
        elif root is not None and root.kind == DeviceKind.VOLUME and self.image is not None:
            _invalid("an instance booted from a volume has no image")
        if any(d.kind == DeviceKind.IMAGE and d.boot_index != 0 for d in devices):
            _invalid("only the boot device (boot_index 0) is made from an image")


@ComputedObjectRegistry.register
class InstanceInfo(ComputedObject):
    """An instance as its host sees it.

    Version 1.0: initial version.
    Version 1.1: added ``block_devices`` and ``network_interfaces``, what is
    attached (volumes without their connection info).
    Version 1.2: ``power_state`` may be ``rescued``; an older caller is told
    ``running`` (a rescued instance runs, from its rescue image).
    """

    VERSION = "1.2"

    fields = {
        "uuid": fields.UUIDField(),
        "name": fields.StringField(),
        "host": fields.StringField(),
        "power_state": PowerStateField(),
        "vcpus": fields.IntegerField(),
        "memory_mb": fields.IntegerField(),
        "disk_gb": fields.IntegerField(),
        "block_devices": fields.ListOfObjectsField("BlockDevice", default=[]),
        "network_interfaces": fields.ListOfObjectsField("NetworkInterface", default=[]),
    }
    obj_relationships = {
        "block_devices": [("1.1", "1.0")],
        "network_interfaces": [("1.1", "1.0")],
    }

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        if target < (1, 2) and primitive.get("power_state") == PowerState.RESCUED:
            primitive["power_state"] = PowerState.RUNNING
        if target < (1, 1):
            primitive.pop("block_devices", None)
            primitive.pop("network_interfaces", None)

    def volume(self, volume_id: str) -> BlockDevice | None:
        """The attached volume ``volume_id``, if any."""
        for device in self.block_devices if self.obj_attr_is_set("block_devices") else ():
            if device.volume_id == volume_id:
                return typing.cast(BlockDevice, device)
        return None

    def interface(self, port_id: str) -> NetworkInterface | None:
        """The attached interface of port ``port_id``, if any."""
        for vif in self.network_interfaces if self.obj_attr_is_set("network_interfaces") else ():
            if vif.port_id == port_id:
                return typing.cast(NetworkInterface, vif)
        return None


@ComputedObjectRegistry.register
class InstanceInfoList(ComputedObject):
    """Version 1.0: initial version.
    Version 1.1: InstanceInfo 1.1.
    Version 1.2: InstanceInfo 1.2.
    """

    VERSION = "1.2"
    obj_relationships = {"objects": [("1.0", "1.0"), ("1.1", "1.1"), ("1.2", "1.2")]}

    fields = {
        "objects": fields.ListOfObjectsField("InstanceInfo"),
    }


def _invalid(reason: str) -> None:
    raise exception.InvalidRequest(operation="spawn", reason=reason)


def _unique(what: str, values: list[Any]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            _invalid(f"{what} {value!r} appears twice")
        seen.add(value)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        _invalid(f"{name} must be between {low} and {high}, got {value}")
