"""The Hyper-V driver: Windows Hyper-V hosts managed remotely over WinRM.

A thin façade: :mod:`~drivers.hyperv.vmops` runs the instance operations,
:mod:`~drivers.hyperv.deviceops` the volume and interface operations,
:mod:`~drivers.hyperv.imageops` the snapshots, :mod:`~drivers.hyperv.rescueops`
rescue and unrescue, :mod:`~drivers.hyperv.consoleops` the consoles,
:mod:`~drivers.hyperv.migrationops` the moves of instances and
:mod:`~drivers.hyperv.hostops` the host queries, each given the served host's
:class:`~drivers.hyperv.winrmclient.HostClient`, which runs scripts from the
fixed vocabulary of :mod:`~drivers.hyperv.powershell`. Here every call gets
that client and has its PowerShell errors mapped onto the project's
(:mod:`~drivers.hyperv.errors`). State is always read from Hyper-V; a thread
per host (:mod:`~drivers.hyperv.poller`) looks at it for changes nobody made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
from drivers.hyperv import conf as hyperv_conf
from drivers.hyperv import constants, errors
from drivers.hyperv.consoleops import ConsoleOps
from drivers.hyperv.deviceops import DeviceOps
from drivers.hyperv.hostops import HostOps
from drivers.hyperv.imageops import ImageOps
from drivers.hyperv.migrationops import MigrationOps
from drivers.hyperv.poller import InstancePoller
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.rescueops import RescueOps
from drivers.hyperv.vmops import VMOps
from drivers.hyperv.winrmclient import HostClient

__all__ = ["HyperVDriver"]

LOG = logging.getLogger(__name__)


class HyperVDriver(base.TransitionDriver):
    """Serves each host through its own WinRM client (``[hyperv]`` options)."""

    name = constants.DRIVER
    version = "1.0"
    operations = frozenset(
        base.OPERATIONS_1_0
        + ("get_volume_connector",)
        + base.DEVICE_OPERATIONS
        + base.IMAGE_OPERATIONS
        + base.RESCUE_OPERATIONS
        + base.CONSOLE_OPERATIONS
        + base.MIGRATION_OPERATIONS
        + base.LIVE_MIGRATION_OPERATIONS
        + base.EVACUATION_OPERATIONS
    )
    # reboot.soft needs Restart-VM -Type (Windows Server 2022's Hyper-V
    # module); older hosts answer it with UnsupportedOperation. Volumes are
    # VHD(X) files (driver_volume_type 'file'); a boot volume is the disk
    # the VM boots from (IDE 0:0 in generation 1, SCSI 0:0 in generation 2).
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
    # Every operation passes the driver's tests against the WinRM test
    # server, which emulates Hyper-V from its documentation: not yet checked
    # against a real Windows host.
    support_tier = base.SupportTier.PARTIAL

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        self._vmops = VMOps(conf)
        self._deviceops = DeviceOps(self._vmops)
        self._imageops = ImageOps(self._vmops)
        self._rescueops = RescueOps(self._vmops)
        self._consoleops = ConsoleOps(self._vmops)
        self._hostops = HostOps()
        self._migrationops = MigrationOps(self._vmops)
        self._hosts = ServedHosts[HostClient, PowerShellError](
            self.name, (PowerShellError,), errors.translate
        )
        self._pollers: dict[str, InstancePoller] = {}

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        hyperv_conf.register_opts(conf)

    # Host lifecycle -------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Reach the host now, so a wrong URL or password stops the worker at start.

        :raises computed.exception.DriverError: if the host cannot be reached or
            refuses the credentials.
        """
        client = self._make_client(host)
        description = self._hosts.call(host, "init_host", None, self._hostops.describe, client)
        previous = self._hosts.serve(host, client)
        if previous is not None:
            previous.close()
        LOG.info("Host %s served by %s at %s", host, description, client.url)

    def cleanup_host(self, host: str) -> None:
        poller = self._pollers.pop(host, None)
        if poller is not None:
            poller.stop(self.conf.hyperv.read_timeout)
        client = self._hosts.release(host)
        if client is not None:
            client.close()

    # Instances ------------------------------------------------------------

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        def volume_path(connection: VolumeConnection, operation: str) -> str:
            return self._deviceops.volume_path(connection, operation, host)

        return self._hosts.call(
            host,
            "spawn",
            spec.uuid,
            lambda client: self._vmops.spawn(client, host, spec, volume_path),
        )

    def destroy(self, host: str, uuid: str) -> None:
        self._hosts.call(
            host, "destroy", uuid, lambda client: self._vmops.destroy(client, host, uuid)
        )

    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        return self._hosts.call(
            host, "get_info", uuid, lambda client: self._vmops.get_info(client, host, uuid)
        )

    def list_instances(self, host: str) -> list[InstanceInfo]:
        return self._hosts.call(
            host, "list_instances", None, lambda client: self._vmops.list_instances(client, host)
        )

    # Devices --------------------------------------------------------------

    def get_volume_connector(self, host: str) -> VolumeConnector:
        return self._hosts.call(
            host,
            "get_volume_connector",
            None,
            lambda client: self._deviceops.get_volume_connector(client, host),
        )

    def attach_volume(
        self, host: str, uuid: str, connection_info: VolumeConnection, mountpoint: str | None
    ) -> InstanceInfo:
        return self._hosts.call(
            host,
            "attach_volume",
            uuid,
            lambda client: self._deviceops.attach_volume(
                client, host, uuid, connection_info, mountpoint
            ),
        )

    def detach_volume(self, host: str, uuid: str, volume_id: str) -> InstanceInfo:
        return self._hosts.call(
            host,
            "detach_volume",
            uuid,
            lambda client: self._deviceops.detach_volume(client, host, uuid, volume_id),
        )

    def extend_volume(self, host: str, uuid: str, volume_id: str, new_size: int) -> InstanceInfo:
        return self._hosts.call(
            host,
            "extend_volume",
            uuid,
            lambda client: self._deviceops.extend_volume(client, host, uuid, volume_id, new_size),
        )

    def attach_interface(self, host: str, uuid: str, vif: NetworkInterface) -> InstanceInfo:
        return self._hosts.call(
            host,
            "attach_interface",
            uuid,
            lambda client: self._deviceops.attach_interface(client, host, uuid, vif),
        )

    def detach_interface(self, host: str, uuid: str, port_id: str) -> InstanceInfo:
        return self._hosts.call(
            host,
            "detach_interface",
            uuid,
            lambda client: self._deviceops.detach_interface(client, host, uuid, port_id),
        )

    # Images, rescue and consoles -------------------------------------------

    def snapshot(self, host: str, uuid: str, image_name: str, progress: base.Progress) -> ImageRef:
        return self._hosts.call(
            host,
            "snapshot",
            uuid,
            lambda client: self._imageops.snapshot(client, host, uuid, image_name, progress),
        )

    def delete_image(self, host: str, image_id: str) -> None:
        self._hosts.call(
            host,
            "delete_image",
            None,
            lambda client: self._imageops.delete_image(client, host, image_id),
        )

    def rescue(self, host: str, uuid: str, rescue_image: str | None) -> InstanceInfo:
        return self._hosts.call(
            host,
            "rescue",
            uuid,
            lambda client: self._rescueops.rescue(client, host, uuid, rescue_image),
        )

    def unrescue(self, host: str, uuid: str) -> InstanceInfo:
        return self._hosts.call(
            host, "unrescue", uuid, lambda client: self._rescueops.unrescue(client, host, uuid)
        )

    def get_serial_console(self, host: str, uuid: str) -> ConsoleConnection:
        return self._hosts.call(
            host,
            "get_serial_console",
            uuid,
            lambda client: self._consoleops.get_serial_console(client, host, uuid),
        )

    def get_graphical_console(self, host: str, uuid: str) -> ConsoleConnection:
        return self._hosts.call(
            host,
            "get_graphical_console",
            uuid,
            lambda client: self._consoleops.get_graphical_console(client, host, uuid),
        )

    # Moving instances -----------------------------------------------------

    def check_migration_destination(self, host: str, migration: Migration) -> dict[str, str]:
        return self._hosts.call(
            host,
            "check_migration_destination",
            migration.instance_uuid,
            lambda client: self._migrationops.check_destination(client, host, migration),
        )

    def migrate_disk_and_power_off(
        self, host: str, uuid: str, migration: Migration
    ) -> dict[str, str]:
        return self._hosts.call(
            host,
            "migrate_disk_and_power_off",
            uuid,
            lambda client: self._migrationops.migrate_disk_and_power_off(
                client, host, uuid, migration
            ),
        )

    def finish_migration(self, host: str, migration: Migration) -> InstanceInfo:
        return self._hosts.call(
            host,
            "finish_migration",
            migration.instance_uuid,
            lambda client: self._migrationops.finish_migration(client, host, migration),
        )

    def confirm_migration(self, host: str, migration: Migration) -> None:
        self._hosts.call(
            host,
            "confirm_migration",
            migration.instance_uuid,
            lambda client: self._migrationops.confirm_migration(client, host, migration),
        )

    def revert_migration(self, host: str, migration: Migration) -> None:
        self._hosts.call(
            host,
            "revert_migration",
            migration.instance_uuid,
            lambda client: self._migrationops.revert_migration(client, host, migration),
        )

    def finish_revert_migration(self, host: str, migration: Migration) -> InstanceInfo:
        return self._hosts.call(
            host,
            "finish_revert_migration",
            migration.instance_uuid,
            lambda client: self._migrationops.finish_revert_migration(client, host, migration),
        )

    def pre_live_migration(self, host: str, migration: Migration) -> dict[str, str]:
        return self._hosts.call(
            host,
            "pre_live_migration",
            migration.instance_uuid,
            lambda client: self._migrationops.pre_live_migration(client, host, migration),
        )

    def live_migration(
        self, host: str, uuid: str, migration: Migration, progress: base.Progress
    ) -> None:
        self._hosts.call(
            host,
            "live_migration",
            uuid,
            lambda client: self._migrationops.live_migration(
                client, host, uuid, migration, progress
            ),
        )

    def post_live_migration_at_destination(self, host: str, migration: Migration) -> InstanceInfo:
        return self._hosts.call(
            host,
            "post_live_migration_at_destination",
            migration.instance_uuid,
            lambda client: self._migrationops.post_live_migration_at_destination(
                client, host, migration
            ),
        )

    def rollback_live_migration_at_destination(self, host: str, migration: Migration) -> None:
        self._hosts.call(
            host,
            "rollback_live_migration_at_destination",
            migration.instance_uuid,
            lambda client: self._migrationops.rollback_live_migration_at_destination(
                client, host, migration
            ),
        )

    def abort_live_migration(self, host: str, uuid: str, migration: Migration) -> None:
        self._hosts.call(
            host,
            "abort_live_migration",
            uuid,
            lambda client: self._migrationops.abort_live_migration(client, host, uuid, migration),
        )

    def evacuate(self, host: str, migration: Migration) -> InstanceInfo:
        def volume_path(connection: VolumeConnection, operation: str) -> str:
            return self._deviceops.volume_path(connection, operation, host)

        return self._hosts.call(
            host,
            "evacuate",
            migration.instance_uuid,
            lambda client: self._migrationops.evacuate(client, host, migration, volume_path),
        )

    # Host -----------------------------------------------------------------

    def watch_instances(self, host: str, changed: Callable[[str], None]) -> None:
        """Poll the host's VMs every ``[hyperv] instance_poll_interval`` seconds
        (:mod:`~drivers.hyperv.poller`), from a first look taken now; 0 leaves
        it to the worker's own look."""
        interval = self.conf.hyperv.instance_poll_interval
        if not interval:
            return

        def look() -> dict[str, str]:
            return self._hosts.call(
                host, "list_instances", None, lambda c: self._vmops.power_states(c, host)
            )

        poller = InstancePoller(host, look, changed, interval)
        previous = self._pollers.pop(host, None)
        if previous is not None:
            previous.stop(self.conf.hyperv.read_timeout)
        self._pollers[host] = poller
        poller.start()

    def get_host_resources(self, host: str) -> HostResources:
        def resources(client: HostClient) -> HostResources:
            instances = self._vmops.list_instances(client, host)
            return self._hostops.get_host_resources(client, host, instances)

        return self._hosts.call(host, "get_host_resources", None, resources)

    # ----------------------------------------------------------------------

    def transition(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        return self._hosts.call(
            host,
            operation,
            uuid,
            lambda client: self._vmops.transition(client, host, uuid, operation),
        )

    def _make_client(self, host: str) -> HostClient:
        options = self.conf.hyperv
        try:
            return HostClient(
                host,
                hyperv_conf.url_for(self.conf, host),
                username=options.username,
                password=options.password,
                transport=options.transport,
                server_cert_validation=options.server_cert_validation,
                ca_file=options.ca_file,
                operation_timeout=options.operation_timeout,
                read_timeout=options.read_timeout,
                max_sessions=options.max_sessions,
            )
        except ValueError as exc:
            raise exception.DriverError(driver=self.name, host=host, reason=str(exc)) from exc
