"""Device XML: the ``<disk>`` and ``<interface>`` elements of contract 1.2, and reading them back.

How the driver finds its devices again in a domain's XML, where libvirt
keeps them (the test driver too):

* a volume is the ``<disk>`` whose ``<serial>`` is the volume id (the guest
  sees it as the disk's serial number, as with nova);
* an interface is the ``<interface>`` whose user alias is ``ua-<port id>``;
* a local disk (root or ephemeral) has no serial; what libvirt has no field
  for (its kind, size and image, and a volume's size) is kept in the driver's
  metadata element (:class:`DiskRecord`, :mod:`~drivers.libvirt.config`).

Every disk is a virtio disk named ``vdX``; a requested name ``sdX``,
``hdX`` or ``xvdX`` is taken as ``vdX``. Volume and port ids must be
letters, digits, ``-``, ``_`` and ``.``: what libvirt accepts in a serial
and qemu in a device id.

Volumes by ``driver_volume_type`` (keys of ``data``):

=====  ==================================================================
file   ``device_path``: a file (or a block device under ``/dev/``)
iscsi  ``target_iqn``, ``target_portal`` (``host:port``), ``target_lun``;
       ``auth_method`` ``CHAP`` with ``auth_username`` and
       ``auth_password`` (kept in a libvirt secret, see :func:`secret_usage`)
rbd    ``name`` (``pool/image``), ``hosts``, ``ports``; with
       ``auth_enabled``: ``auth_username`` and ``secret_uuid``, a ceph
       secret already defined on the host
nfs    ``export``, ``name``: the file ``name`` in the export, mounted at
       ``[libvirt] nfs_mount_point_base/<md5 of export>/`` (not by the driver)
=====  ==================================================================

Any volume may give ``format`` (``raw``, the default, or ``qcow2``).
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from computed import exception
from computed.objects import BlockDevice, DeviceKind, NetworkInterface, VolumeConnection

__all__ = [
    "VOLUME_TYPES",
    "DiskRecord",
    "check_id",
    "disk_name",
    "find_interface",
    "find_volume",
    "free_disk_name",
    "interface_element",
    "is_boot_disk",
    "local_disk_element",
    "macs",
    "nfs_path",
    "read_disks",
    "read_interfaces",
    "secret_usage",
    "tap_name",
    "target_name",
    "target_names",
    "volume_element",
]

#: The volume types this driver attaches.
VOLUME_TYPES = ("file", "iscsi", "nfs", "rbd")

USER_ALIAS = "ua-"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REQUESTED = re.compile(r"^(?:vd|sd|hd|xvd)([a-z]{1,3})$")
_FORMATS = ("raw", "qcow2")
_DEFAULT_PORTS = {"iscsi": "3260", "rbd": "6789"}


@dataclass(frozen=True)
class DiskRecord:
    """What the driver remembers of a disk: a local disk's kind, size and image, a volume's size.

    ``key`` is a local disk's device name or a volume's id.
    """

    key: str
    kind: str
    size_gb: int | None = None
    image: str | None = None


# Names ---------------------------------------------------------------------------------


def disk_name(index: int) -> str:
    """The ``index``-th virtio disk name: 0 is ``vda``, 25 ``vdz``, 26 ``vdaa``."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"vd{letters}"


def target_name(operation: str, requested: str) -> str:
    """The virtio name for a requested ``vdb``, ``/dev/sdb``, ``xvdb``...

    :raises computed.exception.InvalidRequest: for a name with no drive letters
        (a partition such as ``vdb1``, or another naming scheme).
    """
    short = requested.removeprefix("/dev/")
    match = _REQUESTED.match(short)
    if match is None:
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"the libvirt driver names disks vdX (or takes sdX, hdX, xvdX as vdX), "
            f"got {requested!r}",
        )
    return f"vd{match.group(1)}"


def free_disk_name(taken: Iterable[str]) -> str:
    """The first virtio disk name not in ``taken``."""
    used = set(taken)
    index = 0
    while disk_name(index) in used:
        index += 1
    return disk_name(index)


def check_id(operation: str, what: str, value: str) -> None:
    """:raises computed.exception.InvalidRequest: unless libvirt can carry ``value`` as an id."""
    if not _ID.match(value):
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"the libvirt driver needs a {what} of letters, digits, '-', '_' and '.', "
            f"got {value[:40]!r}",
        )


def secret_usage(uuid: str, volume_id: str) -> str:
    """Usage id of the libvirt secret holding the iSCSI password of a volume of an instance."""
    return f"computed:{uuid}:{volume_id}"


def nfs_path(base: str, export: str, name: str) -> str:
    """Where the volume file ``name`` of NFS ``export`` is: ``base/<md5 of export>/name``."""
    digest = hashlib.md5(export.encode(), usedforsecurity=False).hexdigest()
    return os.path.join(base, digest, name)


# Building ------------------------------------------------------------------------------


def local_disk_element(path: str, target: str, boot_index: int | None) -> ET.Element:
    """A local raw disk (root or ephemeral) at ``path``."""
    disk = _disk("block" if path.startswith("/dev/") else "file", "raw")
    ET.SubElement(disk, "source", {"dev" if path.startswith("/dev/") else "file": path})
    _finish_disk(disk, target, boot_index, serial=None)
    return disk


