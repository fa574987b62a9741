"""The XenAPI driver: XenServer / XCP-ng pools through xapi's XML-RPC API.

A thin façade: :mod:`~drivers.xenapi.vmops` runs the instance operations,
:mod:`~drivers.xenapi.deviceops` the volume and interface operations,
:mod:`~drivers.xenapi.imageops` snapshots and consoles,
:mod:`~drivers.xenapi.rescueops` rescue,
:mod:`~drivers.xenapi.moves`, :mod:`~drivers.xenapi.coldops`,
:mod:`~drivers.xenapi.liveops` and :mod:`~drivers.xenapi.evacuateops`
moving instances between the hosts of a pool,
:mod:`~drivers.xenapi.hostops` the host queries, each given the served
host's pool session from :mod:`~drivers.xenapi.session` and its
:class:`~drivers.xenapi.conf.Target`. Here every call has its xapi failures
mapped onto the project's (:mod:`~drivers.xenapi.errors`).

Compute hosts sharing a pool share one session: the worker logs in once per
pool, not once per host. State is always read from xapi, never cached.
Each host watched for events has a session of its own, on a thread of its
own (:mod:`~drivers.xenapi.watcher`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple, TypeVar

try:
    import XenAPI
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the xenapi driver needs the XenAPI client: pip install XenAPI") from exc
from oslo_config import cfg

from computed import exception
from computed.objects import (
    ConsoleConnection,
    HostResources,
    ImageRef,
    InstanceInfo,
    InstanceSpec,
    Migration,
    NetworkInterface,
    VolumeConnection,
    VolumeConnector,
)
from drivers import base
from drivers._backend import ServedHosts
from drivers.xenapi import conf as xenapi_conf
from drivers.xenapi import constants, errors, moves
from drivers.xenapi.blockdev import DiskBuilder
from drivers.xenapi.coldops import ColdOps
from drivers.xenapi.conf import Target
from drivers.xenapi.deviceops import DeviceOps
from drivers.xenapi.evacuateops import EvacuateOps
from drivers.xenapi.hostops import HostOps
from drivers.xenapi.imageops import ImageOps
from drivers.xenapi.liveops import LiveOps
from drivers.xenapi.rescueops import RescueOps
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, resolve_host
from drivers.xenapi.volumeops import VolumeOps
from drivers.xenapi.watcher import VMWatcher

__all__ = ["XenAPIDriver"]

LOG = logging.getLogger(__name__)

_T = TypeVar("_T")
Work = Callable[[PoolSession, Target], _T]


class _Served(NamedTuple):
    """How a compute host is reached: its pool's session, and its target in the pool."""

    session: PoolSession
    target: Target


