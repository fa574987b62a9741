"""What every move of an instance between the hosts of a pool shares (contract 1.4).

A VM is a pool object: every host of the pool sees it. It belongs to the
compute host its ``other_config:computed_host`` names, and to no other,
whatever its power state: a running VM is kept resident on that host's
xapi host, a halted one has that xapi host as its ``affinity`` (where
``VM.start`` puts it). A move changes the VM's ``affinity`` first, then
its whole ``other_config`` in one ``VM.set_other_config``: that one call
is the moment the instance leaves the source's list for the destination's
(:func:`rehome`), so at every moment exactly one compute host lists it.

The destination hands the source its pool's and xapi host's uuids
(``dest_data``); moves stay within one pool (``VM.pool_migrate``, shared
storage). ``VM.migrate_send`` across pools is not implemented: a
destination in another pool is refused before anything moves.
"""

from __future__ import annotations

import logging
from typing import Any

import XenAPI

from computed import exception
from computed.objects import InstanceSpec, Migration, MigrationKind, PowerState
from drivers.xenapi import constants, errors, vifops
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import resolve_host

__all__ = [
    "DEST_HOST",
    "DEST_POOL",
    "MOVE",
    "check_destination",
    "dest_host_ref",
    "disks_reachable",
    "find",
    "halt",
    "host_live",
    "rehome",
]

LOG = logging.getLogger(__name__)

_MiB = 1024**2

#: ``dest_data`` keys: the destination's pool and xapi host (by uuid).
DEST_POOL = "xenapi_pool_uuid"
DEST_HOST = "xenapi_host_uuid"

#: ``other_config`` key of a VM in the middle of a cold migration or resize:
#: the migration's id (:mod:`~drivers.xenapi.coldops` keeps the rest).
MOVE = "computed_move"


def _candidates(session: PoolSession, uuid: str) -> list[tuple[str, dict[str, Any]]]:
    """Every VM of the pool standing for instance ``uuid`` (templates, snapshots
    and rescue VMs left out)."""
    found = []
    for vm, record in session.call("VM.get_all_records").items():
        other = record["other_config"]
        if (
            other.get(constants.OTHER_CONFIG_UUID) == uuid
            and not record["is_a_template"]
            and not record.get("is_a_snapshot", False)
            and constants.OTHER_CONFIG_RESCUE_OF not in other
        ):
            found.append((str(vm), record))
    return found


