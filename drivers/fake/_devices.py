"""The fake hypervisor's devices: how it names, builds and checks them (contract 1.2).

Each operation is planned before it acts: a ``plan_*`` function looks at an
instance (and the host's other instances), raises what the contract says
when the operation cannot go ahead, and returns the change to make, or
None when there is nothing to do (the device is already as asked). It
changes nothing itself, so the driver plans once to decide whether to take
its time (``[fake] action_delay``), then plans again and applies inside the
store's transaction, as it does for power-state transitions.

Names follow nova's libvirt driver: disks are ``vda`` (the root disk),
``vdb``, ... ``vdz``, ``vdaa``, ... unless the caller names one; an
interface is the tap device ``tap`` + the first 11 characters of its port id.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TypeAlias

from computed import exception
from computed.objects import (
    BlockDevice,
    DeviceKind,
    InstanceSpec,
    NetworkInterface,
    VolumeConnection,
)
from computed.objects.devices import MAX_BLOCK_DEVICES, MAX_NETWORK_INTERFACES, VOLUME_TYPES
from drivers import base
from drivers.fake._store import Disk, Instance, Port

__all__ = [
    "Change",
    "ROOT_DEVICE",
    "disks_of",
    "ports_of",
    "check_macs",
    "initiator_name",
    "plan_attach_volume",
    "plan_detach_volume",
    "plan_extend_volume",
    "plan_attach_interface",
    "plan_detach_interface",
    "reported_disk",
    "reported_port",
]

#: What a plan returns: the change to apply, or None if there is nothing to do.
Change: TypeAlias = Callable[[], None] | None

ROOT_DEVICE = "vda"
_TAP_PREFIX = "tap"
_IQN_UNSAFE = re.compile(r"[^a-z0-9.-]")


def device_names() -> Iterator[str]:
    """``vda`` to ``vdz``, then ``vdaa`` to ``vdzz``: more than a host's slots."""
    for length in (1, 2):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            yield "vd" + "".join(letters)


def tap_name(port_id: str) -> str:
    return _TAP_PREFIX + port_id[:11]


def initiator_name(template: str, host: str) -> str:
    """The host's iSCSI initiator name: ``template`` with ``{host}`` made IQN-safe."""
    return template.replace("{host}", _IQN_UNSAFE.sub("-", host.lower()))


# Spawn -------------------------------------------------------------------------


def disks_of(spec: InstanceSpec) -> list[Disk]:
    """Every block device of a validated spec, each with the name it gets.

    Names the spec asks for are kept; the root disk gets ``vda`` if it is
    free, the others the next free names in the spec's order. A spec without
    a boot device but with an ``image`` (the 1.1 shape) has a root disk
    made from it.

    :raises computed.exception.InvalidRequest: for a volume transport the host lacks.
    """
    devices: list[BlockDevice] = list(spec.block_devices)
    if spec.root_device is None and spec.image is not None:
        size = spec.disk_gb or None
        root = BlockDevice(kind=DeviceKind.IMAGE, boot_index=0, size_gb=size, image=spec.image)
        root.obj_set_defaults()
        devices.insert(0, root)
    named = {d.short_name for d in devices if d.device_name}
    root_unnamed = any(d.boot_index == 0 and not d.device_name for d in devices)
    keep_root = root_unnamed and ROOT_DEVICE not in named
    taken = named | ({ROOT_DEVICE} if keep_root else set())
    disks = []
    for device in devices:
        name = device.short_name
        if name is None and device.boot_index == 0 and keep_root:
            name = ROOT_DEVICE
        elif name is None:
            name = next(n for n in device_names() if n not in taken)
            taken.add(name)
        disks.append(_disk(device, name))
    return disks


def _disk(device: BlockDevice, name: str) -> Disk:
    if device.kind != DeviceKind.VOLUME:
        return Disk(name, device.kind, device.boot_index, device.size_gb, image=device.image)
    connection = device.connection_info
    _check_volume_type("spawn", connection)
    size = device.size_gb if device.size_gb is not None else _size_of(connection)
    return Disk(
        name,
        DeviceKind.VOLUME,
        device.boot_index,
        size,
        volume_id=connection.volume_id,
        volume_type=connection.driver_volume_type,
    )


