"""Checks of images, rescue and consoles (contract 1.3).

As with devices, a check runs only when the driver declares the operations
it uses; a driver that declares none of a group's is rated "not claimed"
for it, and the ``unsupported.*`` checks prove that it refuses them. The
transitions into and out of ``rescued`` are checked with the others, from
the contract's table (``transition.rescue.*``, ``transition.*.from_rescued``).
"""

from __future__ import annotations

import contextlib
import functools
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

from oslo_context import context

from computed import exception
from computed.conformance._check import Check, registrar
from computed.conformance._context import SuiteContext, expect, expect_error
from computed.objects import ConsoleConnection, ImageRef, InstanceInfo, PowerState
from computed.objects.image import CONSOLE_PROTOCOLS
from drivers import base

__all__ = ["IMAGE_CHECKS"]

IMAGE_CHECKS: list[Check] = []
check = registrar(IMAGE_CHECKS)

IMAGES, RESCUE, CONSOLE = "images", "rescue", "console"


def _image_name(label: str) -> str:
    return f"conformance-{label}-{uuidlib.uuid4().hex[:8]}"


@contextlib.contextmanager
def _snapshot(ctx: SuiteContext, info: InstanceInfo, label: str) -> Iterator[ImageRef]:
    """Snapshot the instance; delete the image afterwards if the driver can.

    The instances snapshotted are made from ``[conformance] image``: what a
    snapshot copies is a root disk.
    """
    name = _image_name(label)
    image = ctx.api.snapshot(None, ctx.host, info.uuid, name)
    assert image is not None
    try:
        _check_image(ctx, image, info.uuid, name)
        yield image
    finally:
        if ctx.supports("delete_image"):
            with contextlib.suppress(exception.ComputedError):
                ctx.api.delete_image(None, ctx.host, image.image_id)


def _check_image(ctx: SuiteContext, image: ImageRef, uuid: str, name: str) -> None:
    expect(isinstance(image, ImageRef), f"snapshot returned {type(image).__name__}")
    expect(image.name == name, f"the image is named {image.name!r}, not {name!r}")
    expect(image.instance_uuid == uuid, f"the image is of {image.instance_uuid}, not {uuid}")
    expect(image.host == ctx.host, f"the image is on {image.host}, not {ctx.host}")
    expect(bool(image.image_id), "the image has an empty image_id")
    expect(bool(image.location), "the image has an empty location")
    expect(bool(image.disk_format), "the image has an empty disk_format")


_Listing = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


def _devices(info: InstanceInfo) -> _Listing:
    disks: list[tuple[Any, ...]] = sorted(
        (d.device_name, d.kind, d.boot_index, d.volume_id, d.image) for d in info.block_devices
    )
    ports: list[tuple[Any, ...]] = sorted(
        (i.port_id, i.mac_address, i.network) for i in info.network_interfaces
    )
    return disks, ports


# Images -----------------------------------------------------------------------------


@check(
    "snapshot.call",
    "snapshot of a running instance returns its image (name, instance, host, id, location, "
    "format) and leaves the instance running",
    IMAGES,
)
def _snapshot_call(ctx: SuiteContext) -> None:
    ctx.require("snapshot", "get_info")
    with ctx.instance("snapshot", image=ctx.image) as info, _snapshot(ctx, info, "call"):
        state = ctx.api.get_info(None, ctx.host, info.uuid).power_state
        expect(state == PowerState.RUNNING, f"after the snapshot the instance is {state}")


def _snapshot_from(state: str) -> Check:
    def run(ctx: SuiteContext) -> None:
        ctx.require("snapshot", "get_info")
        with ctx.instance(f"snapshot-{state}", state, image=ctx.image) as info:
            if state in base.SNAPSHOT_STATES:
                with _snapshot(ctx, info, state):
                    pass
            else:
                exc = expect_error(
                    exception.InvalidPowerState,
                    f"a snapshot of a {state} instance",
                    functools.partial(
                        ctx.api.snapshot, None, ctx.host, info.uuid, _image_name(state)
                    ),
                )
                expect(
                    exc.kwargs.get("state") == state, f"the error says {exc.kwargs.get('state')}"
                )
            after = ctx.api.get_info(None, ctx.host, info.uuid).power_state
            expect(after == state, f"the instance was {state}, the snapshot left it {after}")

    verdict = "is taken" if state in base.SNAPSHOT_STATES else "is refused with InvalidPowerState"
    return Check(
        f"snapshot.from_{state}",
        f"a snapshot of a {state} instance {verdict} and leaves it {state}",
        run,
        IMAGES,
    )


