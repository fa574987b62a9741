"""Moving instances (contract 1.4): resize, cold migration and evacuation with libvirt.

Live migration is :mod:`~drivers.libvirt.liveops`' business; both use the
helpers here. Every step is idempotent by the migration's id, which the
domains themselves carry (in the driver's metadata element,
:mod:`~drivers.libvirt.config`), so any worker finds a step's work done:

===========================  ==========================================================
step                         libvirt
===========================  ==========================================================
check_migration_destination  ``networkLookupByName`` for each interface's network; for
                             a cold migration a probe ``storageVolCreateXML`` +
                             ``virStorageVol.upload`` (the disks arrive by stream);
                             for a live one ``compareCPU``; returns the host's URI,
                             hypervisor type, storage pool and migration address
migrate_disk_and_power_off   ``destroy`` (or the ``power_off`` of the lifecycle), then
  (source)                   each local disk ``virStorageVol.download`` →
                             ``upload`` into a new volume of the destination's pool
                             (grown to the new root disk size), then the id of the move
                             in the metadata
finish_migration (dest)      the source's definition, read over its URI, with the new
                             flavor, the destination's disk paths and console ports:
                             ``defineXML`` (+ ``create``); then on the source the domain
                             becomes a *held* copy (``defineXML`` under another name and
                             UUID, ``undefineFlags`` of the original), which is never
                             listed; for a resize the old definition goes into the
                             metadata and a root disk that grows is a copy
                             (``storageVolCreateXMLFrom``), the old one kept
confirm_migration (source)   the held copy and its disks deleted; for a resize the old
                             disks and definition
revert_migration (dest)      the domain this move built, and its disks, deleted
finish_revert_migration      the held copy defined again under its own name and UUID;
  (source)                   for a resize the old definition; started if it ran
evacuate (dest)              a spawn of ``migration.spec``: local disks are volumes of
                             the dead host's own pool, never reachable from another host
===========================  ==========================================================

libvirt's test driver implements neither volume streams nor ``compareCPU``
nor migration: its hosts refuse cold and live migrations at the
destination's check, naming the call libvirt refused.
"""

from __future__ import annotations

import contextlib
import logging
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

import libvirt
from oslo_config import cfg

from computed import exception
from computed.objects import DeviceKind, InstanceInfo, Migration, MigrationKind, PowerState
from drivers import base
from drivers.libvirt import conf as libvirt_conf
from drivers.libvirt import config, constants, errors, hostops, rescue
from drivers.libvirt.connection import redact
from drivers.libvirt.deviceops import stored_metadata
from drivers.libvirt.devices import DiskRecord
from drivers.libvirt.imageops import find_volume
from drivers.libvirt.vmops import VMOps, find_domain, force_off, lookup_domain, observe

__all__ = [
    "HELD_PREFIX",
    "MigrationOps",
    "held_name",
    "local_disks",
    "precheck_failed",
    "remote",
]

LOG = logging.getLogger(__name__)

#: The name of a domain kept on its source for the revert of a move: this
#: prefix and the move's id.
HELD_PREFIX = "computed-held-"

_GIB = 1024**3
_CHUNK = 1 << 20
_DEFINITION = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
_UNDEFINE_KEEP = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)
_CONSOLE_TAGS = ("serial", "console", "graphics")
_HELD_NS = uuidlib.UUID("5d0f6c0e-0b1e-4d1b-9a57-6f1f0c8a2e11")


def held_name(migration_id: str) -> str:
    """The libvirt name of the copy a move keeps on its source."""
    return f"{HELD_PREFIX}{migration_id}"


def precheck_failed(host: str, migration: Migration, reason: str) -> exception.MigrationError:
    return exception.MigrationPreCheckFailed(host=host, uuid=migration.instance_uuid, reason=reason)


