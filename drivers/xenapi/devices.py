"""An instance's disks and interfaces as xapi records them, and the VBD steps.

A disk is a VBD of the VM at a ``userdevice`` slot (0 to 15), naming a VDI.
The guest sees slot N as ``xvd`` and the Nth letter, which is the name this
driver reports, as nova's XenAPI driver did; a requested name is read the
same way, whatever its prefix (``vdb``, ``xvdb``, ``sdb``, ``hdb`` and
``/dev/vdb`` are all slot 1). Where a disk came from is kept in its VBD's
``other_config`` (see :mod:`~drivers.xenapi.constants`), an interface's port
in its VIF's.

A VBD or VIF made for a halted VM is attached when the VM starts; one made
for a running VM is plugged at once (``VBD.plug`` / ``VIF.plug``). Those
steps tolerate what a retry finds done (``DEVICE_ALREADY_ATTACHED`` /
``DEVICE_ALREADY_DETACHED``).
"""

from __future__ import annotations

import re
from typing import Any

import XenAPI

from computed import exception
from computed.objects import BlockDevice, DeviceKind, NetworkInterface
from drivers.xenapi import constants, errors
from drivers.xenapi.session import PoolSession

__all__ = [
    "MAX_SLOTS",
    "block_devices",
    "create_vbd",
    "device_name",
    "find_vbd",
    "interfaces",
    "plug",
    "root_vbd",
    "slot_of",
    "unplug",
]

#: VBD slots a VM has (``VM.get_allowed_VBD_devices`` offers 0 to 15).
MAX_SLOTS = 16
_GiB = 1024**3
_NAME = re.compile(r"^(?:/dev/)?(?:x?vd|sd|hd)([a-p])$")


def slot_of(operation: str, name: str) -> int:
    """The ``userdevice`` slot of a device name such as ``vdb`` or ``/dev/xvdb``.

    :raises computed.exception.InvalidRequest: for a name no slot stands for.
    """
    match = _NAME.match(name)
    if match is None:
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"device name {name!r} names no XenAPI disk slot: use vda to vdp "
            "(or xvda, sda, hda)",
        )
    return ord(match.group(1)) - ord("a")


def device_name(userdevice: str) -> str:
    """The name the guest sees a disk at ``userdevice`` under (``xvdb`` for ``1``)."""
    return "xvd" + chr(ord("a") + int(userdevice)) if userdevice.isdigit() else userdevice


def create_vbd(
    session: PoolSession,
    vm: str,
    vdi: str,
    slot: int,
    *,
    bootable: bool,
    other_config: dict[str, str],
) -> str:
    """A read-write disk VBD of ``vdi`` at ``slot``, not plugged."""
    record = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": str(slot),
        "bootable": bootable,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": True,
        "empty": False,
        "other_config": other_config,
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    return str(session.call("VBD.create", record))


def plug(session: PoolSession, cls: str, ref: str) -> bool:
    """Plug a VBD or VIF into its running VM; False if the VM has halted meanwhile
    (the device is attached when it starts).

    :raises XenAPI.Failure: ``VM_BAD_POWER_STATE`` if the VM is paused or suspended.
    """
    try:
        session.run_task(f"{cls}.plug", ref)
    except XenAPI.Failure as exc:
        code, params = errors.code_of(exc), errors.params_of(exc)
        if code == errors.DEVICE_ALREADY_ATTACHED:
            return True
        if code == errors.VM_BAD_POWER_STATE and params[2:3] == ["halted"]:
            return False
        raise
    return True


def unplug(session: PoolSession, cls: str, ref: str) -> None:
    """Unplug a VBD or VIF from its running VM; succeed if it is not plugged."""
    try:
        session.run_task(f"{cls}.unplug", ref)
    except XenAPI.Failure as exc:
        code, params = errors.code_of(exc), errors.params_of(exc)
        halted = code == errors.VM_BAD_POWER_STATE and params[2:3] == ["halted"]
        if code != errors.DEVICE_ALREADY_DETACHED and not halted:
            raise


def find_vbd(
    session: PoolSession, record: dict[str, Any], key: str, value: str
) -> tuple[str, dict[str, Any]] | None:
    """The VM's VBD whose ``other_config[key]`` is ``value``, with its record."""
    for vbd in record["VBDs"]:
        vbd_record = session.call("VBD.get_record", vbd)
        if vbd_record["other_config"].get(key) == value:
            return str(vbd), vbd_record
    return None


def root_vbd(session: PoolSession, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The VM's bootable disk VBD, with its record (None if it has none)."""
    for vbd in record["VBDs"]:
        vbd_record = session.call("VBD.get_record", vbd)
        if vbd_record["type"] == "Disk" and vbd_record["bootable"] and not vbd_record["empty"]:
            return str(vbd), vbd_record
    return None


def block_devices(session: PoolSession, record: dict[str, Any]) -> list[BlockDevice]:
    """The VM's disks (CD drives and empty drives left out), by slot."""
    found = []
    for vbd in record["VBDs"]:
        vbd_record = session.call("VBD.get_record", vbd)
        if vbd_record["type"] != "Disk" or vbd_record["empty"]:
            continue
        size = int(session.call("VDI.get_virtual_size", vbd_record["VDI"]))
        found.append((_slot_key(vbd_record["userdevice"]), _block_device(vbd_record, size)))
    return [device for _, device in sorted(found, key=lambda item: item[0])]


def _slot_key(userdevice: str) -> int:
    return int(userdevice) if userdevice.isdigit() else MAX_SLOTS


def _block_device(vbd: dict[str, Any], size: int) -> BlockDevice:
    other = vbd["other_config"]
    default = DeviceKind.IMAGE if vbd["bootable"] else DeviceKind.BLANK
    return BlockDevice(
        kind=other.get(constants.OTHER_CONFIG_KIND, default),
        device_name=device_name(vbd["userdevice"]),
        boot_index=0 if vbd["bootable"] else None,
        size_gb=size // _GiB,
        image=other.get(constants.OTHER_CONFIG_IMAGE),
        volume_id=other.get(constants.OTHER_CONFIG_VOLUME_ID),
        connection_info=None,
    )


def interfaces(session: PoolSession, record: dict[str, Any]) -> list[NetworkInterface]:
    """The VM's interfaces, by device number."""
    found = []
    for vif in record["VIFs"]:
        vif_record = session.call("VIF.get_record", vif)
        other = vif_record["other_config"]
        network = other.get(constants.OTHER_CONFIG_NETWORK) or session.call(
            "network.get_name_label", vif_record["network"]
        )
        interface = NetworkInterface(
            port_id=other.get(constants.OTHER_CONFIG_PORT_ID) or vif_record["uuid"],
            mac_address=vif_record["MAC"].lower(),
            network=network,
            mtu=int(vif_record["MTU"]),
            device_name=vif_record["device"],
        )
        found.append((_slot_key(vif_record["device"]), interface))
    return [interface for _, interface in sorted(found, key=lambda item: item[0])]
