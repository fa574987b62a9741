"""VM lifecycle: the contract's instance operations as Hyper-V cmdlets.

Hyper-V makes up its own VM Id, so each VM this driver creates carries the
instance UUID (with the instance's name and disk size, which Hyper-V has no
field for, and a record of each disk, see :mod:`~drivers.hyperv.devices`) in its Notes; :meth:`VMOps._find` maps a UUID back to the VM Id,
remembering the mapping and checking it on every use. VMs the driver did
not create are listed under their Hyper-V Id. The notes of a rescued VM say
so (:mod:`~drivers.hyperv.rescueops`): it reads ``rescued`` and reports its
own disks, not the rescue disk it boots from.

Every transition reads the VM's state, asks :func:`drivers.base.plan_transition`
whether to act (so a refusal is worded exactly as every other driver words
it), then runs, addressing the VM by Id:

============  =====================================================
operation     PowerShell
============  =====================================================
spawn         ``New-VM -NoVHD | Set-VM -Notes | Set-VM -ProcessorCount``,
              then in one script: New-VM's default adapter removed,
              each local disk made (``New-VHD``, ``Resize-VHD``) and
              every disk and adapter added (``Add-VMHardDiskDrive``,
              ``Add-VMNetworkAdapter``), COM 1 connected to the pipe of
              the serial console (``Set-VMComPort``), ``Start-VM`` (an existing UUID
              is returned as is; what a failed spawn left is removed)
destroy       ``Stop-VM -TurnOff -Force`` unless off or saved, then
              ``Remove-VM -Force`` and ``Remove-Item`` of the VM's own
              disks and its rescue disk (volumes and images stay)
power_on      ``Start-VM``
power_off     ``Stop-VM -TurnOff -Force`` (from running, paused or saved)
pause         ``Suspend-VM``
unpause       ``Resume-VM``
suspend       ``Save-VM``
resume        ``Start-VM``, which restores the saved state
reboot soft   ``Restart-VM -Force -Type Reboot`` (a guest shutdown and
              start through the integration services; hosts whose
              Restart-VM has no -Type report UnsupportedOperation)
reboot hard   ``Restart-VM -Force`` (a reset); from paused
              ``Stop-VM -TurnOff -Force`` then ``Start-VM``
============  =====================================================

PowerShell errors other than those handled here propagate as
PowerShellError; the driver maps them at its boundary.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from computed import exception
from computed.objects import InstanceInfo, InstanceSpec, NetworkInterface, PowerState
from drivers import base
from drivers.hyperv import constants, errors
from drivers.hyperv import devices as dev
from drivers.hyperv import powershell as ps
from drivers.hyperv.constants import VMState
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.winrmclient import HostClient

__all__ = ["VM", "VMOps", "decode_notes", "encode_notes", "serial_pipe"]

#: Hyper-V's Notes reach the host through one quoted PowerShell literal.
_MAX_NOTES = 8000

LOG = logging.getLogger(__name__)

_STOPPED = frozenset({VMState.Off, VMState.Saved, VMState.FastSaved})


@dataclass(frozen=True)
class VM:
    """A VM as Get-VM reports it, with what the driver stored in its notes."""

    vm_id: str
    uuid: str
    name: str
    state: VMState
    vcpus: int
    memory_mb: int
    disk_gb: int
    notes: str
    generation: int
    drives: list[dev.Drive]
    interfaces: list[NetworkInterface]
    #: What the driver stored in the notes, None for a VM it did not create.
    stored: dict[str, Any] | None

    @property
    def rescue_path(self) -> str | None:
        """The rescue disk the VM boots from while rescued (see :mod:`~drivers.hyperv.rescueops`)."""
        return self._rescue("disk")

    @property
    def rescued_root(self) -> str | None:
        """The path of the boot disk a rescue moved aside, as the rescue recorded it."""
        return self._rescue("root")

    def _rescue(self, key: str) -> str | None:
        found = (self.stored or {}).get("rescue")
        value = found.get(key) if isinstance(found, dict) else None
        return str(value) if value else None

    @property
    def power_state(self) -> str:
        if self.rescue_path is not None:
            return PowerState.RESCUED
        return constants.power_state(self.state)

    @property
    def root(self) -> dev.Drive | None:
        """The instance's own boot disk (boot index 0), wherever it is attached now."""
        records = self.records
        return next(
            (d for d in self.drives if records.get(dev.record_key(d.path), {}).get("b") == 0), None
        )

    @property
    def boot_drive(self) -> dev.Drive | None:
        """The disk the instance boots from: the one in the boot slot or, while it is
        rescued, the one the rescue moved aside."""
        if self.rescue_path is None:
            boot = dev.boot_slot(self.generation)
            return next((d for d in self.drives if d.slot == boot), None)
        moved = (self.rescued_root or "").lower()
        return next((d for d in self.drives if moved and d.path.lower() == moved), None)

    @property
    def own_drives(self) -> list[dev.Drive]:
        """The instance's disks as it has them when not rescued: no rescue disk, its
        boot disk in the boot slot."""
        if self.rescue_path is None:
            return self.drives
        rescue, moved = self.rescue_path.lower(), self.boot_drive
        boot = dev.boot_slot(self.generation)
        own = [
            dev.Drive(boot, d.path) if d == moved else d
            for d in self.drives
            if d.path.lower() != rescue
        ]
        return sorted(own, key=lambda d: (d.slot.bus != "IDE", d.slot.number, d.slot.location))

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """The disk records of the notes, by lower-case path."""
        found = (self.stored or {}).get("dev")
        return dict(found) if isinstance(found, dict) else {}

    def notes_with(self, records: dict[str, dict[str, Any]], operation: str) -> str:
        """The notes with ``records`` as the disk records.

        :raises computed.exception.InvalidRequest: for a VM the driver did not create.
        """
        if self.stored is None:
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"Hyper-V VM {self.vm_id} was not created by the hyperv driver; "
                "it does not change its devices",
            )
        return _encode({**self.stored, "dev": records}, operation)

    def notes_rescued(self, disk: str | None, root: str | None, operation: str) -> str:
        """The notes marking the VM as booting from the rescue disk ``disk`` with its
        root disk ``root`` moved aside, or as not rescued (``disk`` None)."""
        stored = {k: v for k, v in (self.stored or {}).items() if k != "rescue"}
        if disk is not None:
            stored["rescue"] = {"disk": disk, "root": root}
        return _encode(stored, operation)


