"""Devices in Hyper-V's terms: disk slots and names, the device records in a VM's notes, MACs.

Hyper-V knows a disk by its slot (controller type, number and location) and
its file; it has no device names and no volume ids. The driver keeps both in
the VM's notes, one record per disk keyed by its file's path (lower case):
its kind, name, boot index, size and image or volume id. A disk is reported
from what Hyper-V has attached, joined with its record; a disk without one
(attached by hand) is reported as a volume without an id, named after its slot.

Names: a disk gets the name it was asked for; otherwise that of its slot,
``sd`` + letter for SCSI controller 0 location 0, 1, ... (``sda``, ``sdb``,
... ``sdbl``) and ``hd`` + letter for IDE 0:0, 0:1, 1:0, 1:1 (``hda``-``hdd``,
generation 1 only). A generation 1 VM boots from IDE 0:0; every other disk
goes on SCSI controller 0, where a running VM can take and release disks.

Interfaces need no record: the adapter's name is the port id, its switch the
network and its static MAC address the port's.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from computed import exception
from computed.objects import (
    BlockDevice,
    DeviceKind,
    InstanceSpec,
    NetworkInterface,
    VolumeConnection,
)

__all__ = [
    "Drive",
    "GIB",
    "IMAGE_DIR",
    "PlannedDisk",
    "SCSI_LOCATIONS",
    "Slot",
    "boot_slot",
    "disk_path",
    "drives_of",
    "free_scsi_locations",
    "from_hyperv_mac",
    "image_path",
    "interfaces_of",
    "plan_disks",
    "record_key",
    "unused_name",
    "report_disks",
    "slot_name",
    "to_hyperv_mac",
    "volume_path",
]

#: Images are VHDX files in this directory under the host's VirtualHardDiskPath,
#: named after the image (compute-hyperv's ``_base`` image cache layout).
IMAGE_DIR = "_base"
SCSI_LOCATIONS = 64
GIB = 1024**3

#: Maps a volume's connection info to its VHD path, refusing what the driver cannot attach.
VolumePath = Callable[[VolumeConnection, str], str]
#: Hyper-V's ControllerType as ConvertTo-Json prints it.
_BUSES = {0: "IDE", 1: "SCSI"}

_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_CHECKPOINT_DISK = re.compile(
    r"^(.*)_[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\.(avhdx?)$"
)
_WINDOWS_PATH = re.compile(
    r'^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+\\)[^\x00-\x1f*?"<>|]*\.vhdx?$', re.I
)


@dataclass(frozen=True)
class Slot:
    """Where a disk sits: controller type (``IDE``/``SCSI``), number and location."""

    bus: str
    number: int
    location: int


@dataclass(frozen=True)
class Drive:
    """A hard disk drive as ``Get-VM``'s HardDrives report it."""

    slot: Slot
    path: str


def record_key(path: str) -> str:
    """The key of the record of the disk at ``path`` in the VM's notes.

    While a checkpoint exists the VM's drive holds the differencing disk Hyper-V
    made for it, ``<disk>_<GUID>.avhdx`` beside ``<disk>.vhdx``; its record is
    the frozen disk's.
    """
    match = _CHECKPOINT_DISK.match(path)
    if match:
        path = match.group(1) + (".vhdx" if match.group(2).lower() == "avhdx" else ".vhd")
    return path.lower()


def slot_name(slot: Slot) -> str:
    """The name a disk in ``slot`` gets when none was asked for."""
    if slot.bus == "IDE":
        return "hd" + _letters(slot.number * 2 + slot.location)
    return "sd" + _letters(slot.number * SCSI_LOCATIONS + slot.location)


def _letters(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa: the letters of Linux disk names."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = string.ascii_lowercase[rest] + out
    return out


def boot_slot(generation: int) -> Slot:
    """Where the boot disk goes: generation 1 firmware boots from IDE only."""
    return Slot("IDE", 0, 0) if generation == 1 else Slot("SCSI", 0, 0)


def free_scsi_locations(drives: list[Drive], taken: set[Slot] | None = None) -> list[Slot]:
    used = {d.slot for d in drives} | (taken or set())
    return [
        slot for slot in (Slot("SCSI", 0, loc) for loc in range(SCSI_LOCATIONS)) if slot not in used
    ]


def drives_of(vm: dict[str, Any]) -> list[Drive]:
    """The drives of a VM object (HardDrives at ConvertTo-Json depth 3)."""
    drives = []
    for item in vm.get("HardDrives") or []:
        if not isinstance(item, dict) or item.get("ControllerType") not in _BUSES:
            continue
        slot = Slot(
            _BUSES[item["ControllerType"]],
            int(item.get("ControllerNumber") or 0),
            int(item.get("ControllerLocation") or 0),
        )
        drives.append(Drive(slot, str(item.get("Path") or "")))
    return sorted(drives, key=lambda d: (d.slot.bus != "IDE", d.slot.number, d.slot.location))


def report_disks(drives: list[Drive], records: dict[str, dict[str, Any]]) -> list[BlockDevice]:
    """The contract's view of ``drives``, joined with the records of the VM's notes."""
    devices = []
    for drive in drives:
        record = records.get(record_key(drive.path))
        if record is None:
            device = BlockDevice(kind=DeviceKind.VOLUME, device_name=slot_name(drive.slot))
        else:
            device = BlockDevice(
                kind=record.get("k", DeviceKind.VOLUME),
                device_name=record.get("n") or slot_name(drive.slot),
                boot_index=record.get("b"),
                size_gb=record.get("s"),
                image=record.get("i"),
                volume_id=record.get("v"),
            )
        # Every field set (connection_info None), as a caller of the contract reads them.
        device.obj_set_defaults()
        devices.append(device)
    return devices


def interfaces_of(vm: dict[str, Any]) -> list[NetworkInterface]:
    """The adapters of a VM object: port id and device name = adapter name, network = switch."""
    interfaces = []
    for item in vm.get("NetworkAdapters") or []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("Name") or "")
        interfaces.append(
            NetworkInterface(
                port_id=name,
                mac_address=from_hyperv_mac(str(item.get("MacAddress") or "")),
                network=str(item.get("SwitchName") or ""),
                mtu=None,
                device_name=name,
            )
        )
    return interfaces