def ports_of(spec: InstanceSpec, host: str, networks: Collection[str]) -> list[Port]:
    """Every interface of a validated spec, plugged into its network.

    :raises computed.exception.InvalidRequest: for a network the host does not have.
    """
    for vif in spec.network_interfaces:
        _check_network("spawn", host, networks, vif.network)
    return [_port(vif) for vif in spec.network_interfaces]


def check_macs(host: str, instances: Mapping[str, Instance], instance: Instance) -> None:
    """:raises computed.exception.DeviceConflict: if another instance's port has a MAC of ``instance``."""
    for port in instance.network_interfaces:
        _check_port(host, instances, instance, port.port_id, port.mac_address)


# Hot-plug -----------------------------------------------------------------------
#
# Each plan checks, in this order: the arguments, whether the operation is a
# no-op (idempotency comes before the power state, so a repeated operation
# succeeds whatever the instance did meanwhile), the power state, and
# conflicts with the devices present.


def plan_attach_volume(
    host: str, instance: Instance, connection_info: VolumeConnection, mountpoint: str | None
) -> Change:
    _check_volume_type("attach_volume", connection_info)
    volume_id = connection_info.volume_id
    if instance.volume(volume_id) is not None:
        return None
    base.check_device_state("attach_volume", instance.uuid, instance.power_state)
    device = f"volume {volume_id}"
    taken = {d.device_name for d in instance.block_devices}
    if len(taken) >= MAX_BLOCK_DEVICES:
        _conflict(host, instance, device, f"it has {MAX_BLOCK_DEVICES} block devices, the most")
    if mountpoint is None:
        name = next(n for n in device_names() if n not in taken)
    else:
        name = mountpoint.removeprefix("/dev/")
        holder = instance.disk(name)
        if holder is not None:
            _conflict(host, instance, device, f"{name} holds {_describe(holder)}")
    disk = Disk(
        name,
        DeviceKind.VOLUME,
        size_gb=_size_of(connection_info),
        volume_id=volume_id,
        volume_type=connection_info.driver_volume_type,
    )
    return functools.partial(_attach, instance, disk)


def plan_detach_volume(instance: Instance, volume_id: str) -> Change:
    disk = instance.volume(volume_id)
    if disk is None:
        return None
    if disk.boot_index == 0:
        raise exception.InvalidRequest(
            operation="detach_volume",
            reason=f"volume {volume_id} is the boot volume of instance {instance.uuid}",
        )
    base.check_device_state("detach_volume", instance.uuid, instance.power_state)
    return functools.partial(_detach, instance, disk)


def plan_extend_volume(host: str, instance: Instance, volume_id: str, new_size: int) -> Change:
    disk = instance.volume(volume_id)
    if disk is None:
        raise exception.DeviceNotFound(device=f"volume {volume_id}", uuid=instance.uuid, host=host)
    if disk.size_gb is not None and new_size <= disk.size_gb:
        if new_size == disk.size_gb:
            return None
        raise exception.InvalidRequest(
            operation="extend_volume",
            reason=f"volume {volume_id} is {disk.size_gb} GiB, more than {new_size} GiB",
        )
    base.check_device_state("extend_volume", instance.uuid, instance.power_state)
    return functools.partial(_resize, instance, disk, new_size)


def plan_attach_interface(
    host: str,
    networks: Collection[str],
    instances: Mapping[str, Instance],
    instance: Instance,
    vif: NetworkInterface,
) -> Change:
    _check_network("attach_interface", host, networks, vif.network)
    if instance.port(vif.port_id) is not None:
        return None
    base.check_device_state("attach_interface", instance.uuid, instance.power_state)
    if len(instance.network_interfaces) >= MAX_NETWORK_INTERFACES:
        _conflict(
            host,
            instance,
            f"port {vif.port_id}",
            f"it has {MAX_NETWORK_INTERFACES} interfaces, the most",
        )
    _check_port(host, instances, instance, vif.port_id, vif.mac_address)
    return functools.partial(_plug, instance, _port(vif))