@contextlib.contextmanager
def remote(uri: str, host: str, migration: Migration) -> Iterator[libvirt.virConnect]:
    """A connection of a step's own to the other host of a move, closed after."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise exception.MigrationError(
            migration=migration.describe(),
            reason=f"host {host} cannot reach {redact(uri)}: {exc.get_error_message()}",
        ) from exc
    try:
        yield conn
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def local_disks(
    conn: libvirt.virConnect, domain: ET.Element, pool_name: str | None
) -> list[tuple[ET.Element, libvirt.virStorageVol]]:
    """The ``<disk>`` elements of ``domain`` that are volumes of ``pool_name``, with them.

    Volumes of a storage service (those with a serial) are reachable from
    every host and stay as they are.
    """
    found: list[tuple[ET.Element, libvirt.virStorageVol]] = []
    if not pool_name:
        return found
    for disk in domain.iterfind("devices/disk"):
        path = rescue.source_path(disk)
        if disk.get("device", "disk") != "disk" or disk.findtext("serial") or path is None:
            continue
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            continue
        if vol.storagePoolLookupByVolume().name() == pool_name:
            found.append((disk, vol))
    return found


def set_source(disk: ET.Element, path: str) -> None:
    source = disk.find("source")
    assert source is not None
    source.set("dev" if "dev" in source.attrib else "file", path)


def with_metadata(domain: ET.Element, stored: config.StoredMetadata) -> str:
    """``domain``'s XML with the driver's metadata element replaced by ``stored``."""
    wrapper = domain.find("metadata")
    if wrapper is None:
        wrapper = ET.SubElement(domain, "metadata")
    for old in wrapper.findall(f"{{{constants.METADATA_NS}}}instance"):
        wrapper.remove(old)
    wrapper.append(config.metadata_element(stored))
    return ET.tostring(domain, encoding="unicode")


def metadata_of(domain: ET.Element) -> config.StoredMetadata:
    element = domain.find(f"metadata/{{{constants.METADATA_NS}}}instance")
    if element is None:
        return config.StoredMetadata()
    return config.parse_metadata(ET.tostring(element, encoding="unicode"))


def undefine_keeping_disks(dom: libvirt.virDomain) -> None:
    flags = _UNDEFINE_KEEP
    if ET.fromstring(dom.XMLDesc(0)).find("os/nvram") is not None:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
    dom.undefineFlags(flags)


def delete_volumes(conn: libvirt.virConnect, paths: set[str]) -> None:
    for path in paths:
        try:
            conn.storageVolLookupByPath(path).delete(0)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise


def volume_xml(name: str, capacity: int) -> str:
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(volume, "allocation", unit="bytes").text = "0"
    ET.SubElement(ET.SubElement(volume, "target"), "format", type="raw")
    return ET.tostring(volume, encoding="unicode")


class MigrationOps:
    """The steps of resizes, cold migrations and evacuations, given the host's connection."""

    def __init__(self, conf: cfg.ConfigOpts, vmops: VMOps) -> None:
        self._conf = conf
        self._vmops = vmops

    # The destination's check ----------------------------------------------------

    def check_destination(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> dict[str, str]:
        uuid = migration.instance_uuid
        dom = find_domain(conn, uuid)
        if (
            migration.kind != MigrationKind.RESIZE
            and dom is not None
            and stored_metadata(dom).migration != migration.id
        ):
            raise precheck_failed(host, migration, "an instance with that UUID is already there")
        self._check_networks(conn, host, migration)
        uri = libvirt_conf.uri_for(self._conf, host)
        if urlsplit(uri).password is not None:
            raise precheck_failed(
                host,
                migration,
                "its libvirt URI holds a password, which is not handed to "
                "another host: use TLS or SSH keys",
            )
        pool = self._conf.libvirt.storage_pool or ""
        data = {
            "uri": uri,
            "hypervisor": str(conn.getType()),
            "pool": pool,
            "migration_uri": f"tcp://{urlsplit(uri).hostname or '127.0.0.1'}",
        }
        if migration.kind == MigrationKind.COLD:
            self._probe_upload(conn, host, migration, pool)
        elif migration.kind == MigrationKind.LIVE:
            self._probe_cpu(conn, host, migration)
        return data

    def _check_networks(self, conn: libvirt.virConnect, host: str, migration: Migration) -> None:
        if migration.spec is not None:
            wanted = migration.spec.network_interfaces
        else:
            wanted = migration.instance.network_interfaces if migration.instance else []
        for vif in wanted:
            try:
                self._vmops.check_network(conn, host, vif.network)
            except exception.InvalidRequest as exc:
                raise precheck_failed(host, migration, exc.kwargs["reason"]) from exc

    def _probe_upload(
        self, conn: libvirt.virConnect, host: str, migration: Migration, pool_name: str
    ) -> None:
        """Whether disks can arrive here by stream, tried on a volume of no size."""
        if not pool_name:
            raise precheck_failed(host, migration, "[libvirt] storage_pool is unset here")
        pool = conn.storagePoolLookupByName(pool_name)
        name = f"computed-probe-{migration.id}"
        vol = find_volume(pool, name) or pool.createXML(volume_xml(name, 0), 0)
        try:
            stream = conn.newStream(0)
            vol.upload(stream, 0, 0, 0)
            stream.finish()
        except libvirt.libvirtError as exc:
            raise precheck_failed(
                host,
                migration,
                f"its hypervisor ({conn.getType()}) cannot take disks from another host: "
                f"{exc.get_error_message()} (libvirt error {errors.code_of(exc)})",
            ) from exc
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)

    def _probe_cpu(self, conn: libvirt.virConnect, host: str, migration: Migration) -> None:
        """Whether CPUs can be compared here (the source compares its own against ours)."""
        cpu = ET.fromstring(conn.getCapabilities()).find("host/cpu")
        try:
            conn.compareCPU(ET.tostring(cpu, encoding="unicode") if cpu is not None else "", 0)
        except libvirt.libvirtError as exc:
            raise precheck_failed(
                host,
                migration,
                f"its hypervisor ({conn.getType()}) cannot check CPU compatibility for a live "
                f"migration: {exc.get_error_message()} (libvirt error {errors.code_of(exc)})",
            ) from exc

    # Source: stop and hand the disks over -------------------------------------------

    def migrate_disk_and_power_off(
        self, conn: libvirt.virConnect, host: str, uuid: str, migration: Migration
    ) -> dict[str, str]:
        handed = {"uri": libvirt_conf.uri_for(self._conf, host)}
        dom = lookup_domain(conn, host, uuid)
        stored = stored_metadata(dom)
        if stored.migration == migration.id:
            return handed
        if not migration.same_host:
            check_hypervisor(conn, host, migration)
        state = observe(dom).power_state
        operation = "migrate_disk_and_power_off"
        base.check_state(operation, uuid, state, base.COLD_MIGRATION_STATES)
        if state == PowerState.RUNNING:
            self._vmops.transition(conn, host, uuid, "power_off")
        if not migration.same_host:
            self._copy_disks(conn, host, dom, migration)
        # Marked last: a step cut short before this runs again from the start.
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            config.metadata_text(replace(stored, migration=migration.id)),
            constants.METADATA_PREFIX,
            constants.METADATA_NS,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        )
        LOG.info("Host %s: %s stopped for %s", host, uuid, migration.describe())
        return handed

    def _copy_disks(
        self, conn: libvirt.virConnect, host: str, dom: libvirt.virDomain, migration: Migration
    ) -> None:
        domain = ET.fromstring(dom.XMLDesc(_DEFINITION))
        disks = local_disks(conn, domain, self._conf.libvirt.storage_pool)
        if not disks:
            return
        root = rescue.root_disk(domain)
        with remote(migration.dest_data["uri"], host, migration) as dest:
            pool = dest.storagePoolLookupByName(migration.dest_data["pool"])
            for disk, vol in disks:
                size = vol.info()[1]
                capacity = size
                if disk is root:
                    capacity = max(size, migration.flavor.disk_gb * _GIB)
                copy = find_volume(pool, vol.name())
                if copy is not None:
                    copy.delete(0)  # left by a copy cut short
                copy = pool.createXML(volume_xml(vol.name(), capacity), 0)
                _stream(conn, vol, dest, copy, size)
                LOG.info(
                    "Host %s: disk %s copied to %s (%d bytes)",
                    host,
                    vol.name(),
                    migration.dest_host,
                    size,
                )

    # Destination: build the instance -----------------------------------------------

    def finish_migration(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> InstanceInfo:
        if migration.same_host:
            return self._finish_resize(conn, host, migration)
        uuid = migration.instance_uuid
        dom = find_domain(conn, uuid)
        with remote(migration.source_data["uri"], host, migration) as source:
            if dom is None:
                dom = self._build(conn, source, host, migration)
            elif stored_metadata(dom).migration != migration.id:
                raise exception.MigrationError(
                    migration=migration.describe(),
                    reason=f"another instance {uuid} is on {host}",
                )
            hold(source, migration)
        LOG.info("Host %s: %s arrived by %s", host, uuid, migration.describe())
        return self._vmops.info(dom, host)

    def _build(
        self,
        conn: libvirt.virConnect,
        source: libvirt.virConnect,
        host: str,
        migration: Migration,
    ) -> libvirt.virDomain:
        uuid = migration.instance_uuid
        found = find_domain(source, uuid)
        if found is None:
            held = find_held(source, migration.id)
            if held is None:
                raise exception.InstanceNotFound(uuid=uuid, host=migration.source_host)
            found = held
        domain = ET.fromstring(found.XMLDesc(_DEFINITION))
        restore_identity(domain, migration)
        pool = conn.storagePoolLookupByName(migration.dest_data["pool"] or "")
        for disk, vol in local_disks(source, domain, self._conf.libvirt.storage_pool):
            set_source(disk, pool.storageVolLookupByName(vol.name()).path())
        stored = resized(metadata_of(domain), domain, migration)
        domain.set("type", hostops.domain_type(conn, self._conf.libvirt.virt_type))
        devices = domain.find("devices")
        assert devices is not None
        for tag in _CONSOLE_TAGS:
            for element in devices.findall(tag):
                devices.remove(element)

        def build(consoles: list[ET.Element]) -> str:
            devices.extend(consoles)
            return with_metadata(domain, replace(stored, migration=migration.id))

        dom = self._vmops.define_with_consoles(conn, host, build)
        if migration.power_state == PowerState.RUNNING:
            dom.create()
        return dom

    def _finish_resize(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> InstanceInfo:
        uuid = migration.instance_uuid
        dom = lookup_domain(conn, host, uuid)
        stored = stored_metadata(dom)
        if stored.previous is None:
            if stored.migration != migration.id:
                raise exception.MigrationError(
                    migration=migration.describe(), reason=f"{uuid} was not stopped for it"
                )
            text = dom.XMLDesc(_DEFINITION)
            domain = ET.fromstring(text)
            self._grow_root(conn, domain, migration)
            stored = replace(resized(stored, domain, migration), previous=text)
            dom = conn.defineXML(with_metadata(domain, stored))
        if migration.power_state == PowerState.RUNNING and not dom.isActive():
            dom.create()
        LOG.info("Host %s: %s resized to %s", host, uuid, migration.flavor)
        return self._vmops.info(dom, host)

    def _grow_root(
        self, conn: libvirt.virConnect, domain: ET.Element, migration: Migration
    ) -> None:
        """A root disk that grows is a bigger copy, the old one kept for a revert."""
        root = rescue.root_disk(domain)
        disks = dict(local_disks(conn, domain, self._conf.libvirt.storage_pool))
        vol = disks.get(root) if root is not None else None
        if vol is None or root is None or migration.flavor.disk_gb * _GIB <= vol.info()[1]:
            return
        pool = vol.storagePoolLookupByVolume()
        name = f"{migration.instance_uuid}-{_target(root)}-{migration.id[:8]}"
        copy = find_volume(pool, name)
        if copy is None:
            xml = volume_xml(name, migration.flavor.disk_gb * _GIB)
            copy = pool.createXMLFrom(xml, vol, 0)
        set_source(root, copy.path())

    # Ending a move -------------------------------------------------------------

    def confirm_migration(self, conn: libvirt.virConnect, host: str, migration: Migration) -> None:
        if migration.same_host:
            dom = find_domain(conn, migration.instance_uuid)
            stored = stored_metadata(dom) if dom is not None else None
            if dom is None or stored is None or stored.migration != migration.id:
                return
            if stored.previous is not None:
                now = _paths(conn, ET.fromstring(dom.XMLDesc(_DEFINITION)), self._conf)
                old = _paths(conn, ET.fromstring(stored.previous), self._conf)
                delete_volumes(conn, old - now)
            clear_mark(conn, dom)
            return
        held = find_held(conn, migration.id)
        if held is not None:
            paths = _paths(conn, ET.fromstring(held.XMLDesc(_DEFINITION)), self._conf)
            undefine_keeping_disks(held)
            delete_volumes(conn, paths)
            LOG.info(
                "Host %s: copy of %s kept by %s removed",
                host,
                migration.instance_uuid,
                migration.id,
            )

    def revert_migration(self, conn: libvirt.virConnect, host: str, migration: Migration) -> None:
        if migration.same_host:
            return
        dom = find_domain(conn, migration.instance_uuid)
        if dom is None or stored_metadata(dom).migration != migration.id:
            return  # only what this move built, never an instance it did not bring
        paths = _paths(conn, ET.fromstring(dom.XMLDesc(_DEFINITION)), self._conf)
        if dom.isActive():
            force_off(dom)
        undefine_keeping_disks(dom)
        delete_volumes(conn, paths)

    def finish_revert_migration(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> InstanceInfo:
        uuid = migration.instance_uuid
        held = None if migration.same_host else find_held(conn, migration.id)
        if held is not None:
            domain = ET.fromstring(held.XMLDesc(_DEFINITION))
            restore_identity(domain, migration)
            conn.defineXML(ET.tostring(domain, encoding="unicode"))
            undefine_keeping_disks(held)
        dom = lookup_domain(conn, host, uuid)
        stored = stored_metadata(dom)
        if stored.migration != migration.id:
            return self._vmops.info(dom, host)  # never stopped for this move
        if stored.previous is not None:
            if dom.isActive():
                force_off(dom)
            now = _paths(conn, ET.fromstring(dom.XMLDesc(_DEFINITION)), self._conf)
            old = _paths(conn, ET.fromstring(stored.previous), self._conf)
            dom = conn.defineXML(stored.previous)
            delete_volumes(conn, now - old)
        dom = clear_mark(conn, dom)
        was = migration.instance.power_state if migration.instance else PowerState.STOPPED
        if was == PowerState.RUNNING and not dom.isActive():
            dom.create()
        LOG.info("Host %s: %s back as before %s", host, uuid, migration.describe())
        return self._vmops.info(dom, host)

    # Evacuation -------------------------------------------------------------------

    def evacuate(self, conn: libvirt.virConnect, host: str, migration: Migration) -> InstanceInfo:
        """A spawn of the spec: the dead host's local disks are in its own pool, out of reach."""
        spec = migration.spec
        assert spec is not None  # Migration.validate
        info = self._vmops.spawn(conn, host, spec)
        if migration.power_state == PowerState.STOPPED:
            info = self._vmops.transition(conn, host, spec.uuid, "power_off")
        LOG.info("Host %s: %s rebuilt from its image (evacuated)", host, spec.uuid)
        return info


# Held copies -------------------------------------------------------------------------


def find_held(conn: libvirt.virConnect, migration_id: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(held_name(migration_id))
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return None


def hold(conn: libvirt.virConnect, migration: Migration) -> None:
    """Keep the stopped domain on the source for a revert, as a domain that is no instance."""
    dom = find_domain(conn, migration.instance_uuid)
    if dom is None:
        return
    if dom.isActive():
        force_off(dom)
    domain = ET.fromstring(dom.XMLDesc(_DEFINITION))
    name, uuid = domain.find("name"), domain.find("uuid")
    assert name is not None and uuid is not None
    name.text = held_name(migration.id)
    uuid.text = str(uuidlib.uuid5(_HELD_NS, migration.id))
    conn.defineXML(
        with_metadata(domain, replace(metadata_of(domain), held=migration.instance_uuid))
    )
    undefine_keeping_disks(dom)


def restore_identity(domain: ET.Element, migration: Migration) -> None:
    """Give a held copy's definition its instance's name and UUID again."""
    name, uuid = domain.find("name"), domain.find("uuid")
    assert name is not None and uuid is not None
    name.text = constants.domain_name(migration.instance_uuid)
    uuid.text = migration.instance_uuid
    with_metadata(domain, replace(metadata_of(domain), held=None))


def clear_mark(conn: libvirt.virConnect, dom: libvirt.virDomain) -> libvirt.virDomain:
    domain = ET.fromstring(dom.XMLDesc(_DEFINITION))
    stored = replace(metadata_of(domain), migration=None, previous=None)
    return conn.defineXML(with_metadata(domain, stored))


def check_hypervisor(conn: libvirt.virConnect, host: str, migration: Migration) -> None:
    mine, theirs = str(conn.getType()), migration.dest_data.get("hypervisor")
    if theirs != mine:
        raise precheck_failed(
            migration.dest_host,
            migration,
            f"its hypervisor is {theirs}, that of {host} {mine}",
        )


def resized(
    stored: config.StoredMetadata, domain: ET.Element, migration: Migration
) -> config.StoredMetadata:
    """``stored`` at the migration's flavor; ``domain``'s vCPUs and memory set to it."""
    flavor = migration.flavor
    memory = str(flavor.memory_mb * 1024)
    for tag in ("memory", "currentMemory"):
        element = domain.find(tag)
        if element is None:
            element = ET.SubElement(domain, tag)
        element.text, element.attrib = memory, {"unit": "KiB"}
    vcpu = domain.find("vcpu")
    if vcpu is None:
        vcpu = ET.SubElement(domain, "vcpu")
    vcpu.text, vcpu.attrib = str(flavor.vcpus), {"placement": "static"}
    root = rescue.root_disk(domain)
    disks = dict(stored.disks)
    record = disks.get(_target(root)) if root is not None else None
    if record is not None and record.kind != DeviceKind.VOLUME and record.size_gb is not None:
        disks[record.key] = DiskRecord(
            record.key, record.kind, max(record.size_gb, flavor.disk_gb), record.image
        )
    return replace(stored, disk_gb=flavor.disk_gb, disks=disks)


def _target(disk: ET.Element) -> str:
    target = disk.find("target")
    return (target.get("dev") or "") if target is not None else ""


def _paths(conn: libvirt.virConnect, domain: ET.Element, conf: cfg.ConfigOpts) -> set[str]:
    return {vol.path() for _disk, vol in local_disks(conn, domain, conf.libvirt.storage_pool)}


def _stream(
    conn: libvirt.virConnect,
    vol: libvirt.virStorageVol,
    dest: libvirt.virConnect,
    copy: libvirt.virStorageVol,
    size: int,
) -> None:
    """Copy ``size`` bytes of ``vol`` into ``copy``, from one libvirtd's stream to another's."""
    down, up = conn.newStream(0), dest.newStream(0)
    try:
        vol.download(down, 0, size, 0)
        copy.upload(up, 0, size, 0)
        while True:
            data = down.recv(_CHUNK)
            if not isinstance(data, bytes) or not data:
                break
            view = memoryview(data)
            while view:
                sent = up.send(bytes(view))
                view = view[sent:]
        down.finish()
        up.finish()
    except BaseException:
        for stream in (down, up):
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
        raise
