"""Volumes and interfaces of a running or stopped instance (contract 1.2).

Every operation reads the VM (:meth:`VMOps.lookup`), checks the power state
(:func:`drivers.base.check_device_state`), answers from what is attached when
nothing needs doing, and otherwise runs one script that changes the VM and
reports it:

=================  ==========================================================
operation          PowerShell
=================  ==========================================================
attach_volume      ``Set-VM -Notes`` (the disk's record), ``Add-VMHardDiskDrive
                   -ControllerType SCSI`` at the first free location of
                   controller 0
detach_volume      ``Get-VMHardDiskDrive`` of its slot ``| Remove-VMHardDiskDrive``,
                   ``Set-VM -Notes``
extend_volume      ``Get-VHD``, then ``Resize-VHD`` if the file is smaller than
                   asked, ``Set-VM -Notes`` (the size)
attach_interface   ``Add-VMNetworkAdapter -SwitchName <network> -Name <port id>
                   -StaticMacAddress <MAC>``
detach_interface   ``Get-VMNetworkAdapter -Name <port id> | Remove-VMNetworkAdapter``
=================  ==========================================================

Volumes: ``file`` (a VHD or VHDX the host can open, ``data.device_path``). An
iSCSI volume would be passed through as a disk of the host (what
compute-hyperv does: log in to the target, find the LUN's disk, take it
offline, ``Add-VMHardDiskDrive -DiskNumber``); that needs the host's iSCSI
sessions and disks, which the driver does not drive yet, so it and every other
type are UnsupportedOperation naming the type. The volume an instance boots
from stays: detaching it is InvalidRequest. Hyper-V's own refusals (IDE
while running, adapters of a running generation 1 VM) are InvalidPowerState
naming ``stopped`` as the state that allows them.
"""

from __future__ import annotations

import logging

from computed import exception
from computed.objects import (
    InstanceInfo,
    NetworkInterface,
    PowerState,
    VolumeConnection,
    VolumeConnector,
)
from drivers import base
from drivers.hyperv import constants
from drivers.hyperv import devices as dev
from drivers.hyperv import powershell as ps
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.vmops import VM, VMOps
from drivers.hyperv.winrmclient import HostClient

__all__ = ["DeviceOps", "VOLUME_TYPES"]

LOG = logging.getLogger(__name__)

#: The volume transports the driver attaches.
VOLUME_TYPES = ("file",)