def volume_element(
    operation: str,
    host: str,
    connection: VolumeConnection,
    target: str,
    boot_index: int | None,
    *,
    nfs_base: str,
    secret: str | None,
) -> ET.Element:
    """The ``<disk>`` of a volume.

    :param secret: usage id of the libvirt secret with the iSCSI CHAP
        password, when the connection has one.
    :raises computed.exception.UnsupportedOperation: for a volume type not in
        :data:`VOLUME_TYPES`.
    :raises computed.exception.InvalidRequest: if ``data`` lacks what the type needs.
    """
    kind = connection.driver_volume_type
    check_id(operation, "volume id", connection.volume_id)
    fmt = _text(operation, connection, "format", required=False) or "raw"
    if fmt not in _FORMATS:
        _invalid(operation, connection, f"format must be one of {', '.join(_FORMATS)}")
    if kind in ("file", "nfs"):
        if kind == "file":
            path = _text(operation, connection, "device_path")
        else:
            export = _text(operation, connection, "export")
            path = nfs_path(nfs_base, export, _text(operation, connection, "name"))
        if not path.startswith("/"):
            _invalid(operation, connection, "the path must be absolute")
        block = path.startswith("/dev/")
        disk = _disk("block" if block else "file", fmt)
        ET.SubElement(disk, "source", {"dev" if block else "file": path})
    elif kind == "iscsi":
        disk = _disk("network", fmt)
        _iscsi_source(operation, connection, disk, secret)
    elif kind == "rbd":
        disk = _disk("network", fmt)
        _rbd_source(operation, connection, disk)
    else:
        raise exception.UnsupportedOperation(
            operation=f"{operation} of a {kind!r} volume",
            driver="libvirt",
            host=host,
            detail=f"volume types: {', '.join(VOLUME_TYPES)}",
        )
    _finish_disk(disk, target, boot_index, serial=connection.volume_id)
    return disk


def interface_element(vif: NetworkInterface, libvirt_network: bool) -> ET.Element:
    """The ``<interface>`` of a port: on a libvirt network, else on the bridge of that name."""
    check_id("attach_interface", "port id", vif.port_id)
    kind = "network" if libvirt_network else "bridge"
    element = ET.Element("interface", type=kind)
    ET.SubElement(element, "mac", address=vif.mac_address.lower())
    ET.SubElement(element, "source", {kind: vif.network})
    ET.SubElement(element, "target", dev=tap_name(vif.port_id))
    ET.SubElement(element, "model", type="virtio")
    if vif.mtu is not None:
        ET.SubElement(element, "mtu", size=str(vif.mtu))
    ET.SubElement(element, "alias", name=f"{USER_ALIAS}{vif.port_id}")
    return element


def tap_name(port_id: str) -> str:
    """The host's tap device for a port: ``tap`` and the port id's first 11 characters."""
    return f"tap{port_id[:11]}"


def _disk(kind: str, fmt: str) -> ET.Element:
    disk = ET.Element("disk", type=kind, device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=fmt)
    return disk


def _finish_disk(disk: ET.Element, target: str, boot_index: int | None, serial: str | None) -> None:
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    if serial is not None:
        ET.SubElement(disk, "serial").text = serial
    if boot_index is not None:
        ET.SubElement(disk, "boot", order=str(boot_index + 1))


def _iscsi_source(
    operation: str, connection: VolumeConnection, disk: ET.Element, secret: str | None
) -> None:
    iqn = _text(operation, connection, "target_iqn")
    lun = connection.get("target_lun", 0)
    if not isinstance(lun, int) or isinstance(lun, bool) or lun < 0:
        _invalid(operation, connection, "target_lun must be a non-negative integer")
    name, port = _portal(operation, connection, _text(operation, connection, "target_portal"))
    if connection.get("auth_method"):
        if str(connection.get("auth_method")).upper() != "CHAP" or secret is None:
            _invalid(operation, connection, "auth_method must be CHAP, with auth_password")
        auth = ET.SubElement(disk, "auth", username=_text(operation, connection, "auth_username"))
        ET.SubElement(auth, "secret", type="iscsi", usage=secret)
    source = ET.SubElement(disk, "source", protocol="iscsi", name=f"{iqn}/{lun}")
    ET.SubElement(source, "host", name=name, port=port)


def _rbd_source(operation: str, connection: VolumeConnection, disk: ET.Element) -> None:
    hosts, ports = connection.get("hosts", []), connection.get("ports", [])
    if not isinstance(hosts, list) or not isinstance(ports, list) or len(ports) > len(hosts):
        _invalid(operation, connection, "hosts and ports must be lists, a port per host")
    if connection.get("auth_enabled"):
        auth = ET.SubElement(disk, "auth", username=_text(operation, connection, "auth_username"))
        ET.SubElement(auth, "secret", type="ceph", uuid=_text(operation, connection, "secret_uuid"))
    source = ET.SubElement(
        disk, "source", protocol="rbd", name=_text(operation, connection, "name")
    )
    for index, host in enumerate(hosts):
        port = ports[index] if index < len(ports) else _DEFAULT_PORTS["rbd"]
        ET.SubElement(source, "host", name=str(host), port=str(port))


