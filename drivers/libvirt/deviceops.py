"""Devices of contract 1.2 on libvirt domains: disks and interfaces made at spawn, hot-plug.

==================  ================================================================
operation           libvirt
==================  ================================================================
spawn               root disk: ``createXMLFrom`` (copy of the image volume, grown to
                    its size) in ``[libvirt] storage_pool``; ephemeral disk:
                    ``createXML`` of a raw volume; iSCSI CHAP password:
                    ``secretDefineXML``; all in the domain XML given to ``defineXML``
attach_volume,      ``attachDeviceFlags`` with ``AFFECT_CONFIG``, and ``AFFECT_LIVE``
attach_interface    when the domain runs
detach_*            ``detachDeviceFlags``, the same flags
extend_volume       ``blockResize`` when the domain runs; the size is recorded either way
==================  ================================================================

Where a hypervisor has no device hot-plug at all (``attachDeviceFlags``
unsupported, as with libvirt's test driver), a stopped domain still gets the
change: its persistent XML is edited and defined again. A running one cannot:
that is InvalidPowerState naming ``stopped`` as the state that allows the
change, as the hypervisor's own rule (the Hyper-V driver does the same).

A live detach asks the guest to let the device go; the device leaves the
persistent definition at once and the running guest when the guest agrees.
The driver reports devices from the persistent definition, which is what
the instance has from now on.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import libvirt
from oslo_config import cfg

from computed import exception
from computed.objects import (
    BlockDevice,
    DeviceKind,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
    VolumeConnector,
)
from drivers.libvirt import config, constants, devices, errors
from drivers.libvirt.devices import DiskRecord

__all__ = ["DeviceOps", "INITIATOR_FILE", "SpawnDevices", "stored_metadata"]

LOG = logging.getLogger(__name__)

#: Where open-iscsi keeps the host's initiator name.
INITIATOR_FILE = "/etc/iscsi/initiatorname.iscsi"

_GIB = 1024**3
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_UNSUPPORTED = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED})

Edit = Callable[[ET.Element], None]


@dataclass
class SpawnDevices:
    """What a spawn adds to the domain XML, and what it made on the host to get there."""

    elements: list[ET.Element] = field(default_factory=list)
    records: list[DiskRecord] = field(default_factory=list)
    volumes: list[libvirt.virStorageVol] = field(default_factory=list)
    secrets: list[libvirt.virSecret] = field(default_factory=list)

    def undo(self) -> None:
        """Delete the disks and secrets made for a spawn that failed."""
        removals: list[Callable[[], object]] = [
            *(lambda vol=vol: vol.delete(0) for vol in self.volumes),
            *(secret.undefine for secret in self.secrets),
        ]
        for remove in removals:
            try:
                remove()
            except libvirt.libvirtError as exc:
                LOG.warning("Could not remove what a failed spawn made: %s", exc)


class DeviceOps:
    """The device operations, given an open connection and a domain."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf

    # Reading ---------------------------------------------------------------

    def describe(
        self, dom: libvirt.virDomain, stored: config.StoredMetadata
    ) -> tuple[list[BlockDevice], list[NetworkInterface]]:
        """The devices of ``dom``'s persistent definition, or of its own while it is rescued."""
        own = ET.fromstring(stored.rescue) if stored.rescue is not None else _persistent(dom)
        return devices.read_disks(own, stored.disks), devices.read_interfaces(own)

    # Spawn -----------------------------------------------------------------

    def for_spawn(self, conn: libvirt.virConnect, host: str, spec: InstanceSpec) -> SpawnDevices:
        """The devices of ``spec``, with its local disks and secrets made.

        Everything is checked before anything is made; what was made is
        removed again if a later step fails.
        """
        made = SpawnDevices()
        wanted = self._disks_of(spec)
        targets = _spawn_targets(wanted)
        disks: list[ET.Element | None] = []
        local: list[tuple[int, BlockDevice, str]] = []
        secrets: list[tuple[str, VolumeConnection]] = []
        for device, target in zip(wanted, targets, strict=True):
            if device.kind == DeviceKind.VOLUME:
                usage = _secret_usage(spec.uuid, device.connection_info)
                disks.append(self._volume(host, device.connection_info, target, device, usage))
                made.records.append(DiskRecord(device.volume_id, DeviceKind.VOLUME, device.size_gb))
                if usage is not None:
                    secrets.append((usage, device.connection_info))
                continue
            if self._conf.libvirt.storage_pool:
                local.append((len(disks), device, target))
            elif device.kind == DeviceKind.BLANK:
                raise exception.UnsupportedOperation(
                    operation="spawn.ephemeral_disks",
                    driver=errors.DRIVER,
                    host=host,
                    detail="ephemeral disks need [libvirt] storage_pool",
                )
            # else a root disk without a pool: recorded in the metadata only, as before 1.2
            disks.append(None)
        interfaces = [
            devices.interface_element(
                vif, self._is_libvirt_network(conn, host, vif.network, "spawn")
            )
            for vif in spec.network_interfaces
        ]
        try:
            for usage, connection in secrets:
                made.secrets.append(_define_secret(conn, usage, connection))
            for index, device, target in local:
                path = self._make_local_disk(conn, spec, device, target, made)
                disks[index] = devices.local_disk_element(path, target, device.boot_index)
                made.records.append(DiskRecord(target, device.kind, device.size_gb, device.image))
        except BaseException:
            made.undo()
            raise
        made.elements = [d for d in disks if d is not None] + interfaces
        return made

    def remove(self, conn: libvirt.virConnect, uuid: str) -> None:
        """Delete an instance's local disks and secrets (after its domain is gone)."""
        pool_name = self._conf.libvirt.storage_pool
        if pool_name:
            pool = conn.storagePoolLookupByName(pool_name)
            for vol in pool.listAllVolumes(0):
                if vol.name().startswith(f"{uuid}-"):
                    vol.delete(0)
        try:
            secrets = conn.listAllSecrets(0)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) not in _UNSUPPORTED:
                raise
            return
        for secret in secrets:
            if (secret.usageID() or "").startswith(devices.secret_usage(uuid, "")):
                secret.undefine()

    def _disks_of(self, spec: InstanceSpec) -> list[BlockDevice]:
        if spec.block_devices:
            return list(spec.block_devices)
        # A spec of 1.1 and before: the root disk is image and disk_gb; without
        # an image, a blank disk of disk_gb where the host has a pool to make it.
        if spec.image is not None:
            root = BlockDevice(
                kind=DeviceKind.IMAGE, boot_index=0, size_gb=spec.disk_gb, image=spec.image
            )
        elif spec.disk_gb and self._conf.libvirt.storage_pool:
            root = BlockDevice(kind=DeviceKind.BLANK, boot_index=0, size_gb=spec.disk_gb)
        else:
            return []
        root.obj_set_defaults()
        return [root]

    def _make_local_disk(
        self,
        conn: libvirt.virConnect,
        spec: InstanceSpec,
        device: BlockDevice,
        target: str,
        made: SpawnDevices,
    ) -> str:
        pool_name = self._conf.libvirt.storage_pool
        pool = conn.storagePoolLookupByName(pool_name)
        name = f"{spec.uuid}-{target}"
        with contextlib.suppress(libvirt.libvirtError):
            pool.storageVolLookupByName(name).delete(0)  # left by a spawn that died
        size = (device.size_gb or 0) * _GIB
        volume = ET.Element("volume")
        ET.SubElement(volume, "name").text = name
        if device.kind == DeviceKind.IMAGE:
            image = self._image(pool, pool_name, spec, device)
            image_size = image.info()[1]
            if size and size < image_size:
                raise exception.InvalidRequest(
                    operation="spawn",
                    reason=f"the root disk of {device.size_gb} GiB is smaller than image "
                    f"{device.image!r} ({image_size} bytes)",
                )
            ET.SubElement(volume, "capacity", unit="bytes").text = str(max(size, image_size))
            _raw(volume)
            vol = pool.createXMLFrom(ET.tostring(volume, encoding="unicode"), image, 0)
        else:
            ET.SubElement(volume, "capacity", unit="bytes").text = str(size)
            ET.SubElement(volume, "allocation", unit="bytes").text = "0"
            _raw(volume)
            vol = pool.createXML(ET.tostring(volume, encoding="unicode"), 0)
        made.volumes.append(vol)
        path: str = vol.path()
        return path

    def _image(
        self, pool: libvirt.virStoragePool, pool_name: str, spec: InstanceSpec, device: BlockDevice
    ) -> libvirt.virStorageVol:
        try:
            return pool.storageVolLookupByName(device.image)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            raise exception.InvalidRequest(
                operation="spawn",
                reason=f"image {device.image!r} is not a volume of storage pool {pool_name!r}",
            ) from exc

    # Volumes ---------------------------------------------------------------

    def attach_volume(
        self,
        host: str,
        dom: libvirt.virDomain,
        connection: VolumeConnection,
        mountpoint: str | None,
    ) -> None:
        uuid = dom.UUIDString()
        persistent, live = _persistent(dom), _live(dom)
        if devices.find_volume(persistent, connection.volume_id) is not None:
            return
        taken = devices.target_names(persistent, live)
        if mountpoint is None:
            target = devices.free_disk_name(taken)
        else:
            target = devices.target_name("attach_volume", mountpoint)
            if target in taken:
                raise exception.DeviceConflict(
                    device=f"volume {connection.volume_id}",
                    uuid=uuid,
                    host=host,
                    reason=f"device name {target} is taken",
                )
        usage = _secret_usage(uuid, connection)
        element = self._volume(host, connection, target, None, usage)
        conn = dom.connect()
        secret = _define_secret(conn, usage, connection) if usage is not None else None
        try:
            _change(
                dom, "attach_volume", element, attach=True, same=_same_volume(connection.volume_id)
            )
        except BaseException:
            if secret is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    secret.undefine()
            raise
        _store(dom, stored_metadata(dom).without_disk(connection.volume_id))

    def detach_volume(self, dom: libvirt.virDomain, volume_id: str) -> None:
        """:raises computed.exception.InvalidRequest: for the volume the instance boots from."""
        element = devices.find_volume(_persistent(dom), volume_id)
        if element is None:
            return
        if devices.is_boot_disk(element):
            raise exception.InvalidRequest(
                operation="detach_volume",
                reason=f"volume {volume_id} is the boot volume of instance {dom.UUIDString()}",
            )
        _change(dom, "detach_volume", element, attach=False, same=_same_volume(volume_id))
        _store(dom, stored_metadata(dom).without_disk(volume_id))
        with contextlib.suppress(libvirt.libvirtError):  # none for most volumes
            dom.connect().secretLookupByUsage(
                libvirt.VIR_SECRET_USAGE_TYPE_ISCSI,
                devices.secret_usage(dom.UUIDString(), volume_id),
            ).undefine()

    def extend_volume(
        self, host: str, dom: libvirt.virDomain, volume_id: str, new_size: int
    ) -> None:
        uuid = dom.UUIDString()
        element = devices.find_volume(_persistent(dom), volume_id)
        if element is None:
            raise exception.DeviceNotFound(device=f"volume {volume_id}", uuid=uuid, host=host)
        stored = stored_metadata(dom)
        target = element.find("target")
        dev = target.get("dev", "") if target is not None else ""
        record = stored.disks.get(volume_id)
        active = bool(dom.isActive())
        known: int | None = None  # bytes
        if record is not None and record.size_gb is not None:
            known = record.size_gb * _GIB
        elif active:
            known = dom.blockInfo(dev, 0)[0]  # what the guest sees now
        wanted = new_size * _GIB
        if known is not None and wanted < known:
            raise exception.InvalidRequest(
                operation="extend_volume",
                reason=f"volume {volume_id} is {_size(known)}; it cannot shrink to {new_size} GiB",
            )
        if known == wanted:
            return
        if active:
            try:
                dom.blockResize(dev, wanted, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            except libvirt.libvirtError as exc:
                if errors.code_of(exc) not in _UNSUPPORTED:
                    raise
                raise _needs_stopped(dom, "extend_volume", exc) from exc
        _store(dom, stored.with_disk(DiskRecord(volume_id, DeviceKind.VOLUME, new_size)))

    def _volume(
        self,
        host: str,
        connection: VolumeConnection,
        target: str,
        device: BlockDevice | None,
        secret: str | None,
    ) -> ET.Element:
        return devices.volume_element(
            "spawn" if device is not None else "attach_volume",
            host,
            connection,
            target,
            device.boot_index if device is not None else None,
            nfs_base=self._conf.libvirt.nfs_mount_point_base,
            secret=secret,
        )

    # Interfaces ------------------------------------------------------------

    def attach_interface(self, host: str, dom: libvirt.virDomain, vif: NetworkInterface) -> None:
        persistent, live = _persistent(dom), _live(dom)
        if devices.find_interface(persistent, vif.port_id) is not None:
            return
        if vif.mac_address.lower() in devices.macs(persistent, live):
            raise exception.DeviceConflict(
                device=f"port {vif.port_id}",
                uuid=dom.UUIDString(),
                host=host,
                reason=f"MAC address {vif.mac_address} is taken",
            )
        network = self._is_libvirt_network(dom.connect(), host, vif.network, "attach_interface")
        element = devices.interface_element(vif, network)
        _change(dom, "attach_interface", element, attach=True, same=_same_interface(vif.port_id))

    def detach_interface(self, dom: libvirt.virDomain, port_id: str) -> None:
        element = devices.find_interface(_persistent(dom), port_id)
        if element is not None:
            _change(dom, "detach_interface", element, attach=False, same=_same_interface(port_id))

    def check_network(self, conn: libvirt.virConnect, host: str, network: str) -> None:
        """:raises computed.exception.InvalidRequest: if ``host`` has no such network."""
        self._is_libvirt_network(conn, host, network, "check_migration_destination")

    def _is_libvirt_network(
        self, conn: libvirt.virConnect, host: str, network: str, operation: str
    ) -> bool:
        """True for a libvirt network, False for a host interface (a bridge).

        :raises computed.exception.InvalidRequest: if the host has neither.
        """
        try:
            conn.networkLookupByName(network)
            return True
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) not in {libvirt.VIR_ERR_NO_NETWORK, *_UNSUPPORTED}:
                raise
        try:
            conn.interfaceLookupByName(network)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) in _UNSUPPORTED:
                return False  # no interface driver: libvirt finds out when it plugs the port
            if errors.code_of(exc) != libvirt.VIR_ERR_NO_INTERFACE:
                raise
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"network {network!r} is neither a libvirt network nor an "
                f"interface of host {host}",
            ) from exc
        return False

    # Host ------------------------------------------------------------------

    def connector(self, conn: libvirt.virConnect, host: str, uri: str) -> VolumeConnector:
        """What a storage service needs to export volumes to ``host``.

        ``host`` is the compute host's name; ``ip`` and ``initiator`` as the
        ``[libvirt] connector_ips`` and ``iscsi_initiators`` options say.
        """
        remote_name = urlsplit(uri).hostname
        opts = self._conf.libvirt
        ip = opts.connector_ips.get(host) or _address(remote_name or conn.getHostname())
        initiator = opts.iscsi_initiators.get(host)
        if initiator is None and not remote_name:
            initiator = _local_initiator()
        return VolumeConnector(
            host=host,
            ip=ip,
            initiator=initiator,
            wwpns=[],
            multipath=False,
            platform=str(conn.getInfo()[0]),
            os_type=sys.platform if not remote_name else None,
        )


