"""Moving VMs between emulated hosts: ``Move-VM`` and the migration job it runs.

The hosts of one :class:`~tests.winrmserver.server.WinRMTestServer` form a
fabric (``HyperVHost.fabric``, by lower-case name), as Hyper-V hosts of one
domain reach each other by computer name. A move is a shared-nothing
migration: the VM's local VHD files are copied into the destination's
``-DestinationStoragePath`` while a migration job (WMI's ``Msvm_MigrationJob``,
which :mod:`.migcmdlets` shows through ``Get-CimInstance``) advances, then the
VM leaves the source and appears on the destination with the same Id, in the
state it had (a running VM keeps running: its uptime goes on).

The copy takes ``migration_steps`` steps of ``migration_step_seconds`` each
(the host's time to copy memory and disks); a test that must act at a known
point sets ``migration_gate``, an Event the job waits for half-way. A job
asked to stop (``RequestStateChange`` 4 or 5) ends at its next step: the VM
stays on the source, running as before, and the VHD copies it made on the
destination stay there (strict: a driver cleans up what a failed migration
left, as compute-hyperv does).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .hvbase import HyperVError, VMState, invalid_state
from .hvdevices import HardDiskDrive, VirtualHardDisk

if TYPE_CHECKING:
    from .hyperv import VirtualMachine

__all__ = ["JobState", "MigrationJob", "MigrationRules"]

_MOVABLE = (VMState.Running, VMState.Off, VMState.Saved, VMState.Paused)


class JobState:
    """``CIM_ConcreteJob.JobState`` numbers."""

    RUNNING = 4
    COMPLETED = 7
    TERMINATED = 8
    EXCEPTION = 10


@dataclass
class MigrationJob:
    """One migration in progress on its source host (``Msvm_MigrationJob``)."""

    vm_id: uuid.UUID
    vm_name: str
    destination: str
    with_storage: bool
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    percent: int = 0
    state: int = JobState.RUNNING
    stop: threading.Event = field(default_factory=threading.Event)

    def request_state_change(self, requested: int) -> int:
        """CIM's RequestStateChange: 4 (Terminate) and 5 (Kill) stop a running job.

        :returns: 0 once asked, 4097 (invalid state transition) for a job that
            is over, 5 (invalid parameter) for another request.
        """
        if requested not in (4, 5):
            return 5
        if self.state != JobState.RUNNING:
            return 4097
        self.stop.set()
        return 0


def _migration_error(message: str, target: str) -> HyperVError:
    return HyperVError(message, "OperationFailed", "NotSpecified", target, "String")


class MigrationRules:
    """Move-VM on an emulated host (mixed into HyperVHost)."""

    # Provided by HyperVHost.
    lock: threading.RLock
    name: str
    switches: tuple[str, ...]
    disks: dict[str, VirtualHardDisk]
    memory_capacity: int
    virtual_machine_path: str
    _vms: dict[uuid.UUID, VirtualMachine]

    def _init_migration(self) -> None:
        #: Every host of the server by lower-case name (this one alone until served).
        self.fabric: dict[str, MigrationRules] = {self.name.lower(): self}
        #: Get-VMHost's VirtualMachineMigrationEnabled; Enable-VMMigration sets it.
        self.migration_enabled = False
        self.migration_steps = 10
        self.migration_step_seconds = 0.1
        #: Set by a test to hold every migration half-way until it is set.
        self.migration_gate: threading.Event | None = None
        self.migration_jobs: list[MigrationJob] = []

    def _check_injected(self, operation: str, vm: VirtualMachine) -> None:
        raise NotImplementedError

    # -- lookups -----------------------------------------------------------------

    def fabric_host(self, name: str) -> MigrationRules:
        """The host called ``name`` (its computer name or FQDN, any case)."""
        found = self.fabric.get(name.lower()) or self.fabric.get(name.split(".")[0].lower())
        if found is None:
            raise HyperVError(
                f"The operation on computer '{name}' failed: The WinRM client cannot process the "
                "request because the server name cannot be resolved.",
                "Unspecified",
                "NotSpecified",
                name,
                "String",
            )
        return found

    def memory_in_use(self) -> int:
        with self.lock:
            return sum(
                vm.memory_startup
                for vm in self._vms.values()
                if vm.state not in (VMState.Off, VMState.Saved)
            )

    # -- Move-VM -------------------------------------------------------------------

    def move_vm(
        self, vm: VirtualMachine, destination: str, include_storage: bool, storage_path: str | None
    ) -> None:
        """Move ``vm`` (one of this host's) to the host ``destination``; return once it is there.

        :raises HyperVError: if the move is refused or fails; the VM is then still here.
        """
        dest = self.fabric_host(destination)
        job, copies = self._begin_move(vm, dest, include_storage, storage_path)
        try:
            self._copy(job, dest, copies)
            self._commit(vm, dest, copies)
            job.percent, job.state = 100, JobState.COMPLETED
        except HyperVError:
            job.state = JobState.TERMINATED if job.stop.is_set() else JobState.EXCEPTION
            raise
        finally:
            with self.lock:
                self.migration_jobs.remove(job)

    def _begin_move(
        self,
        vm: VirtualMachine,
        dest: MigrationRules,
        include_storage: bool,
        storage_path: str | None,
    ) -> tuple[MigrationJob, dict[str, str]]:
        """Check the move on both hosts; register its job. ``copies``: source path -> dest path."""
        v = vm
        name = v.name
        failed = f"Virtual machine migration operation for '{name}' failed at migration source '{self.name}'."
        with self.lock:
            self._check_injected("Move-VM", vm)
            if dest is self:
                raise _migration_error(
                    f"{failed}\nThe virtual machine is already on host '{self.name}'.", name
                )
            if v.state not in _MOVABLE:
                raise invalid_state()
            if any(j.vm_id == v.id for j in self.migration_jobs):
                raise _migration_error(
                    f"{failed}\nThe virtual machine is already being migrated.", name
                )
            for host in (self, dest):
                if not host.migration_enabled:
                    raise _migration_error(
                        f"{failed}\nThe Virtual Machine Management Service on host '{host.name}' "
                        "is not configured to perform live migrations.",
                        name,
                    )
            drives: list[HardDiskDrive] = list(v.drives)
            copies: dict[str, str] = {}
            if include_storage:
                if not storage_path:
                    raise _migration_error(
                        f"{failed}\nA destination storage path is needed to move the storage.", name
                    )
                for drive in drives:
                    if not drive.path.startswith("\\\\"):
                        file_name = drive.path.rsplit("\\", 1)[-1]
                        copies[drive.path] = f"{storage_path.rstrip(chr(92))}\\{file_name}"
            elif any(not d.path.startswith("\\\\") for d in drives):
                raise _migration_error(
                    f"{failed}\nThe virtual hard disks of the virtual machine are not on shared "
                    "storage: move them with -IncludeStorage.",
                    name,
                )
            running = v.state != VMState.Off and v.state != VMState.Saved
        failed_dest = (
            f"Virtual machine migration operation for '{name}' failed at migration destination "
            f"'{dest.name}'."
        )
        with dest.lock:
            if v.id in dest._vms:
                raise _migration_error(
                    f"{failed_dest}\nA virtual machine with the identifier "
                    f"{str(v.id).upper()} already exists.",
                    name,
                )
            for adapter in v.adapters:
                if adapter.switch_name is not None and adapter.switch_name not in dest.switches:
                    raise _migration_error(
                        f"{failed_dest}\nCould not find Ethernet switch '{adapter.switch_name}'.",
                        name,
                    )
            if running:
                memory = v.memory_startup
                if dest.memory_in_use() + memory > dest.memory_capacity:
                    raise _migration_error(
                        f"{failed_dest}\nNot enough memory in the system to start the virtual "
                        f"machine {name}: Ran out of memory (0x8007000E).",
                        name,
                    )
            for source_path, dest_path in copies.items():
                disk = self.disks.get(source_path.lower())
                if dest_path.lower() in dest.disks:
                    raise _migration_error(
                        f"{failed_dest}\nThe system failed to create '{dest_path}': The file "
                        "exists. (0x80070050).",
                        name,
                    )
                if (
                    disk is not None
                    and disk.parent_path
                    and disk.parent_path.lower() not in (dest.disks)
                ):
                    raise _migration_error(
                        f"{failed_dest}\nThe parent '{disk.parent_path}' of the virtual hard "
                        f"disk '{source_path}' is not on the destination.",
                        name,
                    )
        job = MigrationJob(v.id, name, dest.name, include_storage)
        with self.lock:
            self.migration_jobs.append(job)
        return job, copies

    def _copy(self, job: MigrationJob, dest: MigrationRules, copies: dict[str, str]) -> None:
        """Advance the job step by step, copying the disks first; stop if asked."""
        for step in range(1, self.migration_steps + 1):
            if step == 1:
                with self.lock, dest.lock:
                    for source_path, dest_path in copies.items():
                        disk = self.disks.get(source_path.lower())
                        if disk is not None and dest_path.lower() not in dest.disks:
                            dest.disks[dest_path.lower()] = VirtualHardDisk(
                                dest_path,
                                disk.format,
                                disk.type,
                                disk.size,
                                parent_path=disk.parent_path,
                                minimum_size=disk.minimum_size,
                                disk_identifier=disk.disk_identifier,
                            )
            gate = self.migration_gate
            if gate is not None and step == self.migration_steps // 2 + 1:
                gate.wait()
            if job.stop.wait(self.migration_step_seconds):
                raise _migration_error(
                    f"Virtual machine migration operation for '{job.vm_name}' failed at migration "
                    f"source '{self.name}'.\nThe operation was cancelled.",
                    job.vm_name,
                )
            job.percent = min(99, step * 100 // self.migration_steps)

    def _commit(self, vm: VirtualMachine, dest: MigrationRules, copies: dict[str, str]) -> None:
        """The VM leaves this host for ``dest``, with its drives pointing at the copies."""
        first, second = sorted((self, dest), key=lambda h: h.name.lower())
        with first.lock, second.lock:
            vm_id = vm.id
            if self._vms.get(vm_id) is not vm:
                raise _migration_error(
                    f"The virtual machine '{vm.name}' was removed during its migration.",
                    vm.name,
                )
            for drive in vm.drives:
                if drive.path in copies:
                    self.disks.pop(drive.path.lower(), None)
                    drive.path = copies[drive.path]
                elif drive.path.startswith("\\\\"):
                    shared = self.disks.get(drive.path.lower())
                    if shared is not None:
                        dest.disks.setdefault(drive.path.lower(), shared)
            del self._vms[vm_id]
            vm.path = dest.virtual_machine_path
            dest._vms[vm_id] = vm
