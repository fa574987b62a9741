"""Checks of moving instances (contract 1.4).

They drive whole moves through the client's orchestrator
(``ComputeAPI.migrations``) and single steps through the client's step
methods, and check what matters to a scheduler: after each move the
instance is listed on exactly one host, in the state it had, with its size
and devices; a step run again returns what it returned; a rollback leaves
the instance where it was. All but the resizes need two hosts (``--host``
twice); they are served, in the project's own tests, by two worker
processes. A real evacuation needs a dead host, which the suite does not
make: it checks that one is refused while the host lives.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from oslo_context import context
from oslo_utils import uuidutils

from computed import exception
from computed.conformance._check import Check, registrar
from computed.conformance._context import CheckSkipped, SuiteContext, expect, expect_error
from computed.objects import (
    Flavor,
    InstanceInfo,
    Migration,
    MigrationKind,
    MigrationStatus,
    PowerState,
)

__all__ = ["MIGRATION_CHECKS"]

MIGRATION_CHECKS: list[Check] = []
check = registrar(MIGRATION_CHECKS)

COLD, LIVE, EVACUATION = "migration", "live_migration", "evacuation"
_COLD_STEPS = (
    "check_migration_destination",
    "migrate_disk_and_power_off",
    "finish_migration",
    "confirm_migration",
    "revert_migration",
    "finish_revert_migration",
)
_LIVE_STEPS = (
    "check_migration_destination",
    "pre_live_migration",
    "live_migration",
    "post_live_migration_at_destination",
    "rollback_live_migration_at_destination",
)


def _other_host(ctx: SuiteContext) -> str:
    if len(ctx.hosts) < 2:
        raise CheckSkipped("needs two hosts (pass --host twice)")
    return ctx.hosts[1]


@contextlib.contextmanager
def _moving(
    ctx: SuiteContext, label: str, state: str = PowerState.RUNNING
) -> Iterator[InstanceInfo]:
    """An instance on the first host, with an interface where the driver builds one;
    destroyed afterwards wherever it ended up."""
    fields: dict[str, Any] = {"image": ctx.image}
    if ctx.supports("spawn.network_interfaces"):
        fields["network_interfaces"] = [ctx.vif()]
    with ctx.instance(label, state, **fields) as info:
        try:
            yield info
        finally:
            for host in ctx.hosts[1:2]:
                with contextlib.suppress(exception.ComputedError):
                    ctx.api.destroy(None, host, info.uuid)


def _where(ctx: SuiteContext, uuid: str) -> dict[str, str]:
    """``{host: power state}`` of every host under test that lists the instance."""
    found = {}
    for host in ctx.hosts[:2]:
        for info in ctx.api.list_instances(None, host):
            if info.uuid == uuid:
                found[host] = str(info.power_state)
    return found


def _expect_on(ctx: SuiteContext, uuid: str, host: str, state: str, after: str) -> InstanceInfo:
    where = _where(ctx, uuid)
    expect(
        where == {host: state},
        f"after {after} the instance should be {state} on {host} only; "
        f"the hosts list it as {where or 'nowhere'}",
    )
    return ctx.api.get_info(None, host, uuid)


def _expect_same_devices(before: InstanceInfo, after: InstanceInfo, what: str) -> None:
    expect(
        [(v.port_id, v.mac_address) for v in after.network_interfaces]
        == [(v.port_id, v.mac_address) for v in before.network_interfaces],
        f"{what}: the interfaces did not follow the instance",
    )
    expect(
        sorted(d.device_name or "" for d in after.block_devices)
        == sorted(d.device_name or "" for d in before.block_devices),
        f"{what}: the disks did not follow the instance",
    )


def _migration(ctx: SuiteContext, info: InstanceInfo, kind: str, dest: str) -> Migration:
    """A move described by hand, for checks that run single steps."""
    flavor = Flavor(vcpus=info.vcpus, memory_mb=info.memory_mb, disk_gb=info.disk_gb)
    return Migration(
        id=uuidutils.generate_uuid(),
        instance_uuid=info.uuid,
        kind=kind,
        source_host=ctx.host,
        dest_host=dest,
        power_state=info.power_state,
        flavor=flavor,
        old_flavor=flavor,
        instance=info,
    )


# Resizes and cold migrations ------------------------------------------------------------


def _bigger(info: InstanceInfo) -> Flavor:
    return Flavor(vcpus=info.vcpus + 1, memory_mb=info.memory_mb * 2, disk_gb=info.disk_gb + 1)


@check(
    "migration.resize.confirm",
    "a resize gives the instance its new size in its state, on its host; confirmed, it keeps it",
    COLD,
)
def _resize_confirm(ctx: SuiteContext) -> None:
    ctx.require(*_COLD_STEPS)
    with _moving(ctx, "resize") as info:
        flavor = _bigger(info)
        record = ctx.api.migrations.resize(None, ctx.host, info.uuid, flavor)
        expect(record.status == MigrationStatus.FINISHED, f"the resize ended {record.status}")
        resized = _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "a resize")
        size = (resized.vcpus, resized.memory_mb, resized.disk_gb)
        expect(
            size == (flavor.vcpus, flavor.memory_mb, flavor.disk_gb),
            f"after a resize to {flavor} the instance reports {size}",
        )
        _expect_same_devices(info, resized, "a resize")
        ctx.api.migrations.confirm(None, record.id)
        kept = _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "a confirmed resize")
        expect(kept.memory_mb == flavor.memory_mb, "a confirmed resize lost its new size")


@check(
    "migration.resize.revert",
    "a reverted resize gives the instance back its old size and state",
    COLD,
)
def _resize_revert(ctx: SuiteContext) -> None:
    ctx.require(*_COLD_STEPS, "power_off")
    with _moving(ctx, "resizerevert", PowerState.STOPPED) as info:
        record = ctx.api.migrations.resize(None, ctx.host, info.uuid, _bigger(info))
        _expect_on(ctx, info.uuid, ctx.host, PowerState.STOPPED, "a resize of a stopped instance")
        ctx.api.migrations.revert(None, record.id)
        back = _expect_on(ctx, info.uuid, ctx.host, PowerState.STOPPED, "a reverted resize")
        size = (back.vcpus, back.memory_mb, back.disk_gb)
        expect(
            size == (info.vcpus, info.memory_mb, info.disk_gb),
            f"a reverted resize left the instance at {size}",
        )


def _cold_check(state: str) -> Check:
    def run(ctx: SuiteContext) -> None:
        dest = _other_host(ctx)
        ctx.require(*_COLD_STEPS, *(["power_off"] if state == PowerState.STOPPED else []))
        with _moving(ctx, f"cold{state}", state) as info:
            record = ctx.api.migrations.migrate(None, ctx.host, dest, info.uuid)
            expect(
                record.status == MigrationStatus.FINISHED, f"the migration ended {record.status}"
            )
            moved = _expect_on(ctx, info.uuid, dest, state, "a cold migration")
            _expect_same_devices(info, moved, "a cold migration")
            ctx.api.migrations.confirm(None, record.id)
            _expect_on(ctx, info.uuid, dest, state, "a confirmed cold migration")
            # Confirmed, the source has nothing left to bring back.
            expect_error(
                exception.InvalidMigrationState,
                "reverting a confirmed migration",
                lambda: ctx.api.migrations.revert(None, record.id),
            )

    return Check(
        f"migration.cold.{state}",
        f"a cold migration moves a {state} instance and its devices to the other host, "
        "where it stays once confirmed",
        run,
        COLD,
    )


MIGRATION_CHECKS.extend(_cold_check(state) for state in (PowerState.RUNNING, PowerState.STOPPED))


@check(
    "migration.cold.revert",
    "a reverted cold migration leaves the instance on its source only, as it was",
    COLD,
)
def _cold_revert(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require(*_COLD_STEPS)
    with _moving(ctx, "coldrevert") as info:
        record = ctx.api.migrations.migrate(None, ctx.host, dest, info.uuid)
        ctx.api.migrations.revert(None, record.id)
        back = _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "a reverted migration")
        _expect_same_devices(info, back, "a reverted migration")


@check(
    "migration.steps_repeated",
    "each step of a cold migration run twice returns what it returned the first time",
    COLD,
)
def _steps_repeated(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require(*_COLD_STEPS)
    api = ctx.api
    with _moving(ctx, "coldsteps") as info:
        migration = _migration(ctx, info, MigrationKind.COLD, dest)
        dest_data = api.check_migration_destination(None, dest, migration)
        migration.assign(dest_data=dest_data)
        handed = api.migrate_disk_and_power_off(None, ctx.host, migration)
        expect(
            api.migrate_disk_and_power_off(None, ctx.host, migration) == handed,
            "migrate_disk_and_power_off run again handed over something else",
        )
        migration.assign(source_data=handed)
        first = api.finish_migration(None, dest, migration)
        second = api.finish_migration(None, dest, migration)
        expect(first == second, "finish_migration run again returned another instance")
        _expect_on(ctx, info.uuid, dest, PowerState.RUNNING, "finish_migration run twice")
        api.confirm_migration(None, ctx.host, migration)
        api.confirm_migration(None, ctx.host, migration)
        _expect_on(ctx, info.uuid, dest, PowerState.RUNNING, "confirm_migration run twice")


# Live migrations ---------------------------------------------------------------------------


@check(
    "live_migration.both_ways",
    "a running instance goes to the other host and back, running on exactly one at each end",
    LIVE,
)
def _live_both_ways(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require(*_LIVE_STEPS)
    with _moving(ctx, "live") as info:
        there = ctx.api.migrations.live_migrate(None, ctx.host, dest, info.uuid)
        expect(there.status == MigrationStatus.COMPLETED, f"the migration ended {there.status}")
        moved = _expect_on(ctx, info.uuid, dest, PowerState.RUNNING, "a live migration")
        _expect_same_devices(info, moved, "a live migration")
        back = ctx.api.migrations.live_migrate(None, dest, ctx.host, info.uuid)
        expect(back.status == MigrationStatus.COMPLETED, f"the way back ended {back.status}")
        _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "a live migration back")


@check(
    "live_migration.progress",
    "a live migration publishes its progress, ending at 100",
    LIVE,
)
def _live_progress(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require(*_LIVE_STEPS)
    collector = ctx.require_notifications()
    with _moving(ctx, "liveprogress") as info:
        ctxt = context.RequestContext()
        ctx.api.migrations.live_migrate(ctxt, ctx.host, dest, info.uuid)
        collector.for_request(
            ctxt.request_id, "instance.live_migration.end", ctx.notification_timeout
        )
        steps = [
            e.payload.progress
            for e in collector.events
            if e.payload.request_id == ctxt.request_id
            and e.event_type == "instance.live_migration.progress"
        ]
        expect(bool(steps) and steps[-1] == 100, f"the progress published was {steps}")
        expect(steps == sorted(steps), f"progress went {steps}")


@check(
    "live_migration.rollback",
    "a destination rolled back after its preparation leaves the instance running on its "
    "source only, and a rollback run again succeeds",
    LIVE,
)
def _live_rollback(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require(*_LIVE_STEPS)
    api = ctx.api
    with _moving(ctx, "liverollback") as info:
        migration = _migration(ctx, info, MigrationKind.LIVE, dest)
        migration.assign(dest_data=api.check_migration_destination(None, dest, migration))
        prepared = api.pre_live_migration(None, dest, migration)
        migration.assign(dest_data={**migration.dest_data, **prepared})
        api.rollback_live_migration_at_destination(None, dest, migration)
        api.rollback_live_migration_at_destination(None, dest, migration)
        _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "a rollback")


@check(
    "live_migration.abort",
    "an abort during a live migration leaves the instance running on exactly one host: the "
    "source if it took effect (MigrationAborted), else the destination",
    LIVE,
)
def _live_abort(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require(*_LIVE_STEPS, "abort_live_migration")
    migrations = ctx.api.migrations
    with _moving(ctx, "liveabort") as info:
        outcome: list[BaseException | object] = []

        def move() -> None:
            try:
                outcome.append(migrations.live_migrate(None, ctx.host, dest, info.uuid))
            except exception.ComputedError as exc:
                outcome.append(exc)

        mover = threading.Thread(target=move, name="conformance-live-abort")
        mover.start()
        aborted = False
        while mover.is_alive() and not aborted:
            running = migrations.list(instance_uuid=info.uuid, active=True)
            if running and running[0].status == MigrationStatus.RUNNING:
                with contextlib.suppress(exception.InvalidMigrationState):
                    migrations.abort(None, running[0].id)
                    aborted = True
            mover.join(0.05)
        mover.join(ctx.notification_timeout * 4)
        expect(not mover.is_alive(), "the aborted live migration did not end")
        (result,) = outcome
        if isinstance(result, exception.MigrationAborted):
            _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "an aborted migration")
        else:
            expect(
                not isinstance(result, BaseException),
                f"the aborted live migration failed otherwise: {result!r}",
            )
            _expect_on(
                ctx, info.uuid, dest, PowerState.RUNNING, "a migration that outran its abort"
            )


# Evacuations ----------------------------------------------------------------------------------


@check(
    "evacuation.refused_while_alive",
    "an evacuation from a host a live worker serves is refused, and nothing moves",
    EVACUATION,
)
def _evacuate_alive(ctx: SuiteContext) -> None:
    dest = _other_host(ctx)
    ctx.require("check_migration_destination", "evacuate")
    with _moving(ctx, "evacuate") as info:
        spec = ctx.spec("evacuate", uuid=info.uuid, image=ctx.image)
        expect_error(
            exception.InvalidRequest,
            "an evacuation from a live host",
            lambda: ctx.api.migrations.evacuate(None, ctx.host, dest, spec),
        )
        _expect_on(ctx, info.uuid, ctx.host, PowerState.RUNNING, "a refused evacuation")
