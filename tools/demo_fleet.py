"""The demo's fleet steps: choose hosts by free resources, see an over-commit refused,
disable a host, and ping the whole fleet at once (docs/fleet.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from computed import exception
from computed.objects import HostState, InstanceSpec
from computed.registry.api import utcnow
from computed.testing import wait_until
from computed.testing.workers import WorkerProcess
from rpcapi import ComputeAPI

__all__ = ["fleet"]

Show = Callable[[str], None]


def fleet(
    api: ComputeAPI,
    hosts: list[str],
    workers: dict[str, WorkerProcess],
    step: Show,
    show: Show,
    computedctl: Callable[..., None],
) -> None:
    """``workers`` serve the fake hosts, by host; ``computedctl(*args)`` runs the
    operator's command."""
    step("Scheduler: which hosts have 2 vCPUs and 4 GiB free? (the registry's inventory: no RPC)")
    wait_until(lambda: {s.host for s in api.list_hosts()} >= set(hosts), 30, "every host recorded")
    for state in api.list_hosts(vcpus=2, memory_mb=4096):
        show(_line(state))

    fakes = sorted(api.list_hosts(driver="fake"), key=lambda s: -(s.free("memory_mb") or 0))
    chosen = fakes[0]
    free = chosen.free("memory_mb") or 0
    share = free * 6 // 10
    step(
        f"Two schedulers pick {chosen.host} at once, each for {share} MiB of its {free} MiB "
        "free: the worker's claim lets one in"
    )
    specs = [
        InstanceSpec(uuid=str(uuid.uuid4()), name=f"big-{n}", vcpus=1, memory_mb=share)
        for n in (1, 2)
    ]

    def spawn(spec: InstanceSpec) -> str:
        try:
            api.spawn(None, chosen.host, spec)
        except exception.InsufficientResources as exc:
            return f"{spec.name}: {type(exc).__name__}: {exc}"
        return f"{spec.name}: spawned"

    with ThreadPoolExecutor(2) as pool:
        for outcome in pool.map(spawn, specs):
            show(outcome)
    wait_until(
        lambda: (api.list_hosts(hosts=[chosen.host]) or [chosen])[0].free("memory_mb") != free,
        30,
        f"the spawn recorded in {chosen.host}'s inventory",
    )
    show(_line(api.list_hosts(hosts=[chosen.host])[0]))
    for spec in specs:
        api.destroy(None, chosen.host, spec.uuid)

    other = fakes[-1].host
    step(f"Operator: computedctl host disable {other} (it takes no new instance)")
    computedctl("host", "disable", other, "--reason", "firmware upgrade")
    wait_until(
        lambda: f"Host {other} is disabled" in workers[other].log(),
        30,
        f"the worker logging {other} disabled",
    )
    try:
        api.spawn(
            None, other, InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64)
        )
    except exception.HostDisabled as exc:
        show(f"spawn on {other}: {type(exc).__name__}: {exc}")
    show(f"list_hosts() now offers: {', '.join(s.host for s in api.list_hosts())}")
    computedctl("host", "list")
    computedctl("host", "enable", other)

    step("Scheduler: ping every host at once, 8 at a time (one result or error per host)")
    results = api.for_each_host(None, [*hosts, "kvm-99"], "ping", concurrency=8)
    for host, result in results.items():
        answer = f"served by {result.value.worker_id}" if result.ok else f"{result.error}"
        show(f"{host}: {answer}")


def _line(state: HostState) -> str:
    age = state.age(utcnow())
    return (
        f"{state.host} ({state.driver}): {state.free('vcpus')} vCPUs, "
        f"{state.free('memory_mb')} MiB free, {state.instances} instances, measured {age:.1f} s ago"
    )