def plan_detach_interface(instance: Instance, port_id: str) -> Change:
    port = instance.port(port_id)
    if port is None:
        return None
    base.check_device_state("detach_interface", instance.uuid, instance.power_state)
    return functools.partial(_unplug, instance, port)


# Reports ----------------------------------------------------------------------------


def reported_disk(disk: Disk) -> BlockDevice:
    return BlockDevice(
        kind=disk.kind,
        device_name=disk.device_name,
        boot_index=disk.boot_index,
        size_gb=disk.size_gb,
        image=disk.image,
        volume_id=disk.volume_id,
        connection_info=None,
    )


def reported_port(port: Port) -> NetworkInterface:
    return NetworkInterface(
        port_id=port.port_id,
        mac_address=port.mac_address,
        network=port.network,
        mtu=port.mtu,
        device_name=port.device_name,
    )


# ---------------------------------------------------------------------------------------


def _attach(instance: Instance, disk: Disk) -> None:
    instance.block_devices.append(disk)
    instance.log(f"{disk.device_name}: volume {disk.volume_id} attached ({disk.volume_type})")


def _detach(instance: Instance, disk: Disk) -> None:
    instance.block_devices.remove(disk)
    instance.log(f"{disk.device_name}: volume {disk.volume_id} detached")


def _resize(instance: Instance, disk: Disk, size_gb: int) -> None:
    disk.size_gb = size_gb
    instance.log(f"{disk.device_name}: detected capacity change to {size_gb} GiB")


def _plug(instance: Instance, port: Port) -> None:
    instance.network_interfaces.append(port)
    instance.log(f"{port.device_name}: link up on {port.network}, address {port.mac_address}")


def _unplug(instance: Instance, port: Port) -> None:
    instance.network_interfaces.remove(port)
    instance.log(f"{port.device_name}: removed")


def _port(vif: NetworkInterface) -> Port:
    return Port(vif.port_id, vif.mac_address, vif.network, tap_name(vif.port_id), vif.mtu)


def _size_of(connection: VolumeConnection) -> int | None:
    """The volume's size if its connection info says it (``data['size_gb']``)."""
    size = connection.get("size_gb")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _describe(disk: Disk) -> str:
    if disk.kind == DeviceKind.VOLUME:
        return f"volume {disk.volume_id}"
    return "the root disk" if disk.boot_index == 0 else f"a {disk.kind} disk"


def _check_volume_type(operation: str, connection: VolumeConnection) -> None:
    if connection.driver_volume_type not in VOLUME_TYPES:
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"volume {connection.volume_id}: the fake hypervisor attaches "
            f"{', '.join(VOLUME_TYPES)} volumes, not {connection.driver_volume_type}",
        )


def _check_network(operation: str, host: str, networks: Collection[str], network: str) -> None:
    if network not in networks:
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"network {network!r} does not exist on host {host} "
            f"(it has {', '.join(networks) or 'none'}; see [fake] networks)",
        )


def _check_port(
    host: str, instances: Mapping[str, Instance], instance: Instance, port_id: str, mac: str
) -> None:
    """A port, and its MAC address, belong to one interface on a host."""
    for other in (instance, *instances.values()):
        for port in other.network_interfaces:
            if other.uuid == instance.uuid and port.port_id == port_id:
                continue
            if port.port_id == port_id:
                reason = f"the port is attached to instance {other.uuid}"
            elif port.mac_address == mac:
                reason = (
                    f"MAC address {mac} belongs to port {port.port_id} of instance {other.uuid}"
                )
            else:
                continue
            _conflict(host, instance, f"port {port_id}", reason)


def _conflict(host: str, instance: Instance, device: str, reason: str) -> None:
    raise exception.DeviceConflict(device=device, uuid=instance.uuid, host=host, reason=reason)
