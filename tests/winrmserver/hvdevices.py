"""Virtual hard disks, drives and network adapters of an emulated Hyper-V host.

Pure state and Hyper-V's rules for it, no PowerShell: :class:`DeviceRules` is
mixed into :class:`~.hyperv.HyperVHost`, whose lock guards everything here.
The host's VHD files live in :attr:`DeviceRules.disks` (a flat map of paths;
directories are not modelled). The rules follow Microsoft's cmdlet reference;
where it is silent the emulator refuses rather than guesses that something
works (see EMULATION.md).
"""

from __future__ import annotations

import enum
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .hvbase import HyperVError, VMState, invalid_state, wildcard_match

if TYPE_CHECKING:
    from .hyperv import VirtualMachine

__all__ = [
    "ControllerType",
    "DeviceRules",
    "HardDiskDrive",
    "NetworkAdapter",
    "VhdFormat",
    "VhdType",
    "VirtualHardDisk",
    "IDE_CONTROLLERS",
    "IDE_LOCATIONS",
    "SCSI_LOCATIONS",
    "MAX_SYNTHETIC_ADAPTERS",
]

#: Two IDE controllers of two locations (generation 1 only); 64 locations per SCSI controller.
IDE_CONTROLLERS = 2
IDE_LOCATIONS = 2
SCSI_LOCATIONS = 64
#: Synthetic network adapters a VM may have.
MAX_SYNTHETIC_ADAPTERS = 8
#: The MAC address pool of a Hyper-V host (Get-VMHost MacAddressMinimum/Maximum).
MAC_POOL_PREFIX = "00155D"

_MAC = re.compile(r"^[0-9A-Fa-f]{12}$")
_NOT_FILE = "The system cannot find the file specified."
_IN_USE = "The process cannot access the file because it is being used by another process."


class VhdFormat(enum.IntEnum):
    """``Microsoft.Vhd.PowerShell.VhdFormat`` (the numbers of Msvm_VirtualHardDiskSettingData.Format)."""

    VHD = 2
    VHDX = 3


class VhdType(enum.IntEnum):
    """``Microsoft.Vhd.PowerShell.VhdType`` (the numbers of Msvm_VirtualHardDiskSettingData.Type)."""

    Fixed = 2
    Dynamic = 3
    Differencing = 4


class ControllerType(enum.IntEnum):
    """``Microsoft.HyperV.PowerShell.ControllerType``."""

    IDE = 0
    SCSI = 1


@dataclass
class VirtualHardDisk:
    """A .vhd or .vhdx file on the host. ``minimum_size`` None: it cannot shrink at all."""

    path: str
    format: VhdFormat
    type: VhdType
    size: int
    parent_path: str | None = None
    minimum_size: int | None = None
    disk_identifier: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class HardDiskDrive:
    """A hard disk drive of a VM: a slot on a controller holding a VHD file."""

    controller_type: ControllerType
    controller_number: int
    controller_location: int
    path: str

    @property
    def slot(self) -> tuple[ControllerType, int, int]:
        return (self.controller_type, self.controller_number, self.controller_location)


@dataclass
class NetworkAdapter:
    """A synthetic network adapter. A dynamic MAC address is 0 until the VM first starts."""

    name: str = "Network Adapter"
    switch_name: str | None = None
    static_mac: str | None = None
    dynamic_mac: str | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def mac_address(self) -> str:
        return self.static_mac or self.dynamic_mac or "000000000000"


def vhd_format_of(path: str) -> VhdFormat | None:
    """The format a file name gives; a checkpoint's .avhdx and .avhd are differencing VHDX and VHD."""
    lowered = path.lower()
    if lowered.endswith((".vhdx", ".avhdx")):
        return VhdFormat.VHDX
    if lowered.endswith((".vhd", ".avhd")):
        return VhdFormat.VHD
    return None


