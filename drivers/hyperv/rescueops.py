"""Rescue and unrescue (contract 1.3), the way nova's Hyper-V driver rescues an instance.

Rescue makes a rescue disk from the rescue image (a differencing VHDX,
``<uuid>-rescue.vhdx``, as a spawn makes a root disk), turns the VM off,
puts the rescue disk in the boot slot (IDE 0:0 in generation 1, SCSI 0:0 in
generation 2) and the instance's own boot disk on the first free location
of SCSI controller 0, and starts the VM: it boots the rescue system, which
sees the instance's disk as its second disk. Unrescue turns the VM off,
removes the rescue disk, puts the boot disk back in the boot slot and starts
it; every other disk and adapter stays where it was throughout. The rescue
image is the one named, else the image the root disk was made from; an
instance without one (booted from a volume, or without a root disk) needs
one named. An instance without a boot disk is rescued with the rescue disk
alone.

The VM's notes say it is rescued (the paths of the rescue disk and of the
boot disk it moved, written before anything else changes), so a worker that restarts, or another that takes the
host over, knows it for rescued; the instance reports the ``rescued`` power
state and its own disks as they are outside rescue. Unrescue works from what
is attached, so it also finishes a rescue or unrescue interrupted half-way.
A rescue that fails is undone the same way before its error is raised.
"""

from __future__ import annotations

import logging

from computed import exception
from computed.objects import InstanceInfo
from drivers import base
from drivers.hyperv import devices as dev
from drivers.hyperv import powershell as ps
from drivers.hyperv.constants import VMState
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.vmops import VM, VMOps
from drivers.hyperv.winrmclient import HostClient

__all__ = ["RescueOps"]

LOG = logging.getLogger(__name__)


class RescueOps:
    """rescue and unrescue, given the served host's :class:`HostClient`."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def rescue(
        self, client: HostClient, host: str, uuid: str, rescue_image: str | None
    ) -> InstanceInfo:
        vm = self._vmops.settled(client, host, uuid, "rescue")
        if not base.plan_transition("rescue", uuid, vm.power_state):
            return self._vmops.info(vm, host)
        image = rescue_image or _own_image(vm)
        if image is None:
            raise exception.InvalidRequest(
                operation="rescue",
                reason=f"instance {uuid} has no image to boot a rescue from: name a rescue image",
            )
        vhd_dir = self._vmops.vhd_dir(client, host)
        parent = dev.image_path(vhd_dir, image, "rescue")
        self._vmops.image_size(client, parent, image, "rescue")
        rescue = dev.disk_path(vhd_dir, vm.uuid, "rescue")
        boot, moved = dev.boot_slot(vm.generation), vm.boot_drive
        statements = [
            ps.set_notes(
                vm.vm_id, vm.notes_rescued(rescue, moved.path if moved else None, "rescue")
            ),
            ps.remove_files_if_present([rescue]),
            ps.new_vhd(rescue, None, parent),
        ]
        if vm.state != VMState.Off:
            statements.append(ps.vm_action(vm.vm_id, "turn_off"))
        if moved is not None:
            statements.append(ps.remove_drive(vm.vm_id, boot.bus, boot.number, boot.location))
        statements.append(ps.add_drive(vm.vm_id, boot.bus, boot.number, boot.location, rescue))
        if moved is not None:
            second = dev.free_scsi_locations(vm.drives, {boot})[0]
            statements.append(
                ps.add_drive(vm.vm_id, second.bus, second.number, second.location, moved.path)
            )
        try:
            rescued = client.run(ps.vm_devices("rescue", vm.vm_id, statements, start=True))
        except PowerShellError:
            self._undo(client, host, uuid, was_running=vm.state != VMState.Off)
            raise
        LOG.info("Host %s: rescued %s from image %s", host, uuid, image)
        return self._vmops.info(self._vmops.remember(host, rescued, "rescue"), host)

    def unrescue(self, client: HostClient, host: str, uuid: str) -> InstanceInfo:
        vm = self._vmops.settled(client, host, uuid, "unrescue")
        if not base.plan_transition("unrescue", uuid, vm.power_state):
            return self._vmops.info(vm, host)
        info = self._vmops.info(self._restore(client, host, vm, start=True), host)
        LOG.info("Host %s: unrescued %s", host, uuid)
        return info

    # ----------------------------------------------------------------------

    def _restore(self, client: HostClient, host: str, vm: VM, start: bool) -> VM:
        """Put the VM's own boot disk back in the boot slot and forget the rescue, from
        whatever state a rescue left; turn the VM off for it if a disk must move, and
        start it afterwards if ``start``."""
        boot = dev.boot_slot(vm.generation)
        rescue = (vm.rescue_path or "").lower()
        moved = vm.boot_drive
        moves = [
            ps.remove_drive(vm.vm_id, d.slot.bus, d.slot.number, d.slot.location)
            for d in vm.drives
            if d != moved and (d.path.lower() == rescue or d.slot == boot)
        ]
        if moved is not None and moved.slot != boot:
            slot = moved.slot
            moves += [
                ps.remove_drive(vm.vm_id, slot.bus, slot.number, slot.location),
                ps.add_drive(vm.vm_id, boot.bus, boot.number, boot.location, moved.path),
            ]
        elif moved is None and vm.rescued_root is not None:
            moves.append(
                ps.add_drive(vm.vm_id, boot.bus, boot.number, boot.location, vm.rescued_root)
            )
        statements = (
            [ps.vm_action(vm.vm_id, "turn_off")] if moves and vm.state != VMState.Off else []
        )
        statements += moves
        statements.append(ps.set_notes(vm.vm_id, vm.notes_rescued(None, None, "unrescue")))
        if vm.rescue_path is not None:
            statements.append(ps.remove_files_if_present([vm.rescue_path]))
        restored = client.run(ps.vm_devices("unrescue", vm.vm_id, statements, start=start))
        return self._vmops.remember(host, restored, "unrescue")

    def _undo(self, client: HostClient, host: str, uuid: str, was_running: bool) -> None:
        """Put back what a failed rescue changed, in the power state the instance had."""
        try:
            self._restore(client, host, self._vmops.lookup(client, host, uuid), was_running)
        except (PowerShellError, exception.ComputedError) as exc:
            LOG.warning("Host %s: could not undo the failed rescue of %s: %s", host, uuid, exc)


def _own_image(vm: VM) -> str | None:
    """The image the instance's root disk was made from, if it was made from one."""
    root = vm.root
    record = vm.records.get(dev.record_key(root.path), {}) if root is not None else {}
    image = record.get("i")
    return str(image) if image and record.get("k") == "image" else None
