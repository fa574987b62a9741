"""Cold migration and resize within a pool, on its shared storage.

The VM itself moves: its disks stay where they are, on storage every host
of the pool has plugged. What a revert needs is kept on the VM, in
``other_config`` (``computed_move*`` keys), from the source's step until
the move is confirmed or reverted:

=========================  ==========================================================
step                       xapi
=========================  ==========================================================
migrate_disk_and_power_   the old size, state and host recorded on the VM
off (source)              (``VM.set_other_config``), then ``VM.clean_shutdown`` (else
                          ``VM.hard_shutdown``); it stays the source's, halted
finish_migration          ``VM.set_VCPUs_max`` / ``_at_startup``,
(destination)             ``VM.set_memory_limits``; a root disk that grows is first
                          kept (``VDI.clone``, named after the migration) then
                          ``VDI.resize``\\ d; ``VM.set_affinity`` and the VM's
                          ``other_config`` give it to the destination
                          (:func:`~drivers.xenapi.moves.rehome`), and ``VM.start_on``
                          its xapi host if it was running
confirm_migration          the kept root disk ``VDI.destroy``\\ ed, the keys dropped
(source)
revert_migration           the VM halted and given back to the source (nothing on
(destination)              one host: a resize)
finish_revert_migration    the old VCPUs and memory set again, the kept root disk
(source)                   put back in its slot (``VBD.destroy`` of the grown one,
                           ``VDI.destroy``, ``VBD.create``), the keys dropped, and
                           ``VM.start_on`` the source if it was running
=========================  ==========================================================

Every step finds the VM by the migration's id in its ``other_config``, so
each run again finds its work done and returns the same.
"""

from __future__ import annotations

import logging
from typing import Any

import XenAPI

from computed.objects import InstanceInfo, Migration, PowerState
from drivers import base
from drivers.xenapi import constants, errors, moves
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, resolve_host

__all__ = ["ColdOps"]

LOG = logging.getLogger(__name__)

_MiB = 1024**2
_GiB = 1024**3

MOVE = moves.MOVE
#: The instance's power state, compute host and size ("vcpus,memory_mb,disk_gb") before.
MOVE_STATE = "computed_move_state"
MOVE_FROM = "computed_move_from"
MOVE_FROM_XAPI = "computed_move_from_xapi_host"
MOVE_OLD = "computed_move_old"
#: The uuid of the copy of the root disk kept while it grew.
MOVE_ROOT = "computed_move_root"
#: Set once the destination has the VM at its new size.
MOVE_DONE = "computed_move_done"
_KEYS = (MOVE, MOVE_STATE, MOVE_FROM, MOVE_FROM_XAPI, MOVE_OLD, MOVE_ROOT, MOVE_DONE)


