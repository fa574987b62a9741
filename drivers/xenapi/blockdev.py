"""Building an instance's disks and interfaces at spawn (contract 1.2).

=============  ================================================================
root, image    the image is a VDI of the pool named ``image`` (``name_label``),
               not an instance's disk; ``VDI.clone`` of it (``VDI.copy`` into
               the default SR where its SR cannot clone), resized to
               ``disk_gb``, at slot 0 (or the name asked), bootable
blank          ``VDI.create`` of ``size_gb`` in the default SR, type
               ``ephemeral`` (as nova made ephemeral disks)
volume         the volume's SR and VDI (:mod:`~drivers.xenapi.volumeops`);
               bootable when its ``boot_index`` is 0
interface      ``VIF.create`` on the network named (or bridged as) ``network``
=============  ================================================================

A spec without block devices and without an image gets the template's
disks (``VM.provision``), as before contract 1.2. Everything is made while
the VM is halted and attached when it starts.
"""

from __future__ import annotations

import logging
from typing import Any

import XenAPI

from computed import exception
from computed.objects import BlockDevice, DeviceKind, InstanceSpec
from drivers.xenapi import constants, devices, errors, vifops
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.volumeops import VolumeOps

__all__ = [
    "DiskBuilder",
    "clone",
    "default_sr",
    "destroy_quietly",
    "find_image",
    "uses_template_disks",
]

LOG = logging.getLogger(__name__)

_GiB = 1024**3


def uses_template_disks(spec: InstanceSpec) -> bool:
    """Whether the spec's disks are the template's (no image, no devices)."""
    return spec.image is None and spec.root_device is None


def default_sr(session: PoolSession) -> str:
    pool_ref = session.call("pool.get_all")[0]
    return str(session.call("pool.get_default_SR", pool_ref))


class DiskBuilder:
    """Makes the devices of a spec for a halted VM."""

    def __init__(self, volumeops: VolumeOps) -> None:
        self._volumeops = volumeops

    def build(
        self, session: PoolSession, target: Target, host_ref: str, vm: str, spec: InstanceSpec
    ) -> None:
        wanted = [d for d in spec.block_devices if d.kind != DeviceKind.IMAGE]
        reserved = {devices.slot_of("spawn", d.device_name) for d in wanted if d.device_name}
        if spec.image is not None:
            root = spec.root_device
            slot = devices.slot_of("spawn", root.device_name) if root and root.device_name else 0
            self.root_disk(session, target, vm, spec, slot)
            reserved.add(slot)
        for device in wanted:
            slot = _slot_for(device, reserved)
            reserved.add(slot)
            self.disk(session, target, host_ref, vm, device, slot)
        for vif in spec.network_interfaces:
            vifops.create_vif(session, target.host, spec.uuid, "spawn", vm, vif)

    def root_disk(
        self, session: PoolSession, target: Target, vm: str, spec: InstanceSpec, slot: int
    ) -> None:
        image, size = spec.image, spec.disk_gb * _GiB
        source, record = find_image(session, "spawn", image)
        if int(record["virtual_size"]) > size:
            raise exception.InvalidRequest(
                operation="spawn",
                reason=f"image {image!r} is {int(record['virtual_size']) / _GiB:g} GiB, "
                f"more than the root disk's {spec.disk_gb} GiB",
            )
        vdi = clone(session, source)
        other = {constants.OTHER_CONFIG_KIND: DeviceKind.IMAGE, constants.OTHER_CONFIG_IMAGE: image}
        try:
            session.call("VDI.set_name_label", vdi, f"{constants.name_label(spec.uuid)} root")
            session.call("VDI.set_other_config", vdi, other)
            if size > int(record["virtual_size"]):
                session.run_task("VDI.resize", vdi, str(size))
            devices.create_vbd(session, vm, vdi, slot, bootable=True, other_config=other)
        except BaseException:
            destroy_quietly(session, vdi)
            raise

    def disk(
        self,
        session: PoolSession,
        target: Target,
        host_ref: str,
        vm: str,
        device: BlockDevice,
        slot: int,
    ) -> str:
        """A blank disk or a volume at ``slot`` of the halted VM; its VBD."""
        if device.kind == DeviceKind.VOLUME:
            return self.volume(session, target, host_ref, vm, device, slot)
        other = {constants.OTHER_CONFIG_KIND: DeviceKind.BLANK}
        record = {
            "name_label": f"{session.call('VM.get_name_label', vm)} ephemeral {slot}",
            "name_description": "",
            "SR": default_sr(session),
            "virtual_size": str(device.size_gb * _GiB),
            "type": "ephemeral",
            "sharable": False,
            "read_only": False,
            "other_config": other,
        }
        vdi = session.call("VDI.create", record)
        try:
            return devices.create_vbd(session, vm, vdi, slot, bootable=False, other_config=other)
        except BaseException:
            destroy_quietly(session, vdi)
            raise

    def volume(
        self,
        session: PoolSession,
        target: Target,
        host_ref: str,
        vm: str,
        device: BlockDevice,
        slot: int,
    ) -> str:
        """The volume's VBD at ``slot``, not plugged; the SR is forgotten on failure."""
        vdi = self._volumeops.connect(session, target, host_ref, device.connection_info)
        other = {
            constants.OSVOL: "True",
            constants.OTHER_CONFIG_KIND: DeviceKind.VOLUME,
            constants.OTHER_CONFIG_VOLUME_ID: device.connection_info.volume_id,
        }
        bootable = device.boot_index == 0
        try:
            return devices.create_vbd(session, vm, vdi, slot, bootable=bootable, other_config=other)
        except BaseException:
            self._volumeops.purge(session, session.call("VDI.get_SR", vdi))
            raise


def _slot_for(device: BlockDevice, reserved: set[int]) -> int:
    """The slot asked for, else 0 for a boot volume, else the first free one."""
    if device.device_name:
        return devices.slot_of("spawn", device.device_name)
    if device.boot_index == 0:
        return 0
    for slot in range(1, devices.MAX_SLOTS):
        if slot not in reserved:
            return slot
    raise exception.InvalidRequest(
        operation="spawn", reason=f"more disks than the {devices.MAX_SLOTS} slots of a VM"
    )


def find_image(session: PoolSession, operation: str, image: str) -> tuple[str, dict[str, Any]]:
    """The image VDI named ``image`` and its record.

    :raises computed.exception.InvalidRequest: if the pool has none.
    """
    for vdi in session.call("VDI.get_by_name_label", image):
        record = session.call("VDI.get_record", vdi)
        if constants.OTHER_CONFIG_KIND not in record["other_config"]:
            return str(vdi), record  # an image, not an instance's disk
    raise exception.InvalidRequest(
        operation=operation, reason=f"the pool has no image VDI named {image!r}"
    )


def clone(session: PoolSession, source: str) -> str:
    """A new VDI with ``source``'s content: cloned, or copied into the default SR."""
    try:
        return str(session.run_task("VDI.clone", source, {}))
    except XenAPI.Failure as exc:
        if errors.code_of(exc) != "SR_OPERATION_NOT_SUPPORTED":
            raise
    return str(session.run_task("VDI.copy", source, default_sr(session)))


def destroy_quietly(session: PoolSession, vdi: str) -> None:
    try:
        session.run_task("VDI.destroy", vdi)
    except (XenAPI.Failure, errors.PoolUnavailable) as exc:
        LOG.warning("Could not destroy VDI %s left by a failed step: %s", vdi, exc)
