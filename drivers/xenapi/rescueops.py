"""Rescue: boot an instance from a rescue image with its own root disk attached (1.3).

As nova's XenAPI driver rescued an instance, with a second VM:

=========  ===================================================================
rescue     ``VM.hard_shutdown`` of the instance's VM if it runs; its
           ``other_config:computed_rescue`` set and ``start``/``start_on``
           added to its ``blocked_operations`` (nova's "bootlock"); then a VM
           ``computed-<uuid>-rescue`` cloned from ``[xenapi] template``, sized
           like the instance, its disk at slot 0 a clone of the rescue image's
           VDI (by default the image the instance was built from; a template
           disk is provisioned afresh), the instance's root VDI at slot 1,
           started on the compute host's xapi host
unrescue   the rescue VM and its own disk destroyed, the mark and the block
           taken off, ``VM.start_on`` of the instance's VM
=========  ===================================================================

The mark on the instance's VM is what says it is rescued, to any worker
(:func:`~drivers.xenapi.constants.instance_state`); the instance reports
its own VM's devices, never the rescue VM's. Destroying the instance
destroys the rescue VM first (:meth:`~drivers.xenapi.vmops.VMOps.destroy`).
The rescue VM has no network interface: the instance's VIFs stay with its
own VM.
"""

from __future__ import annotations

import logging
from typing import Any

import XenAPI

from computed import exception
from computed.objects import DeviceKind, InstanceInfo
from drivers import base
from drivers.xenapi import blockdev, constants, devices, errors
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, resolve_host

__all__ = ["RescueOps"]

LOG = logging.getLogger(__name__)

#: Where the rescue VM sees the instance's root disk: its second disk.
_RESCUED_SLOT = 1
_BLOCK_REASON = "rescued by computed"


