"""Whole moves of instances, run from the client over the steps of contract 1.4.

The scheduler's process orchestrates, as nova's conductor does: each step
is an RPC to the worker serving the source or the destination host (which
may be different processes, even different releases), and the move is
recorded in the registry before its first step and after each one. So:

* a step cut short by its worker's death is run again, once another worker
  serves the host: every step is idempotent by migration id, and the new
  worker has already completed it from the journal, or completes it now;
* a move whose orchestrator died is taken up again by :meth:`Migrations.recover`
  (``computedctl migration recover ID``) from its recorded status;
* a failed step is undone: the instance ends where it was, as it was, and
  the error says so.

``docs/migration.md`` describes each kind of move step by step.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable
from typing import Any

from oslo_utils import uuidutils

from computed import exception, version
from computed.objects import (
    Flavor,
    InstanceInfo,
    InstanceSpec,
    Migration,
    MigrationKind,
    MigrationStatus,
    PowerState,
)
from computed.registry import Registry
from computed.registry.instance_migrations import MigrationRecord
from drivers import base

if typing.TYPE_CHECKING:
    from rpcapi.client import ComputeAPI

__all__ = ["Migrations", "MaintenanceReport", "STEP_ATTEMPTS"]

LOG = logging.getLogger(__name__)

#: How many times a step is sent when its host does not answer (its worker
#: died mid-step): the next worker serving the host completes it.
STEP_ATTEMPTS = 3

_S = MigrationStatus

#: Errors after which a step may or may not have been done.
_UNKNOWN_OUTCOME = (
    exception.HostTimeout,
    exception.HostUnavailable,
    exception.RPCError,
    exception.BrokerUnavailable,
)


class Migrations:
    """Resize, migrate, live-migrate and evacuate instances; confirm, revert,
    abort and recover those moves. Reached as ``ComputeAPI.migrations``.

    Every method takes a request context (or None) like ``ComputeAPI``'s.
    A move's steps are published as ``instance.<step>.start/end``
    notifications under the context's request id, and a live migration's
    progress as ``instance.live_migration.progress``.
    """

    def __init__(self, api: ComputeAPI, registry: Registry, down_time: float) -> None:
        self._api = api
        self._registry = registry
        self._down_time = down_time

    # Starting moves ------------------------------------------------------------

    def resize(self, ctxt: Any, host: str, uuid: str, flavor: Flavor) -> MigrationRecord:
        """Give the instance a new size on its host, keeping the old one for a revert.

        :returns: the migration, ``finished``: the instance runs (or stays
            stopped) at its new size until :meth:`confirm` or :meth:`revert`.
        """
        migration = self._new(ctxt, MigrationKind.RESIZE, host, host, uuid, flavor=flavor)
        return self._cold(ctxt, migration)

    def migrate(self, ctxt: Any, source: str, dest: str, uuid: str) -> MigrationRecord:
        """Move the instance to ``dest``, stopping it on the way (a cold migration).

        :returns: the migration, ``finished``: the instance is on ``dest``, in
            the state it had, until :meth:`confirm` (the source copy goes) or
            :meth:`revert` (back on the source).
        """
        migration = self._new(ctxt, MigrationKind.COLD, source, dest, uuid)
        return self._cold(ctxt, migration)

    def live_migrate(self, ctxt: Any, source: str, dest: str, uuid: str) -> MigrationRecord:
        """Move the running instance to ``dest`` without stopping it.

        :returns: the migration, ``completed``: the instance runs on ``dest``.
        :raises computed.exception.MigrationAborted: if :meth:`abort` stopped
            it; the instance runs on the source.
        :raises computed.exception.MigrationError: if a step failed; the
            instance runs on the source (the error says otherwise if not).
        """
        migration = self._new(ctxt, MigrationKind.LIVE, source, dest, uuid)
        record = self._begin(ctxt, migration)
        return self._live(ctxt, record.migration, _S.PRE_MIGRATING)

    def evacuate(
        self,
        ctxt: Any,
        source: str,
        dest: str,
        spec: InstanceSpec,
        power_state: str = PowerState.RUNNING,
    ) -> MigrationRecord:
        """Rebuild on ``dest`` an instance of ``source``, a host no live worker serves.

        :param spec: the instance as it was built (the scheduler's record of it).
        :param power_state: the state to leave it in on ``dest``.
        :returns: the migration, ``completed``. The worker that next serves
            ``source`` removes the instance there.
        :raises computed.exception.InvalidRequest: while a live worker serves ``source``.
        """
        spec.validate()
        self._check_source_dead(source, dest)
        flavor = Flavor(vcpus=spec.vcpus, memory_mb=spec.memory_mb, disk_gb=spec.disk_gb)
        migration = Migration(
            id=uuidutils.generate_uuid(),
            instance_uuid=spec.uuid,
            kind=MigrationKind.EVACUATION,
            source_host=source,
            dest_host=dest,
            power_state=power_state,
            flavor=flavor,
            old_flavor=flavor,
            instance=None,
            spec=spec,
        )
        migration.validate("evacuate")
        self._check_version(dest, "evacuate")
        record = self._begin(ctxt, migration)
        return self._evacuate(ctxt, record.migration)

    # Ending moves ----------------------------------------------------------------

    def confirm(self, ctxt: Any, migration_id: str) -> MigrationRecord:
        """Keep a finished resize or cold migration: the source's copy is removed."""
        record = self._registry.get_migration(migration_id)
        _expect(record, "confirm", {_S.FINISHED, _S.CONFIRMED})
        if record.status == _S.CONFIRMED:
            return record
        migration = record.migration
        self._step(ctxt, "confirm_migration", migration.source_host, migration)
        return self._update(migration, _S.CONFIRMED, expect={_S.FINISHED}, operation="confirm")

    def revert(self, ctxt: Any, migration_id: str) -> MigrationRecord:
        """Undo a finished resize or cold migration: the instance is back on its
        source, at its old size, in the state it had."""
        record = self._registry.get_migration(migration_id)
        _expect(record, "revert", {_S.FINISHED, _S.REVERTING, _S.REVERTED})
        if record.status == _S.REVERTED:
            return record
        migration = record.migration
        self._update(migration, _S.REVERTING, expect={_S.FINISHED, _S.REVERTING})
        self._undo_cold(ctxt, migration)
        return self._update(migration, _S.REVERTED, expect={_S.REVERTING})

    def abort(self, ctxt: Any, migration_id: str) -> MigrationRecord:
        """Ask the source to stop a live migration in progress.

        Its :meth:`live_migrate` then raises MigrationAborted, once the
        destination is cleaned up; a migration that completes first stays
        completed. Returns the record as the abort left it (``aborting``).
        """
        record = self._registry.get_migration(migration_id)
        if record.migration.kind != MigrationKind.LIVE:
            raise exception.InvalidMigrationState(
                migration=migration_id,
                operation="abort",
                status=f"a {record.migration.kind} migration",
                allowed="a live migration",
            )
        _expect(record, "abort", {_S.RUNNING, _S.ABORTING})
        record = self._update(
            record.migration, _S.ABORTING, expect={_S.RUNNING, _S.ABORTING}, operation="abort"
        )
        migration = record.migration
        self._api.abort_live_migration(ctxt, migration.source_host, migration)
        return record

    def recover(self, ctxt: Any, migration_id: str) -> MigrationRecord:
        """Take up a move whose orchestrator stopped (its process died) where it stood.

        A cold migration or resize is carried on to ``finished`` (its steps
        are idempotent) or, if it was reverting, to ``reverted``; a live
        migration is completed if the instance has left its source, and
        rolled back otherwise; an evacuation is carried on. A move that is
        over, or ``finished``, is returned as it is.
        """
        record = self._registry.get_migration(migration_id)
        migration, status = record.migration, record.status
        if record.final or status == _S.FINISHED:
            return record
        LOG.info("Recovering %s from %s", migration.describe(), status)
        if status == _S.ACCEPTED:
            return self._update(
                migration, _S.ERROR, error="stopped before its first step; nothing moved"
            )
        if migration.kind == MigrationKind.LIVE:
            return self._recover_live(ctxt, migration, status)
        if migration.kind == MigrationKind.EVACUATION:
            return self._evacuate(ctxt, migration)
        if status == _S.REVERTING:
            return self.revert(ctxt, migration_id)
        return self._cold(ctxt, migration, status)

    # Host maintenance ------------------------------------------------------------

    def drain_host(
        self,
        ctxt: Any,
        host: str,
        reason: str = "maintenance",
        progress: Callable[[str], None] | None = None,
    ) -> MaintenanceReport:
        """Disable ``host`` for new work and move every instance off it.

        Each instance goes to the live host of the same driver with the most
        free memory that fits it (``ComputeAPI.list_hosts``, which leaves out
        disabled hosts): live, where it runs and the driver migrates live, else
        cold (then confirmed). What cannot move (no room, a state no move
        starts from, a driver that moves nothing, a failed move) is reported,
        not retried; the host stays disabled (``computedctl host enable``).

        :param progress: called with one line per instance, as it goes.
        """
        say = progress or (lambda line: None)
        self._registry.set_host_disabled(host, True, reason)
        driver = self._api._route(host).worker.driver
        operations = set(self._api.get_capabilities(ctxt, host).operations)
        instances = self._api.list_instances(ctxt, host)
        report = MaintenanceReport(host)
        say(f"{host} disabled ({reason}); {len(instances)} instance(s) to move")
        for n, info in enumerate(instances, 1):
            where = f"[{n}/{len(instances)}] {info.uuid} ({info.name}, {info.power_state})"
            try:
                dest, kind = self._move_off(ctxt, host, driver, operations, info)
            except exception.ComputedError as exc:
                report.failed.append((info.uuid, str(exc)))
                say(f"{where}: not moved: {exc}")
                continue
            report.moved.append((info.uuid, dest, kind))
            say(f"{where}: {kind} migration to {dest} done")
        say(f"{host}: {len(report.moved)} moved, {len(report.failed)} not moved")
        return report

    def _move_off(
        self, ctxt: Any, host: str, driver: str, operations: set[str], info: InstanceInfo
    ) -> tuple[str, str]:
        """Move one instance off ``host``; return where to, and how."""
        live = info.power_state in base.LIVE_MIGRATION_STATES and "live_migration" in operations
        cold = info.power_state in base.COLD_MIGRATION_STATES and "finish_migration" in operations
        if not (live or cold):
            raise exception.UnsupportedOperation(
                operation=f"moving a {info.power_state} instance", driver=driver, host=host
            )
        candidates = [
            state
            for state in self._api.list_hosts(
                driver=driver,
                supports=["live_migration" if live else "finish_migration"],
                vcpus=info.vcpus,
                memory_mb=info.memory_mb,
                disk_gb=info.disk_gb,
            )
            if state.host != host
        ]
        if not candidates:
            raise exception.MigrationPreCheckFailed(
                host=f"any other {driver} host",
                uuid=info.uuid,
                reason="none alive and enabled has room for it",
            )
        dest = max(candidates, key=lambda state: state.free("memory_mb") or 0).host
        if live:
            self.live_migrate(ctxt, host, dest, info.uuid)
            return dest, "live"
        record = self.migrate(ctxt, host, dest, info.uuid)
        self.confirm(ctxt, record.id)
        return dest, "cold"

    # Records ---------------------------------------------------------------------

    def get(self, migration_id: str) -> MigrationRecord:
        """:raises computed.exception.MigrationNotFound: if there is no such migration."""
        return self._registry.get_migration(migration_id)

    def list(
        self,
        instance_uuid: str | None = None,
        host: str | None = None,
        active: bool | None = None,
        limit: int | None = None,
    ) -> list[MigrationRecord]:
        """Moves, newest first: of an instance, from or to a host, in progress or over."""
        return self._registry.list_migrations(
            instance_uuid=instance_uuid, host=host, active=active, limit=limit
        )

    # Cold migrations and resizes ----------------------------------------------------

    def _cold(self, ctxt: Any, migration: Migration, status: str | None = None) -> MigrationRecord:
        if status is None:
            status = self._begin(ctxt, migration).status
        source, dest = migration.source_host, migration.dest_host
        try:
            if status == _S.PRE_MIGRATING:
                handed = self._step(ctxt, "migrate_disk_and_power_off", source, migration)
                migration.assign(source_data={**migration.source_data, **handed})
                status = self._update(migration, _S.MIGRATING).status
            if status in (_S.MIGRATING, _S.POST_MIGRATING):
                self._update(migration, _S.POST_MIGRATING)
                self._step(ctxt, "finish_migration", dest, migration)
                return self._update(migration, _S.FINISHED)
        except exception.ComputedError as exc:
            raise self._failed(ctxt, migration, exc, self._undo_cold) from exc
        raise exception.InvalidMigrationState(
            migration=migration.id,
            operation="recover",
            status=status,
            allowed="pre-migrating, migrating or post-migrating",
        )

    def _undo_cold(self, ctxt: Any, migration: Migration) -> None:
        if not migration.same_host:
            self._step(ctxt, "revert_migration", migration.dest_host, migration)
        self._step(ctxt, "finish_revert_migration", migration.source_host, migration)

    # Live migrations -------------------------------------------------------------------

    def _live(self, ctxt: Any, migration: Migration, status: str) -> MigrationRecord:
        source, dest = migration.source_host, migration.dest_host
        try:
            if status == _S.PRE_MIGRATING:
                prepared = self._step(ctxt, "pre_live_migration", dest, migration)
                migration.assign(dest_data={**migration.dest_data, **prepared})
                self._update(migration, _S.PREPARING)
                self._update(migration, _S.RUNNING, expect={_S.PREPARING})
            try:
                self._step(ctxt, "live_migration", source, migration)
            except exception.MigrationAborted as exc:
                self._roll_back_live(ctxt, migration)
                self._update(migration, _S.ABORTED, error=str(exc))
                raise
        except exception.MigrationAborted:
            raise
        except exception.ComputedError as exc:
            raise self._failed(ctxt, migration, exc, self._roll_back_live) from exc
        # The instance has left its source: from here it is only carried forward.
        self._update(migration, _S.POST_MIGRATING, expect={_S.RUNNING, _S.ABORTING})
        return self._finish_live(ctxt, migration)

    def _finish_live(self, ctxt: Any, migration: Migration) -> MigrationRecord:
        dest = migration.dest_host
        try:
            self._step(ctxt, "post_live_migration_at_destination", dest, migration)
        except exception.ComputedError as exc:
            reason = (
                f"the instance runs on {dest}, which failed to finish taking it in ({exc}): "
                f"run `computedctl migration recover {migration.id}` once {dest} answers"
            )
            # Left post-migrating, for recover to carry on.
            self._update(migration, _S.POST_MIGRATING, error=reason)
            raise exception.MigrationError(migration=migration.describe(), reason=reason) from exc
        return self._update(migration, _S.COMPLETED)

    def _roll_back_live(self, ctxt: Any, migration: Migration) -> None:
        self._step(ctxt, "rollback_live_migration_at_destination", migration.dest_host, migration)

    def _recover_live(self, ctxt: Any, migration: Migration, status: str) -> MigrationRecord:
        if status in (_S.PRE_MIGRATING, _S.PREPARING):
            self._roll_back_live(ctxt, migration)
            return self._update(
                migration, _S.ERROR, error="its orchestrator stopped before the migration began"
            )
        if status != _S.POST_MIGRATING and self._still_on(ctxt, migration.source_host, migration):
            self._roll_back_live(ctxt, migration)
            return self._update(
                migration,
                _S.ERROR,
                error=f"its orchestrator stopped; the instance runs on {migration.source_host}",
            )
        self._update(migration, _S.POST_MIGRATING)
        return self._finish_live(ctxt, migration)

    def _still_on(self, ctxt: Any, host: str, migration: Migration) -> bool:
        try:
            self._api.get_info(ctxt, host, migration.instance_uuid)
        except exception.InstanceNotFound:
            return False
        return True

    # Evacuations -------------------------------------------------------------------------

    def _evacuate(self, ctxt: Any, migration: Migration) -> MigrationRecord:
        try:
            self._update(migration, _S.REBUILDING)
            self._step(ctxt, "evacuate", migration.dest_host, migration)
        except exception.ComputedError as exc:
            self._update(migration, _S.ERROR, error=str(exc))
            raise exception.MigrationError(
                migration=migration.describe(),
                reason=f"{exc}; the instance is on no live host: evacuate it again",
            ) from exc
        return self._update(migration, _S.COMPLETED)

    def _check_source_dead(self, source: str, dest: str) -> None:
        workers = self._registry.list_workers()
        serving = [w for w in workers if source in w.hosts and w.is_alive(self._down_time)]
        if serving:
            raise exception.InvalidRequest(
                operation="evacuate",
                reason=f"host {source} is served by live worker {serving[0].id}: only an "
                f"instance of a host no live worker serves is evacuated",
            )
        drivers = {w.driver for w in workers if source in w.hosts}
        if not drivers:
            raise exception.InvalidRequest(
                operation="evacuate", reason=f"no worker has served host {source}"
            )
        dest_driver = self._api._route(dest).worker.driver
        if dest_driver not in drivers:
            raise exception.InvalidRequest(
                operation="evacuate",
                reason=f"host {dest} runs the {dest_driver} driver, host {source} "
                f"{', '.join(sorted(drivers))}",
            )

    # Steps ------------------------------------------------------------------------------

    def _new(
        self,
        ctxt: Any,
        kind: str,
        source: str,
        dest: str,
        uuid: str,
        flavor: Flavor | None = None,
    ) -> Migration:
        """A move of the instance as its source reports it, checked before any step."""
        operation = {MigrationKind.LIVE: "live_migration", MigrationKind.RESIZE: "resize"}.get(
            kind, "migrate"
        )
        self._check_version(source, operation)
        if dest != source:
            self._check_version(dest, operation)
            source_driver = self._api._route(source).worker.driver
            dest_driver = self._api._route(dest).worker.driver
            if source_driver != dest_driver:
                raise exception.InvalidRequest(
                    operation=operation,
                    reason=f"host {source} runs the {source_driver} driver and {dest} the "
                    f"{dest_driver} driver: an instance moves between hosts of one driver",
                )
        info = self._api.get_info(ctxt, source, uuid)
        allowed = (
            base.LIVE_MIGRATION_STATES if kind == MigrationKind.LIVE else base.COLD_MIGRATION_STATES
        )
        what = "resize" if kind == MigrationKind.RESIZE else f"{kind} migration"
        base.check_state(what, uuid, info.power_state, allowed)
        old = _flavor_of(info)
        migration = Migration(
            id=uuidutils.generate_uuid(),
            instance_uuid=uuid,
            kind=kind,
            source_host=source,
            dest_host=dest,
            power_state=info.power_state,
            flavor=flavor or old,
            old_flavor=old,
            instance=info,
        )
        migration.validate(operation)
        return migration

    def _check_version(self, host: str, operation: str) -> None:
        if not self._api.can_send_migrations(host):
            raise exception.UnsupportedVersion(
                host=host,
                operation=operation,
                version=self._api.version_cap(host),
                reason=f"moving instances needs RPC {version.METHOD_VERSIONS['finish_migration']}",
            )

    def _begin(self, ctxt: Any, migration: Migration) -> MigrationRecord:
        """Record the move, then ask the destination whether it can take the instance."""
        self._registry.create_migration(migration)
        LOG.info("Starting %s", migration.describe())
        try:
            dest_data = self._step(
                ctxt, "check_migration_destination", migration.dest_host, migration
            )
        except exception.ComputedError as exc:
            self._update(migration, _S.ERROR, error=str(exc))
            raise
        migration.assign(dest_data={**migration.dest_data, **dest_data})
        return self._update(migration, _S.PRE_MIGRATING)

    def _step(self, ctxt: Any, step: str, host: str, migration: Migration) -> Any:
        """Run one step on ``host``; again, if its worker stopped answering mid-step."""
        call: Callable[..., Any] = getattr(self._api, step)
        for attempt in range(1, STEP_ATTEMPTS + 1):
            try:
                return call(ctxt, host, migration)
            except exception.HostTimeout as exc:
                if attempt == STEP_ATTEMPTS:
                    raise
                LOG.warning(
                    "%s of %s: %s; sending it again (attempt %d of %d)",
                    step,
                    migration.describe(),
                    exc,
                    attempt + 1,
                    STEP_ATTEMPTS,
                )
        raise AssertionError("unreachable")

    def _update(
        self,
        migration: Migration,
        status: str,
        error: str | None = None,
        expect: set[str] | None = None,
        operation: str = "update",
    ) -> MigrationRecord:
        return self._registry.update_migration(
            migration.id, status, migration, error=error, expect=expect, operation=operation
        )

    def _failed(
        self,
        ctxt: Any,
        migration: Migration,
        error: exception.ComputedError,
        undo: Callable[[Any, Migration], None],
    ) -> exception.MigrationError:
        """Undo a failed move; the error to raise says where the instance is.

        A step whose outcome is unknown (its host did not answer) is not
        undone, since the instance may have moved: the move keeps its status
        for :meth:`recover`, which finds out where the instance is.
        """
        if isinstance(error, _UNKNOWN_OUTCOME):
            reason = (
                f"{error}; whether the step was done is unknown: run `computedctl migration "
                f"recover {migration.id}` once the hosts answer"
            )
            record = self._registry.get_migration(migration.id)
            self._update(migration, record.status, error=reason)
            return exception.MigrationError(migration=migration.describe(), reason=reason)
        LOG.warning("%s failed: %s; undoing it", migration.describe(), error)
        try:
            undo(ctxt, migration)
        except exception.ComputedError as undo_error:
            reason = (
                f"{error}; undoing it failed too ({undo_error}): run `computedctl migration "
                f"recover {migration.id}` once the hosts answer"
            )
        else:
            reason = f"{error}; the instance is back on {migration.source_host} as it was"
        self._update(migration, _S.ERROR, error=reason)
        return exception.MigrationError(migration=migration.describe(), reason=reason)


@dataclasses.dataclass
class MaintenanceReport:
    """What :meth:`Migrations.drain_host` moved, and what it could not."""

    host: str
    #: (instance uuid, destination, ``live`` or ``cold``)
    moved: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    #: (instance uuid, why it stayed)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _flavor_of(info: InstanceInfo) -> Flavor:
    return Flavor(vcpus=info.vcpus, memory_mb=info.memory_mb, disk_gb=info.disk_gb)


def _expect(record: MigrationRecord, operation: str, allowed: set[str]) -> None:
    if record.status not in allowed:
        raise exception.InvalidMigrationState(
            migration=record.id,
            operation=operation,
            status=record.status,
            allowed=", ".join(sorted(allowed)),
        )
