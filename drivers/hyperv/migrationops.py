"""Moving instances (contract 1.4) with Hyper-V's own migration: ``Move-VM``.

Both kinds of move are shared-nothing migrations between two hosts that
have migration enabled (``Enable-VMMigration``, which the driver runs): the
VM goes with its local disks into the destination's VirtualHardDiskPath and
keeps its Hyper-V Id, notes, adapters and MAC addresses. A host running
``Move-VM`` reaches the other host itself, a second hop from the driver's
WinRM session: the hosts need Kerberos constrained delegation (or CredSSP)
for the migration service, as for any remote Move-VM.

===========================  ========================================================
step                         PowerShell
===========================  ========================================================
check (destination)          ``Get-VMHost`` (migration enabled or not, processors,
                             VirtualHardDiskPath), ``Win32_OperatingSystem``'s
                             FreePhysicalMemory, ``Get-VMSwitch`` for the networks
                             of the instance's interfaces
migrate_disk_and_power_off   notes record the move (id, old size, old state), then
(source)                     ``Stop-VM -Force`` (guest shutdown)
finish_migration (dest)      across hosts: ``Get-VM -ComputerName <source> -Id ... |
                             Move-VM -DestinationHost <here> -IncludeStorage`` (the
                             destination pulls the stopped VM); then, on any host,
                             ``Set-VMProcessor -Count``, ``Set-VMMemory
                             -StartupBytes``, a growing root disk moved aside and
                             copied back (``Move-Item``, ``Convert-VHD``,
                             ``Resize-VHD``), ``Start-VM`` if it ran
confirm (source)             the root disk kept aside by a resize is removed
revert (destination)         ``Stop-VM``, ``Move-VM`` back to the source
finish_revert (source)       old size and root disk back, ``Start-VM`` if it ran
pre_live_migration (dest)    ``Enable-VMMigration``; where the disks go
live_migration (source)      ``Move-VM -DestinationHost -IncludeStorage
                             -DestinationStoragePath``, running; meanwhile
                             ``Msvm_MigrationJob``'s PercentComplete is progress
abort (source)               ``Msvm_MigrationJob`` RequestStateChange(Terminate)
rollback (destination)       the disk copies a stopped migration left are removed
evacuate (destination)       a spawn from ``migration.spec`` (the source's disks are
                             on a dead host), stopped if it was
===========================  ========================================================

A cold migration's source keeps no copy: the VM itself moves, and a revert
moves it back. A resize keeps its old root disk beside the new one until
confirmed. Every step is idempotent by migration id: the VM's notes say
which move it is in (``mig``) and how far it went.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from computed import exception
from computed.objects import InstanceInfo, Migration, PowerState
from drivers import base
from drivers.hyperv import constants
from drivers.hyperv import devices as dev
from drivers.hyperv import migscripts as mps
from drivers.hyperv import powershell as ps
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.vmops import VM, VMOps, _encode
from drivers.hyperv.winrmclient import HostClient

__all__ = ["MigrationOps"]

LOG = logging.getLogger(__name__)

#: How often a live migration's progress is read from the host (seconds).
PROGRESS_INTERVAL = 0.2
_NOTES_KEY = "mig"


def _move_of(vm: VM, migration: Migration) -> dict[str, Any] | None:
    """What the notes of ``vm`` record of ``migration``, if it is the move they record."""
    found = (vm.stored or {}).get(_NOTES_KEY)
    if isinstance(found, dict) and found.get("id") == migration.id:
        return found
    return None


def _notes(vm: VM, operation: str, move: dict[str, Any] | None, **changes: Any) -> str:
    if vm.stored is None:
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"Hyper-V VM {vm.vm_id} was not created by the hyperv driver; it does not "
            "move it",
        )
    stored = {k: v for k, v in vm.stored.items() if k != _NOTES_KEY}
    stored.update(changes)
    if move is not None:
        stored[_NOTES_KEY] = move
    return _encode(stored, operation)


class MigrationOps:
    """The steps of moving instances, given the served host's :class:`HostClient`."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops
        self._aborts: set[str] = set()
        self._lock = threading.Lock()

    # Checks -----------------------------------------------------------------

    def check_destination(
        self, client: HostClient, host: str, migration: Migration
    ) -> dict[str, str]:
        facts = client.run(mps.host_facts())[0]
        fail = _failer(host, migration)
        uuid = migration.instance_uuid
        present = self._vmops.find(client, host, uuid)
        if present is not None and not migration.same_host and _move_of(present, migration) is None:
            raise fail("an instance with that UUID is already there")
        info, spec = migration.instance, migration.spec
        wanted = (
            spec.network_interfaces
            if spec is not None
            else (info.network_interfaces if info else [])
        )
        have = {str(s.get("Name")) for s in client.run(mps.switches())}
        missing = sorted({vif.network for vif in wanted} - have)
        if missing:
            raise fail(f"it has no virtual switch {', '.join(missing)}")
        if migration.flavor.vcpus > int(facts.get("LogicalProcessorCount") or 0):
            raise fail(
                f"it has {facts.get('LogicalProcessorCount')} logical processors, the instance "
                f"needs {migration.flavor.vcpus}"
            )
        if not migration.same_host and migration.kind != "evacuation":
            free = client.run(mps.free_memory())
            free_mb = int((free[0] if free else {}).get("FreePhysicalMemory") or 0) // 1024
            if migration.kind == "live" and free_mb < migration.flavor.memory_mb:
                raise fail(
                    f"it has {free_mb} MiB free, the instance needs {migration.flavor.memory_mb}"
                )
        return {
            "computer_name": str(
                facts.get("FullyQualifiedDomainName") or facts.get("Name") or host
            ),
            "storage_path": str(facts.get("VirtualHardDiskPath") or ""),
        }

    # Cold migrations and resizes ------------------------------------------------

    def migrate_disk_and_power_off(
        self, client: HostClient, host: str, uuid: str, migration: Migration
    ) -> dict[str, str]:
        vm = self._vmops.settled(client, host, uuid, "migrate_disk_and_power_off")
        handed = {"vm_id": vm.vm_id, "computer_name": self._computer_name(client, host)}
        if _move_of(vm, migration) is not None:
            return handed
        base.check_state(
            "migrate_disk_and_power_off", uuid, vm.power_state, base.COLD_MIGRATION_STATES
        )
        move = {
            "id": migration.id,
            "old": [vm.vcpus, vm.memory_mb, vm.disk_gb],
            "state": str(vm.power_state),
        }
        statements = [ps.set_notes(vm.vm_id, _notes(vm, "migrate", move))]
        if not migration.same_host:
            statements.append("Enable-VMMigration")
        if vm.power_state != PowerState.STOPPED:
            statements.append(mps.stop_vm(vm.vm_id))
        client.run(ps.vm_devices("migrate_disk_and_power_off", vm.vm_id, statements))
        LOG.info("Host %s: %s stopped for %s", host, uuid, migration.describe())
        return handed

    def finish_migration(self, client: HostClient, host: str, migration: Migration) -> InstanceInfo:
        uuid = migration.instance_uuid
        vm = self._vmops.find(client, host, uuid)
        if vm is None and not migration.same_host:
            vm = self._pull(client, host, migration)
        if vm is None:
            raise exception.InstanceNotFound(uuid=uuid, host=host)
        move = _move_of(vm, migration)
        if move is None:
            if migration.same_host:
                raise exception.MigrationError(
                    migration=migration.describe(), reason="the instance was not stopped for it"
                )
            return self._vmops.info(vm, host)  # not a VM this move brought: leave it be
        if move.get("done"):
            return self._vmops.info(vm, host)
        return self._vmops.info(self._resize(client, host, vm, move, migration), host)

    def confirm_migration(self, client: HostClient, host: str, migration: Migration) -> None:
        vm = self._vmops.find(client, host, migration.instance_uuid)
        move = _move_of(vm, migration) if vm is not None else None
        if vm is None or move is None:
            return  # moved away, or confirmed already
        statements = [ps.set_notes(vm.vm_id, _notes(vm, "confirm_migration", None))]
        if move.get("keep"):
            statements.append(ps.remove_files_if_present([str(move["keep"])]))
        client.run(ps.vm_devices("confirm_migration", vm.vm_id, statements))

    def revert_migration(self, client: HostClient, host: str, migration: Migration) -> None:
        if migration.same_host:
            return
        vm = self._vmops.find(client, host, migration.instance_uuid)
        if vm is None or _move_of(vm, migration) is None:
            return  # gone back already, or never arrived
        if vm.power_state != PowerState.STOPPED:
            client.run(ps.vm_devices("stop_vm", vm.vm_id, [mps.stop_vm(vm.vm_id)]))
        source = migration.source_data.get("computer_name") or migration.source_host
        storage = migration.source_data.get("storage_path") or self._vmops.vhd_dir(client, host)
        client.run(mps.move_vm(vm.vm_id, source, storage))
        LOG.info("Host %s: %s moved back to %s", host, migration.instance_uuid, source)

    def finish_revert_migration(
        self, client: HostClient, host: str, migration: Migration
    ) -> InstanceInfo:
        vm = self._vmops.lookup(client, host, migration.instance_uuid)
        move = _move_of(vm, migration)
        if move is None:
            return self._vmops.info(vm, host)
        vcpus, memory_mb, disk_gb = (int(x) for x in move["old"])
        statements: list[str] = []
        if vm.power_state != PowerState.STOPPED:
            statements.append(mps.stop_vm(vm.vm_id))
        statements += [
            f"{ps._target(vm.vm_id)} | Set-VMProcessor -Count {vcpus}",
            f"{ps._target(vm.vm_id)} | Set-VMMemory -StartupBytes {memory_mb * constants.MIB}",
        ]
        records = vm.records
        if move.get("keep") and vm.root is not None:
            statements += mps.restore_root(vm.vm_id, vm.root, str(move["keep"]))
            key = dev.record_key(vm.root.path)
            records[key] = {**records.get(key, {}), "s": disk_gb}
        notes = _notes(vm, "finish_revert_migration", None, disk_gb=disk_gb, dev=records)
        statements.append(ps.set_notes(vm.vm_id, notes))
        start = move.get("state") == PowerState.RUNNING
        reverted = client.run(
            ps.vm_devices("finish_revert_migration", vm.vm_id, statements, start=start)
        )
        LOG.info("Host %s: %s reverted", host, migration.describe())
        return self._vmops.info(self._vmops.remember(host, reverted, "finish_revert"), host)

    # Live migrations ------------------------------------------------------------

    def pre_live_migration(
        self, client: HostClient, host: str, migration: Migration
    ) -> dict[str, str]:
        client.run(mps.enable_migration())
        return {"storage_path": self._vmops.vhd_dir(client, host)}

    def live_migration(
        self,
        client: HostClient,
        host: str,
        uuid: str,
        migration: Migration,
        progress: base.Progress,
    ) -> None:
        vm = self._vmops.find(client, host, uuid)
        if vm is None:
            return  # it has left already
        base.check_state("live_migration", uuid, vm.power_state, base.LIVE_MIGRATION_STATES)
        self._check_abort(migration)
        dest = migration.dest_data.get("computer_name") or migration.dest_host
        storage = migration.dest_data.get("storage_path")
        if not storage:
            raise exception.MigrationError(
                migration=migration.describe(),
                reason=f"{migration.dest_host} is not prepared for it",
            )
        done = threading.Event()
        watcher = base.operation_thread(
            self._watch,
            args=(client, vm.vm_id, migration, progress, done),
            name=f"hyperv-migration-{migration.id[:8]}",
        )
        progress(0)
        watcher.start()
        try:
            client.run(mps.move_vm(vm.vm_id, dest, storage))
        except PowerShellError as exc:
            if self._aborted(migration):
                raise exception.MigrationAborted(
                    migration=migration.id,
                    uuid=uuid,
                    reason="asked to stop; the instance runs on its source",
                ) from exc
            raise
        finally:
            done.set()
            watcher.join()
        self._forget_abort(migration)
        progress(100)
        LOG.info("Host %s: %s", host, f"{migration.describe()} done")

    def abort_live_migration(
        self, client: HostClient, host: str, uuid: str, migration: Migration
    ) -> None:
        with self._lock:
            self._aborts.add(migration.id)
        vm = self._vmops.find(client, host, uuid)
        if vm is not None:
            client.run(mps.stop_migration_jobs(vm.vm_id))

    def post_live_migration_at_destination(
        self, client: HostClient, host: str, migration: Migration
    ) -> InstanceInfo:
        return self._vmops.get_info(client, host, migration.instance_uuid)

    def rollback_live_migration_at_destination(
        self, client: HostClient, host: str, migration: Migration
    ) -> None:
        uuid = migration.instance_uuid
        if self._vmops.find(client, host, uuid) is not None:
            LOG.warning("Host %s: %s arrived here; nothing to roll back", host, uuid)
            return
        storage = migration.dest_data.get("storage_path") or self._vmops.vhd_dir(client, host)
        info = migration.instance
        ephemeral = sum(1 for d in (info.block_devices if info else []) if d.kind == "blank")
        roles = ["root"] + [f"ephemeral{n}" for n in range(1, ephemeral + 1)]
        client.run(
            ps._script(
                "rollback_live_migration",
                ps.remove_files_if_present([dev.disk_path(storage, uuid, r) for r in roles]),
                "exit 0",  # a file the migration never copied is no failure
            )
        )
        self._forget_abort(migration)

    # Evacuation -------------------------------------------------------------------

    def evacuate(
        self,
        client: HostClient,
        host: str,
        migration: Migration,
        volume_path: dev.VolumePath,
    ) -> InstanceInfo:
        assert migration.spec is not None
        info = self._vmops.spawn(client, host, migration.spec, volume_path)
        if migration.power_state == PowerState.STOPPED and info.power_state != PowerState.STOPPED:
            info = self._vmops.transition(client, host, info.uuid, "power_off")
        return info

    # ----------------------------------------------------------------------------

    def _pull(self, client: HostClient, host: str, migration: Migration) -> VM | None:
        vm_id = migration.source_data.get("vm_id")
        if not vm_id:
            raise exception.MigrationError(
                migration=migration.describe(), reason="the source handed over no VM"
            )
        source = migration.source_data.get("computer_name") or migration.source_host
        here = migration.dest_data.get("computer_name") or self._computer_name(client, host)
        storage = migration.dest_data.get("storage_path") or self._vmops.vhd_dir(client, host)
        pulled = client.run(mps.pull_vm(vm_id, source, here, storage))
        LOG.info("Host %s: %s arrived from %s", host, migration.instance_uuid, source)
        return self._vmops.remember(host, pulled, "finish_migration")

    def _resize(
        self, client: HostClient, host: str, vm: VM, move: dict[str, Any], migration: Migration
    ) -> VM:
        flavor, old = migration.flavor, migration.old_flavor
        records = vm.records
        root = None
        if flavor.disk_gb > old.disk_gb and vm.root is not None:
            keep = dev.disk_path(
                self._vmops.vhd_dir(client, host), vm.uuid, f"root-{migration.id[:8]}"
            )
            root = (vm.root, keep, flavor.disk_gb * dev.GIB)
            move = {**move, "keep": keep}
            key = dev.record_key(vm.root.path)
            records[key] = {**records.get(key, {}), "s": flavor.disk_gb}
        notes = _notes(
            vm, "finish_migration", {**move, "done": True}, disk_gb=flavor.disk_gb, dev=records
        )
        start = migration.power_state == PowerState.RUNNING
        resized = client.run(
            mps.resize_vm(vm.vm_id, flavor.vcpus, flavor.memory_mb, notes, root, start)
        )
        LOG.info("Host %s: %s at %s", host, migration.instance_uuid, flavor)
        return self._vmops.remember(host, resized, "finish_migration")

    def _computer_name(self, client: HostClient, host: str) -> str:
        facts = client.run(mps.host_facts())
        found = facts[0] if facts else {}
        return str(found.get("FullyQualifiedDomainName") or found.get("Name") or host)

    def _watch(
        self,
        client: HostClient,
        vm_id: str,
        migration: Migration,
        progress: base.Progress,
        done: threading.Event,
    ) -> None:
        """Report the migration job's progress, never going back; stop it once aborted."""
        reported = 0
        while not done.wait(PROGRESS_INTERVAL):
            try:
                if self._aborted(migration):
                    client.run(mps.stop_migration_jobs(vm_id))
                jobs = client.run(mps.migration_jobs(vm_id))
            except (PowerShellError, exception.ComputedError) as exc:
                LOG.debug("Migration %s: progress unreadable: %s", migration.id, exc)
                continue
            for job in jobs:
                percent = int(job.get("PercentComplete") or 0)
                if reported < percent < 100 and not done.is_set():
                    reported = percent
                    progress(percent)

    def _check_abort(self, migration: Migration) -> None:
        if self._aborted(migration):
            self._forget_abort(migration)
            raise exception.MigrationAborted(
                migration=migration.id,
                uuid=migration.instance_uuid,
                reason="asked to stop; the instance runs on its source",
            )

    def _aborted(self, migration: Migration) -> bool:
        with self._lock:
            return migration.id in self._aborts

    def _forget_abort(self, migration: Migration) -> None:
        with self._lock:
            self._aborts.discard(migration.id)


def _failer(host: str, migration: Migration) -> Any:
    def fail(reason: str) -> exception.MigrationPreCheckFailed:
        return exception.MigrationPreCheckFailed(
            host=host, uuid=migration.instance_uuid, reason=reason
        )

    return fail
