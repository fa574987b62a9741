"""Rescue and unrescue (contract 1.3), the way nova's Hyper-V driver rescues an instance.

Rescue makes a rescue disk from the rescue image (a differencing VHDX,
``<uuid>-rescue.vhdx``, as a spawn makes a root disk), turns the VM off,
puts the rescue disk in the boot slot (IDE 0:0 in generation 1, SCSI 0:0 in
generation 2) and the instance's own root disk on the first free location
of SCSI controller 0, and starts the VM: it boots the rescue system, which
sees the root disk as its second disk. Unrescue turns the VM off, removes
the rescue disk, puts the root disk back in the boot slot and starts it;
every other disk and adapter stays where it was throughout.

The VM's notes say it is rescued (the rescue disk's path, written before
anything else changes), so a worker that restarts, or another that takes the
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
        root = vm.root
        image = rescue_image or _own_image(vm)
        if root is None or image is None:
            raise exception.InvalidRequest(
                operation="rescue",
                reason=f"instance {uuid} has no image to boot a rescue from (it boots from a "
                "volume or has no root disk): name a rescue image",
            )
        vhd_dir = self._vmops.vhd_dir(client, host)
        parent = dev.image_path(vhd_dir, image, "rescue")
        self._vmops.image_size(client, parent, image, "rescue")
        rescue = dev.disk_path(vhd_dir, vm.uuid, "rescue")
        boot = dev.boot_slot(vm.generation)
        second = dev.free_scsi_locations(vm.drives, {boot})[0]
        statements = [
            ps.set_notes(vm.vm_id, vm.notes_rescued(rescue, root.path, "rescue")),
            ps.remove_files_if_present([rescue]),
            ps.new_vhd(rescue, None, parent),
        ]
        if vm.state != VMState.Off:
            statements.append(ps.vm_action(vm.vm_id, "turn_off"))
        statements += [
            ps.remove_drive(vm.vm_id, root.slot.bus, root.slot.number, root.slot.location),
            ps.add_drive(vm.vm_id, boot.bus, boot.number, boot.location, rescue),
            ps.add_drive(vm.vm_id, second.bus, second.number, second.location, root.path),
        ]
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
        """Put the VM's own root disk back in the boot slot and forget the rescue, from
        whatever state a rescue left; turn the VM off for it if a disk must move, and
        start it afterwards if ``start``."""
        boot = dev.boot_slot(vm.generation)
        rescue = (vm.rescue_path or "").lower()
        root = vm.root
        root_path = root.path if root is not None else vm.rescued_root
        moves = [
            ps.remove_drive(vm.vm_id, d.slot.bus, d.slot.number, d.slot.location)
            for d in vm.drives
            if d != root and (d.path.lower() == rescue or d.slot == boot)
        ]
        if root is not None and root.slot != boot:
            slot = root.slot
            moves.append(ps.remove_drive(vm.vm_id, slot.bus, slot.number, slot.location))
        if root_path is not None and (root is None or root.slot != boot):
            moves.append(ps.add_drive(vm.vm_id, boot.bus, boot.number, boot.location, root_path))
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