def find(
    session: PoolSession, uuid: str, host: str | None = None, move: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The VM of instance ``uuid`` belonging to compute ``host`` and/or in the
    middle of move ``move`` (its :data:`MOVE` key), or None."""
    for vm, record in _candidates(session, uuid):
        other = record["other_config"]
        if host is not None and other.get(constants.OTHER_CONFIG_HOST) != host:
            continue
        if move is not None and other.get(MOVE) != move:
            continue
        return vm, record
    return None


def rehome(
    session: PoolSession,
    vm: str,
    host: str,
    host_ref: str,
    changes: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> None:
    """Make the VM compute ``host``'s: its affinity that host's xapi host, then its
    ``other_config`` (with ``changes``, without ``drop``) in one call."""
    session.call("VM.set_affinity", vm, host_ref)
    other = {
        k: v for k, v in dict(session.call("VM.get_other_config", vm)).items() if k not in drop
    }
    other.update(changes or {})
    other[constants.OTHER_CONFIG_HOST] = host
    session.call("VM.set_other_config", vm, other)


def halt(session: PoolSession, vm: str) -> None:
    """Shut the VM down, cleanly if its guest can, else by pulling the plug."""
    if session.call("VM.get_power_state", vm) == constants.XAPI_HALTED:
        return
    try:
        session.run_task("VM.clean_shutdown", vm)
    except XenAPI.Failure as exc:
        if session.call("VM.get_power_state", vm) == constants.XAPI_HALTED:
            return
        LOG.info("VM %s: clean shutdown failed (%s); hard shutdown", vm, errors.code_of(exc))
        session.run_task("VM.hard_shutdown", vm)


def host_live(session: PoolSession, host_ref: str) -> bool:
    """Whether xapi sees the host's heartbeat and has it enabled."""
    record = session.call("host.get_record", host_ref)
    metrics = session.call("host_metrics.get_record", record["metrics"])
    return bool(record["enabled"]) and bool(metrics["live"])


def disks_reachable(session: PoolSession, record: dict[str, Any], host_ref: str) -> bool:
    """Whether every disk of the VM is on an SR the host has plugged (shared storage)."""
    for vbd in record["VBDs"]:
        vbd_record = session.call("VBD.get_record", vbd)
        if vbd_record["empty"] or vbd_record["VDI"] == constants.NULL_REF:
            continue
        sr = session.call("VDI.get_SR", vbd_record["VDI"])
        pbds = [session.call("PBD.get_record", p) for p in session.call("SR.get_PBDs", sr)]
        if not any(p["host"] == host_ref and p["currently_attached"] for p in pbds):
            return False
    return True


def dest_host_ref(session: PoolSession, target: Target, migration: Migration) -> str:
    """The destination's xapi host, in this (the source's) pool.

    :raises computed.exception.MigrationPreCheckFailed: if it is in another pool.
    """
    pool_uuid = session.call("pool.get_uuid", session.call("pool.get_all")[0])
    theirs = migration.dest_data.get(DEST_POOL)
    if theirs != pool_uuid:
        raise exception.MigrationPreCheckFailed(
            host=migration.dest_host,
            uuid=migration.instance_uuid,
            reason=f"it is in another xapi pool than {target.host} (pool {target.pool}); "
            "the xenapi driver moves instances within a pool only",
        )
    return str(session.call("host.get_by_uuid", migration.dest_data[DEST_HOST]))


def check_destination(session: PoolSession, target: Target, migration: Migration) -> dict[str, str]:
    """Whether ``target`` can take the instance: its xapi host live, the instance's
    networks there, the memory it needs free; return ``dest_data``.

    :raises computed.exception.MigrationPreCheckFailed: saying why not.
    """
    uuid = migration.instance_uuid

    def refuse(reason: str) -> exception.MigrationPreCheckFailed:
        return exception.MigrationPreCheckFailed(host=target.host, uuid=uuid, reason=reason)

    host_ref = resolve_host(session, target)
    if not host_live(session, host_ref):
        raise refuse(f"its xapi host in pool {target.pool} is not live or is disabled")
    here = find(session, uuid, host=target.host)
    if (
        here is not None
        and migration.kind != MigrationKind.RESIZE
        and here[1]["other_config"].get(MOVE) != migration.id
    ):
        raise refuse("an instance with that UUID is already there")
    for network in sorted({vif.network for vif in _interfaces(migration)}):
        try:
            vifops.find_network(session, "check_migration_destination", network)
        except exception.InvalidRequest as exc:
            raise refuse(f"pool {target.pool} has no network {network!r}") from exc
    need = _memory_needed(migration) * _MiB
    free = int(session.call("host.compute_free_memory", host_ref))
    if need > free:
        raise refuse(f"it needs {need // _MiB} MiB and its xapi host has {free // _MiB} MiB free")
    pool_ref = session.call("pool.get_all")[0]
    return {
        DEST_POOL: str(session.call("pool.get_uuid", pool_ref)),
        DEST_HOST: str(session.call("host.get_uuid", host_ref)),
    }


def _interfaces(migration: Migration) -> list[Any]:
    spec: InstanceSpec | None = migration.spec
    if spec is not None:
        return list(spec.network_interfaces)
    return list(migration.instance.network_interfaces) if migration.instance is not None else []


def _memory_needed(migration: Migration) -> int:
    """MiB the destination must have free now: none for an instance left stopped,
    the growth for a running instance resized in place."""
    if migration.power_state != PowerState.RUNNING and migration.kind != MigrationKind.LIVE:
        return 0
    if migration.same_host:
        return max(0, int(migration.flavor.memory_mb) - int(migration.old_flavor.memory_mb))
    return int(migration.flavor.memory_mb)
