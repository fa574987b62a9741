"""Devices of an instance: disks, volumes and network interfaces (contract 1.2).

The shapes follow what the services around a compute host hand out: a
volume arrives as the connection info a storage service returns when it
exports the volume to a host (``driver_volume_type`` and its ``data``), an
interface as the port a network service made (port id, MAC address, the
network, bridge or virtual switch to plug into, MTU).

The same objects describe what a scheduler asks for (in
:class:`~computed.objects.InstanceSpec` and the hot-plug operations) and
what a host reports as attached (in :class:`~computed.objects.InstanceInfo`),
where a volume's connection info is left out: it may carry credentials.
"""

from __future__ import annotations

import json
import re
from typing import Any

from oslo_utils import uuidutils
from oslo_versionedobjects import fields

from computed import exception
from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.fields import JSONDictField

__all__ = [
    "BlockDevice",
    "DeviceKind",
    "NetworkInterface",
    "VolumeConnection",
    "VolumeConnector",
    "VOLUME_TYPES",
    "check_device_name",
    "MAX_BLOCK_DEVICES",
    "MAX_NETWORK_INTERFACES",
]

#: Volume transports the in-tree drivers know; an out-of-tree driver may take others.
VOLUME_TYPES = ("iscsi", "rbd", "nfs", "file", "fibre_channel")

MAX_BLOCK_DEVICES = 64
MAX_NETWORK_INTERFACES = 16
MAX_ID_LENGTH = 255
MAX_CONNECTION_DATA_BYTES = 16 * 1024
MAX_VOLUME_GB = 1024 * 1024
MAX_MTU = 65535
MIN_MTU = 68

_DEVICE_NAME = re.compile(r"^(/dev/)?[a-z]{1,8}[a-z0-9]{0,8}$")
_VOLUME_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class DeviceKind(fields.Enum):
    """Where a block device's content comes from.

    ``image``: a local disk made from an image (the root disk); ``blank``: an
    empty local disk (ephemeral); ``volume``: a volume a storage service
    exports to the host.
    """

    IMAGE = "image"
    BLANK = "blank"
    VOLUME = "volume"

    ALL = (IMAGE, BLANK, VOLUME)

    def __init__(self) -> None:
        super().__init__(valid_values=DeviceKind.ALL)


class DeviceKindField(fields.BaseEnumField):
    AUTO_TYPE = DeviceKind()


@ComputedObjectRegistry.register
class VolumeConnection(ComputedObject):
    """How to reach a volume from this host, as a storage service exports it.

    ``data`` is the transport's own dictionary (for ``iscsi``:
    ``target_iqn``, ``target_portal``, ``target_lun``, auth; for ``rbd``:
    ``name``, ``hosts``, ``ports``; for ``nfs``: ``export``, ``name``; for
    ``file``: ``device_path``), of JSON values.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "volume_id": fields.StringField(),
        "driver_volume_type": fields.StringField(),
        "data": JSONDictField(default={}),
    }

    def validate(self, operation: str) -> None:
        """:raises computed.exception.InvalidRequest: naming what is wrong."""
        for name in ("volume_id", "driver_volume_type"):
            if not self.obj_attr_is_set(name):
                _invalid(operation, f"connection_info.{name} is required")
        self.obj_set_defaults()
        check_id(operation, "connection_info.volume_id", self.volume_id)
        if not _VOLUME_TYPE.match(self.driver_volume_type):
            _invalid(
                operation,
                f"connection_info.driver_volume_type must be a lower-case name such as "
                f"{', '.join(VOLUME_TYPES)}, got {self.driver_volume_type[:40]!r}",
            )
        if len(json.dumps(self.data)) > MAX_CONNECTION_DATA_BYTES:
            _invalid(operation, f"connection_info.data exceeds {MAX_CONNECTION_DATA_BYTES} bytes")

    def get(self, key: str, default: Any = None) -> Any:
        """One item of :attr:`data`."""
        return self.data.get(key, default)


@ComputedObjectRegistry.register
class BlockDevice(ComputedObject):
    """A disk of an instance.

    In a spec: ``kind`` ``image`` is a local disk of ``size_gb`` made from
    ``image`` (the root disk, ``boot_index`` 0); ``blank`` an empty local
    disk of ``size_gb`` (ephemeral); ``volume`` the volume of
    ``connection_info`` (``boot_index`` 0 boots from it). ``device_name``
    (``vdb`` or ``/dev/vdb``) asks for a name; the host picks one if it is
    unset, and reports the name it used.

    As reported by a host, ``connection_info`` is never set, and
    ``volume_id`` names the volume.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "kind": DeviceKindField(),
        "device_name": fields.StringField(nullable=True, default=None),
        "boot_index": fields.IntegerField(nullable=True, default=None),
        "size_gb": fields.IntegerField(nullable=True, default=None),
        "image": fields.StringField(nullable=True, default=None),
        "volume_id": fields.StringField(nullable=True, default=None),
        "connection_info": fields.ObjectField("VolumeConnection", nullable=True, default=None),
    }
    obj_relationships = {"connection_info": [("1.0", "1.0")]}

    @property
    def short_name(self) -> str | None:
        """``device_name`` without ``/dev/``."""
        name = self.device_name
        return name.removeprefix("/dev/") if name else None

    def validate(self, operation: str) -> None:
        """:raises computed.exception.InvalidRequest: naming what is wrong."""
        if not self.obj_attr_is_set("kind"):
            _invalid(operation, "block device kind is required")
        self.obj_set_defaults()
        where = f"block device {self.device_name or self.kind}"
        if self.device_name is not None:
            check_device_name(operation, self.device_name)
        if self.boot_index is not None and not 0 <= self.boot_index < MAX_BLOCK_DEVICES:
            _invalid(operation, f"{where}: boot_index must be 0 to {MAX_BLOCK_DEVICES - 1}")
        if self.kind == DeviceKind.VOLUME:
            if self.connection_info is None:
                _invalid(operation, f"{where}: a volume needs connection_info")
            self.connection_info.validate(operation)
            if self.volume_id is None:
                self.assign(volume_id=self.connection_info.volume_id)
            elif self.volume_id != self.connection_info.volume_id:
                _invalid(operation, f"{where}: volume_id differs from connection_info.volume_id")
            if self.image is not None:
                _invalid(operation, f"{where}: a volume has no image")
        else:
            if self.connection_info is not None or self.volume_id is not None:
                _invalid(operation, f"{where}: only a volume has a volume_id or connection_info")
            if self.size_gb is None or not 1 <= self.size_gb <= MAX_VOLUME_GB:
                _invalid(operation, f"{where}: size_gb must be 1 to {MAX_VOLUME_GB}")
            if self.kind == DeviceKind.IMAGE and not self.image:
                _invalid(operation, f"{where}: a disk of kind 'image' needs an image")
            if self.kind == DeviceKind.BLANK and self.image is not None:
                _invalid(operation, f"{where}: a blank disk has no image")
        if self.image is not None and len(self.image) > 1024:
            _invalid(operation, f"{where}: image must be at most 1024 characters")

    def reported(self) -> BlockDevice:
        """This device as a host reports it: no connection info."""
        return BlockDevice(
            kind=self.kind,
            device_name=self.device_name,
            boot_index=self.boot_index,
            size_gb=self.size_gb,
            image=self.image,
            volume_id=self.volume_id,
            connection_info=None,
        )