class DeviceRules:
    """The device operations of a Hyper-V host; mixed into HyperVHost."""

    lock: threading.RLock
    name: str
    switches: tuple[str, ...]
    disks: dict[str, VirtualHardDisk]
    iscsi_initiator: str
    _mac_counter: int

    # Provided by HyperVHost.
    def _check_injected(self, operation: str, vm: VirtualMachine | None) -> None:
        raise NotImplementedError

    def vms(self) -> list[VirtualMachine]:
        raise NotImplementedError

    # -- test-facing helpers -------------------------------------------------

    def add_vhd(
        self,
        path: str,
        size: int,
        *,
        vhd_type: VhdType = VhdType.Dynamic,
        minimum_size: int | None = None,
    ) -> VirtualHardDisk:
        """Seed a VHD file (an image, a volume a storage service exported)."""
        fmt = vhd_format_of(path)
        if fmt is None:
            raise ValueError(f"not a .vhd or .vhdx path: {path}")
        with self.lock:
            disk = VirtualHardDisk(path, fmt, vhd_type, size, minimum_size=minimum_size)
            self.disks[path.lower()] = disk
            return disk

    def vhd(self, path: str) -> VirtualHardDisk | None:
        with self.lock:
            return self.disks.get(path.lower())

    def vhd_paths(self) -> list[str]:
        with self.lock:
            return sorted(disk.path for disk in self.disks.values())

    # -- VHD files --------------------------------------------------------------

    def get_vhd(self, path: str) -> VirtualHardDisk:
        with self.lock:
            disk = self.disks.get(path.lower())
            if disk is None:
                raise _error(
                    f"'{path}' is not an existing virtual hard disk file.",
                    "InvalidParameter",
                    "ObjectNotFound",
                    path,
                )
            return disk

    def new_vhd(
        self, path: str, size: int | None, vhd_type: VhdType, parent_path: str | None
    ) -> VirtualHardDisk:
        with self.lock:
            self._check_injected("New-VHD", None)
            fmt = vhd_format_of(path)
            if fmt is None:
                raise _error(
                    f"Failed to create the virtual hard disk.\nThe format of the virtual hard disk "
                    f"'{path}' is not supported: use a .vhd or .vhdx file name.",
                    "InvalidParameter",
                    "InvalidArgument",
                    path,
                )
            if path.lower() in self.disks:
                raise _error(
                    f"Failed to create the virtual hard disk.\nThe system failed to create '{path}': "
                    "The file exists. (0x80070050).",
                    "InvalidParameter",
                    "InvalidArgument",
                    path,
                )
            if parent_path is not None:
                parent = self.get_vhd(parent_path)
                if parent.format != fmt:
                    raise _error(
                        f"Failed to create the virtual hard disk.\nThe format of the differencing "
                        f"disk '{path}' must match that of its parent '{parent.path}'.",
                        "InvalidParameter",
                        "InvalidArgument",
                        path,
                    )
                if size is not None and size < parent.size:
                    raise _error(
                        "Failed to create the virtual hard disk.\nThe size of a differencing disk "
                        "cannot be smaller than that of its parent.",
                        "InvalidParameter",
                        "InvalidArgument",
                        path,
                    )
                size = parent.size if size is None else size
            assert size is not None
            disk = VirtualHardDisk(path, fmt, vhd_type, size, parent_path=parent_path)
            self.disks[path.lower()] = disk
            return disk

    def resize_vhd(self, path: str, size: int) -> VirtualHardDisk:
        with self.lock:
            self._check_injected("Resize-VHD", None)
            disk = self.get_vhd(path)
            attached = self._attached_to(path)
            if attached is not None:
                vm, drive = attached
                online = vm.state != VMState.Off
                if online and (
                    drive.controller_type == ControllerType.IDE or disk.format == VhdFormat.VHD
                ):
                    raise _error(
                        f"Failed to resize the virtual hard disk.\nThe virtual hard disk '{path}' "
                        "is attached to a running virtual machine: only a .vhdx on a SCSI "
                        "controller can be resized online.",
                        "InvalidState",
                        "InvalidOperation",
                        path,
                    )
            if size < disk.size:
                if disk.format == VhdFormat.VHD:
                    raise _error(
                        "Failed to resize the virtual hard disk.\nA .vhd file cannot be shrunk.",
                        "InvalidParameter",
                        "InvalidArgument",
                        path,
                    )
                minimum = disk.size if disk.minimum_size is None else disk.minimum_size
                if size < minimum:
                    raise _error(
                        f"Failed to resize the virtual hard disk.\nThe size requested is smaller "
                        f"than the minimum size of '{path}' ({minimum} bytes).",
                        "InvalidParameter",
                        "InvalidArgument",
                        path,
                    )
            disk.size = size
            return disk

    def remove_file(self, path: str) -> None:
        """Remove-Item of a VHD file: refused while a VM holds it."""
        with self.lock:
            self._check_injected("Remove-Item", None)
            self.check_file_free(
                path,
                f"Cannot remove item {path}: The process cannot access the file '{path}' "
                "because it is being used by another process.",
                "RemoveFileSystemItemIOError",
            )
            del self.disks[path.lower()]

    def check_file_free(self, path: str, in_use: str, in_use_id: str) -> VirtualHardDisk:
        """The VHD file at ``path``, for the FileSystem provider to change.

        :raises HyperVError: ``PathNotFound`` if there is none, or ``in_use`` (an
            IOException with the id ``in_use_id``) while a VM holds it.
        """
        disk = self.disks.get(path.lower())
        if disk is None:
            raise _error(
                f"Cannot find path '{path}' because it does not exist.",
                "PathNotFound",
                "ObjectNotFound",
                path,
                reason="ItemNotFoundException",
            )
        if self._attached_to(path) is not None:
            raise _error(in_use, in_use_id, "WriteError", path, reason="IOException")
        return disk

    def _attached_to(self, path: str) -> tuple[VirtualMachine, HardDiskDrive] | None:
        for vm in self.vms():
            for drive in vm.drives:
                if drive.path.lower() == path.lower():
                    return vm, drive
        return None

    # -- hard disk drives ----------------------------------------------------------

    def add_drive(
        self,
        vm: VirtualMachine,
        path: str,
        controller_type: ControllerType | None,
        controller_number: int | None,
        controller_location: int | None,
    ) -> HardDiskDrive:
        with self.lock:
            self._check_injected("Add-VMHardDiskDrive", vm)
            if controller_type is None:
                controller_type = ControllerType.IDE if vm.generation == 1 else ControllerType.SCSI
            _check_controller(vm, controller_type, controller_number or 0)
            if vm.state not in (VMState.Off, VMState.Running) or (
                vm.state == VMState.Running and controller_type == ControllerType.IDE
            ):
                raise invalid_state()
            number = controller_number or 0
            taken = {d.slot for d in vm.drives}
            if controller_location is None:
                free = [
                    loc
                    for loc in range(_locations(controller_type))
                    if (controller_type, number, loc) not in taken
                ]
                if not free:
                    raise _error(
                        f"Failed to add device 'Synthetic Disk Drive'.\nThere is no free location "
                        f"on {controller_type.name} controller {number} of '{vm.name}'.",
                        "InvalidParameter",
                        "InvalidArgument",
                        vm.name,
                    )
                controller_location = free[0]
            if not 0 <= controller_location < _locations(controller_type):
                raise _error(
                    f"Failed to add device 'Synthetic Disk Drive'.\nThe controller location "
                    f"{controller_location} does not exist on {controller_type.name} controller "
                    f"{number}.",
                    "InvalidParameter",
                    "InvalidArgument",
                    vm.name,
                )
            if (controller_type, number, controller_location) in taken:
                raise _error(
                    f"Failed to add device 'Synthetic Disk Drive'.\nThe location "
                    f"{controller_location} of {controller_type.name} controller {number} of "
                    f"'{vm.name}' is already in use.",
                    "InvalidParameter",
                    "InvalidArgument",
                    vm.name,
                )
            if path.lower() not in self.disks:
                raise _error(
                    f"Failed to add device 'Virtual Hard Disk'.\n{_NOT_FILE} ('{path}') (0x80070002).",
                    "ObjectNotFound",
                    "ObjectNotFound",
                    path,
                )
            if self._attached_to(path) is not None:
                raise _error(
                    f"Failed to add device 'Virtual Hard Disk'.\n{_IN_USE} ('{path}') (0x80070020).",
                    "InvalidParameter",
                    "ResourceBusy",
                    path,
                )
            drive = HardDiskDrive(controller_type, number, controller_location, path)
            vm.drives.append(drive)
            return drive

    def remove_drive(self, vm: VirtualMachine, drive: HardDiskDrive) -> None:
        with self.lock:
            self._check_injected("Remove-VMHardDiskDrive", vm)
            if vm.state not in (VMState.Off, VMState.Running) or (
                vm.state == VMState.Running and drive.controller_type == ControllerType.IDE
            ):
                raise invalid_state()
            vm.drives = [d for d in vm.drives if d.slot != drive.slot]

    # -- network adapters ----------------------------------------------------------

    def add_adapter(
        self, vm: VirtualMachine, name: str, switch_name: str | None, static_mac: str | None
    ) -> NetworkAdapter:
        with self.lock:
            self._check_injected("Add-VMNetworkAdapter", vm)
            self._check_adapter_change(vm)
            if switch_name is not None:
                self.check_switch(switch_name)
            if static_mac is not None and not _MAC.match(static_mac):
                raise _error(
                    f"Invalid parameter value: the MAC address '{static_mac}' is not valid: give "
                    "12 hexadecimal digits.",
                    "InvalidParameter",
                    "InvalidArgument",
                    static_mac,
                )
            if len(vm.adapters) >= MAX_SYNTHETIC_ADAPTERS:
                raise _error(
                    f"Failed to add device 'Synthetic Ethernet Port'.\n'{vm.name}' has the "
                    f"maximum of {MAX_SYNTHETIC_ADAPTERS} network adapters.",
                    "InvalidParameter",
                    "InvalidArgument",
                    vm.name,
                )
            adapter = NetworkAdapter(
                name=name,
                switch_name=switch_name,
                static_mac=static_mac.upper() if static_mac else None,
            )
            if vm.state != VMState.Off:
                self.assign_dynamic_macs([adapter])
            vm.adapters.append(adapter)
            return adapter

    def remove_adapter(self, vm: VirtualMachine, adapter: NetworkAdapter) -> None:
        with self.lock:
            self._check_injected("Remove-VMNetworkAdapter", vm)
            self._check_adapter_change(vm)
            vm.adapters = [a for a in vm.adapters if a.id != adapter.id]

    def check_switch(self, name: str) -> str:
        for switch in self.switches:
            if wildcard_match(name, switch):
                return switch
        raise _error(
            f'Hyper-V was unable to find a virtual switch with name "{name}".',
            "InvalidParameter",
            "InvalidArgument",
            name,
        )

    def assign_dynamic_macs(self, adapters: list[NetworkAdapter]) -> None:
        """Give each dynamic adapter without one an address from the host's pool."""
        with self.lock:
            for adapter in adapters:
                if adapter.static_mac is None and adapter.dynamic_mac is None:
                    self._mac_counter += 1
                    adapter.dynamic_mac = f"{MAC_POOL_PREFIX}{self._mac_counter:06X}"

    def _check_adapter_change(self, vm: VirtualMachine) -> None:
        if vm.state == VMState.Off:
            return
        if vm.state == VMState.Running and vm.generation == 1:
            raise _error(
                "Failed to modify device 'Synthetic Ethernet Port'.\nNetwork adapters can be "
                "added to or removed from a running virtual machine of generation 2 only.",
                "InvalidState",
                "InvalidOperation",
                vm.name,
            )
        if vm.state != VMState.Running:
            raise invalid_state()


def _locations(controller_type: ControllerType) -> int:
    return IDE_LOCATIONS if controller_type == ControllerType.IDE else SCSI_LOCATIONS


def _check_controller(vm: VirtualMachine, controller_type: ControllerType, number: int) -> None:
    if controller_type == ControllerType.IDE and vm.generation != 1:
        raise _error(
            "Failed to add device 'Synthetic Disk Drive'.\nGeneration 2 virtual machines have no "
            "IDE controller: use -ControllerType SCSI.",
            "InvalidParameter",
            "InvalidArgument",
            vm.name,
        )
    count = IDE_CONTROLLERS if controller_type == ControllerType.IDE else vm.scsi_controllers
    if not 0 <= number < count:
        raise _error(
            f"Hyper-V was unable to find a {controller_type.name} controller with number "
            f'{number} on virtual machine "{vm.name}".',
            "InvalidParameter",
            "InvalidArgument",
            vm.name,
        )


def _error(
    message: str,
    error_id: str,
    category: str,
    target: str,
    reason: str = "VirtualizationException",
) -> HyperVError:
    return HyperVError(message, error_id, category, target, "String", reason=reason)
