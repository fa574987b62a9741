"""Checkpoints, VHD conversion and moves, COM ports and the VMConnect port of an emulated host.

Pure state and Hyper-V's rules for it, no PowerShell: :class:`ImageRules` is
mixed into :class:`~.hyperv.HyperVHost`, whose lock guards everything here.

A checkpoint freezes every disk of the VM: Hyper-V makes a differencing disk
``<name>_<GUID>.avhdx`` beside each one (``.avhd`` for a .vhd), and the VM
writes there from then on. Removing the checkpoint merges each of those into
its parent and the VM's drive reads the parent's path again. What the rules
leave open is refused rather than guessed (see EMULATION.md).
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .hvbase import VMState, invalid_state
from .hvdevices import HardDiskDrive, VhdFormat, VhdType, VirtualHardDisk, _error, vhd_format_of

if TYPE_CHECKING:
    from .hyperv import VirtualMachine

__all__ = ["COM_PORTS", "Checkpoint", "ImageRules", "VMCONNECT_PORT"]

#: Every VM has two COM ports, unconnected ("") until Set-VMComPort gives one a pipe.
COM_PORTS = 2
#: Msvm_TerminalServiceSettingData.ListenerPort of a host nobody reconfigured.
VMCONNECT_PORT = 2179

#: States a checkpoint may be taken in; a VM between two states refuses it.
_CHECKPOINT_STATES = (VMState.Running, VMState.Off, VMState.Paused, VMState.Saved)
_PIPE = re.compile(r"^\\\\(\.|[A-Za-z0-9_.-]+)\\pipe\\[^\\]+$", re.I)
_EXISTS = "Cannot create a file when that file already exists."


@dataclass
class Checkpoint:
    """A checkpoint: the VM's drives as they were, and the differencing disk made for each."""

    name: str
    vm_id: uuid.UUID
    drives: list[HardDiskDrive]
    #: Path of each differencing disk the checkpoint made -> the disk it froze.
    children: dict[str, str]
    parent_id: uuid.UUID | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    creation_time: _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    )


