"""VM lifecycle: the contract's instance operations on xapi VMs.

Every transition reads the VM's ``power_state``, asks
:func:`drivers.base.plan_transition` whether to act (so a refusal is worded
exactly as every other driver words it), then runs the xapi message below as
a task:

============  =========================================================
operation     xapi
============  =========================================================
spawn         ``VM.clone`` of ``[xenapi] template``, then ``set_memory_limits``,
              ``set_VCPUs_max`` / ``_at_startup``, ``set_affinity``,
              ``set_other_config``, ``VM.provision`` (the template's disks,
              the bootable one resized to ``disk_gb``, unless the spec has an
              image or a boot volume), ``set_is_a_template false``, the
              spec's disks and interfaces (:mod:`~drivers.xenapi.blockdev`),
              and ``VM.start_on`` the compute host's xapi host
destroy       the rescue VM first, if rescued (:mod:`~drivers.xenapi.rescueops`);
              ``VM.hard_shutdown`` unless Halted, ``VDI.destroy`` of each disk
              (found through the VM's VBDs) no other VM uses, volumes
              excepted, ``VM.destroy``, then the volumes' SRs are forgotten
power_on      ``VM.start_on`` the compute host's xapi host
power_off     ``VM.hard_shutdown``: pulling the plug, as the contract's
              power_off does everywhere; a suspended VM loses its image
pause         ``VM.pause``
unpause       ``VM.unpause``
suspend       ``VM.suspend``
resume        ``VM.resume_on`` the compute host's xapi host
reboot soft   ``VM.clean_reboot`` (needs PV drivers in the guest; without
              them xapi answers ``VM_LACKS_FEATURE``, a DriverError)
reboot hard   ``VM.hard_reboot``
============  =========================================================

Every operation reads the instance's state with
:func:`~drivers.xenapi.constants.instance_state`, so a rescued instance
refuses them all but destroy and the queries.

A VM is this driver's if its ``other_config`` has ``computed_uuid``, which
is how it is found (its name, ``computed-<uuid>``, is only a label that an
administrator may change; see :mod:`~drivers.xenapi.constants`); it belongs
to the compute host named by ``other_config:computed_host``. xapi failures
other than those handled here propagate as ``XenAPI.Failure``; the driver
maps them at its boundary.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import XenAPI

from computed import exception
from computed.objects import InstanceInfo, InstanceSpec
from drivers import base
from drivers.xenapi import constants, devices, errors
from drivers.xenapi.blockdev import DiskBuilder, uses_template_disks
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.volumeops import VolumeOps

__all__ = ["VMOps", "resolve_host", "vm_records"]

LOG = logging.getLogger(__name__)

_MiB = 1024**2
_GiB = 1024**3

#: The xapi message each transition runs, and whether it names the host.
_ACTIONS: dict[str, tuple[str, bool]] = {
    "power_on": ("VM.start_on", True),
    "power_off": ("VM.hard_shutdown", False),
    "pause": ("VM.pause", False),
    "unpause": ("VM.unpause", False),
    "suspend": ("VM.suspend", False),
    "resume": ("VM.resume_on", True),
    "reboot.soft": ("VM.clean_reboot", False),
    "reboot.hard": ("VM.hard_reboot", False),
}


def resolve_host(session: PoolSession, target: Target) -> str:
    """The ref of the xapi host serving ``target`` (its pool's master if none is named).

    Looked up on every use rather than cached: a restarted test pool, or a
    renamed host, must not leave a stale ref behind.

    :raises computed.exception.DriverError: if the pool has no such host.
    """
    if target.xapi_host is None:
        pool_ref = session.call("pool.get_all")[0]
        return str(session.call("pool.get_master", pool_ref))
    refs = session.call("host.get_by_name_label", target.xapi_host)
    if not refs:
        raise exception.DriverError(
            driver=constants.DRIVER,
            host=target.host,
            reason=f"pool {target.pool} has no host named {target.xapi_host!r}",
        )
    return str(refs[0])


class VMOps:
    """The instance operations, given the pool's session and the host's target."""

    def __init__(self, template: str, builder: DiskBuilder, volumeops: VolumeOps) -> None:
        self._template = template
        self._builder = builder
        self._volumeops = volumeops

    # Instances ------------------------------------------------------------

    def spawn(self, session: PoolSession, target: Target, spec: InstanceSpec) -> InstanceInfo:
        found = self._find(session, target, spec.uuid)
        if found is not None:
            return self.info(session, target, found[1])
        host_ref = resolve_host(session, target)
        template = self.find_template(session, target)
        vm = session.run_task("VM.clone", template, constants.name_label(spec.uuid))
        try:
            self._configure(session, vm, spec, target, host_ref)
            session.run_task("VM.provision", vm)
            session.call("VM.set_is_a_template", vm, False)
            if uses_template_disks(spec):
                self._label_template_disks(session, vm)
            self._builder.build(session, target, host_ref, vm, spec)
            session.run_task("VM.start_on", vm, host_ref, False, False)
        except BaseException:
            # Leave nothing behind, so that spawning again starts afresh.
            self.remove_quietly(session, vm, spec.uuid)
            raise
        LOG.info("Host %s: spawned %s as VM %s in pool %s", target.host, spec.uuid, vm, target.pool)
        return self.info(session, target, session.call("VM.get_record", vm))

    def destroy(self, session: PoolSession, target: Target, uuid: str) -> None:
        found = self._find(session, target, uuid)
        if found is None:
            return
        vm, record = found
        try:
            rescue = self.find_rescue(session, target, uuid)
            if rescue is not None:
                self.remove(session, *rescue)
            self.remove(session, vm, record)
        except XenAPI.Failure as exc:
            if errors.code_of(exc) != errors.HANDLE_INVALID:
                raise  # else it went away meanwhile: gone either way
        LOG.info("Host %s: destroyed %s (VM %s)", target.host, uuid, vm)

    def get_info(self, session: PoolSession, target: Target, uuid: str) -> InstanceInfo:
        return self.info(session, target, self.get(session, target, uuid)[1])

    def list_instances(self, session: PoolSession, target: Target) -> list[InstanceInfo]:
        records = session.call("VM.get_all_records")
        return [
            self.info(session, target, record)
            for record in records.values()
            if _ours(record)
            and record["other_config"].get(constants.OTHER_CONFIG_HOST) == target.host
        ]

    def transition(
        self, session: PoolSession, target: Target, uuid: str, operation: str
    ) -> InstanceInfo:
        """Apply the lifecycle ``operation`` (a key of :data:`drivers.base.TRANSITIONS`)."""
        vm, record = self.get(session, target, uuid)
        state = constants.instance_state(record)
        if base.plan_transition(operation, uuid, state):
            message, on_host = _ACTIONS[operation]
            args = (resolve_host(session, target), False, False) if on_host else ()
            try:
                session.run_task(message, vm, *args)
            except XenAPI.Failure as exc:
                if errors.code_of(exc) != errors.VM_BAD_POWER_STATE:
                    raise
                self._recheck(session, vm, uuid, operation, exc)
        return self.info(session, target, session.call("VM.get_record", vm))

    # ----------------------------------------------------------------------

    def _find(
        self, session: PoolSession, target: Target, uuid: str
    ) -> tuple[str, dict[str, Any]] | None:
        """The VM of instance ``uuid`` on ``target`` and its record, or None.

        A template left by a spawn that died half-way is removed, not returned.
        """
        for vm, record in _tagged(session, constants.OTHER_CONFIG_UUID, uuid):
            if record["other_config"].get(constants.OTHER_CONFIG_HOST) != target.host:
                continue  # another compute host's instance
            if record["is_a_template"]:
                LOG.warning(
                    "Host %s: removing %s, left half-built by a failed spawn", target.host, uuid
                )
                self.remove_quietly(session, vm, uuid)
                continue
            return vm, record
        return None

    def get(self, session: PoolSession, target: Target, uuid: str) -> tuple[str, dict[str, Any]]:
        """The VM of instance ``uuid`` and its record.

        :raises computed.exception.InstanceNotFound: if there is none.
        """
        found = self._find(session, target, uuid)
        if found is None:
            raise exception.InstanceNotFound(uuid=uuid, host=target.host)
        return found

    @property
    def template(self) -> str:
        """The ``name_label`` of the template instances are cloned from."""
        return self._template

    def find_template(self, session: PoolSession, target: Target) -> str:
        for ref in session.call("VM.get_by_name_label", self._template):
            if session.call("VM.get_is_a_template", ref):
                return str(ref)
        raise exception.DriverError(
            driver=constants.DRIVER,
            host=target.host,
            reason=f"pool {target.pool} has no template named {self._template!r} "
            "([xenapi] template)",
        )

    def _configure(
        self, session: PoolSession, vm: str, spec: InstanceSpec, target: Target, host_ref: str
    ) -> None:
        memory = str(spec.memory_mb * _MiB)  # int64 travels as a string
        session.call("VM.set_memory_limits", vm, memory, memory, memory, memory)
        self.set_vcpus(session, vm, spec.vcpus)
        session.call("VM.set_name_description", vm, spec.name)
        session.call("VM.set_affinity", vm, host_ref)
        other = dict(session.call("VM.get_other_config", vm))
        other.update(
            {
                constants.OTHER_CONFIG_UUID: spec.uuid,
                constants.OTHER_CONFIG_HOST: target.host,
                constants.OTHER_CONFIG_NAME: spec.name,
                constants.OTHER_CONFIG_DISK_GB: str(spec.disk_gb),
            }
        )
        if not uses_template_disks(spec):
            other.pop("disks", None)  # the spec's own disks replace the template's
        elif spec.disk_gb:
            other["disks"] = _sized_disks(other.get("disks", ""), spec.disk_gb * _GiB)
        session.call("VM.set_other_config", vm, other)

    def find_rescue(
        self, session: PoolSession, target: Target, uuid: str
    ) -> tuple[str, dict[str, Any]] | None:
        """The VM booting instance ``uuid``'s rescue image, and its record, or None."""
        for vm, record in _tagged(session, constants.OTHER_CONFIG_RESCUE_OF, uuid):
            if record["other_config"].get(constants.OTHER_CONFIG_HOST) == target.host:
                return vm, record
        return None

    def remove(self, session: PoolSession, vm: str, record: dict[str, Any]) -> None:
        """Halt the VM, destroy the disks no other VM uses (volumes excepted), then the VM."""
        if record["power_state"] != constants.XAPI_HALTED:
            try:
                session.run_task("VM.hard_shutdown", vm)
            except XenAPI.Failure as exc:
                if errors.code_of(exc) != errors.VM_BAD_POWER_STATE:
                    raise  # else it halted by itself meanwhile
        volume_srs: set[str] = set()
        for vdi in self._own_disks(session, record["VBDs"], volume_srs):
            try:
                session.run_task("VDI.destroy", vdi)
            except XenAPI.Failure as exc:
                if errors.code_of(exc) != errors.HANDLE_INVALID:
                    raise
        session.run_task("VM.destroy", vm)
        for sr in volume_srs:  # the volumes stay; their SRs go once unused
            self._volumeops.purge(session, sr)

    def _own_disks(self, session: PoolSession, vbds: list[str], volume_srs: set[str]) -> list[str]:
        """The VDIs behind the VM's disk VBDs that no other VM's VBD uses, volumes
        excepted (their SRs are added to ``volume_srs``)."""
        disks = []
        for vbd in vbds:
            record = session.call("VBD.get_record", vbd)
            vdi = record["VDI"]
            if record["type"] != "Disk" or vdi == constants.NULL_REF:
                continue  # a CD drive, or an empty one
            if constants.OSVOL in record["other_config"]:
                volume_srs.add(str(session.call("VDI.get_SR", vdi)))
                continue
            if len(session.call("VDI.get_VBDs", vdi)) == 1:
                disks.append(vdi)
            else:
                LOG.info("Keeping VDI %s: another VM uses it", vdi)
        return disks

    @staticmethod
    def set_vcpus(session: PoolSession, vm: str, count: int) -> None:
        """Give the halted VM ``count`` VCPUs at startup and at most."""
        current = int(session.call("VM.get_VCPUs_at_startup", vm))
        vcpus = str(count)
        # VCPUs_at_startup may never exceed VCPUs_max: order the two setters.
        if count >= current:
            session.call("VM.set_VCPUs_max", vm, vcpus)
            session.call("VM.set_VCPUs_at_startup", vm, vcpus)
        else:
            session.call("VM.set_VCPUs_at_startup", vm, vcpus)
            session.call("VM.set_VCPUs_max", vm, vcpus)

    def remove_quietly(self, session: PoolSession, vm: str, uuid: str) -> None:
        """:meth:`remove`, logging a failure instead of raising it (cleaning up after one)."""
        try:
            self.remove(session, vm, session.call("VM.get_record", vm))
        except (XenAPI.Failure, errors.PoolUnavailable) as exc:
            LOG.warning("Could not remove VM %s of instance %s: %s", vm, uuid, exc)

    def _recheck(
        self, session: PoolSession, vm: str, uuid: str, operation: str, exc: Exception
    ) -> None:
        """xapi refused ``operation`` for the VM's state: did the state just change?"""
        now = constants.power_state(session.call("VM.get_power_state", vm))
        try:
            must_act = base.plan_transition(operation, uuid, now)
        except exception.InvalidPowerState as refused:
            raise refused from exc
        if must_act:
            raise exc
        # Otherwise the VM reached the target on its own meanwhile.

    def _label_template_disks(self, session: PoolSession, vm: str) -> None:
        """Record what the template's disks are: the bootable one the image."""
        for vbd in session.call("VM.get_VBDs", vm):
            record = session.call("VBD.get_record", vbd)
            other = dict(record["other_config"])
            if record["bootable"]:
                other.update({constants.OTHER_CONFIG_KIND: "image"})
                other[constants.OTHER_CONFIG_IMAGE] = self._template
            else:
                other[constants.OTHER_CONFIG_KIND] = "blank"
            session.call("VBD.set_other_config", vbd, other)

    @staticmethod
    def info(session: PoolSession, target: Target, record: dict[str, Any]) -> InstanceInfo:
        """The contract's view of a VM record, with its disks and interfaces."""
        other = record["other_config"]
        return InstanceInfo(
            uuid=other[constants.OTHER_CONFIG_UUID],
            name=other.get(constants.OTHER_CONFIG_NAME) or record["name_label"],
            host=target.host,
            power_state=constants.instance_state(record),
            vcpus=int(record["VCPUs_at_startup"]),
            memory_mb=int(record["memory_static_max"]) // _MiB,
            disk_gb=_int(other.get(constants.OTHER_CONFIG_DISK_GB)),
            block_devices=devices.block_devices(session, record),
            network_interfaces=devices.interfaces(session, record),
        )


def vm_records(session: PoolSession, refs: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of the VMs ``refs``, those destroyed meanwhile left out."""
    for vm in refs:
        try:
            record = session.call("VM.get_record", vm)
        except XenAPI.Failure as exc:
            if errors.code_of(exc) == errors.HANDLE_INVALID:
                continue
            raise
        yield str(vm), record


def _tagged(session: PoolSession, key: str, value: str) -> list[tuple[str, dict[str, Any]]]:
    """Every VM whose ``other_config`` maps ``key`` to ``value``, with its record.

    Instances are found by what the driver wrote in ``other_config``, as
    :meth:`VMOps.list_instances` lists them, never by ``name_label``: an
    administrator may rename a VM in XenCenter, and a renamed instance is
    still that instance.
    """
    records = session.call("VM.get_all_records")
    return [
        (str(vm), record)
        for vm, record in records.items()
        if record["other_config"].get(key) == value
    ]


def _ours(record: dict[str, Any]) -> bool:
    return (
        constants.OTHER_CONFIG_UUID in record["other_config"]
        and not record["is_a_template"]
        and not record["is_control_domain"]
        and not record.get("is_a_snapshot", False)
    )


def _sized_disks(disks: str, size: int) -> str:
    """The template's ``other_config:disks`` with its bootable (else first) disk ``size`` bytes.

    Without disks in the template, one bootable system disk on the default SR.
    """
    root = ET.fromstring(disks) if disks.strip() else ET.Element("provision")
    found = root.findall("disk")
    boot = next((d for d in found if d.get("bootable") == "true"), found[0] if found else None)
    if boot is None:
        boot = ET.SubElement(
            root, "disk", {"device": "0", "sr": "", "bootable": "true", "type": "system"}
        )
    boot.set("size", str(size))
    return ET.tostring(root, encoding="unicode")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
