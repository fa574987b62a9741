"""Checks of the semantics every driver honours that no single operation's checks cover.

* A repeated spawn leaves the existing instance exactly as it was, its power
  state and shape included (``spawn.existing_unchanged``).
* Idempotency is per host: an instance is its UUID on its host, so the same
  UUID spawned on another host of the worker is another instance there
  (``spawn.idempotent_per_host``), as a migration's destination needs it.
* Every power-state operation on a missing instance raises InstanceNotFound
  naming it and the host (``missing.<operation>``), never the driver's own
  error; the device, image and rescue groups check theirs the same way.
"""

from __future__ import annotations

import uuid as uuidlib

from computed import exception
from computed.conformance._check import Check, group_of, registrar
from computed.conformance._context import CheckSkipped, SuiteContext, expect, expect_error
from computed.objects import PowerState
from drivers import base

__all__ = ["SEMANTIC_CHECKS"]

SEMANTIC_CHECKS: list[Check] = []
check = registrar(SEMANTIC_CHECKS)


@check(
    "spawn.existing_unchanged",
    "a repeated spawn leaves the existing instance as it was: its power state and shape",
)
def _spawn_existing_unchanged(ctx: SuiteContext) -> None:
    ctx.require("spawn", "power_off", "get_info")
    with ctx.instance("unchanged", PowerState.STOPPED) as info:
        # The same UUID asked again, shaped otherwise: the instance that exists wins.
        again = ctx.spec("unchanged-again", uuid=info.uuid, vcpus=info.vcpus + 1)
        returned = ctx.api.spawn(None, ctx.host, again)
        assert returned is not None
        expect(
            returned.power_state == PowerState.STOPPED,
            f"a repeated spawn returned the stopped instance {returned.power_state}",
        )
        expect(returned.vcpus == info.vcpus, f"a repeated spawn reshaped it: {returned.vcpus}")
        now = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(
            now.power_state == PowerState.STOPPED,
            f"after a repeated spawn the stopped instance is {now.power_state}",
        )
        expect(now.vcpus == info.vcpus, f"after a repeated spawn it has {now.vcpus} vCPUs")


@check(
    "spawn.idempotent_per_host",
    "a UUID that exists on one host is a new instance when spawned on another",
)
def _spawn_per_host(ctx: SuiteContext) -> None:
    if len(ctx.hosts) < 2:
        raise CheckSkipped("needs two hosts (pass --host twice)")
    ctx.require("spawn", "destroy", "list_instances")
    first, second = ctx.hosts[0], ctx.hosts[1]
    with ctx.instance("per-host", host=first) as info:
        spec = ctx.spec("per-host", uuid=info.uuid)
        try:
            made = ctx.api.spawn(None, second, spec)
            assert made is not None
            expect(made.host == second, f"spawn on {second} returned the instance on {made.host}")
            listed = {i.uuid for i in ctx.api.list_instances(None, second)}
            expect(info.uuid in listed, f"{second} does not list the instance spawned there")
        finally:
            ctx.api.destroy(None, second, info.uuid)
        listed = {i.uuid for i in ctx.api.list_instances(None, first)}
        expect(info.uuid in listed, f"destroying it on {second} removed it from {first}")


def _missing_check(operation: str) -> Check:
    def run(ctx: SuiteContext) -> None:
        ctx.require(operation)
        missing = str(uuidlib.uuid4())
        error = expect_error(
            exception.InstanceNotFound,
            f"{operation} on a missing instance",
            lambda: ctx.act(operation, missing),
        )
        expect(
            (error.kwargs.get("uuid"), error.kwargs.get("host")) == (missing, ctx.host),
            f"InstanceNotFound says {error.kwargs}",
        )

    return Check(
        f"missing.{operation}",
        f"{operation} on a missing instance raises InstanceNotFound naming it and the host",
        run,
        group_of(operation),
    )


# Rescue and unrescue have theirs in the rescue group (rescue.missing).
SEMANTIC_CHECKS.extend(
    _missing_check(operation)
    for operation, transition in base.TRANSITIONS.items()
    if PowerState.RESCUED not in (transition.target, *transition.allowed)
)
