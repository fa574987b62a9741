"""Checks of claims: the worker refuses a spawn that does not fit its host, before the driver runs.

The worker, not the driver, claims resources (:mod:`computed._claims`); these
checks prove that a driver's worker measures its host faithfully enough
for the claim to hold, and that a refused spawn leaves nothing behind.
"""

from __future__ import annotations

from computed import exception
from computed.conformance._check import Check, registrar
from computed.conformance._context import CheckSkipped, SuiteContext, expect, expect_error
from computed.objects.fleet import capacity
from computed.objects.instance import MAX_MEMORY_MB

__all__ = ["CLAIM_CHECKS"]

CLAIM_CHECKS: list[Check] = []
check = registrar(CLAIM_CHECKS)


@check(
    "claims.spawn_too_large",
    "a spawn larger than the host's free memory is refused with InsufficientResources "
    "and leaves nothing behind",
)
def _spawn_too_large(ctx: SuiteContext) -> None:
    ctx.require("spawn", "list_instances", "get_host_resources")
    recorded = ctx.api.list_hosts(hosts=[ctx.host], alive=None, include_disabled=True)
    if not recorded:
        raise CheckSkipped(f"the worker of {ctx.host} records no inventory (an older release)")
    ratio = recorded[0].ram_allocation_ratio
    before = ctx.api.get_host_resources(None, ctx.host)
    limit = capacity(before.memory_mb, ratio)
    if limit is None:
        raise CheckSkipped(f"{ctx.host} reports no memory: nothing limits a spawn")
    wanted = limit - before.memory_mb_used + 1
    if wanted > MAX_MEMORY_MB:
        raise CheckSkipped(f"{ctx.host} has more free memory than one instance may ask for")
    spec = ctx.spec("too-large", vcpus=1, memory_mb=max(wanted, 1))
    error = expect_error(
        exception.InsufficientResources,
        f"a spawn of {spec.memory_mb} MiB",
        lambda: ctx.api.spawn(None, ctx.host, spec),
    )
    expect(
        (getattr(error, "resource", None), getattr(error, "requested", None))
        == ("memory_mb", spec.memory_mb),
        f"the refusal names {error.kwargs}, not memory_mb {spec.memory_mb}",
    )
    expect(getattr(error, "host", None) == ctx.host, f"the refusal names host {error.kwargs}")
    left = [i.uuid for i in ctx.api.list_instances(None, ctx.host) if i.uuid == spec.uuid]
    expect(not left, f"the refused spawn left instance {spec.uuid} on {ctx.host}")
    after = ctx.api.get_host_resources(None, ctx.host)
    expect(
        after.memory_mb_used == before.memory_mb_used,
        f"memory_mb_used {before.memory_mb_used} -> {after.memory_mb_used} after a refused spawn",
    )