class ColdOps:
    """The cold migration and resize steps."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def migrate_disk_and_power_off(
        self, session: PoolSession, target: Target, uuid: str, migration: Migration
    ) -> dict[str, str]:
        if not migration.same_host:
            moves.dest_host_ref(session, target, migration)
        marked = moves.find(session, uuid, move=migration.id)
        if marked is None:
            vm, record = self._vmops.get(session, target, uuid)
            state = constants.instance_state(record)
            base.check_state("migrate_disk_and_power_off", uuid, state, base.COLD_MIGRATION_STATES)
            other = dict(record["other_config"])
            other.update(
                {
                    MOVE: migration.id,
                    MOVE_STATE: state,
                    MOVE_FROM: target.host,
                    MOVE_FROM_XAPI: session.call("host.get_uuid", resolve_host(session, target)),
                    MOVE_OLD: f"{record['VCPUs_at_startup']},"
                    f"{int(record['memory_static_max']) // _MiB},"
                    f"{other.get(constants.OTHER_CONFIG_DISK_GB, '0')}",
                }
            )
            session.call("VM.set_other_config", vm, other)
        else:
            vm, record = marked
        if MOVE_DONE not in record["other_config"]:
            moves.halt(session, vm)
        return {"xenapi_vm_uuid": str(session.call("VM.get_uuid", vm))}

    def finish_migration(
        self, session: PoolSession, target: Target, migration: Migration
    ) -> InstanceInfo:
        uuid = migration.instance_uuid
        marked = moves.find(session, uuid, move=migration.id)
        if marked is None:
            # Confirmed or reverted meanwhile: what is here is the answer.
            return self._vmops.get_info(session, target, uuid)
        vm, record = marked
        host_ref = resolve_host(session, target)
        if record["other_config"].get(MOVE_DONE) != migration.id:
            moves.halt(session, vm)
            self._resize(session, vm, record, migration)
            moves.rehome(
                session,
                vm,
                target.host,
                host_ref,
                {
                    MOVE_DONE: migration.id,
                    constants.OTHER_CONFIG_DISK_GB: str(migration.flavor.disk_gb),
                },
            )
            LOG.info("%s: %s on %s", migration.describe(), migration.flavor, target.host)
        self._start_if(session, vm, host_ref, migration.power_state)
        return self._vmops.get_info(session, target, uuid)

    def confirm_migration(self, session: PoolSession, migration: Migration) -> None:
        marked = moves.find(session, migration.instance_uuid, move=migration.id)
        if marked is None:
            return
        vm, record = marked
        kept = record["other_config"].get(MOVE_ROOT)
        if kept:
            _destroy_vdi(session, kept)
        _drop_keys(session, vm)

    def revert_migration(self, session: PoolSession, target: Target, migration: Migration) -> None:
        if migration.same_host:
            return
        marked = moves.find(session, migration.instance_uuid, host=target.host, move=migration.id)
        if marked is None:
            return  # never came, or given back already
        vm, record = marked
        moves.halt(session, vm)
        self._give_back(session, vm, record)

    def finish_revert_migration(
        self, session: PoolSession, target: Target, migration: Migration
    ) -> InstanceInfo:
        uuid = migration.instance_uuid
        marked = moves.find(session, uuid, move=migration.id)
        if marked is None:
            return self._vmops.get_info(session, target, uuid)
        vm, record = marked
        other = record["other_config"]
        moves.halt(session, vm)
        if other.get(constants.OTHER_CONFIG_HOST) != target.host:
            self._give_back(session, vm, record)
        # Put back whatever finish_migration may have changed, even half-way.
        vcpus, memory_mb, disk_gb = (int(v) for v in other[MOVE_OLD].split(","))
        self._vmops.set_vcpus(session, vm, vcpus)
        memory = str(memory_mb * _MiB)
        session.call("VM.set_memory_limits", vm, memory, memory, memory, memory)
        if other.get(MOVE_ROOT):
            _put_back_root(session, vm, other[MOVE_ROOT])
        current = dict(session.call("VM.get_other_config", vm))
        current[constants.OTHER_CONFIG_DISK_GB] = str(disk_gb)
        session.call("VM.set_other_config", vm, current)
        state = other.get(MOVE_STATE, PowerState.STOPPED)
        _drop_keys(session, vm)
        self._start_if(session, vm, resolve_host(session, target), state)
        LOG.info("%s: reverted", migration.describe())
        return self._vmops.get_info(session, target, uuid)

    # ----------------------------------------------------------------------

    def _resize(
        self, session: PoolSession, vm: str, record: dict[str, Any], migration: Migration
    ) -> None:
        flavor = migration.flavor
        self._vmops.set_vcpus(session, vm, int(flavor.vcpus))
        memory = str(int(flavor.memory_mb) * _MiB)
        session.call("VM.set_memory_limits", vm, memory, memory, memory, memory)
        root = _root_disk(session, record)
        if root is None:
            return
        vdi = root[1]["VDI"]
        size = int(flavor.disk_gb) * _GiB
        if size <= int(session.call("VDI.get_virtual_size", vdi)):
            return
        kept_label = f"{constants.name_label(migration.instance_uuid)}-pre-{migration.id}"
        kept = session.call("VDI.get_by_name_label", kept_label)
        if not kept:
            copy = session.run_task("VDI.clone", vdi, {})
            session.call("VDI.set_name_label", copy, kept_label)
            kept = [copy]
        other = dict(session.call("VM.get_other_config", vm))
        other[MOVE_ROOT] = str(session.call("VDI.get_uuid", kept[0]))
        session.call("VM.set_other_config", vm, other)
        session.run_task("VDI.resize", vdi, str(size))

    @staticmethod
    def _give_back(session: PoolSession, vm: str, record: dict[str, Any]) -> None:
        other = record["other_config"]
        source_ref = session.call("host.get_by_uuid", other[MOVE_FROM_XAPI])
        moves.rehome(session, vm, other[MOVE_FROM], str(source_ref))

    @staticmethod
    def _start_if(session: PoolSession, vm: str, host_ref: str, state: str) -> None:
        if state == PowerState.RUNNING and (
            session.call("VM.get_power_state", vm) == constants.XAPI_HALTED
        ):
            session.run_task("VM.start_on", vm, host_ref, False, False)


def _root_disk(session: PoolSession, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The VM's bootable disk VBD and its record, unless it is a volume."""
    for vbd in record["VBDs"]:
        vbd_record = session.call("VBD.get_record", vbd)
        if (
            vbd_record["bootable"]
            and vbd_record["type"] == "Disk"
            and not vbd_record["empty"]
            and constants.OSVOL not in vbd_record["other_config"]
        ):
            return str(vbd), vbd_record
    return None


def _put_back_root(session: PoolSession, vm: str, kept_uuid: str) -> None:
    """Put the kept copy of the root disk back in the root disk's slot."""
    kept = session.call("VDI.get_by_uuid", kept_uuid)
    root = _root_disk(session, session.call("VM.get_record", vm))
    if root is not None and root[1]["VDI"] == kept:
        return
    fields: dict[str, Any] = {
        "VM": vm,
        "VDI": kept,
        "userdevice": "0",
        "bootable": True,
        "mode": "RW",
        "type": "Disk",
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    if root is not None:
        vbd, vbd_record = root
        fields.update(userdevice=vbd_record["userdevice"], other_config=vbd_record["other_config"])
        session.run_task("VBD.destroy", vbd)
        session.run_task("VDI.destroy", vbd_record["VDI"])
    session.run_task("VBD.create", fields)


def _destroy_vdi(session: PoolSession, uuid: str) -> None:
    try:
        vdi = session.call("VDI.get_by_uuid", uuid)
    except XenAPI.Failure as exc:
        if errors.code_of(exc) == errors.UUID_INVALID:
            return  # gone already
        raise
    session.run_task("VDI.destroy", vdi)


def _drop_keys(session: PoolSession, vm: str) -> None:
    other = dict(session.call("VM.get_other_config", vm))
    session.call("VM.set_other_config", vm, {k: v for k, v in other.items() if k not in _KEYS})