@ComputedObjectRegistry.register
class NetworkInterface(ComputedObject):
    """A network interface of an instance: a port of the network service.

    ``network`` names what the interface plugs into on the host: a libvirt
    network or bridge, a XenAPI network (name label or bridge), a Hyper-V
    virtual switch. ``device_name`` is reported by the host (the tap device,
    VIF device number or adapter name).

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "port_id": fields.StringField(),
        "mac_address": fields.MACAddressField(),
        "network": fields.StringField(),
        "mtu": fields.IntegerField(nullable=True, default=None),
        "device_name": fields.StringField(nullable=True, default=None),
    }

    def validate(self, operation: str) -> None:
        """:raises computed.exception.InvalidRequest: naming what is wrong."""
        for name in ("port_id", "mac_address", "network"):
            if not self.obj_attr_is_set(name):
                _invalid(operation, f"interface {name} is required")
        self.obj_set_defaults()
        check_id(operation, "port_id", self.port_id)
        if not 0 < len(self.network) <= MAX_ID_LENGTH or not self.network.isprintable():
            _invalid(
                operation, f"interface network must be 1 to {MAX_ID_LENGTH} printable characters"
            )
        if self.mtu is not None and not MIN_MTU <= self.mtu <= MAX_MTU:
            _invalid(operation, f"interface mtu must be {MIN_MTU} to {MAX_MTU}, got {self.mtu}")
        if int(self.mac_address.split(":")[0], 16) & 1:
            _invalid(operation, f"interface mac_address {self.mac_address} is a multicast address")


@ComputedObjectRegistry.register
class VolumeConnector(ComputedObject):
    """What a storage service needs to export a volume to this host.

    The shape of os-brick's connector properties: the host's name and
    address, its iSCSI initiator name and Fibre Channel WWPNs where it has
    them, and whether it uses multipath.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "host": fields.StringField(),
        "ip": fields.StringField(nullable=True, default=None),
        "initiator": fields.StringField(nullable=True, default=None),
        "wwpns": fields.ListOfStringsField(default=[]),
        "multipath": fields.BooleanField(default=False),
        "platform": fields.StringField(nullable=True, default=None),
        "os_type": fields.StringField(nullable=True, default=None),
    }


def check_device_name(operation: str, name: str) -> None:
    """:raises computed.exception.InvalidRequest: unless ``name`` is like ``vdb`` or ``/dev/vdb``."""
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        _invalid(operation, f"device name must be like 'vdb' or '/dev/vdb', got {str(name)[:40]!r}")


def check_id(operation: str, what: str, value: Any) -> None:
    """:raises computed.exception.InvalidRequest: unless ``value`` is a printable id."""
    if not (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isprintable()
        and value.strip() == value
    ):
        _invalid(
            operation,
            f"{what} must be 1 to {MAX_ID_LENGTH} printable characters, got {str(value)[:40]!r}",
        )


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and uuidutils.is_uuid_like(value)


def _invalid(operation: str, reason: str) -> None:
    raise exception.InvalidRequest(operation=operation, reason=reason)