class DeviceOps:
    """The device operations, given the served host's :class:`HostClient`."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    # Volumes ---------------------------------------------------------------

    @staticmethod
    def volume_path(connection: VolumeConnection, operation: str, host: str) -> str:
        """The VHD path of a volume the driver attaches.

        :raises computed.exception.UnsupportedOperation: for a type other than ``file``.
        :raises computed.exception.InvalidRequest: for a file volume without a usable path.
        """
        kind = connection.driver_volume_type
        if kind not in VOLUME_TYPES:
            raise exception.UnsupportedOperation(
                operation=f"{operation} of a {kind!r} volume",
                driver=constants.DRIVER,
                host=host,
                volume_type=kind,
            )
        return dev.volume_path(connection.data, operation)

    def get_volume_connector(self, client: HostClient, host: str) -> VolumeConnector:
        """The host's iSCSI initiator name; no Fibre Channel ports, no multipath."""
        try:
            found = client.run(ps.get_iscsi_initiator())
        except PowerShellError as exc:
            if not exc.short_id.startswith("CmdletizationQuery_NotFound"):
                raise
            found = []
        initiator = str(found[0].get("NodeAddress") or "") if found else ""
        return VolumeConnector(
            host=host,
            ip=None,
            initiator=initiator or None,
            wwpns=[],
            multipath=False,
            platform=None,
            os_type="windows",
        )

    def attach_volume(
        self,
        client: HostClient,
        host: str,
        uuid: str,
        connection: VolumeConnection,
        mountpoint: str | None,
    ) -> InstanceInfo:
        vm = self._ready(client, host, uuid, "attach_volume")
        info = self._vmops.info(vm, host)
        if info.volume(connection.volume_id) is not None:
            return info
        path = self.volume_path(connection, "attach_volume", host)
        device = f"volume {connection.volume_id}"
        name = mountpoint.removeprefix("/dev/") if mountpoint else None
        for reported, drive in zip(info.block_devices, vm.drives, strict=True):
            if name is not None and reported.device_name == name:
                raise _conflict(device, uuid, host, f"the device name {name} is taken")
            if drive.path.lower() == path.lower():
                raise _conflict(
                    device, uuid, host, f"{path} is attached already as {reported.device_name}"
                )
        free = dev.free_scsi_locations(vm.drives)
        if not free:
            raise _conflict(device, uuid, host, "no free location on SCSI controller 0")
        slot = free[0]
        records = vm.records
        records[path.lower()] = {
            "k": "volume",
            "n": name or dev.unused_name(vm.drives, list(info.block_devices), slot),
            "b": None,
            "v": connection.volume_id,
        }
        statements = [
            ps.set_notes(vm.vm_id, vm.notes_with(records, "attach_volume")),
            ps.add_drive(vm.vm_id, slot.bus, slot.number, slot.location, path),
        ]
        try:
            return self._run(client, host, vm, "attach_volume", statements)
        except PowerShellError:
            self._restore_notes(client, host, vm)
            raise

    def detach_volume(
        self, client: HostClient, host: str, uuid: str, volume_id: str
    ) -> InstanceInfo:
        vm = self._ready(client, host, uuid, "detach_volume")
        found = self._volume(vm, volume_id)
        if found is None:
            return self._vmops.info(vm, host)
        drive, key = found
        records = vm.records
        if records[key].get("b") == 0:
            raise exception.InvalidRequest(
                operation="detach_volume",
                reason=f"volume {volume_id} is the boot volume of instance {uuid}",
            )
        records.pop(key, None)
        slot = drive.slot
        statements = [
            ps.remove_drive(vm.vm_id, slot.bus, slot.number, slot.location),
            ps.set_notes(vm.vm_id, vm.notes_with(records, "detach_volume")),
        ]
        return self._run(client, host, vm, "detach_volume", statements)

    def extend_volume(
        self, client: HostClient, host: str, uuid: str, volume_id: str, new_size: int
    ) -> InstanceInfo:
        vm = self._ready(client, host, uuid, "extend_volume")
        found = self._volume(vm, volume_id)
        if found is None:
            raise exception.DeviceNotFound(device=f"volume {volume_id}", uuid=uuid, host=host)
        drive, key = found
        vhd = client.run(ps.get_vhd(drive.path))
        size = int(vhd[0].get("Size") or 0) if vhd else 0
        wanted = new_size * dev.GIB
        if wanted < size:
            raise exception.InvalidRequest(
                operation="extend_volume",
                reason=f"volume {volume_id} is {size} bytes already, more than {new_size} GiB",
            )
        records = vm.records
        records[key] = {**records[key], "s": new_size}
        statements = [ps.resize_vhd(drive.path, wanted)] if wanted > size else []
        statements.append(ps.set_notes(vm.vm_id, vm.notes_with(records, "extend_volume")))
        return self._run(client, host, vm, "extend_volume", statements)

    # Interfaces ---------------------------------------------------------------

    def attach_interface(
        self, client: HostClient, host: str, uuid: str, vif: NetworkInterface
    ) -> InstanceInfo:
        vm = self._ready(client, host, uuid, "attach_interface")
        info = self._vmops.info(vm, host)
        if info.interface(vif.port_id) is not None:
            return info
        for other in vm.interfaces:
            if other.mac_address == vif.mac_address:
                raise _conflict(
                    f"port {vif.port_id}",
                    uuid,
                    host,
                    f"MAC address {vif.mac_address} is taken by port {other.port_id}",
                )
        mac = dev.to_hyperv_mac(vif.mac_address)
        statements = [ps.add_adapter(vm.vm_id, vif.network, vif.port_id, mac)]
        return self._run(client, host, vm, "attach_interface", statements)

    def detach_interface(
        self, client: HostClient, host: str, uuid: str, port_id: str
    ) -> InstanceInfo:
        vm = self._ready(client, host, uuid, "detach_interface")
        if not any(vif.port_id == port_id for vif in vm.interfaces):
            return self._vmops.info(vm, host)
        statements = [ps.remove_adapter(vm.vm_id, port_id)]
        return self._run(client, host, vm, "detach_interface", statements)

    # ----------------------------------------------------------------------

    def _ready(self, client: HostClient, host: str, uuid: str, operation: str) -> VM:
        """The VM, if its devices may change now."""
        vm = self._vmops.settled(client, host, uuid, operation)
        base.check_device_state(operation, uuid, vm.power_state)
        return vm

    @staticmethod
    def _volume(vm: VM, volume_id: str) -> tuple[dev.Drive, str] | None:
        """The drive of volume ``volume_id`` and the key of its record."""
        records = vm.records
        for drive in vm.drives:
            key = dev.record_key(drive.path)
            record = records.get(key)
            if record is not None and record.get("v") == volume_id:
                return drive, key
        return None

    def _run(
        self, client: HostClient, host: str, vm: VM, operation: str, statements: list[str]
    ) -> InstanceInfo:
        script = ps.vm_devices(operation, vm.vm_id, statements)
        try:
            reported = client.run(script)
        except PowerShellError as exc:
            if exc.short_id == "InvalidState" and vm.power_state == PowerState.RUNNING:
                # Hyper-V's own rule for this device while the VM runs.
                raise exception.InvalidPowerState(
                    uuid=vm.uuid,
                    operation=operation,
                    state=vm.power_state,
                    allowed=PowerState.STOPPED,
                    detail=exc.message,
                ) from exc
            raise
        return self._vmops.info(self._vmops.remember(host, reported, operation), host)

    def _restore_notes(self, client: HostClient, host: str, vm: VM) -> None:
        """Put back the notes an attach changed before Hyper-V refused the disk."""
        try:
            client.run(ps.vm_devices("restore_notes", vm.vm_id, [ps.set_notes(vm.vm_id, vm.notes)]))
        except (PowerShellError, exception.ComputedError) as exc:
            LOG.warning("Host %s: could not restore the notes of %s: %s", host, vm.uuid, exc)


def _conflict(device: str, uuid: str, host: str, reason: str) -> exception.DeviceConflict:
    return exception.DeviceConflict(device=device, uuid=uuid, host=host, reason=reason)