class XenAPIDriver(base.TransitionDriver):
    """Serves each compute host from a host of a xapi pool (``[xenapi]`` options)."""

    name = constants.DRIVER
    version = "1.0"
    # No get_serial_console: xapi offers API clients no serial console.
    operations = frozenset(
        base.OPERATIONS_1_0
        + ("get_volume_connector",)
        + base.DEVICE_OPERATIONS
        + base.IMAGE_OPERATIONS
        + base.RESCUE_OPERATIONS
        + ("get_graphical_console",)
        + base.MIGRATION_OPERATIONS
        + base.LIVE_MIGRATION_OPERATIONS
        + base.EVACUATION_OPERATIONS
    )
    features = frozenset(
        {
            "reboot.soft",
            "reboot.hard",
            "spawn.ephemeral_disks",
            "spawn.volumes",
            "spawn.boot_from_volume",
            "spawn.network_interfaces",
        }
    )
    # Every operation passes the driver's functional tests against the xapi
    # test server, not yet a real pool: partial until it has.
    support_tier = base.SupportTier.PARTIAL

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        self._volumeops = VolumeOps()
        builder = DiskBuilder(self._volumeops)
        self._vmops = VMOps(conf.xenapi.template, builder, self._volumeops)
        self._deviceops = DeviceOps(self._vmops, self._volumeops, builder)
        self._imageops = ImageOps(self._vmops)
        self._rescueops = RescueOps(self._vmops)
        self._hostops = HostOps()
        self._coldops = ColdOps(self._vmops)
        self._liveops = LiveOps(self._vmops)
        self._evacuateops = EvacuateOps(self._vmops)
        self._hosts = ServedHosts[_Served, Exception](
            self.name, (XenAPI.Failure, errors.PoolUnavailable), self._translate
        )
        self._sessions: dict[str, PoolSession] = {}  # by pool
        self._watchers: dict[str, VMWatcher] = {}  # by compute host
        self._lock = threading.Lock()

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        xenapi_conf.register_opts(conf)

    # Host lifecycle -------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Log in to the host's pool now, so a wrong URL or password stops the worker at start.

        :raises computed.exception.DriverError: if the pool cannot be reached,
            refuses the login, or lacks the configured xapi host.
        """
        target = xenapi_conf.target_for(self.conf, host)
        with self._lock:
            session = self._sessions.get(target.pool)
            if session is None:
                session = PoolSession(xenapi_conf.pool_config(self.conf, host, target.pool))
                self._sessions[target.pool] = session
        served = _Served(session, target)
        description = self._call(host, "init_host", None, self._hostops.describe, served)
        self._hosts.serve(host, served)
        LOG.info("Host %s served by %s", host, description)

    def cleanup_host(self, host: str) -> None:
        with self._lock:
            watcher = self._watchers.pop(host, None)
        if watcher is not None:
            watcher.stop()
        with self._lock:
            served = self._hosts.release(host)
            pool = served.target.pool if served is not None else None
            if pool is None or any(s.target.pool == pool for s in self._hosts.handles()):
                return
            session = self._sessions.pop(pool, None)
        if session is not None:
            session.close()

    # Instances ------------------------------------------------------------

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        return self._call(host, "spawn", spec.uuid, lambda s, t: self._vmops.spawn(s, t, spec))

    def destroy(self, host: str, uuid: str) -> None:
        self._call(host, "destroy", uuid, lambda s, t: self._vmops.destroy(s, t, uuid))

    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        return self._call(host, "get_info", uuid, lambda s, t: self._vmops.get_info(s, t, uuid))

    def list_instances(self, host: str) -> list[InstanceInfo]:
        return self._call(host, "list_instances", None, self._vmops.list_instances)

    # Devices (contract 1.2) -------------------------------------------------

    def get_volume_connector(self, host: str) -> VolumeConnector:
        def connector(session: PoolSession, target: Target) -> VolumeConnector:
            return self._volumeops.connector(session, target, resolve_host(session, target))

        return self._call(host, "get_volume_connector", None, connector)

    def attach_volume(
        self, host: str, uuid: str, connection_info: VolumeConnection, mountpoint: str | None
    ) -> InstanceInfo:
        def attach(session: PoolSession, target: Target) -> InstanceInfo:
            ops = self._deviceops
            return ops.attach_volume(session, target, uuid, connection_info, mountpoint)

        return self._call(host, "attach_volume", uuid, attach)

    def detach_volume(self, host: str, uuid: str, volume_id: str) -> InstanceInfo:
        return self._call(
            host,
            "detach_volume",
            uuid,
            lambda s, t: self._deviceops.detach_volume(s, t, uuid, volume_id),
        )

    def extend_volume(self, host: str, uuid: str, volume_id: str, new_size: int) -> InstanceInfo:
        return self._call(
            host,
            "extend_volume",
            uuid,
            lambda s, t: self._deviceops.extend_volume(s, t, uuid, volume_id, new_size),
        )

    def attach_interface(self, host: str, uuid: str, vif: NetworkInterface) -> InstanceInfo:
        return self._call(
            host,
            "attach_interface",
            uuid,
            lambda s, t: self._deviceops.attach_interface(s, t, uuid, vif),
        )

    def detach_interface(self, host: str, uuid: str, port_id: str) -> InstanceInfo:
        return self._call(
            host,
            "detach_interface",
            uuid,
            lambda s, t: self._deviceops.detach_interface(s, t, uuid, port_id),
        )

    # Images, rescue and consoles (contract 1.3) ------------------------------

    def snapshot(self, host: str, uuid: str, image_name: str, progress: base.Progress) -> ImageRef:
        return self._call(
            host,
            "snapshot",
            uuid,
            lambda s, t: self._imageops.snapshot(s, t, uuid, image_name, progress),
        )

    def delete_image(self, host: str, image_id: str) -> None:
        self._call(
            host, "delete_image", None, lambda s, t: self._imageops.delete_image(s, t, image_id)
        )

    def rescue(self, host: str, uuid: str, rescue_image: str | None) -> InstanceInfo:
        return self._call(
            host, "rescue", uuid, lambda s, t: self._rescueops.rescue(s, t, uuid, rescue_image)
        )

    def unrescue(self, host: str, uuid: str) -> InstanceInfo:
        return self._call(host, "unrescue", uuid, lambda s, t: self._rescueops.unrescue(s, t, uuid))

    def get_graphical_console(self, host: str, uuid: str) -> ConsoleConnection:
        return self._call(
            host,
            "get_graphical_console",
            uuid,
            lambda s, t: self._imageops.graphical_console(s, t, uuid),
        )

    # Moving instances (contract 1.4) -----------------------------------------

    def check_migration_destination(self, host: str, migration: Migration) -> dict[str, str]:
        return self._call(
            host,
            "check_migration_destination",
            migration.instance_uuid,
            lambda s, t: moves.check_destination(s, t, migration),
        )

    def migrate_disk_and_power_off(
        self, host: str, uuid: str, migration: Migration
    ) -> dict[str, str]:
        return self._call(
            host,
            "migrate_disk_and_power_off",
            uuid,
            lambda s, t: self._coldops.migrate_disk_and_power_off(s, t, uuid, migration),
        )

    def finish_migration(self, host: str, migration: Migration) -> InstanceInfo:
        return self._call(
            host,
            "finish_migration",
            migration.instance_uuid,
            lambda s, t: self._coldops.finish_migration(s, t, migration),
        )

    def confirm_migration(self, host: str, migration: Migration) -> None:
        self._call(
            host,
            "confirm_migration",
            migration.instance_uuid,
            lambda s, t: self._coldops.confirm_migration(s, migration),
        )

    def revert_migration(self, host: str, migration: Migration) -> None:
        self._call(
            host,
            "revert_migration",
            migration.instance_uuid,
            lambda s, t: self._coldops.revert_migration(s, t, migration),
        )

    def finish_revert_migration(self, host: str, migration: Migration) -> InstanceInfo:
        return self._call(
            host,
            "finish_revert_migration",
            migration.instance_uuid,
            lambda s, t: self._coldops.finish_revert_migration(s, t, migration),
        )

    def pre_live_migration(self, host: str, migration: Migration) -> dict[str, str]:
        return self._call(
            host,
            "pre_live_migration",
            migration.instance_uuid,
            lambda s, t: self._liveops.pre_live_migration(s, t, migration),
        )

    def live_migration(
        self, host: str, uuid: str, migration: Migration, progress: base.Progress
    ) -> None:
        self._call(
            host,
            "live_migration",
            uuid,
            lambda s, t: self._liveops.live_migration(s, t, uuid, migration, progress),
        )

    def post_live_migration_at_destination(self, host: str, migration: Migration) -> InstanceInfo:
        return self._call(
            host,
            "post_live_migration_at_destination",
            migration.instance_uuid,
            lambda s, t: self._liveops.post_live_migration_at_destination(s, t, migration),
        )

    def rollback_live_migration_at_destination(self, host: str, migration: Migration) -> None:
        self._hosts[host]  # a host this worker does not serve is an error
        self._liveops.rollback_live_migration_at_destination(migration)

    def abort_live_migration(self, host: str, uuid: str, migration: Migration) -> None:
        self._call(
            host,
            "abort_live_migration",
            uuid,
            lambda s, t: self._liveops.abort_live_migration(migration),
        )

    def evacuate(self, host: str, migration: Migration) -> InstanceInfo:
        return self._call(
            host,
            "evacuate",
            migration.instance_uuid,
            lambda s, t: self._evacuateops.evacuate(s, t, migration),
        )

    # Host -----------------------------------------------------------------

    def watch_instances(self, host: str, changed: Callable[[str], None]) -> None:
        """Follow the host's VMs with xapi's ``event.from`` on a thread and a session
        of their own, until :meth:`cleanup_host`."""
        served = self._hosts[host]
        watcher = VMWatcher(served.session.config, host, changed)
        with self._lock:
            old = self._watchers.pop(host, None)
            self._watchers[host] = watcher
        if old is not None:
            old.stop()
        watcher.start()

    def get_host_resources(self, host: str) -> HostResources:
        def resources(session: PoolSession, target: Target) -> HostResources:
            instances = self._vmops.list_instances(session, target)
            return self._hostops.get_host_resources(session, target, instances)

        return self._call(host, "get_host_resources", None, resources)

    # ----------------------------------------------------------------------

    def transition(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        return self._call(
            host, operation, uuid, lambda s, t: self._vmops.transition(s, t, uuid, operation)
        )

    def _call(
        self,
        host: str,
        operation: str,
        uuid: str | None,
        work: Work[_T],
        served: _Served | None = None,
    ) -> _T:
        """Run ``work`` with the host's pool session and target."""
        return self._hosts.call(host, operation, uuid, lambda s: work(*s), served)

    def _translate(
        self, exc: Exception, *, host: str, operation: str, uuid: str | None
    ) -> exception.ComputedError:
        """xapi's failure in the project's terms, naming the host's pool."""
        pool = xenapi_conf.target_for(self.conf, host).pool
        return errors.translate(exc, host=host, pool=pool, operation=operation, uuid=uuid)
