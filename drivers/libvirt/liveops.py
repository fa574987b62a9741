"""Live migration (contract 1.4) with libvirt: the running domain moves between libvirtds.

===================================  ====================================================
step                                 libvirt
===================================  ====================================================
pre_live_migration (dest)            a raw volume of the storage pool for each local disk
                                     (``storageVolCreateXML``), which the memory copy's
                                     disk mirror fills; their paths go to the source
live_migration (source)              the destination's ``compareCPU`` of the source's host
                                     CPU, disk sizes matched, then ``migrateToURI3`` to the
                                     destination's URI, peer to peer (``LIVE |
                                     PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE``, and
                                     ``NON_SHARED_DISK`` over NBD when there are local
                                     disks), in a thread; progress from ``jobStats``
abort_live_migration (source)        ``abortJob``
post_live_migration_at_destination   the domain as it runs there
rollback_live_migration_at_dest.     what pre_live_migration made, unless the domain is
                                     there (a failed incoming domain is destroyed)
===================================  ====================================================

libvirt's test driver migrates nothing (``migrateToURI3``: "p2p migration
is not supported by the source host", error 74; ``migrate3``: no support):
its hosts are refused at the destination's check (``compareCPU``
unsupported) before anything moves.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from typing import Any

import libvirt
from oslo_config import cfg

from computed import exception
from computed.objects import DeviceKind, InstanceInfo, Migration
from drivers import base
from drivers.libvirt import errors, migrationops
from drivers.libvirt.imageops import find_volume
from drivers.libvirt.migrationops import local_disks, precheck_failed, remote
from drivers.libvirt.vmops import VMOps, find_domain, force_off, lookup_domain, observe

__all__ = ["LiveOps", "PROGRESS_INTERVAL"]

LOG = logging.getLogger(__name__)

#: Seconds between two looks at a migration job under way (libvirt sends no
#: event for its progress).
PROGRESS_INTERVAL = 0.25

_GIB = 1024**3
_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)
_DISK_KEY = "disk."


class LiveOps:
    """The steps of a live migration, given the host's connection."""

    def __init__(self, conf: cfg.ConfigOpts, vmops: VMOps) -> None:
        self._conf = conf
        self._vmops = vmops
        self._aborts: set[str] = set()
        self._lock = threading.Lock()

    # Destination ---------------------------------------------------------------------

    def pre_live_migration(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> dict[str, str]:
        """A volume for each local disk of the instance; ``disk.<name>``: its path."""
        info = migration.instance
        wanted = [d for d in info.block_devices if d.kind != DeviceKind.VOLUME] if info else []
        pool_name = self._conf.libvirt.storage_pool
        if not wanted or not pool_name:
            return {}
        pool = conn.storagePoolLookupByName(pool_name)
        made = {}
        for device in wanted:
            name = f"{migration.instance_uuid}-{device.device_name}"
            vol = find_volume(pool, name)
            if vol is None:
                capacity = (device.size_gb or 0) * _GIB
                if device.image:
                    image = find_volume(pool, device.image)
                    capacity = max(capacity, image.info()[1] if image is not None else 0)
                vol = pool.createXML(migrationops.volume_xml(name, capacity), 0)
            made[f"{_DISK_KEY}{device.device_name}"] = vol.path()
        return made

    def post_live_migration_at_destination(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> InstanceInfo:
        return self._vmops.info(lookup_domain(conn, host, migration.instance_uuid), host)

    def rollback_live_migration_at_destination(
        self, conn: libvirt.virConnect, host: str, migration: Migration
    ) -> None:
        dom = find_domain(conn, migration.instance_uuid)
        if dom is not None:
            if dom.isPersistent():
                return  # the instance is here: nothing of a preparation to undo
            force_off(dom)  # an incoming domain a failed migration left
        paths = {v for k, v in migration.dest_data.items() if k.startswith(_DISK_KEY)}
        migrationops.delete_volumes(conn, paths)

    # Source -------------------------------------------------------------------------------

    def live_migration(
        self,
        conn: libvirt.virConnect,
        host: str,
        uuid: str,
        migration: Migration,
        progress: base.Progress,
    ) -> None:
        dom = find_domain(conn, uuid)
        if dom is not None:
            self._wait_for_job(dom)  # started by a worker that died since
            dom = find_domain(conn, uuid)
        with remote(migration.dest_data["uri"], host, migration) as dest:
            if dom is None:
                if find_domain(dest, uuid) is not None:
                    return  # it has left already
                raise exception.InstanceNotFound(uuid=uuid, host=host)
            state = observe(dom).power_state
            base.check_state("live_migration", uuid, state, base.LIVE_MIGRATION_STATES)
            migrationops.check_hypervisor(conn, host, migration)
            self._check_cpu(conn, dest, host, migration)
            params = self._params(conn, dest, dom, migration)
        flags = _FLAGS
        if libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS in params:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        self._check_abort(migration)
        self._migrate(dom, migration, params, flags, progress)
        progress(100)
        LOG.info("Host %s: %s live-migrated to %s", host, uuid, migration.dest_host)

    def abort_live_migration(
        self, conn: libvirt.virConnect, host: str, uuid: str, migration: Migration
    ) -> None:
        with self._lock:
            self._aborts.add(migration.id)
        dom = find_domain(conn, uuid)
        if dom is not None:
            _abort_job(dom)

    def _check_cpu(
        self,
        conn: libvirt.virConnect,
        dest: libvirt.virConnect,
        host: str,
        migration: Migration,
    ) -> None:
        cpu = ET.fromstring(conn.getCapabilities()).find("host/cpu")
        if cpu is None:
            return
        try:
            result = dest.compareCPU(ET.tostring(cpu, encoding="unicode"), 0)
        except libvirt.libvirtError as exc:
            raise precheck_failed(
                migration.dest_host,
                migration,
                f"cannot compare the CPU of {host} with its own: {exc.get_error_message()}",
            ) from exc
        if result not in (libvirt.VIR_CPU_COMPARE_IDENTICAL, libvirt.VIR_CPU_COMPARE_SUPERSET):
            raise precheck_failed(
                migration.dest_host,
                migration,
                f"its CPU lacks features of the CPU of {host} (compareCPU gave {result})",
            )

    def _params(
        self,
        conn: libvirt.virConnect,
        dest: libvirt.virConnect,
        dom: libvirt.virDomain,
        migration: Migration,
    ) -> dict[str, Any]:
        """migrateToURI3's parameters: the destination's definition, with its disk paths."""
        domain = ET.fromstring(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
        )
        targets = []
        for disk, vol in local_disks(conn, domain, self._conf.libvirt.storage_pool):
            target = disk.find("target")
            name = target.get("dev", "") if target is not None else ""
            path = migration.dest_data.get(f"{_DISK_KEY}{name}")
            if path is None:
                raise exception.MigrationError(
                    migration=migration.describe(),
                    reason=f"{migration.dest_host} prepared no disk for {name}",
                )
            _match_size(dest, path, vol.info()[1])
            migrationops.set_source(disk, path)
            targets.append(name)
        params: dict[str, Any] = {
            libvirt.VIR_MIGRATE_PARAM_URI: migration.dest_data["migration_uri"],
            libvirt.VIR_MIGRATE_PARAM_DEST_XML: ET.tostring(domain, encoding="unicode"),
        }
        if targets:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = targets
        return params

    def _migrate(
        self,
        dom: libvirt.virDomain,
        migration: Migration,
        params: dict[str, Any],
        flags: int,
        progress: base.Progress,
    ) -> None:
        """``migrateToURI3`` in a thread, its progress read from the job while it runs."""
        failure: list[libvirt.libvirtError] = []
        done = threading.Event()

        def run() -> None:
            try:
                dom.migrateToURI3(migration.dest_data["uri"], params, flags)
            except libvirt.libvirtError as exc:
                failure.append(exc)
            finally:
                done.set()

        mover = base.operation_thread(run, name=f"migrate-{migration.id[:8]}")
        mover.start()
        reported = 0
        while not done.wait(PROGRESS_INTERVAL):
            if self._aborted(migration):
                _abort_job(dom)
            percent = _percent(dom)
            if percent is not None and percent > reported:
                reported = percent
                progress(percent)
        mover.join()
        if failure:
            exc = failure[0]
            if self._aborted(migration, forget=True):
                raise exception.MigrationAborted(
                    migration=migration.id,
                    uuid=migration.instance_uuid,
                    reason=f"asked to stop; the instance runs on {migration.source_host} "
                    f"({exc.get_error_message()})",
                ) from exc
            raise exc
        self._aborted(migration, forget=True)

    def _check_abort(self, migration: Migration) -> None:
        if self._aborted(migration, forget=True):
            raise exception.MigrationAborted(
                migration=migration.id,
                uuid=migration.instance_uuid,
                reason=f"asked to stop before it began; the instance runs on "
                f"{migration.source_host}",
            )

    def _aborted(self, migration: Migration, forget: bool = False) -> bool:
        with self._lock:
            aborted = migration.id in self._aborts
            if forget:
                self._aborts.discard(migration.id)
        return aborted

    @staticmethod
    def _wait_for_job(dom: libvirt.virDomain) -> None:
        """Wait for a migration job a dead worker started to end (it runs in libvirtd)."""
        done = threading.Event()
        while _job_active(dom):
            done.wait(PROGRESS_INTERVAL)


def _percent(dom: libvirt.virDomain) -> int | None:
    """How far the job is, memory and disks together, or None if libvirt does not say."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return None  # over, or not begun
    total = int(stats.get("memory_total", 0)) + int(stats.get("disk_total", 0))
    processed = int(stats.get("memory_processed", 0)) + int(stats.get("disk_processed", 0))
    if not total:
        return None
    # Memory dirtied meanwhile is sent again: 99 until libvirt says it is over.
    return min(99, processed * 100 // total)


def _job_active(dom: libvirt.virDomain) -> bool:
    try:
        return bool(dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE)
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_SUPPORT):
            return False
        raise


def _abort_job(dom: libvirt.virDomain) -> None:
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        # No job (not begun, or over), or the domain has left.
        if errors.code_of(exc) not in (
            libvirt.VIR_ERR_OPERATION_INVALID,
            libvirt.VIR_ERR_NO_DOMAIN,
        ):
            raise


def _match_size(dest: libvirt.virConnect, path: str, size: int) -> None:
    """The disk mirror needs a target of the source's very size."""
    vol = dest.storageVolLookupByPath(path)
    if vol.info()[1] == size:
        return
    pool, name = vol.storagePoolLookupByVolume(), vol.name()
    vol.delete(0)
    pool.createXML(migrationops.volume_xml(name, size), 0)