IMAGE_CHECKS.extend(
    _snapshot_from(state) for state in (PowerState.STOPPED, PowerState.PAUSED, PowerState.SUSPENDED)
)


@check(
    "snapshot.idempotent",
    "a second snapshot with the name of an image the instance has returns that image",
    IMAGES,
)
def _snapshot_twice(ctx: SuiteContext) -> None:
    ctx.require("snapshot")
    with (
        ctx.instance("snapshottwice", image=ctx.image) as info,
        _snapshot(ctx, info, "twice") as first,
    ):
        again = ctx.api.snapshot(None, ctx.host, info.uuid, first.name)
        assert again is not None
        expect(
            again.image_id == first.image_id,
            f"a second snapshot named {first.name!r} made image {again.image_id}, "
            f"not {first.image_id} again",
        )


@check(
    "snapshot.missing",
    "a snapshot of an instance that does not exist raises InstanceNotFound",
    IMAGES,
)
def _snapshot_missing(ctx: SuiteContext) -> None:
    ctx.require("snapshot")
    expect_error(
        exception.InstanceNotFound,
        "a snapshot of a missing instance",
        functools.partial(ctx.api.snapshot, None, ctx.host, str(uuidlib.uuid4()), _image_name("x")),
    )


@check(
    "snapshot.progress",
    "snapshot as a cast publishes instance.snapshot.progress (0 to 100, never going back) "
    "and an end carrying the image",
    IMAGES,
)
def _snapshot_progress(ctx: SuiteContext) -> None:
    ctx.require("snapshot")
    collector = ctx.require_notifications()
    with ctx.instance("snapshotcast", image=ctx.image) as info:
        name = _image_name("cast")
        ctxt = context.RequestContext()
        ctx.api.snapshot(ctxt, ctx.host, info.uuid, name, cast=True)
        ended = collector.wait_for(
            lambda e: (
                e.payload.request_id == ctxt.request_id
                and e.event_type in ("instance.snapshot.end", "instance.snapshot.error")
            ),
            ctx.notification_timeout,
        )
        image = ended.payload.image
        try:
            expect(
                ended.event_type == "instance.snapshot.end",
                f"got {ended.event_type}: {ended.payload.error_message}",
            )
            expect(image is not None, "instance.snapshot.end carries no image")
            assert image is not None
            _check_image(ctx, image, info.uuid, name)
            steps = [
                e.payload.progress
                for e in collector.events
                if e.payload.request_id == ctxt.request_id
                and e.event_type == "instance.snapshot.progress"
            ]
            expect(bool(steps), "no instance.snapshot.progress was published")
            expect(
                all(0 <= p <= 100 for p in steps) and steps == sorted(steps),
                f"progress went {steps}",
            )
            expect(steps[-1] == 100, f"the last progress was {steps[-1]}, not 100")
        finally:
            if image is not None and ctx.supports("delete_image"):
                with contextlib.suppress(exception.ComputedError):
                    ctx.api.delete_image(None, ctx.host, image.image_id)


@check(
    "delete_image.call",
    "delete_image removes an image, and deleting it again succeeds; a snapshot with its "
    "name afterwards is taken again",
    IMAGES,
)
def _delete_image(ctx: SuiteContext) -> None:
    ctx.require("snapshot", "delete_image")
    with ctx.instance("deleteimage", image=ctx.image) as info:
        name = _image_name("delete")
        image = ctx.api.snapshot(None, ctx.host, info.uuid, name)
        assert image is not None
        ctx.api.delete_image(None, ctx.host, image.image_id)
        ctx.api.delete_image(None, ctx.host, image.image_id)
        with contextlib.ExitStack() as cleanup:
            again = ctx.api.snapshot(None, ctx.host, info.uuid, name)
            assert again is not None
            cleanup.callback(ctx.api.delete_image, None, ctx.host, again.image_id)
            _check_image(ctx, again, info.uuid, name)


@check("delete_image.missing", "deleting an image the host never made succeeds", IMAGES)
def _delete_missing(ctx: SuiteContext) -> None:
    ctx.require("delete_image")
    ctx.api.delete_image(None, ctx.host, str(uuidlib.uuid4()))


# Rescue -----------------------------------------------------------------------------


