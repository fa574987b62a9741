"""Live migration within a pool: ``VM.pool_migrate`` with ``live`` set, as a task.

============================================  ==================================================
step                                          xapi
============================================  ==================================================
pre_live_migration (destination)              nothing to prepare within a pool: the storage is
                                              shared and the networks were checked
live_migration (source)                       ``Async.VM.pool_migrate(vm, host, {live: true})``;
                                              its task's ``progress`` is the migration's;
                                              then the VM is re-homed (:func:`moves.rehome`)
abort_live_migration (source)                 ``task.cancel`` of that task: xapi ends it
                                              ``TASK_CANCELLED``, the VM running on the source
post_live_migration_at_destination            the VM as it runs there (re-homed first, if the
                                              source died between the two calls)
rollback_live_migration_at_destination        nothing to undo
============================================  ==================================================

xapi's ``pool_migrate`` moves only a Running VM, so a paused instance is
refused (InvalidPowerState) rather than unpaused behind the caller's back.
Run again after the VM has left, ``live_migration`` finds it resident on
the destination (or already the destination's) and only re-homes it.
"""

from __future__ import annotations

import logging
import threading

import XenAPI

from computed import exception
from computed.objects import InstanceInfo, Migration, PowerState
from drivers import base
from drivers.xenapi import constants, errors, moves
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, resolve_host

__all__ = ["LiveOps"]

LOG = logging.getLogger(__name__)

_TASK_CANCELLED = "TASK_CANCELLED"


class LiveOps:
    """The live migration steps; remembers the task of each migration it runs."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops
        self._lock = threading.Lock()
        #: migration id -> (session, task) of the pool_migrate in progress.
        self._tasks: dict[str, tuple[PoolSession, str]] = {}
        #: migration ids asked to stop.
        self._aborts: set[str] = set()

    def pre_live_migration(
        self, session: PoolSession, target: Target, migration: Migration
    ) -> dict[str, str]:
        host_ref = resolve_host(session, target)
        if not moves.host_live(session, host_ref):
            raise exception.MigrationPreCheckFailed(
                host=target.host,
                uuid=migration.instance_uuid,
                reason=f"its xapi host in pool {target.pool} is not live",
            )
        return {}

    def live_migration(
        self,
        session: PoolSession,
        target: Target,
        uuid: str,
        migration: Migration,
        progress: base.Progress,
    ) -> None:
        dest_ref = moves.dest_host_ref(session, target, migration)
        found = moves.find(session, uuid, host=target.host)
        if found is None:
            if moves.find(session, uuid, host=migration.dest_host) is not None:
                return  # it has left already
            raise exception.InstanceNotFound(uuid=uuid, host=target.host)
        vm, record = found
        if record["resident_on"] != dest_ref:
            state = constants.instance_state(record)
            base.check_state("live_migration", uuid, state, frozenset({PowerState.RUNNING}))
            self._migrate(session, vm, dest_ref, migration, progress)
        moves.rehome(session, vm, migration.dest_host, dest_ref)
        LOG.info("%s: done", migration.describe())

    def _migrate(
        self,
        session: PoolSession,
        vm: str,
        dest_ref: str,
        migration: Migration,
        progress: base.Progress,
    ) -> None:
        self._check_abort(migration)
        try:
            session.run_task(
                "VM.pool_migrate",
                vm,
                dest_ref,
                {"live": "true"},
                progress=lambda fraction: progress(min(100, int(fraction * 100))),
                started=lambda task: self._started(session, migration, task),
            )
        except XenAPI.Failure as exc:
            if errors.code_of(exc) == _TASK_CANCELLED:
                raise exception.MigrationAborted(
                    migration=migration.id,
                    uuid=migration.instance_uuid,
                    reason="asked to stop (xapi cancelled the pool_migrate task); "
                    "the instance runs on its source",
                ) from exc
            raise
        finally:
            with self._lock:
                self._tasks.pop(migration.id, None)
                self._aborts.discard(migration.id)

    def _started(self, session: PoolSession, migration: Migration, task: str) -> None:
        with self._lock:
            self._tasks[migration.id] = (session, task)
            aborted = migration.id in self._aborts
        if aborted:  # the abort came before the task existed
            self._cancel(session, task)

    def _check_abort(self, migration: Migration) -> None:
        with self._lock:
            aborted = migration.id in self._aborts
            self._aborts.discard(migration.id)
        if aborted:
            raise exception.MigrationAborted(
                migration=migration.id,
                uuid=migration.instance_uuid,
                reason="asked to stop before it began; the instance runs on its source",
            )

    def abort_live_migration(self, migration: Migration) -> None:
        """Cancel the migration's task if it runs; else make it stop before it starts."""
        with self._lock:
            running = self._tasks.get(migration.id)
            self._aborts.add(migration.id)
        if running is not None:
            self._cancel(*running)

    @staticmethod
    def _cancel(session: PoolSession, task: str) -> None:
        try:
            session.call("task.cancel", task)
        except XenAPI.Failure as exc:
            # Finished meanwhile (OPERATION_NOT_ALLOWED) or gone: nothing to stop.
            LOG.info("Could not cancel task %s: %s", task, errors.code_of(exc))

    def post_live_migration_at_destination(
        self, session: PoolSession, target: Target, migration: Migration
    ) -> InstanceInfo:
        uuid = migration.instance_uuid
        found = moves.find(session, uuid, host=target.host)
        if found is None:
            # The source died between pool_migrate and re-homing the VM.
            host_ref = resolve_host(session, target)
            left = moves.find(session, uuid, host=migration.source_host)
            if left is None or left[1]["resident_on"] != host_ref:
                raise exception.InstanceNotFound(uuid=uuid, host=target.host)
            moves.rehome(session, left[0], target.host, host_ref)
        return self._vmops.get_info(session, target, uuid)

    def rollback_live_migration_at_destination(self, migration: Migration) -> None:
        with self._lock:
            self._aborts.discard(migration.id)
