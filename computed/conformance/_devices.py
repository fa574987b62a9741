"""Checks of devices (contract 1.2): spawns with devices, volumes, interfaces.

A group's checks run only when the driver declares the operations they
use (``ctx.require`` skips the others), and each part of a spawn with
devices only when the driver declares the matching ``spawn.*`` feature. A
driver that declares none of them is rated "not claimed" for the volumes
and interfaces groups, and the ``unsupported.*`` checks prove that it
refuses them.

A hypervisor without device hot-plug changes the devices of a stopped
instance only; its driver refuses a running one with InvalidPowerState
naming ``stopped`` as the state that allows the change. The
``*.attach.from_running`` checks are then skipped, and the other checks,
whose point is not liveness, use stopped instances.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from computed import exception
from computed.conformance._check import Check, registrar
from computed.conformance._context import (
    CheckFailed,
    CheckSkipped,
    SuiteContext,
    expect,
    expect_error,
)
from computed.objects import (
    BlockDevice,
    DeviceKind,
    InstanceInfo,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from drivers import base

__all__ = ["DEVICE_CHECKS"]

DEVICE_CHECKS: list[Check] = []
check = registrar(DEVICE_CHECKS)

VOLUMES, INTERFACES = "volumes", "interfaces"
_SPAWN_FEATURES = ("spawn.ephemeral_disks", "spawn.volumes", "spawn.network_interfaces")

#: Why the checks of changing a running instance's devices are skipped.
NOT_LIVE = "the hypervisor cannot change devices of a running instance"


def _needs_stopped(exc: BaseException) -> bool:
    """Whether ``exc`` is a driver's refusal to change a running instance's devices
    as its hypervisor's rule: InvalidPowerState for ``running``, a state the
    contract allows, naming ``stopped`` alone as the state that does."""
    return (
        isinstance(exc, exception.InvalidPowerState)
        and exc.kwargs.get("state") == PowerState.RUNNING
        and exc.kwargs.get("allowed") == PowerState.STOPPED
    )


def _on_instance(
    ctx: SuiteContext, label: str, run: Callable[[InstanceInfo], None], **fields: Any
) -> None:
    """Run ``run`` with a new instance (``fields`` for its spec) whose devices
    can change: a running one, or a stopped one once the driver has said its
    hypervisor cannot change a running instance's devices (then ``run`` starts
    again on a stopped one)."""
    if ctx.live_device_changes is not False:
        try:
            with ctx.instance(label, **fields) as info:
                run(info)
            return
        except exception.InvalidPowerState as exc:
            if not _needs_stopped(exc):
                raise
            ctx.live_device_changes = False
    with ctx.instance(label, PowerState.STOPPED, **fields) as info:
        run(info)


def _cast(ctx: SuiteContext, operation: str, **kwargs: Any) -> str:
    """Cast a device change; return its end or error event type.

    :raises computed.exception.InvalidPowerState: the refusal that the error
        notification reports, if it says that the instance must be stopped.
    """
    event = ctx.cast(operation, ctx.host, **kwargs)
    payload = event.payload
    if (
        event.event_type == f"instance.{operation}.error"
        and payload.error_class == exception.InvalidPowerState.__name__
    ):
        refusal = exception.InvalidPowerState(payload.error_message, **payload.error_kwargs)
        if _needs_stopped(refusal):
            raise refusal
    return event.event_type


def _volume_of(info: InstanceInfo, volume_id: str, after: str) -> BlockDevice:
    """The attached volume, checked to be reported as the contract says."""
    device = info.volume(volume_id)
    if device is None:
        raise CheckFailed(f"after {after}, volume {volume_id} is not listed")
    expect(device.kind == DeviceKind.VOLUME, f"volume {volume_id} is listed as {device.kind}")
    expect(bool(device.device_name), f"volume {volume_id} is listed without a device name")
    expect(device.connection_info is None, f"volume {volume_id} is listed with its connection info")
    return device


def _interface_of(info: InstanceInfo, vif: NetworkInterface, after: str) -> NetworkInterface:
    found = info.interface(vif.port_id)
    if found is None:
        raise CheckFailed(f"after {after}, port {vif.port_id} is not listed")
    expect(
        found.mac_address == vif.mac_address,
        f"port {vif.port_id} is listed with MAC {found.mac_address}, not {vif.mac_address}",
    )
    expect(found.network == vif.network, f"port {vif.port_id} is listed on {found.network}")
    expect(bool(found.device_name), f"port {vif.port_id} is listed without a device name")
    return found


def _count(info: InstanceInfo, volume_id: str | None = None, port_id: str | None = None) -> int:
    if volume_id is not None:
        return sum(1 for d in info.block_devices if d.volume_id == volume_id)
    return sum(1 for i in info.network_interfaces if i.port_id == port_id)


def _names(info: InstanceInfo) -> list[tuple[str | None, str | None]]:
    return sorted((d.device_name, d.volume_id) for d in info.block_devices)


def _expect_error(
    error: type[exception.ComputedError], what: str, call: Callable[[], object]
) -> None:
    # A refusal to change a running instance's devices goes to _on_instance,
    # which runs the check again on a stopped one.
    expect_error(error, what, call, passes_through=_needs_stopped)


# Spawn with devices ---------------------------------------------------------------


@check(
    "spawn.devices.reported",
    "a spawn builds its root disk, ephemeral disk, file and iSCSI volumes and two "
    "interfaces, and reports each (as far as the driver declares spawn.* features)",
)
def _spawn_devices(ctx: SuiteContext) -> None:
    declared = [f for f in _SPAWN_FEATURES if ctx.supports(f)]
    if not declared:
        raise CheckSkipped(f"needs one of {', '.join(_SPAWN_FEATURES)}")
    ctx.require("get_info")
    devices = [BlockDevice(kind=DeviceKind.IMAGE, image=ctx.image, size_gb=1, boot_index=0)]
    if "spawn.ephemeral_disks" in declared:
        devices.append(BlockDevice(kind=DeviceKind.BLANK, size_gb=1))
    volumes = [ctx.volume("file"), ctx.volume("iscsi")] if "spawn.volumes" in declared else []
    devices += [BlockDevice(kind=DeviceKind.VOLUME, connection_info=v) for v in volumes]
    vifs = [ctx.vif(), ctx.vif()] if "spawn.network_interfaces" in declared else []
    with ctx.instance("devices", block_devices=devices, network_interfaces=vifs) as info:
        for reported in (info, ctx.api.get_info(None, ctx.host, info.uuid)):
            roots = [d for d in reported.block_devices if d.boot_index == 0]
            expect(
                [(d.kind, d.image) for d in roots] == [(DeviceKind.IMAGE, ctx.image)],
                f"the root disk is reported as {[(d.kind, d.image) for d in roots]}",
            )
            blanks = [d for d in reported.block_devices if d.kind == DeviceKind.BLANK]
            expect(
                [d.size_gb for d in blanks] == [1] * (len(devices) - 1 - len(volumes)),
                f"ephemeral disks reported: {[(d.device_name, d.size_gb) for d in blanks]}",
            )
            for volume in volumes:
                _volume_of(reported, volume.volume_id, "the spawn")
            names = [d.device_name for d in reported.block_devices]
            expect(
                len(names) == len(devices) and len(set(names)) == len(names) and all(names),
                f"block devices are reported with names {names}, for {len(devices)} devices",
            )
            for vif in vifs:
                _interface_of(reported, vif, "the spawn")
            taps = [i.device_name for i in reported.network_interfaces]
            expect(
                len(taps) == len(vifs) and len(set(taps)) == len(taps),
                f"interfaces are reported with names {taps}, for {len(vifs)} ports",
            )


@check(
    "spawn.devices.boot_from_volume",
    "a spawn booting from a volume reports that volume as its boot device",
)
def _spawn_from_volume(ctx: SuiteContext) -> None:
    ctx.require("spawn.boot_from_volume")
    volume = ctx.volume("iscsi")
    boot = BlockDevice(kind=DeviceKind.VOLUME, boot_index=0, connection_info=volume)
    with ctx.instance("bootvolume", block_devices=[boot], disk_gb=0) as info:
        device = _volume_of(info, volume.volume_id, "the spawn")
        expect(device.boot_index == 0, f"the boot volume has boot_index {device.boot_index}")


@check(
    "spawn.devices.unsupported_refused",
    "a spawn needing a spawn.* feature the driver lacks is refused with "
    "UnsupportedOperation and leaves no instance",
)
def _spawn_unsupported(ctx: SuiteContext) -> None:
    ctx.require("spawn", "get_info")
    image_root = BlockDevice(kind=DeviceKind.IMAGE, image=ctx.image, size_gb=1, boot_index=0)
    needs: dict[str, dict[str, Any]] = {
        "spawn.ephemeral_disks": {
            "block_devices": [image_root, BlockDevice(kind=DeviceKind.BLANK, size_gb=1)]
        },
        "spawn.volumes": {
            "block_devices": [
                image_root,
                BlockDevice(kind=DeviceKind.VOLUME, connection_info=ctx.volume()),
            ]
        },
        "spawn.boot_from_volume": {
            "disk_gb": 0,
            "block_devices": [
                BlockDevice(kind=DeviceKind.VOLUME, boot_index=0, connection_info=ctx.volume())
            ],
        },
        "spawn.network_interfaces": {"network_interfaces": [ctx.vif()]},
    }
    lacking = [feature for feature in needs if not ctx.supports(feature)]
    if not lacking:
        raise CheckSkipped("the driver declares every spawn.* feature")
    for feature in lacking:
        spec = ctx.spec("lacking", **needs[feature])
        _expect_error(
            exception.UnsupportedOperation,
            f"a spawn needing {feature}",
            functools.partial(ctx.api.spawn, None, ctx.host, spec),
        )
        _expect_error(
            exception.InstanceNotFound,
            f"get_info after a refused spawn needing {feature}",
            functools.partial(ctx.api.get_info, None, ctx.host, spec.uuid),
        )


# Volumes --------------------------------------------------------------------------


@check(
    "volume.connector",
    "the volume connector names the host, an iSCSI initiator or FC WWPNs, and multipath",
    VOLUMES,
)
def _connector(ctx: SuiteContext) -> None:
    ctx.require("get_volume_connector")
    connector = ctx.api.get_volume_connector(None, ctx.host)
    expect(connector.host == ctx.host, f"the connector is for {connector.host}, not {ctx.host}")
    expect(
        isinstance(connector.wwpns, list) and all(isinstance(w, str) for w in connector.wwpns),
        f"wwpns is {connector.wwpns!r}",
    )
    expect(isinstance(connector.multipath, bool), f"multipath is {connector.multipath!r}")
    expect(
        bool(connector.initiator) or bool(connector.wwpns),
        "the connector has neither an initiator nor WWPNs: storage cannot export to it",
    )
    if connector.initiator:
        expect(
            connector.initiator.startswith(("iqn.", "eui.", "naa.")),
            f"initiator {connector.initiator!r} is not an iSCSI name",
        )


@check(
    "volume.attach.call",
    "attach_volume returns the instance listing the volume with a device name and "
    "without its connection info; get_info lists it too",
    VOLUMES,
)
def _attach_volume(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume(size_gb=1)
        result = ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        assert result is not None
        expect(
            result.power_state == info.power_state,
            f"attach left the instance {result.power_state}, not {info.power_state}",
        )
        name = _volume_of(result, volume.volume_id, "attach_volume").device_name
        listed = _volume_of(
            ctx.api.get_info(None, ctx.host, info.uuid), volume.volume_id, "get_info"
        )
        expect(
            listed.device_name == name, f"get_info says {listed.device_name}, attach said {name}"
        )

    _on_instance(ctx, "attachvolume", run)


@check(
    "volume.attach.idempotent",
    "attaching an attached volume again returns the instance with the volume once",
    VOLUMES,
)
def _attach_volume_twice(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume()
        first = ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        again = ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        assert first is not None and again is not None
        expect(_count(again, volume.volume_id) == 1, "the volume is listed more than once")
        expect(
            _volume_of(again, volume.volume_id, "a second attach").device_name
            == _volume_of(first, volume.volume_id, "attach").device_name,
            "a second attach moved the volume",
        )
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(_count(current, volume.volume_id) == 1, "get_info lists the volume more than once")

    _on_instance(ctx, "volumetwice", run)


@check(
    "volume.detach.idempotent",
    "detach_volume removes the volume; detaching it again succeeds",
    VOLUMES,
)
def _detach_volume_twice(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "detach_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume()
        ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        for attempt in ("detach_volume", "a second detach_volume"):
            result = ctx.api.detach_volume(None, ctx.host, info.uuid, volume.volume_id)
            assert result is not None
            expect(result.volume(volume.volume_id) is None, f"after {attempt} the volume is listed")
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(current.volume(volume.volume_id) is None, "get_info still lists the volume")

    _on_instance(ctx, "detachvolume", run)


@check(
    "volume.attach.mountpoint_conflict",
    "attaching a volume where another is attached is refused with DeviceConflict",
    VOLUMES,
)
def _mountpoint_conflict(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        first, second = ctx.volume(), ctx.volume()
        ctx.api.attach_volume(None, ctx.host, info.uuid, first, "vdc")
        _expect_error(
            exception.DeviceConflict,
            "attaching a second volume at vdc",
            lambda: ctx.api.attach_volume(None, ctx.host, info.uuid, second, "vdc"),
        )
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(current.volume(second.volume_id) is None, "the refused volume is listed")
        _volume_of(current, first.volume_id, "the refused attach")

    _on_instance(ctx, "mountpoint", run)


@check(
    "volume.extend.not_attached",
    "extending a volume that is not attached is refused with DeviceNotFound",
    VOLUMES,
)
def _extend_missing(ctx: SuiteContext) -> None:
    ctx.require("extend_volume")

    def run(info: InstanceInfo) -> None:
        _expect_error(
            exception.DeviceNotFound,
            "extending a volume that is not attached",
            lambda: ctx.api.extend_volume(None, ctx.host, info.uuid, str(uuidlib.uuid4()), 2),
        )

    _on_instance(ctx, "extendmissing", run)


@check(
    "volume.extend.grows",
    "extend_volume makes the instance report the new size; the same size again is a no-op",
    VOLUMES,
)
def _extend(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "extend_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume(size_gb=1)
        ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        ctx.grow_volume(volume, 2)
        for attempt in ("extend_volume", "a second extend_volume to the same size"):
            result = ctx.api.extend_volume(None, ctx.host, info.uuid, volume.volume_id, 2)
            assert result is not None
            size = _volume_of(result, volume.volume_id, attempt).size_gb
            expect(size == 2, f"after {attempt} to 2 GiB the volume is reported as {size} GiB")

    _on_instance(ctx, "extend", run)


@check(
    "volume.extend.shrink_refused",
    "extending a volume to less than its known size is refused with InvalidRequest",
    VOLUMES,
)
def _shrink(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "extend_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume(size_gb=1)
        ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        ctx.grow_volume(volume, 3)
        ctx.api.extend_volume(None, ctx.host, info.uuid, volume.volume_id, 3)
        _expect_error(
            exception.InvalidRequest,
            "shrinking a 3 GiB volume to 2 GiB",
            lambda: ctx.api.extend_volume(None, ctx.host, info.uuid, volume.volume_id, 2),
        )
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        size = _volume_of(current, volume.volume_id, "a refused shrink").size_gb
        expect(size == 3, f"after a refused shrink the volume is reported as {size} GiB")

    _on_instance(ctx, "shrink", run)


@check(
    "volume.missing_instance",
    "volume operations on a missing instance are refused with InstanceNotFound",
    VOLUMES,
)
def _volume_missing_instance(ctx: SuiteContext) -> None:
    missing = str(uuidlib.uuid4())
    calls: dict[str, Callable[[], object]] = {
        "attach_volume": lambda: ctx.api.attach_volume(None, ctx.host, missing, ctx.volume()),
        "detach_volume": lambda: ctx.api.detach_volume(None, ctx.host, missing, "volume"),
        "extend_volume": lambda: ctx.api.extend_volume(None, ctx.host, missing, "volume", 2),
    }
    declared = [op for op in calls if ctx.supports(op)]
    if not declared:
        ctx.require(*calls)
    for operation in declared:
        _expect_error(
            exception.InstanceNotFound, f"{operation} on a missing instance", calls[operation]
        )


@check(
    "volume.listed",
    "list_instances lists an instance's attached volumes as get_info does",
    VOLUMES,
)
def _volume_listed(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "get_info", "list_instances")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume()
        ctx.api.attach_volume(None, ctx.host, info.uuid, volume)
        listed = {i.uuid: i for i in ctx.api.list_instances(None, ctx.host)}
        expect(info.uuid in listed, "the instance is missing from list_instances")
        _volume_of(listed[info.uuid], volume.volume_id, "list_instances")
        got = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(
            _names(listed[info.uuid]) == _names(got),
            f"list_instances lists {_names(listed[info.uuid])}, get_info {_names(got)}",
        )

    _on_instance(ctx, "volumelisted", run)


@check(
    "volume.detach.boot_volume",
    "detaching the boot volume of an instance booted from it is refused with InvalidRequest",
    VOLUMES,
)
def _detach_boot_volume(ctx: SuiteContext) -> None:
    ctx.require("spawn.boot_from_volume", "detach_volume", "get_info")
    volume = ctx.volume()
    boot = BlockDevice(kind=DeviceKind.VOLUME, boot_index=0, connection_info=volume)

    def run(info: InstanceInfo) -> None:
        _expect_error(
            exception.InvalidRequest,
            "detaching the boot volume",
            lambda: ctx.api.detach_volume(None, ctx.host, info.uuid, volume.volume_id),
        )
        _volume_of(
            ctx.api.get_info(None, ctx.host, info.uuid), volume.volume_id, "a refused detach"
        )

    _on_instance(ctx, "detachboot", run, block_devices=[boot], disk_gb=0)


@check(
    "cast.attach_volume",
    "attach_volume as a cast takes effect and notifies instance.attach_volume.end",
    VOLUMES,
)
def _cast_attach_volume(ctx: SuiteContext) -> None:
    ctx.require("attach_volume", "get_info")

    def run(info: InstanceInfo) -> None:
        volume = ctx.volume()
        event = _cast(ctx, "attach_volume", uuid=info.uuid, connection_info=volume)
        expect(event == "instance.attach_volume.end", f"got {event}")
        _volume_of(ctx.api.get_info(None, ctx.host, info.uuid), volume.volume_id, "the cast")

    _on_instance(ctx, "castvolume", run)


# Interfaces -------------------------------------------------------------------------


@check(
    "interface.attach.call",
    "attach_interface returns the instance listing the port with its MAC, network and "
    "a device name; get_info lists it too",
    INTERFACES,
)
def _attach_interface(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "get_info")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif()
        result = ctx.api.attach_interface(None, ctx.host, info.uuid, vif)
        assert result is not None
        expect(
            result.power_state == info.power_state,
            f"attach left the instance {result.power_state}, not {info.power_state}",
        )
        name = _interface_of(result, vif, "attach_interface").device_name
        listed = _interface_of(ctx.api.get_info(None, ctx.host, info.uuid), vif, "get_info")
        expect(
            listed.device_name == name, f"get_info says {listed.device_name}, attach said {name}"
        )

    _on_instance(ctx, "attachvif", run)


@check(
    "interface.attach.idempotent",
    "attaching an attached port again returns the instance with the interface once",
    INTERFACES,
)
def _attach_interface_twice(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "get_info")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif()
        ctx.api.attach_interface(None, ctx.host, info.uuid, vif)
        again = ctx.api.attach_interface(None, ctx.host, info.uuid, vif)
        assert again is not None
        expect(_count(again, port_id=vif.port_id) == 1, "the port is listed more than once")
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(_count(current, port_id=vif.port_id) == 1, "get_info lists the port more than once")

    _on_instance(ctx, "viftwice", run)


@check(
    "interface.detach.idempotent",
    "detach_interface removes the interface; detaching it again succeeds",
    INTERFACES,
)
def _detach_interface_twice(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "detach_interface", "get_info")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif()
        ctx.api.attach_interface(None, ctx.host, info.uuid, vif)
        for attempt in ("detach_interface", "a second detach_interface"):
            result = ctx.api.detach_interface(None, ctx.host, info.uuid, vif.port_id)
            assert result is not None
            expect(result.interface(vif.port_id) is None, f"after {attempt} the port is listed")
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(current.interface(vif.port_id) is None, "get_info still lists the port")

    _on_instance(ctx, "detachvif", run)


@check(
    "interface.attach.mac_conflict",
    "attaching a port whose MAC address another port has is refused with DeviceConflict",
    INTERFACES,
)
def _mac_conflict(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "get_info")

    def run(info: InstanceInfo) -> None:
        first = ctx.vif()
        second = ctx.vif(mac_address=first.mac_address)
        ctx.api.attach_interface(None, ctx.host, info.uuid, first)
        _expect_error(
            exception.DeviceConflict,
            "attaching a second port with the same MAC address",
            lambda: ctx.api.attach_interface(None, ctx.host, info.uuid, second),
        )
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(current.interface(second.port_id) is None, "the refused port is listed")

    _on_instance(ctx, "macconflict", run)


@check(
    "interface.attach.unknown_network",
    "attaching a port on a network the host does not have is refused with InvalidRequest",
    INTERFACES,
)
def _unknown_network(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "get_info")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif(network=f"conformance-no-such-network-{uuidlib.uuid4().hex[:8]}")
        _expect_error(
            exception.InvalidRequest,
            f"attaching a port on network {vif.network}",
            lambda: ctx.api.attach_interface(None, ctx.host, info.uuid, vif),
        )
        current = ctx.api.get_info(None, ctx.host, info.uuid)
        expect(current.interface(vif.port_id) is None, "the refused port is listed")

    _on_instance(ctx, "nonetwork", run)


@check(
    "interface.missing_instance",
    "interface operations on a missing instance are refused with InstanceNotFound",
    INTERFACES,
)
def _interface_missing_instance(ctx: SuiteContext) -> None:
    missing = str(uuidlib.uuid4())
    calls: dict[str, Callable[[], object]] = {
        "attach_interface": lambda: ctx.api.attach_interface(None, ctx.host, missing, ctx.vif()),
        "detach_interface": lambda: ctx.api.detach_interface(None, ctx.host, missing, "port"),
    }
    declared = [op for op in calls if ctx.supports(op)]
    if not declared:
        ctx.require(*calls)
    for operation in declared:
        _expect_error(
            exception.InstanceNotFound, f"{operation} on a missing instance", calls[operation]
        )


@check(
    "interface.listed",
    "list_instances lists an instance's interfaces as get_info does",
    INTERFACES,
)
def _interface_listed(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "get_info", "list_instances")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif()
        ctx.api.attach_interface(None, ctx.host, info.uuid, vif)
        listed = {i.uuid: i for i in ctx.api.list_instances(None, ctx.host)}
        expect(info.uuid in listed, "the instance is missing from list_instances")
        _interface_of(listed[info.uuid], vif, "list_instances")

    _on_instance(ctx, "viflisted", run)


@check(
    "interface.survives_power_cycle",
    "an attached interface is still listed, with its MAC address, after power_off and power_on",
    INTERFACES,
)
def _interface_power_cycle(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "power_off", "power_on", "get_info")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif()
        ctx.api.attach_interface(None, ctx.host, info.uuid, vif)
        cycle = ["power_off", "power_on"]
        if info.power_state != PowerState.RUNNING:
            cycle.reverse()
        for operation in cycle:
            result = ctx.act(operation, info.uuid)
            _interface_of(result, vif, operation)
        _interface_of(ctx.api.get_info(None, ctx.host, info.uuid), vif, " and ".join(cycle))

    _on_instance(ctx, "vifcycle", run)


@check(
    "cast.attach_interface",
    "attach_interface as a cast takes effect and notifies instance.attach_interface.end",
    INTERFACES,
)
def _cast_attach_interface(ctx: SuiteContext) -> None:
    ctx.require("attach_interface", "get_info")

    def run(info: InstanceInfo) -> None:
        vif = ctx.vif()
        event = _cast(ctx, "attach_interface", uuid=info.uuid, vif=vif)
        expect(event == "instance.attach_interface.end", f"got {event}")
        _interface_of(ctx.api.get_info(None, ctx.host, info.uuid), vif, "the cast")

    _on_instance(ctx, "castvif", run)


# Devices change only in DEVICE_STATES, generated per state -------------------------


def _state_check(operation: str, state: str) -> Check:
    volumes = operation == "attach_volume"
    allowed = state in base.DEVICE_STATES
    verb = "succeeds" if allowed else "is refused with InvalidPowerState"

    def run(ctx: SuiteContext) -> None:
        ctx.require(operation, "get_info")
        with ctx.instance(f"{operation}-{state}", state) as info:
            device: VolumeConnection | NetworkInterface = ctx.volume() if volumes else ctx.vif()

            def attach() -> InstanceInfo | None:
                if isinstance(device, VolumeConnection):
                    return ctx.api.attach_volume(None, ctx.host, info.uuid, device)
                return ctx.api.attach_interface(None, ctx.host, info.uuid, device)

            def attached(found: InstanceInfo) -> bool:
                if isinstance(device, VolumeConnection):
                    return found.volume(device.volume_id) is not None
                return found.interface(device.port_id) is not None

            try:
                result = attach()
            except exception.InvalidPowerState as exc:
                if allowed and _needs_stopped(exc):
                    ctx.live_device_changes = False
                    raise CheckSkipped(f"{NOT_LIVE}: {exc}") from None
                expect(not allowed, f"{operation} from {state} was refused: {exc}")
                expect(exc.kwargs.get("state") == state, f"error says state {exc.kwargs}")
                expect(exc.kwargs.get("operation") == operation, f"error names {exc.kwargs}")
            else:
                expect(allowed, f"{operation} from {state} was accepted")
                assert result is not None
                expect(attached(result), f"after {operation} from {state} the device is missing")
            current = ctx.api.get_info(None, ctx.host, info.uuid)
            expect(
                current.power_state == state, f"{operation} left the instance {current.power_state}"
            )
            expect(attached(current) == allowed, f"get_info after {operation} from {state}")

    return Check(
        f"{'volume' if volumes else 'interface'}.attach.from_{state}",
        f"{operation} on a {state} instance {verb}",
        run,
        VOLUMES if volumes else INTERFACES,
    )


DEVICE_CHECKS.extend(
    _state_check(operation, state)
    for operation in ("attach_volume", "attach_interface")
    for state in (PowerState.RUNNING, PowerState.STOPPED, PowerState.PAUSED, PowerState.SUSPENDED)
)