class RescueOps:
    """Rescue and unrescue, given the pool's session and the host's target."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def rescue(
        self, session: PoolSession, target: Target, uuid: str, rescue_image: str | None
    ) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        if not base.plan_transition("rescue", uuid, constants.instance_state(record)):
            return self._vmops.info(session, target, record)
        root = devices.root_vbd(session, record)
        image = _rescue_image(uuid, root, rescue_image, self._vmops.template)
        if image is not None:
            blockdev.find_image(session, "rescue", image)  # refused before anything changes
        leftover = self._vmops.find_rescue(session, target, uuid)
        if leftover is not None:  # of a rescue whose worker died half-way
            self._vmops.remove(session, *leftover)
        running = record["power_state"] != constants.XAPI_HALTED
        if running:
            session.run_task("VM.hard_shutdown", vm)
        self._mark(session, vm, rescued=True)
        try:
            self._build(session, target, uuid, record, image, root[1]["VDI"] if root else None)
        except BaseException:
            self._undo(session, target, uuid, vm, running)
            raise
        LOG.info("Host %s: rescued %s from %s", target.host, uuid, image or "its template")
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    def unrescue(self, session: PoolSession, target: Target, uuid: str) -> InstanceInfo:
        vm, record = self._vmops.get(session, target, uuid)
        if not base.plan_transition("unrescue", uuid, constants.instance_state(record)):
            return self._vmops.info(session, target, record)
        rescue = self._vmops.find_rescue(session, target, uuid)
        if rescue is not None:
            self._vmops.remove(session, *rescue)
        self._mark(session, vm, rescued=False)
        if session.call("VM.get_power_state", vm) == constants.XAPI_HALTED:
            session.run_task("VM.start_on", vm, resolve_host(session, target), False, False)
        LOG.info("Host %s: unrescued %s", target.host, uuid)
        return self._vmops.info(session, target, session.call("VM.get_record", vm))

    # ----------------------------------------------------------------------

    def _build(
        self,
        session: PoolSession,
        target: Target,
        uuid: str,
        record: dict[str, Any],
        image: str | None,
        root_vdi: str | None,
    ) -> None:
        """The rescue VM, started: ``image``'s clone (or the template's disk) at slot 0,
        the instance's root disk at slot 1."""
        host_ref = resolve_host(session, target)
        template = self._vmops.find_template(session, target)
        rescue = session.run_task("VM.clone", template, constants.rescue_name_label(uuid))
        try:
            memory = record["memory_static_max"]
            session.call("VM.set_memory_limits", rescue, memory, memory, memory, memory)
            self._vmops.set_vcpus(session, rescue, int(record["VCPUs_at_startup"]))
            session.call("VM.set_affinity", rescue, host_ref)
            other = dict(session.call("VM.get_other_config", rescue))
            if image is not None:
                other.pop("disks", None)  # the image's disk replaces the template's
            other[constants.OTHER_CONFIG_RESCUE_OF] = uuid
            other[constants.OTHER_CONFIG_HOST] = target.host
            session.call("VM.set_other_config", rescue, other)
            session.run_task("VM.provision", rescue)
            session.call("VM.set_is_a_template", rescue, False)
            if image is not None:
                self._image_disk(session, rescue, uuid, image)
            if root_vdi is not None:
                kind = {constants.OTHER_CONFIG_KIND: "rescued"}
                devices.create_vbd(
                    session, rescue, root_vdi, _RESCUED_SLOT, bootable=False, other_config=kind
                )
            session.run_task("VM.start_on", rescue, host_ref, False, False)
        except BaseException:
            self._vmops.remove_quietly(session, rescue, uuid)
            raise

    @staticmethod
    def _image_disk(session: PoolSession, rescue: str, uuid: str, image: str) -> None:
        source, _ = blockdev.find_image(session, "rescue", image)
        vdi = blockdev.clone(session, source)
        other = {constants.OTHER_CONFIG_KIND: DeviceKind.IMAGE, constants.OTHER_CONFIG_IMAGE: image}
        try:
            session.call("VDI.set_name_label", vdi, f"{constants.rescue_name_label(uuid)} root")
            devices.create_vbd(session, rescue, vdi, 0, bootable=True, other_config=other)
        except BaseException:
            blockdev.destroy_quietly(session, vdi)
            raise

    @staticmethod
    def _mark(session: PoolSession, vm: str, *, rescued: bool) -> None:
        """Mark the instance's VM rescued (and block its start), or take both off."""
        other = dict(session.call("VM.get_other_config", vm))
        blocked = dict(session.call("VM.get_blocked_operations", vm))
        if rescued:
            other[constants.OTHER_CONFIG_RESCUE] = "true"
            blocked.update(dict.fromkeys(constants.RESCUE_BLOCKED, _BLOCK_REASON))
        else:
            other.pop(constants.OTHER_CONFIG_RESCUE, None)
            for operation in constants.RESCUE_BLOCKED:
                if blocked.get(operation) == _BLOCK_REASON:
                    del blocked[operation]
        session.call("VM.set_blocked_operations", vm, blocked)
        session.call("VM.set_other_config", vm, other)

    def _undo(
        self, session: PoolSession, target: Target, uuid: str, vm: str, running: bool
    ) -> None:
        """Back to the state before a failed rescue, as far as xapi lets us."""
        try:
            self._mark(session, vm, rescued=False)
            if running:
                session.run_task("VM.start_on", vm, resolve_host(session, target), False, False)
        except (XenAPI.Failure, errors.PoolUnavailable) as exc:
            LOG.warning(
                "Host %s: could not undo the failed rescue of %s: %s", target.host, uuid, exc
            )


def _rescue_image(
    uuid: str, root: tuple[str, dict[str, Any]] | None, rescue_image: str | None, template: str
) -> str | None:
    """The image the rescue VM boots: ``rescue_image``, else the one the instance
    was built from; None for the template's own disk.

    :raises computed.exception.InvalidRequest: if the instance boots from a
        volume and no rescue image is given.
    """
    if rescue_image is not None:
        return rescue_image
    other = root[1]["other_config"] if root is not None else {}
    kind = other.get(constants.OTHER_CONFIG_KIND, DeviceKind.IMAGE)
    if root is None or kind == DeviceKind.VOLUME:
        raise exception.InvalidRequest(
            operation="rescue",
            reason=f"instance {uuid} boots from a volume and has no image: give a rescue image",
        )
    image = other.get(constants.OTHER_CONFIG_IMAGE)
    return None if image is None or image == template else str(image)