def to_hyperv_mac(mac: str) -> str:
    """``02:aa:bb:cc:dd:ee`` -> ``02AABBCCDDEE``, as -StaticMacAddress takes it."""
    return mac.replace(":", "").replace("-", "").upper()


def from_hyperv_mac(mac: str) -> str:
    """``02AABBCCDDEE`` -> ``02:aa:bb:cc:dd:ee``; anything unreadable -> all zeros."""
    digits = mac.lower()
    if not re.fullmatch(r"[0-9a-f]{12}", digits):
        digits = "0" * 12
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def image_path(vhd_dir: str, image: str, operation: str) -> str:
    """The VHDX of ``image`` on the host.

    :raises computed.exception.InvalidRequest: if the image name is not a plain file name.
    """
    if not _IMAGE_NAME.match(image):
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"the hyperv driver takes images named like 'ubuntu-22.04' (letters, digits, "
            f"'.', '_', '-'), found as {IMAGE_DIR}\\<image>.vhdx on the host; got {image[:40]!r}",
        )
    return f"{vhd_dir.rstrip(chr(92))}\\{IMAGE_DIR}\\{image}.vhdx"


def disk_path(vhd_dir: str, uuid: str, role: str) -> str:
    """The VHDX the driver makes for an instance: ``<uuid>-root.vhdx``, ``<uuid>-ephemeral1.vhdx``."""
    return f"{vhd_dir.rstrip(chr(92))}\\{uuid}-{role}.vhdx"


def volume_path(data: dict[str, Any], operation: str) -> str:
    """The VHD(X) path of a ``file`` volume (``device_path`` of its connection data).

    :raises computed.exception.InvalidRequest: unless it is an absolute Windows or UNC
        path to a .vhd or .vhdx file.
    """
    path = data.get("device_path")
    if not isinstance(path, str) or len(path) > 1024 or not _WINDOWS_PATH.match(path):
        raise exception.InvalidRequest(
            operation=operation,
            reason="a file volume needs connection_info.data.device_path, an absolute Windows "
            f"or UNC path to a .vhd or .vhdx file; got {str(path)[:80]!r}",
        )
    return path


@dataclass(frozen=True)
class PlannedDisk:
    """A disk a spawn attaches; ``size_bytes`` set for the local disks it makes first."""

    slot: Slot
    path: str
    record: dict[str, Any]
    size_bytes: int | None = None
    parent: str | None = None


def plan_disks(
    spec: InstanceSpec, generation: int, vhd_dir: str, volume_path_of: VolumePath
) -> list[PlannedDisk]:
    """The disks of ``spec``: the boot disk in :func:`boot_slot`, the rest on SCSI 0 in order.

    A spec without block devices but with an image has a root disk of ``disk_gb``
    made from it, as before contract 1.2.

    :param volume_path_of: the VHD path of a volume's connection info (it refuses
        the volume types the driver does not attach).
    """
    devices = list(spec.block_devices)
    if not devices and spec.image:
        root = BlockDevice(
            kind=DeviceKind.IMAGE, boot_index=0, size_gb=spec.disk_gb, image=spec.image
        )
        root.obj_set_defaults()
        devices = [root]
    devices.sort(key=lambda d: (d.boot_index is None, d.boot_index or 0))
    slots = iter(free_scsi_locations([], {boot_slot(generation)}))
    names: set[str] = {d.short_name for d in devices if d.device_name}
    planned = []
    ephemeral = 0
    for device in devices:
        slot = boot_slot(generation) if device.boot_index == 0 else next(slots)
        name = device.short_name or _unused_name(slot, names)
        names.add(name)
        record: dict[str, Any] = {"k": device.kind, "n": name, "b": device.boot_index}
        if device.kind == DeviceKind.VOLUME:
            record["v"] = device.volume_id
            path = volume_path_of(device.connection_info, "spawn")
            planned.append(PlannedDisk(slot, path, record))
            continue
        size = device.size_gb * GIB if device.size_gb else None
        record["s"] = device.size_gb
        if device.kind == DeviceKind.IMAGE:
            record["i"] = device.image
            path = disk_path(vhd_dir, spec.uuid, "root")
            parent = image_path(vhd_dir, device.image, "spawn")
            planned.append(PlannedDisk(slot, path, record, size, parent))
        else:
            ephemeral += 1
            path = disk_path(vhd_dir, spec.uuid, f"ephemeral{ephemeral}")
            planned.append(PlannedDisk(slot, path, record, size))
    return planned


def _unused_name(slot: Slot, names: set[str]) -> str:
    name = slot_name(slot)
    index = 0
    while name in names:
        name = "sd" + _letters(index)
        index += 1
    return name


def unused_name(drives: list[Drive], reported: list[BlockDevice], slot: Slot) -> str:
    """A name for a disk attached to ``slot`` without one asked for."""
    names = {d.device_name for d in reported if d.device_name}
    return _unused_name(slot, names)