class ImageRules:
    """The checkpoint, file and console operations of a Hyper-V host; mixed into HyperVHost."""

    lock: threading.RLock
    disks: dict[str, VirtualHardDisk]
    vmconnect_port: int

    # Provided by HyperVHost and DeviceRules.
    def _check_injected(self, operation: str, vm: VirtualMachine | None) -> None:
        raise NotImplementedError

    def get_vhd(self, path: str) -> VirtualHardDisk:
        raise NotImplementedError

    def _attached_to(self, path: str) -> tuple[VirtualMachine, HardDiskDrive] | None:
        raise NotImplementedError

    def check_file_free(self, path: str, in_use: str, in_use_id: str) -> VirtualHardDisk:
        raise NotImplementedError

    def vms(self) -> list[VirtualMachine]:
        raise NotImplementedError

    # -- checkpoints --------------------------------------------------------------

    def checkpoint(self, vm: VirtualMachine, name: str | None) -> Checkpoint:
        """Checkpoint-VM: freeze every disk of the VM behind a new differencing disk."""
        with self.lock:
            self._check_injected("Checkpoint-VM", vm)
            if vm.state not in _CHECKPOINT_STATES:
                raise invalid_state()
            if name is None:
                name = f"{vm.name} - ({_dt.datetime.now():%m/%d/%Y - %I:%M:%S %p})"
            children: dict[str, str] = {}
            frozen = []
            for drive in vm.drives:
                frozen.append(HardDiskDrive(*drive.slot, drive.path))
                parent = self.get_vhd(drive.path)
                child = _avhd_path(drive.path)
                self.disks[child.lower()] = VirtualHardDisk(
                    child, parent.format, VhdType.Differencing, parent.size, parent_path=parent.path
                )
                children[child] = drive.path
                drive.path = child
            latest = vm.checkpoints[-1].id if vm.checkpoints else None
            checkpoint = Checkpoint(name, vm.id, frozen, children, parent_id=latest)
            vm.checkpoints.append(checkpoint)
            return checkpoint

    def remove_checkpoint(self, vm: VirtualMachine, checkpoint: Checkpoint) -> None:
        """Remove-VMSnapshot: merge each differencing disk the checkpoint made into its parent."""
        with self.lock:
            self._check_injected("Remove-VMSnapshot", vm)
            if vm.state not in _CHECKPOINT_STATES:
                raise invalid_state()
            for child, parent in checkpoint.children.items():
                for disk in self.disks.values():
                    if disk.parent_path is not None and disk.parent_path.lower() == child.lower():
                        disk.parent_path = parent
                for drive in vm.drives:
                    if drive.path.lower() == child.lower():
                        drive.path = parent
                for other in vm.checkpoints:
                    for key, frozen in other.children.items():
                        if frozen.lower() == child.lower():
                            other.children[key] = parent
                    for drive in other.drives:
                        if drive.path.lower() == child.lower():
                            drive.path = parent
                self.disks.pop(child.lower(), None)
            vm.checkpoints = [c for c in vm.checkpoints if c.id != checkpoint.id]
            for other in vm.checkpoints:
                if other.parent_id == checkpoint.id:
                    other.parent_id = checkpoint.parent_id

    def find_checkpoint(self, checkpoint_id: uuid.UUID) -> tuple[VirtualMachine, Checkpoint] | None:
        with self.lock:
            for vm in self.vms():
                for checkpoint in vm.checkpoints:
                    if checkpoint.id == checkpoint_id:
                        return vm, checkpoint
            return None

    # -- files ------------------------------------------------------------------------

    def convert_vhd(self, path: str, destination: str, vhd_type: VhdType | None) -> VirtualHardDisk:
        """Convert-VHD: a new, standalone disk with the data of ``path`` and its parents."""
        with self.lock:
            self._check_injected("Convert-VHD", None)
            source = self.get_vhd(path)
            if self._attached_to(path) is not None:
                raise _error(
                    f"Failed to convert the virtual hard disk.\nThe virtual hard disk '{path}' is "
                    "attached to a virtual machine: conversion is an offline operation.",
                    "InvalidState",
                    "InvalidOperation",
                    path,
                )
            fmt = vhd_format_of(destination)
            if fmt is None or destination.lower().endswith((".avhdx", ".avhd")):
                raise _error(
                    f"Failed to convert the virtual hard disk.\nThe format of the virtual hard "
                    f"disk '{destination}' is not supported: use a .vhd or .vhdx file name.",
                    "InvalidParameter",
                    "InvalidArgument",
                    destination,
                )
            if destination.lower() in self.disks:
                raise _error(
                    f"Failed to convert the virtual hard disk.\nThe system failed to create "
                    f"'{destination}': The file exists. (0x80070050).",
                    "InvalidParameter",
                    "InvalidArgument",
                    destination,
                )
            kind = vhd_type if vhd_type is not None else source.type
            if kind == VhdType.Differencing:
                raise _error(
                    "Failed to convert the virtual hard disk.\nA differencing disk needs a parent: "
                    "the emulator does not model -ParentPath.",
                    "InvalidParameter",
                    "InvalidArgument",
                    destination,
                )
            disk = VirtualHardDisk(destination, fmt, kind, source.size)
            self.disks[destination.lower()] = disk
            return disk

    def move_file(self, path: str, destination: str) -> VirtualHardDisk:
        """Move-Item of a VHD file: refused while a VM holds it or where a file exists."""
        with self.lock:
            self._check_injected("Move-Item", None)
            disk = self.check_file_free(
                path,
                "The process cannot access the file because it is being used by another process.",
                "MoveFileInfoItemIOError",
            )
            if destination.lower() in self.disks or vhd_format_of(destination) != disk.format:
                raise _error(
                    _EXISTS
                    if destination.lower() in self.disks
                    else f"The emulated host keeps only VHD files: cannot move '{path}' to "
                    f"'{destination}'.",
                    "MoveFileInfoItemIOError",
                    "WriteError",
                    path,
                    reason="IOException",
                )
            del self.disks[path.lower()]
            disk.path = destination
            self.disks[destination.lower()] = disk
            return disk

    # -- consoles ---------------------------------------------------------------------

    def set_com_port(self, vm: VirtualMachine, number: int, path: str) -> None:
        """Set-VMComPort: connect COM ``number`` to a named pipe ("" disconnects it)."""
        with self.lock:
            self._check_injected("Set-VMComPort", vm)
            if not 1 <= number <= COM_PORTS:
                raise _error(
                    f"Hyper-V was unable to find a COM port with number {number} on virtual "
                    f'machine "{vm.name}".',
                    "InvalidParameter",
                    "InvalidArgument",
                    vm.name,
                )
            if path and not _PIPE.match(path):
                raise _error(
                    f"Failed to modify device 'COM {number}'.\nThe path '{path}' is not a named "
                    "pipe: give \\\\.\\pipe\\<name> or \\\\<server>\\pipe\\<name>.",
                    "InvalidParameter",
                    "InvalidArgument",
                    path,
                )
            if vm.state != VMState.Off:
                raise invalid_state()
            vm.com_ports[number - 1] = path


def _avhd_path(path: str) -> str:
    """Where Hyper-V puts the differencing disk a checkpoint makes of ``path``."""
    stem = path.rpartition(".")[0]
    suffix = "avhdx" if vhd_format_of(path) == VhdFormat.VHDX else "avhd"
    return f"{stem}_{str(uuid.uuid4()).upper()}.{suffix}"
