"""An emulated Hyper-V host: virtual machines and the state machine behind the cmdlets.

Pure state, no PowerShell: the cmdlets in :mod:`.cmdlets` translate parameters into
calls here, and :class:`HyperVError` into PowerShell error records. The transitions
follow Microsoft's cmdlet documentation; the ones the documentation leaves open are
listed in EMULATION.md and are deliberately strict (an error rather than a guess
that something works).
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

__all__ = [
    "GiB",
    "HyperVError",
    "HyperVHost",
    "MiB",
    "VMState",
    "VirtualMachine",
    "has_wildcards",
    "wildcard_match",
]

MiB = 1024 * 1024
GiB = 1024 * MiB

_INVALID_STATE = (
    "The operation cannot be performed while the virtual machine is in its current state."
)
_ALREADY = "The virtual machine is already in the specified state."


class VMState(enum.IntEnum):
    """``Microsoft.HyperV.PowerShell.VMState`` as ConvertTo-Json prints it (numbers)."""

    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10
    Reset = 11
    Saving = 32773
    Pausing = 32776
    Resuming = 32777
    FastSaved = 32779


class HyperVError(Exception):
    """A failure the way a Hyper-V cmdlet reports it.

    :param error_id: the first half of FullyQualifiedErrorId (``InvalidParameter``);
        the cmdlet's class name is appended by the caller.
    :param category: the ErrorCategory name shown in CategoryInfo.
    :param target: the target object shown in CategoryInfo, with its type name.
    """

    def __init__(
        self,
        message: str,
        error_id: str,
        category: str,
        target: str = "",
        target_type: str = "",
        reason: str = "VirtualizationException",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.category = category
        self.target = target
        self.target_type = target_type
        self.reason = reason


def wildcard_match(pattern: str, text: str) -> bool:
    """PowerShell ``WildcardPattern`` semantics: ``* ? [a-z]``, backtick escapes, no case."""
    return bool(_wildcard_regex(pattern).fullmatch(text))


def has_wildcards(pattern: str) -> bool:
    return any(c in "*?[" for c in pattern.replace("`*", "").replace("`?", "").replace("`[", ""))


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "`" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


@dataclass
class VirtualMachine:
    """One emulated VM. Times are host-local facts; Uptime is derived from them."""

    name: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    generation: int = 2
    memory_startup: int = 512 * MiB
    processor_count: int = 1
    notes: str = ""
    path: str = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V"
    state: VMState = VMState.Off
    version: str = "9.0"
    switch_name: str | None = None
    hard_drives: list[str] = field(default_factory=list)
    creation_time: _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    )
    boot_count: int = 0
    _running_since: float | None = None

    def uptime_seconds(self) -> float:
        if self._running_since is None:
            return 0.0
        return max(0.0, time.monotonic() - self._running_since)

    def _power_on(self) -> None:
        self.state = VMState.Running
        self._running_since = time.monotonic()
        self.boot_count += 1

    def _power_off(self, state: VMState) -> None:
        self.state = state
        self._running_since = None


class HyperVHost:
    """The VMs of one Hyper-V host plus its capacity, guarded by one lock.

    Every public method is safe to call from test code while the server runs.
    """

    def __init__(
        self,
        name: str = "HV01",
        *,
        logical_processor_count: int = 8,
        memory_capacity: int = 32 * GiB,
        vm_version: str = "9.0",
        virtual_machine_path: str = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V",
        virtual_hard_disk_path: str = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks",
        switches: tuple[str, ...] = ("Default Switch",),
    ) -> None:
        self.name = name
        self.logical_processor_count = logical_processor_count
        self.memory_capacity = memory_capacity
        self.vm_version = vm_version
        self.virtual_machine_path = virtual_machine_path
        self.virtual_hard_disk_path = virtual_hard_disk_path
        self.switches = switches
        self.lock = threading.RLock()
        self._vms: dict[uuid.UUID, VirtualMachine] = {}
        self._failures: dict[str, list[str]] = {}

    # -- test-facing helpers -------------------------------------------------

    def add_vm(self, name: str, *, state: VMState = VMState.Off, **attrs: object) -> VirtualMachine:
        """Seed a VM directly (no cmdlet), e.g. in a transitional state."""
        with self.lock:
            vm = VirtualMachine(name=name, version=self.vm_version, path=self.virtual_machine_path)
            for key, value in attrs.items():
                if not hasattr(vm, key):
                    raise AttributeError(key)
                setattr(vm, key, value)
            self._vms[vm.id] = vm
            self.set_state(vm, state)
            return vm

    def set_state(self, vm: VirtualMachine, state: VMState) -> None:
        """Force a state, bypassing the rules (transitional states for tests)."""
        with self.lock:
            if state in (
                VMState.Running,
                VMState.Paused,
                VMState.Stopping,
                VMState.Saving,
                VMState.Pausing,
            ):
                if vm._running_since is None:
                    vm._power_on()
                vm.state = state
            else:
                vm._power_off(state)

    def fail_next(self, operation: str, message: str) -> None:
        """Make the next ``operation`` (``Start-VM``...) fail with ``message``."""
        with self.lock:
            self._failures.setdefault(operation.lower(), []).append(message)

    def vms(self) -> list[VirtualMachine]:
        with self.lock:
            return sorted(self._vms.values(), key=lambda v: (v.name.lower(), str(v.id)))

    def vm(self, vm_id: uuid.UUID | str) -> VirtualMachine | None:
        with self.lock:
            return self._vms.get(uuid.UUID(str(vm_id)))

    # -- lookups used by the cmdlets ----------------------------------------

    def find(self, pattern: str) -> list[VirtualMachine]:
        """VMs whose name matches ``pattern`` (wildcards allowed; names may repeat)."""
        return [vm for vm in self.vms() if wildcard_match(pattern, vm.name)]

    def _check_injected(self, operation: str, vm: VirtualMachine | None) -> None:
        queue = self._failures.get(operation.lower())
        if queue:
            message = queue.pop(0)
            raise HyperVError(
                message, "OperationFailed", "NotSpecified", reason="VirtualizationException"
            )

    # -- operations ------------------------------------------------------------

    def new_vm(
        self,
        name: str,
        *,
        memory_startup: int,
        generation: int,
        path: str | None,
        switch_name: str | None,
        hard_drives: list[str],
    ) -> VirtualMachine:
        with self.lock:
            self._check_injected("New-VM", None)
            _check_memory(name, memory_startup)
            vm = VirtualMachine(
                name=name,
                generation=generation,
                memory_startup=memory_startup,
                path=path or self.virtual_machine_path,
                version=self.vm_version,
                switch_name=switch_name,
                hard_drives=list(hard_drives),
            )
            self._vms[vm.id] = vm
            return vm

    def start(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Start-VM", vm)
            if vm.state == VMState.Running:
                return [_ALREADY]
            if vm.state not in (VMState.Off, VMState.Saved):
                raise _invalid_state(vm)
            in_use = sum(
                v.memory_startup
                for v in self._vms.values()
                if v.id != vm.id and v.state not in (VMState.Off, VMState.Saved)
            )
            if in_use + vm.memory_startup > self.memory_capacity:
                raise HyperVError(
                    f"'{vm.name}' failed to start.\n"
                    f"Not enough memory in the system to start the virtual machine {vm.name}.\n"
                    f"'{vm.name}' could not initialize memory: Ran out of memory (0x8007000E).",
                    "OperationFailed",
                    "NotSpecified",
                )
            vm._power_on()
            return []

    def stop(self, vm: VirtualMachine, *, turn_off: bool, save: bool) -> list[str]:
        with self.lock:
            self._check_injected("Stop-VM", vm)
            if save:
                return self.save(vm, _checked=True)
            if vm.state == VMState.Off:
                return [_ALREADY]
            if vm.state == VMState.Running or (
                turn_off and vm.state in (VMState.Paused, VMState.Saved)
            ):
                vm._power_off(VMState.Off)
                return []
            raise _invalid_state(vm)

    def suspend(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Suspend-VM", vm)
            if vm.state == VMState.Paused:
                return [_ALREADY]
            if vm.state != VMState.Running:
                raise _invalid_state(vm)
            vm.state = VMState.Paused
            return []

    def resume(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Resume-VM", vm)
            if vm.state == VMState.Running:
                return [_ALREADY]
            if vm.state != VMState.Paused:
                raise _invalid_state(vm)
            vm.state = VMState.Running
            return []

    def save(self, vm: VirtualMachine, *, _checked: bool = False) -> list[str]:
        with self.lock:
            if not _checked:
                self._check_injected("Save-VM", vm)
            if vm.state == VMState.Saved:
                return [_ALREADY]
            if vm.state not in (VMState.Running, VMState.Paused):
                raise _invalid_state(vm)
            vm._power_off(VMState.Saved)
            return []

    def restart(self, vm: VirtualMachine, *, reboot: bool) -> list[str]:
        with self.lock:
            self._check_injected("Restart-VM", vm)
            if vm.state != VMState.Running:
                raise _invalid_state(vm)
            vm._power_on()
            return []

    def remove(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Remove-VM", vm)
            if vm.state not in (VMState.Off, VMState.Saved):
                raise _invalid_state(vm)
            del self._vms[vm.id]
            return []

    def configure(
        self,
        vm: VirtualMachine,
        *,
        processor_count: int | None = None,
        memory_startup: int | None = None,
        notes: str | None = None,
        new_name: str | None = None,
    ) -> list[str]:
        with self.lock:
            self._check_injected("Set-VM", vm)
            if (
                processor_count is not None or memory_startup is not None
            ) and vm.state != VMState.Off:
                raise _invalid_state(vm)
            if processor_count is not None:
                if processor_count < 1 or processor_count > self.logical_processor_count:
                    raise HyperVError(
                        f"Failed to modify device 'Processor'.\n"
                        f"The virtual machine '{vm.name}' cannot be configured with {processor_count} "
                        f"virtual processors: the host has {self.logical_processor_count} logical processors.",
                        "InvalidParameter",
                        "InvalidArgument",
                    )
                vm.processor_count = processor_count
            if memory_startup is not None:
                _check_memory(vm.name, memory_startup)
                vm.memory_startup = memory_startup
            if notes is not None:
                vm.notes = notes
            if new_name is not None:
                vm.name = new_name
            return []


def _check_memory(name: str, memory: int) -> None:
    if memory < 32 * MiB:
        raise HyperVError(
            f"Failed to modify device 'Memory'.\nInvalid startup memory amount assigned for '{name}'. "
            "The minimum amount of memory you can assign to this virtual machine is '32' MB.",
            "InvalidParameter",
            "InvalidArgument",
        )
    if memory % (2 * MiB):
        raise HyperVError(
            f"Failed to modify device 'Memory'.\nInvalid startup memory amount assigned for '{name}'. "
            "The amount of memory must be a multiple of 2 MB.",
            "InvalidParameter",
            "InvalidArgument",
        )


def _invalid_state(vm: VirtualMachine) -> HyperVError:
    return HyperVError(_INVALID_STATE, "InvalidState", "InvalidOperation")