def encode_notes(spec: InstanceSpec, records: dict[str, dict[str, Any]] | None = None) -> str:
    """The Notes of the VM for ``spec``: ASCII only, as WinRM's console code page mangles the rest."""
    data: dict[str, Any] = {"uuid": spec.uuid, "name": spec.name, "disk_gb": spec.disk_gb}
    if records:
        data["dev"] = records
    return _encode(data, "spawn")


def _encode(data: dict[str, Any], operation: str) -> str:
    if not data.get("dev"):
        data = {k: v for k, v in data.items() if k != "dev"}
    notes = constants.NOTES_PREFIX + json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    if len(notes) > _MAX_NOTES:
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"the VM's notes would exceed {_MAX_NOTES} characters: too many devices to record",
        )
    return notes


def decode_notes(notes: object) -> dict[str, Any] | None:
    """What :func:`encode_notes` stored, or None for notes the driver did not write."""
    if not isinstance(notes, str) or not notes.startswith(constants.NOTES_PREFIX):
        return None
    try:
        data = json.loads(notes[len(constants.NOTES_PREFIX) :])
        uuidlib.UUID(str(data["uuid"]))
    except (ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _canonical(uuid: str) -> str | None:
    try:
        return str(uuidlib.UUID(str(uuid)))
    except ValueError:
        return None


def _parse_vm(obj: dict[str, Any]) -> VM:
    stored = decode_notes(obj.get("Notes"))
    vm_id = str(obj.get("Id", ""))
    name = str(obj.get("Name") or "")
    return VM(
        vm_id=vm_id,
        uuid=str(stored["uuid"]) if stored else vm_id,
        name=str(stored.get("name", name)) if stored else name,
        state=VMState.of(obj.get("State")),
        vcpus=int(obj.get("ProcessorCount") or 0),
        memory_mb=int(obj.get("MemoryStartup") or 0) // constants.MIB,
        disk_gb=int(stored.get("disk_gb", 0)) if stored else 0,
        notes=str(obj.get("Notes") or ""),
        generation=int(obj.get("Generation") or 2),
        drives=dev.drives_of(obj),
        interfaces=dev.interfaces_of(obj),
        stored=stored,
    )


class VMOps:
    """The instance operations, given the served host's :class:`HostClient`."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf
        # (host, canonical instance UUID) -> Hyper-V VM Id, checked on every use.
        self._ids: dict[tuple[str, str], str] = {}
        # host -> its VirtualHardDiskPath, read once.
        self._vhd_dirs: dict[str, str] = {}
        self._lock = threading.Lock()

    # Instances ------------------------------------------------------------

    def spawn(
        self, client: HostClient, host: str, spec: InstanceSpec, volume_path: dev.VolumePath
    ) -> InstanceInfo:
        existing = self._find(client, host, spec.uuid)
        if existing is not None:
            return self.info(existing, host)
        _check_memory(spec.memory_mb)
        generation = self._conf.hyperv.generation
        disks = dev.plan_disks(spec, generation, self.vhd_dir(client, host), volume_path)
        for disk in disks:
            if disk.parent is not None:
                self._check_image(client, disk)
        try:
            vm = self._create(client, host, spec, generation, disks)
        except PowerShellError as exc:
            if "The file exists" not in exc.message:
                raise
            # Disks a spawn interrupted before it could remove them: gone now, try once more.
            vm = self._create(client, host, spec, generation, disks)
        LOG.info("Host %s: spawned %s as Hyper-V VM %s", host, spec.uuid, vm.vm_id)
        return self.info(vm, host)

    def _create(
        self,
        client: HostClient,
        host: str,
        spec: InstanceSpec,
        generation: int,
        disks: list[dev.PlannedDisk],
    ) -> VM:
        """Create, equip and start the VM; on failure remove it and its disks, and re-raise."""
        notes = encode_notes(spec, {d.path.lower(): d.record for d in disks})
        script = ps.new_vm(ps.vm_name(spec.name), spec.memory_mb, generation, spec.vcpus, notes)
        try:
            vm = self._remember(host, _single(client.run(script), host, "spawn"))
            statements = [ps.remove_all_adapters(vm.vm_id)]
            for disk in disks:
                if disk.size_bytes is not None or disk.parent is not None:
                    statements.append(ps.new_vhd(disk.path, disk.size_bytes, disk.parent))
                slot = disk.slot
                statements.append(
                    ps.add_drive(vm.vm_id, slot.bus, slot.number, slot.location, disk.path)
                )
            for vif in spec.network_interfaces:
                mac = dev.to_hyperv_mac(vif.mac_address)
                statements.append(ps.add_adapter(vm.vm_id, vif.network, vif.port_id, mac))
            statements.append(
                ps.set_com_port(vm.vm_id, constants.SERIAL_PORT, serial_pipe(spec.uuid))
            )
            built = client.run(ps.vm_devices("spawn_devices", vm.vm_id, statements, start=True))
        except PowerShellError:
            self._remove_leftover(
                client, host, spec.uuid, [d.path for d in disks if d.record["k"] != "volume"]
            )
            raise
        return self._remember(host, _single(built, host, "spawn"))

    def _check_image(self, client: HostClient, disk: dev.PlannedDisk) -> None:
        """:raises computed.exception.InvalidRequest: if the image is missing or larger than the disk."""
        assert disk.parent is not None
        size = self.image_size(client, disk.parent, disk.record["i"], "spawn")
        if disk.size_bytes is not None and size > disk.size_bytes:
            raise exception.InvalidRequest(
                operation="spawn",
                reason=f"image {disk.record['i']!r} is {size} bytes, larger than the root disk "
                f"of {disk.record['s']} GiB",
            )

    def vhd_dir(self, client: HostClient, host: str) -> str:
        """The host's VirtualHardDiskPath, where the driver makes disks and finds images."""
        with self._lock:
            known = self._vhd_dirs.get(host)
        if known is None:
            found = client.run(ps.get_host())
            known = str(found[0].get("VirtualHardDiskPath") or "") if found else ""
            if not known:
                raise exception.DriverError(
                    driver=constants.DRIVER,
                    host=host,
                    reason="Get-VMHost gave no VirtualHardDiskPath",
                )
            with self._lock:
                self._vhd_dirs[host] = known
        return known

    def destroy(self, client: HostClient, host: str, uuid: str) -> None:
        vm = self._find(client, host, uuid)
        if vm is None:
            return
        records = vm.records
        own = [
            d.path
            for d in vm.drives
            if records.get(dev.record_key(d.path), {}).get("k") in ("image", "blank")
        ]
        # Disks behind a checkpoint an interrupted snapshot left go too.
        own += [dev.record_key(p) for p in own if dev.record_key(p) != p.lower()]
        if vm.rescue_path is not None:
            own.append(vm.rescue_path)
        try:
            client.run(ps.destroy_vm(vm.vm_id, turn_off=vm.state not in _STOPPED, disks=own))
        except PowerShellError:
            if self._find(client, host, uuid) is not None:
                raise  # else it went away meanwhile: gone either way
        self._forget(host, uuid)
        LOG.info("Host %s: destroyed %s (Hyper-V VM %s)", host, uuid, vm.vm_id)

    def get_info(self, client: HostClient, host: str, uuid: str) -> InstanceInfo:
        return self.info(self._lookup(client, host, uuid), host)

    def list_instances(self, client: HostClient, host: str) -> list[InstanceInfo]:
        return [self.info(vm, host) for vm in self._scan(client, host)]

    def power_states(self, client: HostClient, host: str) -> dict[str, str]:
        """Each instance of the host with its power state, from one cheap Get-VM."""
        vms = [self._remember(host, obj) for obj in client.run(ps.list_vm_states())]
        return {vm.uuid: vm.power_state for vm in vms}

    def transition(self, client: HostClient, host: str, uuid: str, operation: str) -> InstanceInfo:
        """Apply the lifecycle ``operation`` (a key of :data:`drivers.base.TRANSITIONS`)."""
        vm = self.settled(client, host, uuid, operation)
        if not base.plan_transition(operation, uuid, vm.power_state):
            return self.info(vm, host)
        try:
            result = client.run(ps.vm_actions(vm.vm_id, _actions(operation, vm)))
        except PowerShellError as exc:
            if exc.short_id != "InvalidState":
                raise
            return self._recheck(client, host, uuid, operation, exc)
        return self.info(_parse_vm(_single(result, host, operation)), host)

    def info(self, vm: VM, host: str) -> InstanceInfo:
        """The contract's view of ``vm``."""
        return InstanceInfo(
            uuid=vm.uuid,
            name=vm.name,
            host=host,
            power_state=vm.power_state,
            vcpus=vm.vcpus,
            memory_mb=vm.memory_mb,
            disk_gb=vm.disk_gb,
            block_devices=dev.report_disks(vm.own_drives, vm.records),
            network_interfaces=list(vm.interfaces),
        )

    def lookup(self, client: HostClient, host: str, uuid: str) -> VM:
        """The VM of instance ``uuid``.

        :raises computed.exception.InstanceNotFound: if there is none.
        """
        return self._lookup(client, host, uuid)

    def find(self, client: HostClient, host: str, uuid: str) -> VM | None:
        """The VM of instance ``uuid``, or None if the host has none."""
        return self._find(client, host, uuid)

    def settled(self, client: HostClient, host: str, uuid: str, operation: str) -> VM:
        """The VM of instance ``uuid``, if it is not between two states.

        :raises computed.exception.InstanceNotFound: if there is none.
        :raises computed.exception.DriverError: while Hyper-V refuses every
            operation on it (starting, stopping, saving...).
        """
        vm = self._lookup(client, host, uuid)
        if constants.is_transitional(vm.state):
            raise exception.DriverError(
                driver=constants.DRIVER,
                host=host,
                reason=f"{operation}: instance {uuid} is {vm.state.name} in Hyper-V; "
                "try again once it settles",
            )
        return vm

    def image_size(self, client: HostClient, path: str, image: str, operation: str) -> int:
        """The size in bytes of image ``image``, the VHDX at ``path``.

        :raises computed.exception.InvalidRequest: if the host has no such image.
        """
        try:
            found = client.run(ps.get_vhd(path))
        except PowerShellError as exc:
            if exc.category.startswith("ObjectNotFound"):
                raise exception.InvalidRequest(
                    operation=operation, reason=f"image {image!r} not found: {exc.message}"
                ) from exc
            raise
        return int(found[0].get("Size") or 0) if found else 0

    def remember(self, host: str, objects: list[dict[str, Any]], operation: str) -> VM:
        """The one VM a device script reported."""
        return self._remember(host, _single(objects, host, operation))

    # ----------------------------------------------------------------------

    def _recheck(
        self, client: HostClient, host: str, uuid: str, operation: str, exc: PowerShellError
    ) -> InstanceInfo:
        """Hyper-V refused ``operation`` for the VM's state: did the state just change?"""
        now = self._lookup(client, host, uuid)
        try:
            must_act = base.plan_transition(operation, uuid, now.power_state)
        except exception.InvalidPowerState as refused:
            raise refused from exc
        if must_act:
            raise errors.translate(
                exc, host=host, operation=operation, uuid=uuid, state=now.power_state
            ) from exc
        return self.info(now, host)  # it reached the target on its own meanwhile

    def _lookup(self, client: HostClient, host: str, uuid: str) -> VM:
        vm = self._find(client, host, uuid)
        if vm is None:
            raise exception.InstanceNotFound(uuid=uuid, host=host)
        return vm

    def _find(self, client: HostClient, host: str, uuid: str) -> VM | None:
        """The VM of instance ``uuid``: by the remembered VM Id, else by scanning the host."""
        key = _canonical(uuid)
        if key is None:
            return None
        with self._lock:
            vm_id = self._ids.get((host, key))
        if vm_id is not None:
            for obj in client.run(ps.get_vm(vm_id)):
                vm = _parse_vm(obj)
                if _canonical(vm.uuid) == key:
                    return vm
            self._forget(host, uuid)  # removed, or its notes changed: look again
        return next((vm for vm in self._scan(client, host) if _canonical(vm.uuid) == key), None)

    def _scan(self, client: HostClient, host: str) -> list[VM]:
        vms = [self._remember(host, obj) for obj in client.run(ps.list_vms())]
        return vms

    def _remember(self, host: str, obj: dict[str, Any]) -> VM:
        vm = _parse_vm(obj)
        key = _canonical(vm.uuid)
        if key is not None and vm.uuid != vm.vm_id:
            with self._lock:
                self._ids[(host, key)] = vm.vm_id
        return vm

    def _forget(self, host: str, uuid: str) -> None:
        key = _canonical(uuid)
        with self._lock:
            self._ids.pop((host, key or uuid), None)

    def _remove_leftover(self, client: HostClient, host: str, uuid: str, disks: list[str]) -> None:
        """Remove what a failed spawn left, so that spawning again starts afresh."""
        try:
            self.destroy(client, host, uuid)
        except (PowerShellError, exception.ComputedError) as exc:
            LOG.warning("Host %s: could not remove %s after a failed spawn: %s", host, uuid, exc)
        for path in disks:  # made but not attached when the spawn failed
            try:
                client.run(ps.remove_files([path]))
            except PowerShellError as exc:
                if exc.short_id != "PathNotFound":
                    LOG.warning("Host %s: could not remove %s: %s", host, path, exc)


def serial_pipe(uuid: str) -> str:
    """The named pipe on the host that the instance's serial port (COM 1) is connected to."""
    return f"\\\\.\\pipe\\{constants.SERIAL_PIPE_PREFIX}{uuid}"


def _actions(operation: str, vm: VM) -> list[str]:
    """The :data:`~drivers.hyperv.powershell.ACTIONS` that carry out ``operation`` on ``vm``."""
    if operation == "reboot.hard" and vm.power_state == PowerState.PAUSED:
        return ["turn_off", "start"]  # Restart-VM only restarts a running VM
    return [_ACTION[operation]]


_ACTION = {
    "power_on": "start",
    "power_off": "turn_off",
    "pause": "pause",
    "unpause": "unpause",
    "suspend": "save",
    "resume": "start",
    "reboot.soft": "reboot",
    "reboot.hard": "reset",
}


def _check_memory(memory_mb: int) -> None:
    if memory_mb < constants.MIN_MEMORY_MB or memory_mb % constants.MEMORY_STEP_MB:
        raise exception.InvalidRequest(
            operation="spawn",
            reason=f"Hyper-V needs startup memory of at least {constants.MIN_MEMORY_MB} MiB "
            f"in steps of {constants.MEMORY_STEP_MB} MiB, got {memory_mb} MiB",
        )


def _single(objects: list[dict[str, Any]], host: str, operation: str) -> dict[str, Any]:
    if len(objects) != 1:
        raise exception.DriverError(
            driver=constants.DRIVER,
            host=host,
            reason=f"{operation}: expected one VM from PowerShell, got {len(objects)}",
        )
    return objects[0]