# Domain XML -------------------------------------------------------------------------


def _persistent(dom: libvirt.virDomain) -> ET.Element:
    return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _live(dom: libvirt.virDomain) -> ET.Element:
    return ET.fromstring(dom.XMLDesc(0))


def stored_metadata(dom: libvirt.virDomain) -> config.StoredMetadata:
    """What the driver keeps in ``dom``'s metadata element (nothing for a foreign domain)."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, constants.METADATA_NS, 0)
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            raise
        return config.StoredMetadata()  # a domain this driver did not define
    try:
        return config.parse_metadata(text)
    except ET.ParseError:
        LOG.warning("Unreadable metadata on domain %s", dom.name())
        return config.StoredMetadata()


def _store(dom: libvirt.virDomain, stored: config.StoredMetadata) -> None:
    if stored == stored_metadata(dom):
        return
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        config.metadata_text(stored),
        constants.METADATA_PREFIX,
        constants.METADATA_NS,
        _flags(dom),
    )


def _flags(dom: libvirt.virDomain) -> int:
    return (_CONFIG if dom.isPersistent() else 0) | (_LIVE if dom.isActive() else 0)


def _change(
    dom: libvirt.virDomain,
    operation: str,
    element: ET.Element,
    *,
    attach: bool,
    same: Callable[[ET.Element], ET.Element | None],
) -> None:
    """Attach or detach ``element``; ``same`` finds it in a domain's XML.

    :raises computed.exception.InvalidPowerState: if the domain runs and the
        hypervisor cannot change its devices (no hot-plug); stopped, it could.
    """
    flags = _flags(dom)
    text = ET.tostring(element, encoding="unicode")
    try:
        if attach:
            dom.attachDeviceFlags(text, flags)
        else:
            dom.detachDeviceFlags(text, flags)
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) not in _UNSUPPORTED:
            raise
        if flags & _LIVE:
            raise _needs_stopped(dom, operation, exc) from exc
        _redefine(dom, element, attach, same)


def _needs_stopped(
    dom: libvirt.virDomain, operation: str, exc: libvirt.libvirtError
) -> exception.InvalidPowerState:
    """The hypervisor's refusal to change a running domain's devices, which a
    stopped domain allows."""
    return exception.InvalidPowerState(
        uuid=dom.UUIDString(),
        operation=operation,
        state=PowerState.RUNNING,
        allowed=PowerState.STOPPED,
        detail=exc.get_error_message() or str(exc),
    )


def _redefine(
    dom: libvirt.virDomain,
    element: ET.Element,
    attach: bool,
    same: Callable[[ET.Element], ET.Element | None],
) -> None:
    """The same change on a stopped domain, by defining its edited XML again."""
    tree = ET.fromstring(
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    )
    container = tree.find("devices")
    if container is None:
        container = ET.SubElement(tree, "devices")
    if attach:
        container.append(element)
    else:
        found = same(tree)
        if found is None:
            return
        container.remove(found)
    dom.connect().defineXML(ET.tostring(tree, encoding="unicode"))


def _same_volume(volume_id: str) -> Callable[[ET.Element], ET.Element | None]:
    return lambda tree: devices.find_volume(tree, volume_id)


def _same_interface(port_id: str) -> Callable[[ET.Element], ET.Element | None]:
    return lambda tree: devices.find_interface(tree, port_id)


def _spawn_targets(wanted: list[BlockDevice]) -> list[str]:
    """A device name for each disk: the one asked for, else the next free, boot disk first."""
    asked = [devices.target_name("spawn", d.device_name) if d.device_name else None for d in wanted]
    named = [name for name in asked if name is not None]
    if len(set(named)) != len(named):
        raise exception.InvalidRequest(
            operation="spawn", reason=f"two block devices are both named as {sorted(named)}"
        )
    taken = set(named)
    order = sorted(
        range(len(wanted)),
        key=lambda i: (wanted[i].boot_index is None, wanted[i].boot_index or 0, i),
    )
    for index in order:
        if asked[index] is None:
            asked[index] = devices.free_disk_name(taken)
            taken.add(asked[index] or "")
    return [name or "" for name in asked]


# Secrets, addresses, files ------------------------------------------------------------


def _secret_usage(uuid: str, connection: VolumeConnection | None) -> str | None:
    if connection is None or connection.driver_volume_type != "iscsi":
        return None
    if not connection.get("auth_method") or not connection.get("auth_password"):
        return None
    return devices.secret_usage(uuid, connection.volume_id)


def _define_secret(
    conn: libvirt.virConnect, usage: str, connection: VolumeConnection
) -> libvirt.virSecret:
    """A private libvirt secret holding the volume's CHAP password."""
    with contextlib.suppress(libvirt.libvirtError):
        conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, usage).undefine()
    secret = ET.Element("secret", ephemeral="no", private="yes")
    ET.SubElement(secret, "description").text = f"CHAP password of volume {connection.volume_id}"
    ET.SubElement(ET.SubElement(secret, "usage", type="iscsi"), "target").text = usage
    made = conn.secretDefineXML(ET.tostring(secret, encoding="unicode"), 0)
    try:
        made.setValue(str(connection.get("auth_password")).encode(), 0)
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            made.undefine()
        raise
    return made


def _size(size: int) -> str:
    return f"{size // _GIB} GiB" if size % _GIB == 0 else f"{size} bytes"


def _raw(volume: ET.Element) -> None:
    ET.SubElement(ET.SubElement(volume, "target"), "format", type="raw")


def _address(name: str) -> str | None:
    """The first address ``name`` resolves to that is not a loopback one."""
    try:
        found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for _family, _type, _proto, _canon, address in found:
        ip = str(address[0])
        if not ip.startswith("127.") and ip != "::1":
            return ip
    return None


def _local_initiator() -> str | None:
    """The InitiatorName of :data:`INITIATOR_FILE`, if the host has one."""
    try:
        with open(INITIATOR_FILE, encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key == "InitiatorName" and value:
                    return value
    except OSError:
        return None
    return None
