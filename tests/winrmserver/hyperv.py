"""An emulated Hyper-V host: virtual machines and the state machine behind the cmdlets.

Pure state, no PowerShell: the cmdlets in :mod:`.cmdlets` translate parameters into
calls here, and :class:`HyperVError` into PowerShell error records. The transitions
follow Microsoft's cmdlet documentation; the ones the documentation leaves open are
listed in EMULATION.md and are deliberately strict (an error rather than a guess
that something works).
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
import uuid
from dataclasses import dataclass, field

from .hvbase import GiB, HyperVError, MiB, VMState, has_wildcards, invalid_state, wildcard_match
from .hvdevices import (
    ControllerType,
    DeviceRules,
    HardDiskDrive,
    NetworkAdapter,
    VhdFormat,
    VhdType,
    VirtualHardDisk,
)
from .hvimages import COM_PORTS, VMCONNECT_PORT, Checkpoint, ImageRules
from .hvmigration import MigrationJob, MigrationRules

__all__ = [
    "Checkpoint",
    "ControllerType",
    "DEFAULT_SWITCHES",
    "GiB",
    "HardDiskDrive",
    "HyperVError",
    "HyperVHost",
    "MiB",
    "MigrationJob",
    "NetworkAdapter",
    "VMState",
    "VhdFormat",
    "VhdType",
    "VirtualHardDisk",
    "VirtualMachine",
    "has_wildcards",
    "wildcard_match",
]

#: The switches of a host made without any: what a Windows client's Hyper-V has.
DEFAULT_SWITCHES = ("Default Switch",)

_ALREADY = "The virtual machine is already in the specified state."


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
    #: Hard disk drives, and SCSI controllers to hold them (New-VM makes one in
    #: both generations; generation 1 also has two IDE controllers).
    drives: list[HardDiskDrive] = field(default_factory=list)
    scsi_controllers: int = 1
    #: New-VM gives every VM one adapter, "Network Adapter", connected to -SwitchName if given.
    adapters: list[NetworkAdapter] = field(default_factory=lambda: [NetworkAdapter()])
    #: Checkpoints, oldest first; COM 1 and COM 2, each a pipe path or "".
    checkpoints: list[Checkpoint] = field(default_factory=list)
    com_ports: list[str] = field(default_factory=lambda: [""] * COM_PORTS)
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


class HyperVHost(DeviceRules, ImageRules, MigrationRules):
    """The VMs of one Hyper-V host, its VHD files, switches and capacity, guarded by one lock.

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
        switches: tuple[str, ...] = DEFAULT_SWITCHES,
        iscsi_initiator: str | None = None,
        vmconnect_port: int = VMCONNECT_PORT,
    ) -> None:
        self.name = name
        self.logical_processor_count = logical_processor_count
        self.memory_capacity = memory_capacity
        self.vm_version = vm_version
        self.virtual_machine_path = virtual_machine_path
        self.virtual_hard_disk_path = virtual_hard_disk_path
        self.switches = switches
        #: The Microsoft iSCSI initiator's node name: by default made from the computer name.
        self.iscsi_initiator = iscsi_initiator or f"iqn.1991-05.com.microsoft:{name.lower()}"
        self.disks: dict[str, VirtualHardDisk] = {}
        #: The port VMConnect (RDP to a VM's console) listens on.
        self.vmconnect_port = vmconnect_port
        self._mac_counter = 0
        self.lock = threading.RLock()
        self._vms: dict[uuid.UUID, VirtualMachine] = {}
        self._failures: dict[str, list[str]] = {}
        self._init_migration()

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
        new_vhd: tuple[str, int] | None = None,
        vhd_path: str | None = None,
    ) -> VirtualMachine:
        """New-VM: with a new VHDX (``new_vhd``: path, size) or an existing VHD as its boot
        disk, on IDE 0:0 in generation 1 and SCSI 0:0 in generation 2."""
        with self.lock:
            self._check_injected("New-VM", None)
            _check_memory(name, memory_startup)
            if switch_name is not None:
                switch_name = self.check_switch(switch_name)
            if vhd_path is not None:
                self.get_vhd(vhd_path)
            vm = VirtualMachine(
                name=name,
                generation=generation,
                memory_startup=memory_startup,
                path=path or self.virtual_machine_path,
                version=self.vm_version,
                adapters=[NetworkAdapter(switch_name=switch_name)],
            )
            if new_vhd is not None:
                vhd_path = self.new_vhd(new_vhd[0], new_vhd[1], VhdType.Dynamic, None).path
            self._vms[vm.id] = vm
            if vhd_path is not None:
                bus = ControllerType.IDE if generation == 1 else ControllerType.SCSI
                vm.drives.append(HardDiskDrive(bus, 0, 0, vhd_path))
            return vm

    def start(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Start-VM", vm)
            if vm.state == VMState.Running:
                return [_ALREADY]
            if vm.state not in (VMState.Off, VMState.Saved):
                raise invalid_state()
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
            self.assign_dynamic_macs(vm.adapters)
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
            raise invalid_state()

    def suspend(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Suspend-VM", vm)
            if vm.state == VMState.Paused:
                return [_ALREADY]
            if vm.state != VMState.Running:
                raise invalid_state()
            vm.state = VMState.Paused
            return []

    def resume(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Resume-VM", vm)
            if vm.state == VMState.Running:
                return [_ALREADY]
            if vm.state != VMState.Paused:
                raise invalid_state()
            vm.state = VMState.Running
            return []

    def save(self, vm: VirtualMachine, *, _checked: bool = False) -> list[str]:
        with self.lock:
            if not _checked:
                self._check_injected("Save-VM", vm)
            if vm.state == VMState.Saved:
                return [_ALREADY]
            if vm.state not in (VMState.Running, VMState.Paused):
                raise invalid_state()
            vm._power_off(VMState.Saved)
            return []

    def restart(self, vm: VirtualMachine, *, reboot: bool) -> list[str]:
        with self.lock:
            self._check_injected("Restart-VM", vm)
            if vm.state != VMState.Running:
                raise invalid_state()
            vm._power_on()
            return []

    def remove(self, vm: VirtualMachine) -> list[str]:
        with self.lock:
            self._check_injected("Remove-VM", vm)
            if vm.state not in (VMState.Off, VMState.Saved):
                raise invalid_state()
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
                raise invalid_state()
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