@check(
    "rescue.devices_kept",
    "a rescued instance reports its own devices, refuses device changes, and is unrescued "
    "running with the devices it had",
    RESCUE,
)
def _rescue_devices(ctx: SuiteContext) -> None:
    ctx.require("rescue", "unrescue", "get_info")
    with ctx.instance("rescuedevices", image=ctx.image) as info:
        before = _devices(info)
        rescued = ctx.api.rescue(None, ctx.host, info.uuid)
        assert rescued is not None
        expect(rescued.power_state == PowerState.RESCUED, f"rescue left it {rescued.power_state}")
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(current.power_state == PowerState.RESCUED, f"get_info says {current.power_state}")
        expect(
            _devices(current) == before,
            f"a rescued instance reports {_devices(current)}, not its own devices {before}",
        )
        if ctx.supports("attach_interface"):
            expect_error(
                exception.InvalidPowerState,
                "attaching an interface to a rescued instance",
                functools.partial(ctx.api.attach_interface, None, ctx.host, info.uuid, ctx.vif()),
            )
        back = ctx.api.unrescue(None, ctx.host, info.uuid)
        assert back is not None
        expect(back.power_state == PowerState.RUNNING, f"unrescue left it {back.power_state}")
        expect(
            _devices(back) == before,
            f"after unrescue the instance has {_devices(back)}, not {before}",
        )


@check(
    "rescue.image",
    "rescue with a named rescue image rescues the instance",
    RESCUE,
)
def _rescue_image(ctx: SuiteContext) -> None:
    ctx.require("rescue", "unrescue")
    with ctx.instance("rescueimage", PowerState.STOPPED) as info:
        rescued = ctx.api.rescue(None, ctx.host, info.uuid, rescue_image=ctx.image)
        assert rescued is not None
        expect(rescued.power_state == PowerState.RESCUED, f"rescue left it {rescued.power_state}")


@check(
    "rescue.destroy",
    "destroying a rescued instance removes it, rescue and all",
    RESCUE,
)
def _rescue_destroy(ctx: SuiteContext) -> None:
    ctx.require("rescue", "get_info")
    with ctx.instance("rescuedestroy", image=ctx.image) as info:
        ctx.api.rescue(None, ctx.host, info.uuid)
        ctx.api.destroy(None, ctx.host, info.uuid)
        expect_error(
            exception.InstanceNotFound,
            "get_info of a destroyed rescued instance",
            functools.partial(ctx.api.get_info, None, ctx.host, info.uuid),
        )
        listed = [i.uuid for i in ctx.api.list_instances(None, ctx.host)]
        expect(info.uuid not in listed, "a destroyed rescued instance is still listed")


@check("rescue.missing", "rescue and unrescue of a missing instance raise InstanceNotFound", RESCUE)
def _rescue_missing(ctx: SuiteContext) -> None:
    ctx.require("rescue", "unrescue")
    for operation in ("rescue", "unrescue"):
        expect_error(
            exception.InstanceNotFound,
            f"{operation} of a missing instance",
            functools.partial(getattr(ctx.api, operation), None, ctx.host, str(uuidlib.uuid4())),
        )


# Consoles ---------------------------------------------------------------------------


def _console_check(kind: str) -> Check:
    operation = f"get_{kind}_console"

    def run(ctx: SuiteContext) -> None:
        ctx.require(operation)
        with ctx.instance(f"{kind}console") as info:
            console = getattr(ctx.api, operation)(None, ctx.host, info.uuid)
            expect(isinstance(console, ConsoleConnection), f"got {type(console).__name__}")
            expect(console.kind == kind, f"a {kind} console came back as {console.kind}")
            expect(console.instance_uuid == info.uuid, f"the console is of {console.instance_uuid}")
            expect(
                console.protocol in CONSOLE_PROTOCOLS[kind],
                f"protocol {console.protocol!r} is not one of {sorted(CONSOLE_PROTOCOLS[kind])}",
            )
            expect(
                console.path is not None or (console.host is not None and console.port is not None),
                "the console has neither a host and port nor a path",
            )
        expect_error(
            exception.InstanceNotFound,
            f"{operation} of a missing instance",
            functools.partial(getattr(ctx.api, operation), None, ctx.host, str(uuidlib.uuid4())),
        )

    return Check(
        f"console.{kind}",
        f"{operation} says where the console of a running instance is (protocol, host and port "
        "or path); a missing instance raises InstanceNotFound",
        run,
        CONSOLE,
    )


def _console_stopped(kind: str) -> Check:
    operation = f"get_{kind}_console"

    def run(ctx: SuiteContext) -> None:
        ctx.require(operation)
        with ctx.instance(f"{kind}stopped", PowerState.STOPPED) as info:
            expect_error(
                exception.InvalidPowerState,
                f"{operation} of a stopped instance",
                functools.partial(getattr(ctx.api, operation), None, ctx.host, info.uuid),
            )

    return Check(
        f"console.{kind}.stopped",
        f"{operation} of a stopped instance is refused with InvalidPowerState",
        run,
        CONSOLE,
    )


IMAGE_CHECKS.extend(
    make(kind) for kind in ("serial", "graphical") for make in (_console_check, _console_stopped)
)
