"""VM lifecycle: the contract's instance operations as Hyper-V cmdlets.

Hyper-V makes up its own VM Id, so each VM this driver creates carries the
instance UUID (with the instance's name and disk size, which Hyper-V has no
field for) in its Notes; :meth:`VMOps._find` maps a UUID back to the VM Id,
remembering the mapping and checking it on every use. VMs the driver did
not create are listed under their Hyper-V Id.

Every transition reads the VM's state, asks :func:`drivers.base.plan_transition`
whether to act (so a refusal is worded exactly as every other driver words
it), then runs, addressing the VM by Id:

============  =====================================================
operation     PowerShell
============  =====================================================
spawn         ``New-VM -NoVHD | Set-VM -Notes | Set-VM -ProcessorCount
              | Start-VM`` (an existing UUID is returned as is; a VM
              left by a failed spawn is removed)
destroy       ``Stop-VM -TurnOff -Force`` unless off or saved, then
              ``Remove-VM -Force``
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
from computed.objects import InstanceInfo, InstanceSpec, PowerState
from drivers import base
from drivers.hyperv import constants, errors
from drivers.hyperv import powershell as ps
from drivers.hyperv.constants import VMState
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.winrmclient import HostClient

__all__ = ["VMOps", "decode_notes", "encode_notes"]

LOG = logging.getLogger(__name__)

_STOPPED = frozenset({VMState.Off, VMState.Saved, VMState.FastSaved})


@dataclass(frozen=True)
class _VM:
    """A VM as Get-VM reports it, with what the driver stored in its notes."""

    vm_id: str
    uuid: str
    name: str
    state: VMState
    vcpus: int
    memory_mb: int
    disk_gb: int

    @property
    def power_state(self) -> str:
        return constants.power_state(self.state)


def encode_notes(spec: InstanceSpec) -> str:
    """The Notes of the VM for ``spec``: ASCII only, as WinRM's console code page mangles the rest."""
    data = {"uuid": spec.uuid, "name": spec.name, "disk_gb": spec.disk_gb}
    return constants.NOTES_PREFIX + json.dumps(data, ensure_ascii=True, separators=(",", ":"))


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


def _parse_vm(obj: dict[str, Any]) -> _VM:
    stored = decode_notes(obj.get("Notes"))
    vm_id = str(obj.get("Id", ""))
    name = str(obj.get("Name") or "")
    return _VM(
        vm_id=vm_id,
        uuid=str(stored["uuid"]) if stored else vm_id,
        name=str(stored.get("name", name)) if stored else name,
        state=VMState.of(obj.get("State")),
        vcpus=int(obj.get("ProcessorCount") or 0),
        memory_mb=int(obj.get("MemoryStartup") or 0) // constants.MIB,
        disk_gb=int(stored.get("disk_gb", 0)) if stored else 0,
    )


class VMOps:
    """The instance operations, given the served host's :class:`HostClient`."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf
        # (host, canonical instance UUID) -> Hyper-V VM Id, checked on every use.
        self._ids: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    # Instances ------------------------------------------------------------

    def spawn(self, client: HostClient, host: str, spec: InstanceSpec) -> InstanceInfo:
        existing = self._find(client, host, spec.uuid)
        if existing is not None:
            return self.info(existing, host)
        _check_memory(spec.memory_mb)
        script = ps.new_vm(
            ps.vm_name(spec.name),
            spec.memory_mb,
            self._conf.hyperv.generation,
            spec.vcpus,
            encode_notes(spec),
        )
        try:
            created = client.run(script)
        except PowerShellError:
            self._remove_leftover(client, host, spec.uuid)
            raise
        vm = self._remember(host, _single(created, host, "spawn"))
        LOG.info("Host %s: spawned %s as Hyper-V VM %s", host, spec.uuid, vm.vm_id)
        return self.info(vm, host)

    def destroy(self, client: HostClient, host: str, uuid: str) -> None:
        vm = self._find(client, host, uuid)
        if vm is None:
            return
        try:
            client.run(ps.destroy_vm(vm.vm_id, turn_off=vm.state not in _STOPPED))
        except PowerShellError as exc:
            if not errors.is_not_found(exc):
                raise  # else it went away meanwhile: gone either way
        self._forget(host, uuid)
        LOG.info("Host %s: destroyed %s (Hyper-V VM %s)", host, uuid, vm.vm_id)

    def get_info(self, client: HostClient, host: str, uuid: str) -> InstanceInfo:
        return self.info(self._lookup(client, host, uuid), host)

    def list_instances(self, client: HostClient, host: str) -> list[InstanceInfo]:
        return [self.info(vm, host) for vm in self._scan(client, host)]

    def transition(self, client: HostClient, host: str, uuid: str, operation: str) -> InstanceInfo:
        """Apply the lifecycle ``operation`` (a key of :data:`drivers.base.TRANSITIONS`)."""
        vm = self._lookup(client, host, uuid)
        if constants.is_transitional(vm.state):
            raise exception.DriverError(
                driver=constants.DRIVER,
                host=host,
                reason=f"{operation}: instance {uuid} is {vm.state.name} in Hyper-V; "
                "try again once it settles",
            )
        if not base.plan_transition(operation, uuid, vm.power_state):
            return self.info(vm, host)
        try:
            result = client.run(ps.vm_actions(vm.vm_id, _actions(operation, vm)))
        except PowerShellError as exc:
            if exc.short_id != "InvalidState":
                raise
            return self._recheck(client, host, uuid, operation, exc)
        return self.info(_parse_vm(_single(result, host, operation)), host)

    def info(self, vm: _VM, host: str) -> InstanceInfo:
        """The contract's view of ``vm``."""
        return InstanceInfo(
            uuid=vm.uuid,
            name=vm.name,
            host=host,
            power_state=vm.power_state,
            vcpus=vm.vcpus,
            memory_mb=vm.memory_mb,
            disk_gb=vm.disk_gb,
        )

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

    def _lookup(self, client: HostClient, host: str, uuid: str) -> _VM:
        vm = self._find(client, host, uuid)
        if vm is None:
            raise exception.InstanceNotFound(uuid=uuid, host=host)
        return vm

    def _find(self, client: HostClient, host: str, uuid: str) -> _VM | None:
        """The VM of instance ``uuid``: by the remembered VM Id, else by scanning the host."""
        key = _canonical(uuid)
        if key is None:
            return None
        with self._lock:
            vm_id = self._ids.get((host, key))
        if vm_id is not None:
            try:
                found = client.run(ps.get_vm(vm_id))
            except PowerShellError as exc:
                if not errors.is_not_found(exc):
                    raise
                found = []
            for obj in found:
                vm = _parse_vm(obj)
                if _canonical(vm.uuid) == key:
                    return vm
            self._forget(host, uuid)  # removed, or its notes changed: look again
        return next((vm for vm in self._scan(client, host) if _canonical(vm.uuid) == key), None)

    def _scan(self, client: HostClient, host: str) -> list[_VM]:
        vms = [self._remember(host, obj) for obj in client.run(ps.list_vms())]
        return vms

    def _remember(self, host: str, obj: dict[str, Any]) -> _VM:
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

    def _remove_leftover(self, client: HostClient, host: str, uuid: str) -> None:
        """Remove what a failed spawn left, so that spawning again starts afresh."""
        try:
            self.destroy(client, host, uuid)
        except (PowerShellError, exception.ComputedError) as exc:
            LOG.warning("Host %s: could not remove %s after a failed spawn: %s", host, uuid, exc)


def _actions(operation: str, vm: _VM) -> list[str]:
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
