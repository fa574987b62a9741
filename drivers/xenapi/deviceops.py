"""Hot-plug: the contract's volume and interface operations on a VM (contract 1.2).

==================  ===========================================================
attach_volume       the volume's SR and VDI (:mod:`~drivers.xenapi.volumeops`),
                    ``VBD.create`` at the slot asked (or the first free one),
                    ``VBD.plug`` if the VM runs
detach_volume       ``VBD.unplug`` if the VM runs, ``VBD.destroy``, then the
                    SR is forgotten once no VBD uses it; the boot volume
                    (its VBD ``bootable``) stays
extend_volume       ``SR.scan`` of the volume's SR, so xapi reads the size the
                    storage service gave the volume
attach_interface    ``VIF.create`` on the network, ``VIF.plug`` if the VM runs
detach_interface    ``VIF.unplug`` if the VM runs, ``VIF.destroy``
==================  ===========================================================

A volume is found again by its id in its VBD's ``other_config``, an
interface by its port id in its VIF's, which makes every operation
idempotent: a repeat succeeds in any power state, as the contract has it.
Devices change only while the VM is running or halted
(:func:`drivers.base.check_device_state`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import XenAPI

from computed import exception
from computed.objects import (
    BlockDevice,
    DeviceKind,
    InstanceInfo,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from drivers import base
from drivers.xenapi import constants, devices, errors, vifops
from drivers.xenapi.blockdev import DiskBuilder
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, resolve_host
from drivers.xenapi.volumeops import VolumeOps

__all__ = ["DeviceOps"]

LOG = logging.getLogger(__name__)

_GiB = 1024**3


class DeviceOps:
    """The device operations, given the pool's session and the host's target."""

    def __init__(self, vmops: VMOps, volumeops: VolumeOps, builder: DiskBuilder) -> None:
        self._vmops = vmops
        self._volumeops = volumeops
        self._builder = builder

    # Volumes --------------------------------------------------------------

    def attach_volume(
        self,
        session: PoolSession,
        target: Target,
        uuid: str,
        connection: VolumeConnection,
        mountpoint: str | None,
    ) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        volume_id = connection.volume_id
        if devices.find_vbd(session, record, constants.OTHER_CONFIG_VOLUME_ID, volume_id):
            return self._vmops.info(session, target, record)
        running = _changeable(record, uuid, "attach_volume")
        slot = self._slot(session, target, uuid, vm, mountpoint)
        volume = _volume_device(connection, slot)
        host_ref = resolve_host(session, target)
        vbd = self._builder.volume(session, target, host_ref, vm, volume, slot)
        if running:
            self._plug_or_undo(session, vbd, lambda: self._drop_volume(session, vbd))
        LOG.info("Host %s: attached volume %s to %s", target.host, volume_id, uuid)
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    def detach_volume(
        self, session: PoolSession, target: Target, uuid: str, volume_id: str
    ) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        found = devices.find_vbd(session, record, constants.OTHER_CONFIG_VOLUME_ID, volume_id)
        if found is None:
            return self._vmops.info(session, target, record)
        vbd, vbd_record = found
        if vbd_record["bootable"]:
            raise exception.InvalidRequest(
                operation="detach_volume",
                reason=f"volume {volume_id} is the boot volume of instance {uuid}",
            )
        if _changeable(record, uuid, "detach_volume"):
            devices.unplug(session, "VBD", vbd)
        self._drop_volume(session, vbd)
        LOG.info("Host %s: detached volume %s from %s", target.host, volume_id, uuid)
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    def extend_volume(
        self, session: PoolSession, target: Target, uuid: str, volume_id: str, new_size: int
    ) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        found = devices.find_vbd(session, record, constants.OTHER_CONFIG_VOLUME_ID, volume_id)
        if found is None:
            raise exception.DeviceNotFound(
                device=f"volume {volume_id}", uuid=uuid, host=target.host
            )
        vdi = found[1]["VDI"]
        size, wanted = int(session.call("VDI.get_virtual_size", vdi)), new_size * _GiB
        if wanted < size:
            raise exception.InvalidRequest(
                operation="extend_volume",
                reason=f"volume {volume_id} is {size / _GiB:g} GiB, more than {new_size} GiB",
            )
        if wanted > size:
            _changeable(record, uuid, "extend_volume")
            session.run_task("SR.scan", session.call("VDI.get_SR", vdi))
            size = int(session.call("VDI.get_virtual_size", vdi))
            if size < wanted:
                raise exception.DriverError(
                    driver=constants.DRIVER,
                    host=target.host,
                    reason=f"extend_volume: volume {volume_id} is still {size / _GiB:g} GiB "
                    f"after a rescan of its SR, not {new_size} GiB",
                )
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    # Interfaces -----------------------------------------------------------

    def attach_interface(
        self, session: PoolSession, target: Target, uuid: str, vif: NetworkInterface
    ) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        if vifops.find_vif(session, record, vif.port_id) is not None:
            return self._vmops.info(session, target, record)
        running = _changeable(record, uuid, "attach_interface")
        if vifops.mac_taken(session, vif.mac_address):
            raise exception.DeviceConflict(
                device=f"interface {vif.port_id}",
                uuid=uuid,
                host=target.host,
                reason=f"MAC address {vif.mac_address} is taken",
            )
        ref = vifops.create_vif(session, target.host, uuid, "attach_interface", vm, vif)
        if running:
            self._plug_or_undo(session, ref, lambda: session.call("VIF.destroy", ref), "VIF")
        LOG.info("Host %s: attached port %s to %s", target.host, vif.port_id, uuid)
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    def detach_interface(
        self, session: PoolSession, target: Target, uuid: str, port_id: str
    ) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        found = vifops.find_vif(session, record, port_id)
        if found is None:
            return self._vmops.info(session, target, record)
        if _changeable(record, uuid, "detach_interface"):
            devices.unplug(session, "VIF", found[0])
        session.call("VIF.destroy", found[0])
        LOG.info("Host %s: detached port %s from %s", target.host, port_id, uuid)
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    # ----------------------------------------------------------------------

    def _slot(
        self, session: PoolSession, target: Target, uuid: str, vm: str, mountpoint: str | None
    ) -> int:
        free = [int(n) for n in session.call("VM.get_allowed_VBD_devices", vm)]
        if mountpoint is None:
            if not free:
                raise exception.DeviceConflict(
                    device="a volume", uuid=uuid, host=target.host, reason="no free disk slot"
                )
            return free[0]
        slot = devices.slot_of("attach_volume", mountpoint)
        if slot not in free:
            raise exception.DeviceConflict(
                device=mountpoint,
                uuid=uuid,
                host=target.host,
                reason=f"{devices.device_name(str(slot))} holds another disk",
            )
        return slot

    @staticmethod
    def _plug_or_undo(
        session: PoolSession, ref: str, undo: Callable[[], object], cls: str = "VBD"
    ) -> None:
        try:
            devices.plug(session, cls, ref)
        except BaseException:
            try:
                undo()
            except (XenAPI.Failure, errors.PoolUnavailable) as exc:
                LOG.warning("Could not undo %s %s after a failed plug: %s", cls, ref, exc)
            raise

    def _drop_volume(self, session: PoolSession, vbd: str) -> None:
        sr = session.call("VDI.get_SR", session.call("VBD.get_VDI", vbd))
        session.call("VBD.destroy", vbd)
        self._volumeops.purge(session, sr)


def _changeable(record: dict[str, Any], uuid: str, operation: str) -> bool:
    """Whether the VM runs; refused outside running and stopped. Called once the
    operation is known not to be a repeat, which succeeds in any state."""
    state = constants.instance_state(record)
    base.check_device_state(operation, uuid, state)
    return state == PowerState.RUNNING


def _volume_device(connection: VolumeConnection, slot: int) -> BlockDevice:
    return BlockDevice(
        kind=DeviceKind.VOLUME,
        device_name=devices.device_name(str(slot)),
        boot_index=None,
        size_gb=None,
        image=None,
        volume_id=connection.volume_id,
        connection_info=connection,
    )
