"""Every check of the suite, each with a stable id and a one-line purpose.

Ids name what is checked, not how: ``transition.pause.from_stopped`` keeps
its meaning whatever the suite's code becomes, so CI history and the
registry can compare runs across releases. Each check counts in the result
of one operation group (:data:`drivers.base.OPERATION_GROUPS`); the checks
of devices (contract 1.2) are in :mod:`computed.conformance._devices`, those
of images, rescue and consoles (1.3) in :mod:`computed.conformance._images`.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from computed import exception
from computed.conformance._check import Check, group_of, registrar
from computed.conformance._claims import CLAIM_CHECKS
from computed.conformance._context import CheckFailed, CheckSkipped, SuiteContext, expect
from computed.conformance._devices import DEVICE_CHECKS
from computed.conformance._events import EVENT_CHECKS
from computed.conformance._images import IMAGE_CHECKS
from computed.conformance._migration import MIGRATION_CHECKS
from computed.conformance._semantics import SEMANTIC_CHECKS
from computed.objects import PowerState
from drivers import base

__all__ = ["CHECKS", "Check"]

CHECKS: list[Check] = []
check = registrar(CHECKS)


# Host -----------------------------------------------------------------------


@check("host.ping", "ping answers for every host with its worker, driver and RPC version", "host")
def _ping(ctx: SuiteContext) -> None:
    for host in ctx.hosts:
        pong = ctx.api.ping(None, host)
        expect(pong.host == host, f"ping on {host} answered for {pong.host}")
        expect(pong.driver == ctx.capabilities.driver, f"ping names driver {pong.driver}")
        expect(bool(pong.worker_id) and bool(pong.rpc_version), "ping lacks worker id or version")


@check(
    "host.capabilities",
    "capabilities name the driver and only known operations and features",
    "host",
)
def _capabilities(ctx: SuiteContext) -> None:
    caps = ctx.capabilities
    unknown = set(caps.operations) - set(base.ALL_OPERATIONS)
    expect(not unknown, f"unknown operations declared: {sorted(unknown)}")
    unknown = set(caps.features) - base.FEATURES
    expect(not unknown, f"unknown features declared: {sorted(unknown)}")
    expect(
        {"ping", "get_capabilities"} <= set(caps.operations),
        "ping and get_capabilities are mandatory",
    )
    expect(
        caps.support_tier in {t.value for t in base.SupportTier},
        f"unknown tier {caps.support_tier}",
    )


@check(
    "host.resources",
    "host resources are whole, non-negative figures with a hypervisor type",
    "host",
)
def _resources(ctx: SuiteContext) -> None:
    ctx.require("get_host_resources")
    res = ctx.api.get_host_resources(None, ctx.host)
    for name in (
        "vcpus",
        "vcpus_used",
        "memory_mb",
        "memory_mb_used",
        "disk_gb",
        "disk_gb_used",
        "instances",
    ):
        value = getattr(res, name)
        expect(isinstance(value, int) and value >= 0, f"{name} is {value!r}")
    expect(bool(res.hypervisor_type), "hypervisor_type is empty")
    expect(res.host == ctx.host, f"resources are for {res.host}, not {ctx.host}")


@check(
    "host.resources_match_instances",
    "the instance count in resources equals list_instances",
    "host",
)
def _resources_match(ctx: SuiteContext) -> None:
    ctx.require("get_host_resources", "list_instances")
    with ctx.instance("count"):
        listed = ctx.api.list_instances(None, ctx.host)
        res = ctx.api.get_host_resources(None, ctx.host)
        expect(
            res.instances == len(listed), f"resources say {res.instances}, list has {len(listed)}"
        )


@check(
    "host.resources_track_instances",
    "a spawn adds its vCPUs and memory to the host's use; destroy returns them",
    "host",
)
def _resources_track(ctx: SuiteContext) -> None:
    ctx.require("get_host_resources", "spawn", "destroy")
    before = ctx.api.get_host_resources(None, ctx.host)
    spec = ctx.spec("resources", vcpus=2, memory_mb=128)
    ctx.api.spawn(None, ctx.host, spec)
    try:
        during = ctx.api.get_host_resources(None, ctx.host)
    finally:
        ctx.api.destroy(None, ctx.host, spec.uuid)
    after = ctx.api.get_host_resources(None, ctx.host)
    expect(
        during.instances == before.instances + 1,
        f"instances {before.instances} -> {during.instances}",
    )
    expect(
        during.vcpus_used == before.vcpus_used + 2,
        f"vcpus_used {before.vcpus_used} -> {during.vcpus_used}",
    )
    expect(
        during.memory_mb_used == before.memory_mb_used + 128,
        f"memory_mb_used {before.memory_mb_used} -> {during.memory_mb_used}",
    )
    expect(
        (after.instances, after.vcpus_used, after.memory_mb_used)
        == (before.instances, before.vcpus_used, before.memory_mb_used),
        "destroy did not give the resources back",
    )


# Spawn, destroy, queries ----------------------------------------------------


@check("spawn.call", "spawn as a call returns the running instance with the requested shape")
def _spawn_call(ctx: SuiteContext) -> None:
    ctx.require("spawn", "destroy", "get_info")
    spec = ctx.spec("spawn", vcpus=2, memory_mb=128)
    info = ctx.api.spawn(None, ctx.host, spec)
    try:
        assert info is not None
        expect(info.uuid == spec.uuid, f"spawn returned {info.uuid}")
        expect(info.power_state == PowerState.RUNNING, f"spawned instance is {info.power_state}")
        expect(
            (info.vcpus, info.memory_mb) == (2, 128),
            f"shape is {info.vcpus} vCPUs, {info.memory_mb} MiB",
        )
        expect(info.name == spec.name, f"name came back as {info.name!r}")
        got = ctx.api.get_info(None, ctx.host, spec.uuid)
        expect(got.power_state == PowerState.RUNNING, f"get_info says {got.power_state}")
    finally:
        ctx.api.destroy(None, ctx.host, spec.uuid)


@check("spawn.idempotent", "spawning an existing UUID returns it and makes no second instance")
def _spawn_again(ctx: SuiteContext) -> None:
    ctx.require("list_instances")
    with ctx.instance("twice") as info:
        spec = ctx.spec("twice", uuid=info.uuid)
        again = ctx.api.spawn(None, ctx.host, spec)
        assert again is not None
        expect(again.uuid == info.uuid, "a second spawn returned another instance")
        matches = [i for i in ctx.api.list_instances(None, ctx.host) if i.uuid == info.uuid]
        expect(len(matches) == 1, f"{len(matches)} instances carry the UUID")


@check("destroy.call", "destroy removes the instance: get_info then raises InstanceNotFound")
def _destroy(ctx: SuiteContext) -> None:
    ctx.require("spawn", "destroy", "get_info")
    spec = ctx.spec("destroy")
    ctx.api.spawn(None, ctx.host, spec)
    ctx.api.destroy(None, ctx.host, spec.uuid)
    try:
        ctx.api.get_info(None, ctx.host, spec.uuid)
    except exception.InstanceNotFound:
        return
    raise CheckFailed("the instance is still there after destroy")


@check("destroy.missing", "destroying an instance that does not exist succeeds")
def _destroy_missing(ctx: SuiteContext) -> None:
    ctx.require("destroy")
    ctx.api.destroy(None, ctx.host, str(uuidlib.uuid4()))


@check(
    "get_info.missing",
    "get_info on a missing instance raises InstanceNotFound naming it and the host",
)
def _missing(ctx: SuiteContext) -> None:
    ctx.require("get_info")
    missing = str(uuidlib.uuid4())
    try:
        ctx.api.get_info(None, ctx.host, missing)
    except exception.InstanceNotFound as exc:
        expect(
            exc.kwargs.get("uuid") == missing and exc.kwargs.get("host") == ctx.host,
            f"context {exc.kwargs}",
        )
        return
    raise CheckFailed("no error for a missing instance")


@check(
    "list_instances.contents",
    "list_instances shows a spawned instance with its state, on its host only",
)
def _list(ctx: SuiteContext) -> None:
    ctx.require("list_instances")
    with ctx.instance(
        "listed", PowerState.STOPPED if ctx.supports("power_off") else PowerState.RUNNING
    ) as info:
        listed = {i.uuid: i for i in ctx.api.list_instances(None, ctx.host)}
        expect(info.uuid in listed, "the instance is missing from list_instances")
        expect(
            listed[info.uuid].power_state == info.power_state,
            f"listed as {listed[info.uuid].power_state}",
        )
        for other in ctx.hosts[1:]:
            expect(
                info.uuid not in {i.uuid for i in ctx.api.list_instances(None, other)},
                f"also listed on {other}",
            )


@check(
    "console_output.call",
    "get_console_output returns text, tail_lines keeps only the last lines",
    "console",
)
def _console(ctx: SuiteContext) -> None:
    ctx.require("get_console_output")
    with ctx.instance("console") as info:
        if not ctx.api.can_send_console_output(ctx.host):
            raise CheckSkipped(f"{ctx.host} speaks an RPC version without get_console_output")
        text = ctx.api.get_console_output(None, ctx.host, info.uuid)
        expect(isinstance(text, str), f"console output is {type(text).__name__}")
        tail = ctx.api.get_console_output(None, ctx.host, info.uuid, tail_lines=1)
        expect(len(tail.splitlines()) <= 1, f"tail_lines=1 gave {len(tail.splitlines())} lines")
        expect(text.endswith(tail), "the tail is not the end of the whole output")
    try:
        ctx.api.get_console_output(None, ctx.host, str(uuidlib.uuid4()))
    except exception.InstanceNotFound:
        return
    raise CheckFailed("console output of a missing instance did not raise InstanceNotFound")


@check("errors.invalid_request", "malformed arguments get InvalidRequest, not a driver error")
def _invalid(ctx: SuiteContext) -> None:
    ctx.require("get_info")
    try:
        ctx.api.get_info(None, ctx.host, "not-a-uuid")
    except exception.InvalidRequest:
        pass
    else:
        raise CheckFailed("a malformed UUID was accepted")
    ctx.require("reboot")
    with ctx.instance("badreboot") as info:
        try:
            ctx.api.reboot(None, ctx.host, info.uuid, "sideways")
        except exception.InvalidRequest:
            return
        raise CheckFailed("reboot type 'sideways' was accepted")


# Power-state transitions, generated from the contract's table -----------------


def _transition_check(operation: str, state: str) -> Check:
    transition = base.TRANSITIONS[operation]
    if state in transition.allowed:
        purpose = f"{operation} from {state} leads to {transition.target}"
    elif transition.idempotent and state == transition.target:
        purpose = f"{operation} when already {state} succeeds and changes nothing"
    else:
        purpose = f"{operation} from {state} is refused with InvalidPowerState"

    def run(ctx: SuiteContext) -> None:
        ctx.require(operation, "get_info")
        fields = {"image": ctx.image} if operation == "rescue" else {}
        with ctx.instance(f"{operation}-{state}", state, **fields) as info:
            try:
                acts = base.plan_transition(operation, info.uuid, state)
            except exception.InvalidPowerState:
                try:
                    ctx.act(operation, info.uuid)
                except exception.InvalidPowerState as exc:
                    expect(
                        exc.kwargs.get("state") == state,
                        f"error says state {exc.kwargs.get('state')}",
                    )
                    expect(
                        exc.kwargs.get("operation") == operation,
                        f"error names {exc.kwargs.get('operation')}",
                    )
                else:
                    raise CheckFailed(f"{operation} from {state} was accepted") from None
                final = ctx.api.get_info(None, ctx.host, info.uuid).power_state
                expect(final == state, f"a refused {operation} left the instance {final}")
                return
            expected = transition.target if acts else state
            result = ctx.act(operation, info.uuid)
            expect(
                result.power_state == expected,
                f"{operation} returned {result.power_state}, not {expected}",
            )
            final = ctx.api.get_info(None, ctx.host, info.uuid).power_state
            expect(final == expected, f"get_info after {operation} says {final}, not {expected}")

    # A check involving a rescue counts for the rescue group.
    group = "rescue" if PowerState.RESCUED in (state, transition.target) else group_of(operation)
    return Check(f"transition.{operation}.from_{state}", purpose, run, group)


CHECKS.extend(_transition_check(op, st) for op in base.TRANSITIONS for st in PowerState.ALL)


# Unsupported operations are refused honestly --------------------------------


def _unsupported_check(operation: str) -> Check:
    def run(ctx: SuiteContext) -> None:
        if ctx.supports(operation):
            raise CheckSkipped(f"the driver declares {operation} supported; other checks cover it")
        uuid = str(uuidlib.uuid4())
        api, host = ctx.api, ctx.host
        calls: dict[str, Callable[[], object]] = {
            "reboot.soft": lambda: api.reboot(None, host, uuid, "soft"),
            "reboot.hard": lambda: api.reboot(None, host, uuid, "hard"),
            "spawn": lambda: api.spawn(None, host, ctx.spec("unsupported")),
            "list_instances": lambda: api.list_instances(None, host),
            "get_host_resources": lambda: api.get_host_resources(None, host),
            "get_volume_connector": lambda: api.get_volume_connector(None, host),
            "attach_volume": lambda: api.attach_volume(None, host, uuid, ctx.volume()),
            "detach_volume": lambda: api.detach_volume(None, host, uuid, "unsupported"),
            "extend_volume": lambda: api.extend_volume(None, host, uuid, "unsupported", 2),
            "attach_interface": lambda: api.attach_interface(None, host, uuid, ctx.vif()),
            "detach_interface": lambda: api.detach_interface(None, host, uuid, "unsupported"),
            "snapshot": lambda: api.snapshot(None, host, uuid, "unsupported"),
            "delete_image": lambda: api.delete_image(None, host, "unsupported"),
        }

        def by_uuid() -> object:
            return getattr(ctx.api, operation)(None, ctx.host, uuid)

        try:
            calls.get(operation, by_uuid)()
        except exception.UnsupportedOperation:
            return
        except exception.ComputedError as exc:
            raise CheckFailed(
                f"declared unsupported, but failed with {type(exc).__name__}: {exc}"
            ) from None
        raise CheckFailed(f"declared unsupported, but {operation} succeeded")

    return Check(
        f"unsupported.{operation}",
        f"{operation}, when declared unsupported, is refused with UnsupportedOperation",
        run,
        group_of(operation),
    )


_OPTIONAL = [op for op in base.ALL_OPERATIONS if op not in ("ping", "get_capabilities", "reboot")]
CHECKS.extend(_unsupported_check(op) for op in [*_OPTIONAL, "reboot.soft", "reboot.hard"])


# Casts and their outcome notifications ----------------------------------------


@check("cast.spawn", "spawn as a cast creates the instance and notifies instance.spawn.end")
def _cast_spawn(ctx: SuiteContext) -> None:
    ctx.require("spawn", "destroy", "get_info")
    spec = ctx.spec("castspawn")
    try:
        event, _ = ctx.cast_and_wait("spawn", ctx.host, instance=spec)
        expect(event == "instance.spawn.end", f"got {event}")
        info = ctx.api.get_info(None, ctx.host, spec.uuid)
        expect(info.power_state == PowerState.RUNNING, f"instance is {info.power_state}")
    finally:
        ctx.api.destroy(None, ctx.host, spec.uuid)


@check("cast.destroy", "destroy as a cast removes the instance and notifies instance.destroy.end")
def _cast_destroy(ctx: SuiteContext) -> None:
    ctx.require("spawn", "destroy", "get_info")
    spec = ctx.spec("castdestroy")
    ctx.api.spawn(None, ctx.host, spec)
    event, _ = ctx.cast_and_wait("destroy", ctx.host, uuid=spec.uuid)
    expect(event == "instance.destroy.end", f"got {event}")
    try:
        ctx.api.get_info(None, ctx.host, spec.uuid)
    except exception.InstanceNotFound:
        return
    raise CheckFailed("the instance survived a destroy cast")


def _cast_check(operation: str) -> Check:
    transition = base.TRANSITIONS[operation]
    method = operation.split(".")[0]

    def run(ctx: SuiteContext) -> None:
        ctx.require(operation)
        source = sorted(transition.allowed)[0]
        fields = {"image": ctx.image} if operation == "rescue" else {}
        with ctx.instance(f"cast-{operation}", source, **fields) as info:
            kwargs = {"uuid": info.uuid}
            if method == "reboot":
                kwargs["reboot_type"] = operation.split(".")[1]
            event, _ = ctx.cast_and_wait(method, ctx.host, **kwargs)
            expect(event == f"instance.{method}.end", f"got {event}")
            state = ctx.api.get_info(None, ctx.host, info.uuid).power_state
            expect(state == transition.target, f"after the cast the instance is {state}")

    return Check(
        f"cast.{operation}",
        f"{operation} as a cast takes effect and notifies instance.{method}.end",
        run,
        group_of(method),
    )


CHECKS.extend(_cast_check(op) for op in base.TRANSITIONS)


@check("cast.error", "a cast that fails notifies instance.<operation>.error with the error's class")
def _cast_error(ctx: SuiteContext) -> None:
    ctx.require("power_off", "pause")
    collector = ctx.require_notifications()
    with ctx.instance("casterror", PowerState.STOPPED) as info:
        event, request_id = ctx.cast_and_wait("pause", ctx.host, uuid=info.uuid)
        expect(event == "instance.pause.error", f"got {event}")
        found = collector.for_request(request_id, "instance.pause.error", ctx.notification_timeout)
        expect(
            found.payload.error_class == "InvalidPowerState",
            f"error class {found.payload.error_class}",
        )


# Concurrency ---------------------------------------------------------------------


@check("concurrency.one_host", "four spawns at once on one host all succeed and are all listed")
def _concurrent_one_host(ctx: SuiteContext) -> None:
    ctx.require("spawn", "destroy", "list_instances")
    specs = [ctx.spec(f"together-{n}") for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        try:
            infos = list(pool.map(lambda s: ctx.api.spawn(None, ctx.host, s), specs))
            expect(
                all(i is not None and i.power_state == PowerState.RUNNING for i in infos),
                "not all running",
            )
            listed = {i.uuid for i in ctx.api.list_instances(None, ctx.host)}
            expect({s.uuid for s in specs} <= listed, "some concurrent spawns are not listed")
        finally:
            list(pool.map(lambda s: ctx.api.destroy(None, ctx.host, s.uuid), specs))


@check("concurrency.across_hosts", "spawns at once on different hosts each land on their own host")
def _concurrent_hosts(ctx: SuiteContext) -> None:
    if len(ctx.hosts) < 2:
        raise CheckSkipped("needs two hosts (pass --host twice)")
    ctx.require("spawn", "destroy", "list_instances")
    specs = {host: ctx.spec(f"across-{n}") for n, host in enumerate(ctx.hosts)}
    with ThreadPoolExecutor(len(specs)) as pool:
        try:
            list(pool.map(lambda item: ctx.api.spawn(None, item[0], item[1]), specs.items()))
            for host, spec in specs.items():
                listed = {i.uuid for i in ctx.api.list_instances(None, host)}
                expect(spec.uuid in listed, f"missing on {host}")
                others = {s.uuid for h, s in specs.items() if h != host}
                expect(not (others & listed), f"{host} lists another host's instance")
        finally:
            list(pool.map(lambda item: ctx.api.destroy(None, item[0], item[1].uuid), specs.items()))


@check(
    "concurrency.same_instance", "operations racing on one instance are serialized and all succeed"
)
def _concurrent_same(ctx: SuiteContext) -> None:
    ctx.require("reboot.hard", "get_info")
    with ctx.instance("race") as info, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ctx.act("reboot.hard", info.uuid), range(4)))
        expect(all(r.power_state == PowerState.RUNNING for r in results), "a racing reboot failed")
        state = ctx.api.get_info(None, ctx.host, info.uuid).power_state
        expect(state == PowerState.RUNNING, f"after racing reboots the instance is {state}")


# Semantics across operations: repeated spawns, hosts, missing instances -------------

CHECKS.extend(SEMANTIC_CHECKS)


# Devices (contract 1.2) -------------------------------------------------------------

CHECKS.extend(DEVICE_CHECKS)


# Images, rescue and consoles (contract 1.3) -------------------------------------------

CHECKS.extend(IMAGE_CHECKS)


# Moving instances (contract 1.4) ------------------------------------------------------

CHECKS.extend(MIGRATION_CHECKS)


# Changes no operation made ----------------------------------------------------------

CHECKS.extend(EVENT_CHECKS)


# Claims: a spawn the host has no room for ---------------------------------------------

CHECKS.extend(CLAIM_CHECKS)
