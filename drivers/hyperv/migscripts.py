"""The PowerShell of moving and resizing VMs, built like :mod:`~drivers.hyperv.powershell`'s.

Every argument enters through :func:`~drivers.hyperv.powershell.quote` or as a
rendered integer; VMs are addressed by Id. ``Move-VM`` runs without
``-AsJob``: a PowerShell job belongs to the powershell.exe of its WinRM
command and would die with it, so the command itself lasts as long as the
migration, and other commands watch and stop the host's own migration job
(WMI's ``Msvm_MigrationJob``).
"""

from __future__ import annotations

from drivers.hyperv import devices as dev
from drivers.hyperv.powershell import (
    _JSON,
    _SELECT_VM,
    Script,
    _bus,
    _int,
    _script,
    _target,
    add_drive,
    guid,
    quote,
    remove_drive,
    resize_vhd,
    set_notes,
    vm_devices,
)

__all__ = [
    "enable_migration",
    "free_memory",
    "host_facts",
    "migration_jobs",
    "move_vm",
    "pull_vm",
    "resize_vm",
    "restore_root",
    "stop_migration_jobs",
    "stop_vm",
    "switches",
]

_V2 = "root\\virtualization\\v2"
#: CIM_ConcreteJob.RequestStateChange: Terminate.
_TERMINATE = 4


def host_facts() -> Script:
    """What a destination check reads of Get-VMHost."""
    return _script(
        "host_facts",
        "Get-VMHost | Select-Object -Property Name,FullyQualifiedDomainName,VirtualHardDiskPath,"
        f"VirtualMachineMigrationEnabled,LogicalProcessorCount,MemoryCapacity | {_JSON}",
    )


def free_memory() -> Script:
    """The host's free physical memory (KiB), as Win32_OperatingSystem counts it."""
    return _script(
        "free_memory",
        "Get-CimInstance -ClassName Win32_OperatingSystem"
        f" | Select-Object -Property FreePhysicalMemory | {_JSON}",
    )


def switches() -> Script:
    return _script("switches", f"Get-VMSwitch | Select-Object -Property Name | {_JSON}")


def enable_migration() -> Script:
    """Let the host send and receive migrations (a host setting; enabling twice is harmless)."""
    return _script("enable_migration", "Enable-VMMigration")


def stop_vm(vm_id: str) -> str:
    """Shut the guest down (its integration services), as a statement."""
    return f"{_target(vm_id)} | Stop-VM -Force"


def move_vm(vm_id: str, destination: str, storage_path: str) -> Script:
    """Move the VM of this host, with its local disks, to ``destination``; wait until done."""
    return _script(
        "move_vm",
        "Enable-VMMigration",
        f"{_target(vm_id)} | Move-VM -DestinationHost {quote(destination)} -IncludeStorage "
        f"-DestinationStoragePath {quote(storage_path)}",
    )


def pull_vm(vm_id: str, source: str, here: str, storage_path: str) -> Script:
    """Move the VM of host ``source`` here (``here``: this host's computer name); report it."""
    return _script(
        "pull_vm",
        "Enable-VMMigration",
        f"Get-VM -ComputerName {quote(source)} -Id {quote(guid(vm_id))}"
        f" | Move-VM -DestinationHost {quote(here)} -IncludeStorage "
        f"-DestinationStoragePath {quote(storage_path)}",
        f"{_target(vm_id)} | {_SELECT_VM} | {_JSON}",
    )


def _jobs(vm_id: str) -> str:
    flt = f"VirtualSystemName = '{guid(vm_id).upper()}'"
    return (
        f"Get-CimInstance -Namespace {quote(_V2)} -ClassName Msvm_MigrationJob -Filter {quote(flt)}"
    )


def migration_jobs(vm_id: str) -> Script:
    """The host's migration jobs of the VM: how far each is."""
    return _script(
        "migration_jobs",
        f"{_jobs(vm_id)} | Select-Object -Property InstanceID,PercentComplete,JobState | {_JSON}",
    )


def stop_migration_jobs(vm_id: str) -> Script:
    """Ask the host to stop the VM's migration jobs (none is no error)."""
    return _script(
        "stop_migration_jobs",
        f"{_jobs(vm_id)} | Invoke-CimMethod -MethodName RequestStateChange "
        f"-Arguments @{{RequestedState={_TERMINATE}}} | Select-Object -Property ReturnValue"
        f" | {_JSON}",
    )


def resize_vm(
    vm_id: str,
    vcpus: int,
    memory_mb: int,
    notes: str,
    root: tuple[dev.Drive, str, int] | None,
    start: bool,
) -> Script:
    """Give the stopped VM ``vcpus`` and ``memory_mb`` and record ``notes``; with ``root``
    (its drive, a path to keep the old disk at, the new size in bytes) grow the root
    disk into a copy, keeping the old one aside; start it if asked; report it."""
    statements = [
        f"{_target(vm_id)} | Set-VMProcessor -Count {_int(vcpus, 1, 4096)}",
        f"{_target(vm_id)} | Set-VMMemory -StartupBytes {_int(memory_mb * (1 << 20), 1, 1 << 50)}",
    ]
    if root is not None:
        drive, keep, size = root
        slot = drive.slot
        statements += [
            remove_drive(vm_id, _bus(slot.bus), slot.number, slot.location),
            f"Move-Item -Path {quote(drive.path)} -Destination {quote(keep)}",
            f"Convert-VHD -Path {quote(keep)} -DestinationPath {quote(drive.path)} -VHDType Dynamic",
            resize_vhd(drive.path, size),
            add_drive(vm_id, slot.bus, slot.number, slot.location, drive.path),
        ]
    statements.append(set_notes(vm_id, notes))
    return vm_devices("resize_vm", vm_id, statements, start=start)


def restore_root(vm_id: str, drive: dev.Drive, keep: str) -> list[str]:
    """Statements putting the root disk kept by :func:`resize_vm` back in place."""
    slot = drive.slot
    return [
        remove_drive(vm_id, _bus(slot.bus), slot.number, slot.location),
        f"Remove-Item -Path {quote(drive.path)}",
        f"Move-Item -Path {quote(keep)} -Destination {quote(drive.path)}",
        add_drive(vm_id, slot.bus, slot.number, slot.location, drive.path),
    ]