def _portal(operation: str, connection: VolumeConnection, portal: str) -> tuple[str, str]:
    """``host:port``, ``[v6]:port`` or a bare host, as (host, port)."""
    match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", portal) or re.match(
        r"^([^:]+)(?::(\d+))?$", portal
    )
    if match is None:
        _invalid(operation, connection, f"target_portal {portal[:60]!r} is not host:port")
    return match.group(1), match.group(2) or _DEFAULT_PORTS["iscsi"]


def _text(operation: str, connection: VolumeConnection, key: str, required: bool = True) -> str:
    value = connection.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        _invalid(operation, connection, f"data.{key} must be a non-empty string")
    return str(value)


def _invalid(operation: str, connection: VolumeConnection, reason: str) -> NoReturn:
    raise exception.InvalidRequest(
        operation=operation,
        reason=f"{connection.driver_volume_type} volume {connection.volume_id}: {reason}",
    )


# Reading back ----------------------------------------------------------------------


def _disks(domain: ET.Element) -> list[ET.Element]:
    return [d for d in domain.iterfind("devices/disk") if d.get("device", "disk") == "disk"]


def target_names(*domains: ET.Element) -> set[str]:
    """The device names of every disk (and CD-ROM) of the domains given (live and persistent)."""
    return {
        name
        for domain in domains
        for target in domain.iterfind("devices/disk/target")
        if (name := target.get("dev"))
    }


def macs(*domains: ET.Element) -> set[str]:
    """The MAC addresses of every interface of the domains given."""
    return {
        address.lower()
        for domain in domains
        for mac in domain.iterfind("devices/interface/mac")
        if (address := mac.get("address"))
    }


def find_volume(domain: ET.Element, volume_id: str) -> ET.Element | None:
    """The ``<disk>`` of volume ``volume_id``, if attached."""
    return next((d for d in _disks(domain) if d.findtext("serial") == volume_id), None)


def find_interface(domain: ET.Element, port_id: str) -> ET.Element | None:
    """The ``<interface>`` of port ``port_id``, if attached."""
    alias = f"{USER_ALIAS}{port_id}"
    return next(
        (i for i in domain.iterfind("devices/interface") if _alias(i) == alias),
        None,
    )


def read_disks(domain: ET.Element, records: dict[str, DiskRecord]) -> list[BlockDevice]:
    """The block devices of a domain, as the contract reports them.

    A disk the driver did not make (no record, no serial) is reported as a
    blank disk of unknown size.
    """
    found = []
    for disk in _disks(domain):
        target = disk.find("target")
        name = target.get("dev") if target is not None else None
        order = disk.find("boot")
        boot_index = _boot_index(order.get("order") if order is not None else None)
        serial = disk.findtext("serial")
        if serial:
            record = records.get(serial)
            found.append(
                BlockDevice(
                    kind=DeviceKind.VOLUME,
                    device_name=name,
                    boot_index=boot_index,
                    size_gb=record.size_gb if record is not None else None,
                    volume_id=serial,
                )
            )
            continue
        record = records.get(name or "")
        found.append(
            BlockDevice(
                kind=record.kind if record is not None else DeviceKind.BLANK,
                device_name=name,
                boot_index=boot_index,
                size_gb=record.size_gb if record is not None else None,
                image=record.image if record is not None else None,
            )
        )
    for device in found:
        device.obj_set_defaults()  # every field set, as a caller of the contract expects
    return found


def read_interfaces(domain: ET.Element) -> list[NetworkInterface]:
    """The interfaces of a domain; one the driver did not plug is named by its MAC address."""
    found = []
    for element in domain.iterfind("devices/interface"):
        mac_element = element.find("mac")
        mac = (mac_element.get("address") or "") if mac_element is not None else ""
        alias = _alias(element) or ""
        source = element.find("source")
        network = ""
        if source is not None:
            network = source.get("network") or source.get("bridge") or source.get("dev") or ""
        mtu = element.find("mtu")
        target = element.find("target")
        found.append(
            NetworkInterface(
                port_id=alias.removeprefix(USER_ALIAS) if alias.startswith(USER_ALIAS) else mac,
                mac_address=mac,
                network=network or element.get("type", ""),
                mtu=_int_or_none(mtu.get("size") if mtu is not None else None),
                device_name=target.get("dev") if target is not None else None,
            )
        )
    return found


def is_boot_disk(disk: ET.Element) -> bool:
    """Whether ``disk`` is the one the domain boots from (boot_index 0)."""
    order = disk.find("boot")
    return order is not None and _boot_index(order.get("order")) == 0


def _alias(element: ET.Element) -> str | None:
    alias = element.find("alias")
    return alias.get("name") if alias is not None else None


def _boot_index(order: str | None) -> int | None:
    value = _int_or_none(order)
    return value - 1 if value is not None and value > 0 else None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
