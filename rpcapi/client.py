"""Client side of the compute RPC contract."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context
from prometheus_client.registry import CollectorRegistry

from computed import exception, rpc, version
from computed.conf import client as client_conf
from computed.conf import conformance as conformance_conf
from computed.conf import registry as registry_conf
from computed.conf import upgrade_levels as upgrade_conf
from computed.conf import worker as worker_conf
from computed.objects import (
    ConsoleConnection,
    HostCapabilities,
    HostResources,
    HostState,
    ImageRef,
    InstanceInfo,
    InstanceSpec,
    Migration,
    NetworkInterface,
    PingResult,
    VolumeConnection,
    VolumeConnector,
)
from computed.registry import Registry, WorkerRecord
from computed.registry.api import utcnow
from rpcapi import _pins
from rpcapi._bulk import HostResult, for_each_host
from rpcapi._counters import CallCounters
from rpcapi._fleet import Fleet
from rpcapi._link import BrokerLink, Message, SendPool
from rpcapi._metrics import ClientMetrics
from rpcapi._resolver import HostResolver
from rpcapi.migration import Migrations

__all__ = ["ComputeAPI"]

LOG = logging.getLogger(__name__)

#: Seconds a worker may take, once it decides to take a host over, to serve it.
TAKEOVER_ALLOWANCE = 10.0


@dataclasses.dataclass(frozen=True)
class _Route:
    """Where one message goes, resolved once per message."""

    host: str
    #: The live worker serving the host.
    worker: WorkerRecord
    #: The newest version the host may be sent, and why.
    cap: _pins.Cap
    #: The broker of the worker's driver type.
    link: BrokerLink


class ComputeAPI:
    """Client side of the compute RPC API.

    Every method takes a request context (an ``oslo_context`` RequestContext,
    or None for a new one) and the compute host to act on. Lifecycle methods
    are calls by default and return the instance's new state; with
    ``cast=True`` they return at once, and the worker publishes the outcome as
    ``instance.<operation>.start/end/error`` notifications carrying the
    context's ``request_id``.

    Errors raised by the worker arrive as their :mod:`computed.exception`
    types. A host that no live worker serves raises HostUnavailable at once;
    one changing hands (its worker draining, restarting, or dead with
    another live worker to take its hosts over) waits for its next worker,
    up to ``[client] handover_timeout`` seconds, then raises HostUnavailable.

    Every call ends within its timeout plus 2 s once sent (a call in flight
    when the broker hangs with its connection open, within twice its
    timeout plus 10 s), and every cast is handed to the broker within
    ``[client] cast_timeout`` seconds, or raises BrokerUnavailable; after a
    broker failure the client fails at once until the broker answers again,
    then works again by itself (docs/delivery.md).

    Messages go out on ``[DEFAULT] transport_url``, or, for a driver type
    listed in ``[client] driver_transport_url``, on that driver type's own
    transport (one broker vhost and user per driver type): the client routes
    each host by the driver of the worker that serves it.

    Each message goes out at the newest version the host can take: the
    oldest of this client's version, the ``[upgrade_levels] compute`` pin
    and the version its workers report in the registry. Objects are
    backported to that version; an operation the host is too old for raises
    UnsupportedVersion at once, without sending (``can_send_*()`` ask first).

    API version history:

    * 1.0 - Initial version: spawn, destroy, reboot, power_on, power_off,
      pause, unpause, suspend, resume, get_info, list_instances,
      get_host_resources, get_capabilities, ping.
    * 1.1 - Added get_console_output; InstanceSpec 1.1 (description).
    * 1.2 - Devices: InstanceSpec 1.2 (block_devices, network_interfaces),
      InstanceInfo 1.1 (what is attached); added get_volume_connector,
      attach_volume, detach_volume, extend_volume, attach_interface,
      detach_interface. A spawn whose devices a 1.1 host would not build
      raises UnsupportedVersion instead of being backported.
    * 1.3 - Images, rescue and consoles: added snapshot, delete_image,
      rescue, unrescue, get_serial_console, get_graphical_console; power
      state rescued (InstanceInfo 1.2; an older caller sees running).
    * 1.4 - Moving instances: the steps of a resize, a cold or live
      migration and an evacuation (check_migration_destination,
      migrate_disk_and_power_off, finish_migration, confirm_migration,
      revert_migration, finish_revert_migration, pre_live_migration,
      live_migration, post_live_migration_at_destination,
      rollback_live_migration_at_destination, abort_live_migration,
      evacuate), each taking a Migration 1.0; :attr:`migrations` runs them.
    """

    VERSION_ALIASES = version.VERSION_ALIASES

    def __init__(
        self,
        conf: cfg.ConfigOpts | None = None,
        registry: Registry | None = None,
        transport: messaging.Transport | None = None,
        required_tier: str | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        """
        :param transport: the transport of driver types without a URL of
            their own, instead of one built on ``[DEFAULT] transport_url``
            (which is still the broker probed after a failure).
        :param required_tier: overrides ``[conformance] required_tier``; the
            conformance suite passes ``untested`` to reach drivers not yet rated.
        :param metrics_registry: the ``prometheus_client`` registry the
            client's metrics go to (one client per registry); a registry of
            the client's own by default. Either way it is
            :attr:`metrics_registry`, for the scheduler to expose.
        """
        self._conf = conf = conf or cfg.CONF
        for module in (client_conf, registry_conf, worker_conf, conformance_conf, upgrade_conf):
            module.register_opts(conf)
        rpc.set_defaults(conf)  # transport_url and the rabbit options it reads
        _pins.parse_pin(conf.upgrade_levels.compute)  # a bad pin is a ConfigError now
        _warn_if_takeover_outlasts_calls(conf)
        self._registry = registry or Registry(conf.registry.connection)
        self._resolver = HostResolver(
            self._registry,
            conf.client.cache_ttl,
            conf.registry.down_time,
            required_tier or conf.conformance.required_tier,
            conf.client.handover_timeout,
        )
        self._driver_urls = client_conf.driver_transport_urls(conf)
        self._pool = SendPool()
        #: One link per transport URL (None: the default transport).
        self._links: dict[str | None, BrokerLink] = {}
        if transport is not None:
            self._links[None] = BrokerLink(conf, None, self._pool, transport)
        self._caps: dict[str, tuple[tuple[str, int], datetime.datetime, _pins.Cap]] = {}
        self._lock = threading.Lock()
        self._counters = CallCounters(self._registry, conf.upgrade_levels.counters_interval)
        #: The registry of this client's Prometheus metrics (docs/operations.md).
        self.metrics_registry = metrics_registry or CollectorRegistry(auto_describe=True)
        self._metrics = ClientMetrics(self.metrics_registry)
        self._fleet = Fleet(self._registry, self._resolver)
        #: Whole resizes, migrations and evacuations (:class:`rpcapi.migration.Migrations`).
        self.migrations = Migrations(self, self._registry, conf.registry.down_time)

    # Instance lifecycle ------------------------------------------------------

    def spawn(
        self, ctxt: Any, host: str, instance: InstanceSpec, *, cast: bool = False
    ) -> InstanceInfo | None:
        """Build and start ``instance``; an existing UUID is returned as it is."""
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "spawn", cast, instance=instance)
        )

    def destroy(self, ctxt: Any, host: str, uuid: str, *, cast: bool = False) -> None:
        """Delete the instance and its disks; a missing instance is not an error."""
        self._lifecycle(ctxt, host, "destroy", cast, uuid=uuid)

    def reboot(
        self, ctxt: Any, host: str, uuid: str, reboot_type: str = "soft", *, cast: bool = False
    ) -> InstanceInfo | None:
        """Reboot, ``soft`` (through the guest) or ``hard`` (reset)."""
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(ctxt, host, "reboot", cast, uuid=uuid, reboot_type=reboot_type),
        )

    def power_on(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "power_on", cast, uuid=uuid)
        )

    def power_off(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "power_off", cast, uuid=uuid)
        )

    def pause(self, ctxt: Any, host: str, uuid: str, *, cast: bool = False) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "pause", cast, uuid=uuid)
        )

    def unpause(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "unpause", cast, uuid=uuid)
        )

    def suspend(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "suspend", cast, uuid=uuid)
        )

    def resume(self, ctxt: Any, host: str, uuid: str, *, cast: bool = False) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "resume", cast, uuid=uuid)
        )

    # Devices (1.2) ------------------------------------------------------------
    #
    # Each is idempotent (by volume id, by port id), may be cast like a
    # lifecycle operation, and returns the instance with what is attached.
    # A host older than 1.2 raises UnsupportedVersion at once
    # (see can_send_devices).

    def get_volume_connector(self, ctxt: Any, host: str) -> VolumeConnector:
        """What a storage service needs to export a volume to ``host``."""
        return typing.cast(VolumeConnector, self._call(ctxt, host, "get_volume_connector"))

    def attach_volume(
        self,
        ctxt: Any,
        host: str,
        uuid: str,
        connection_info: VolumeConnection,
        mountpoint: str | None = None,
        *,
        cast: bool = False,
    ) -> InstanceInfo | None:
        """Attach the volume, as ``mountpoint`` (``vdb``) or where the host chooses."""
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(
                ctxt,
                host,
                "attach_volume",
                cast,
                uuid=uuid,
                connection_info=connection_info,
                mountpoint=mountpoint,
            ),
        )

    def detach_volume(
        self, ctxt: Any, host: str, uuid: str, volume_id: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(ctxt, host, "detach_volume", cast, uuid=uuid, volume_id=volume_id),
        )

    def extend_volume(
        self,
        ctxt: Any,
        host: str,
        uuid: str,
        volume_id: str,
        new_size: int,
        *,
        cast: bool = False,
    ) -> InstanceInfo | None:
        """Make the instance see its volume's new size (GiB), once storage has grown it."""
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(
                ctxt,
                host,
                "extend_volume",
                cast,
                uuid=uuid,
                volume_id=volume_id,
                new_size=new_size,
            ),
        )

    def attach_interface(
        self, ctxt: Any, host: str, uuid: str, vif: NetworkInterface, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(ctxt, host, "attach_interface", cast, uuid=uuid, vif=vif),
        )

    def detach_interface(
        self, ctxt: Any, host: str, uuid: str, port_id: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(ctxt, host, "detach_interface", cast, uuid=uuid, port_id=port_id),
        )

    # Images, rescue and consoles (1.3) ------------------------------------------
    #
    # A host older than 1.3 raises UnsupportedVersion at once
    # (can_send_images, can_send_rescue, can_send_consoles).

    def snapshot(
        self, ctxt: Any, host: str, uuid: str, image_name: str, *, cast: bool = False
    ) -> ImageRef | None:
        """Take an image of the instance's root disk on its host.

        Idempotent by (instance, image name): a name the instance already
        has an image of returns that image. A long operation: the call waits
        up to ``[client] long_call_timeout`` while the worker shows it is
        alive, and the worker publishes ``instance.snapshot.progress``; as
        a cast, the ``end`` notification carries the image.
        """
        return typing.cast(
            "ImageRef | None",
            self._lifecycle(ctxt, host, "snapshot", cast, uuid=uuid, image_name=image_name),
        )

    def delete_image(self, ctxt: Any, host: str, image_id: str) -> None:
        """Remove an image a snapshot on ``host`` made (``ImageRef.image_id``); a missing one succeeds."""
        self._call(ctxt, host, "delete_image", long=True, image_id=image_id)

    def rescue(
        self,
        ctxt: Any,
        host: str,
        uuid: str,
        rescue_image: str | None = None,
        *,
        cast: bool = False,
    ) -> InstanceInfo | None:
        """Boot the instance from ``rescue_image`` (default: its own image) with its root
        disk attached as a second disk; it is then ``rescued``."""
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(ctxt, host, "rescue", cast, uuid=uuid, rescue_image=rescue_image),
        )

    def unrescue(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "unrescue", cast, uuid=uuid)
        )

    def get_serial_console(self, ctxt: Any, host: str, uuid: str) -> ConsoleConnection:
        """Where to reach the instance's serial console."""
        return typing.cast(
            ConsoleConnection, self._call(ctxt, host, "get_serial_console", uuid=uuid)
        )

    def get_graphical_console(self, ctxt: Any, host: str, uuid: str) -> ConsoleConnection:
        """Where to reach the instance's display (VNC, SPICE or RDP, as its host offers)."""
        return typing.cast(
            ConsoleConnection, self._call(ctxt, host, "get_graphical_console", uuid=uuid)
        )

    # Moving instances (1.4) -----------------------------------------------------
    #
    # The steps of a move, each on one host. A scheduler does not call them
    # one by one: ``self.migrations`` (rpcapi.migration.Migrations) runs a
    # whole resize, migration or evacuation, records it and recovers it.
    # Each step is idempotent by migration id; a host older than 1.4 raises
    # UnsupportedVersion at once (can_send_migrations).

    def check_migration_destination(
        self, ctxt: Any, host: str, migration: Migration
    ) -> dict[str, str]:
        """On the destination: whether it can take the instance; its hand-over data."""
        return dict(
            self._call(ctxt, host, "check_migration_destination", long=True, migration=migration)
        )

    def migrate_disk_and_power_off(
        self, ctxt: Any, host: str, migration: Migration
    ) -> dict[str, str]:
        """On the source: stop the instance and hand its disks over."""
        return dict(
            self._call(ctxt, host, "migrate_disk_and_power_off", long=True, migration=migration)
        )

    def finish_migration(self, ctxt: Any, host: str, migration: Migration) -> InstanceInfo:
        """On the destination: build the instance from what the source handed over."""
        return typing.cast(
            InstanceInfo, self._call(ctxt, host, "finish_migration", long=True, migration=migration)
        )

    def confirm_migration(self, ctxt: Any, host: str, migration: Migration) -> None:
        """On the source: remove the copy kept for a revert."""
        self._call(ctxt, host, "confirm_migration", long=True, migration=migration)

    def revert_migration(self, ctxt: Any, host: str, migration: Migration) -> None:
        """On the destination: remove what finish_migration built."""
        self._call(ctxt, host, "revert_migration", long=True, migration=migration)

    def finish_revert_migration(self, ctxt: Any, host: str, migration: Migration) -> InstanceInfo:
        """On the source: bring the instance back as it was."""
        return typing.cast(
            InstanceInfo,
            self._call(ctxt, host, "finish_revert_migration", long=True, migration=migration),
        )

    def pre_live_migration(self, ctxt: Any, host: str, migration: Migration) -> dict[str, str]:
        """On the destination: prepare to receive the running instance."""
        return dict(self._call(ctxt, host, "pre_live_migration", long=True, migration=migration))

    def live_migration(self, ctxt: Any, host: str, migration: Migration) -> None:
        """On the source: move the running instance; publishes
        ``instance.live_migration.progress``."""
        self._call(ctxt, host, "live_migration", long=True, migration=migration)

    def post_live_migration_at_destination(
        self, ctxt: Any, host: str, migration: Migration
    ) -> InstanceInfo:
        """On the destination: finish taking the instance in."""
        return typing.cast(
            InstanceInfo,
            self._call(
                ctxt, host, "post_live_migration_at_destination", long=True, migration=migration
            ),
        )

    def rollback_live_migration_at_destination(
        self, ctxt: Any, host: str, migration: Migration
    ) -> None:
        """On the destination: undo the preparation after a failure or an abort."""
        self._call(
            ctxt, host, "rollback_live_migration_at_destination", long=True, migration=migration
        )

    def abort_live_migration(self, ctxt: Any, host: str, migration: Migration) -> None:
        """On the source: stop the live migration in progress."""
        self._call(ctxt, host, "abort_live_migration", migration=migration)

    def evacuate(self, ctxt: Any, host: str, migration: Migration) -> InstanceInfo:
        """On the destination: rebuild the instance of a dead host."""
        return typing.cast(
            InstanceInfo, self._call(ctxt, host, "evacuate", long=True, migration=migration)
        )

    # Queries ------------------------------------------------------------------

    def get_console_output(
        self, ctxt: Any, host: str, uuid: str, tail_lines: int | None = None
    ) -> str:
        """The instance's console log, its last ``tail_lines`` lines if given (1.1).

        :raises computed.exception.UnsupportedVersion: at once, if the host
            speaks only 1.0 (see :meth:`can_send_console_output`).
        """
        return str(self._call(ctxt, host, "get_console_output", uuid=uuid, tail_lines=tail_lines))

    def get_info(self, ctxt: Any, host: str, uuid: str) -> InstanceInfo:
        return typing.cast(InstanceInfo, self._call(ctxt, host, "get_info", uuid=uuid))

    def list_instances(self, ctxt: Any, host: str) -> list[InstanceInfo]:
        return list(self._call(ctxt, host, "list_instances").objects)

    def get_host_resources(self, ctxt: Any, host: str) -> HostResources:
        return typing.cast(HostResources, self._call(ctxt, host, "get_host_resources"))

    def get_capabilities(self, ctxt: Any, host: str) -> HostCapabilities:
        return typing.cast(HostCapabilities, self._call(ctxt, host, "get_capabilities"))

    def ping(self, ctxt: Any, host: str) -> PingResult:
        return typing.cast(PingResult, self._call(ctxt, host, "ping"))

    # The fleet ------------------------------------------------------------------

    def list_hosts(
        self,
        *,
        driver: str | None = None,
        tier: str | None = None,
        supports: Iterable[str] = (),
        vcpus: int = 0,
        memory_mb: int = 0,
        disk_gb: int = 0,
        alive: bool | None = True,
        include_disabled: bool = False,
        hosts: Iterable[str] | None = None,
    ) -> list[HostState]:
        """The hosts of the registry's inventory that match, by name; no RPC.

        Each :class:`~computed.objects.HostState` is what the host's worker
        last measured (``measured_at``: at most ``[DEFAULT] inventory_interval``
        old while its worker lives, and re-measured after each spawn and
        destroy). A host never measured is not listed.

        :param driver: only this driver's hosts.
        :param tier: only hosts whose driver version is rated at least this
            (``untested``, ``partial``, ``conformant``) by recorded conformance runs.
        :param supports: operations or features (``rescue``, ``reboot.hard``)
            the host's driver must declare, all of them.
        :param vcpus: vCPUs the host must have free under its allocation ratio;
            likewise ``memory_mb`` (MiB) and ``disk_gb`` (GiB). The host's
            worker has the last word: a spawn that no longer fits raises
            InsufficientResources.
        :param alive: True (the default) for hosts a live worker serves,
            False for the others, None for both.
        :param include_disabled: also hosts an operator disabled (they take no new instance).
        :param hosts: only these hosts.
        """
        return self._fleet.list_hosts(
            driver=driver,
            tier=tier,
            supports=supports,
            vcpus=vcpus,
            memory_mb=memory_mb,
            disk_gb=disk_gb,
            alive=alive,
            include_disabled=include_disabled,
            hosts=hosts,
        )

    def for_each_host(
        self,
        ctxt: Any,
        hosts: Iterable[str],
        method: str,
        *args: Any,
        concurrency: int = 16,
        **kwargs: Any,
    ) -> dict[str, HostResult]:
        """Run ``method`` (``ping``, ``get_host_resources``, ...) on each host,
        at most ``concurrency`` at a time: ``{host: HostResult}``.

        Each host's result holds its ``value``, or the ``error`` it raised
        (HostUnavailable, HostTimeout, ...); no error stops the other hosts.
        Each call keeps its own bound, so the whole takes at most about
        ``len(hosts) / concurrency`` bounds.
        """
        operation = getattr(self, method, None)
        if method.startswith("_") or not callable(operation):
            raise ValueError(f"ComputeAPI has no method {method!r}")
        return for_each_host(
            lambda host: operation(ctxt, host, *args, **kwargs), hosts, concurrency
        )

    # Versions -----------------------------------------------------------------

    def version_cap(self, host: str) -> str:
        """The newest RPC version this client would send to ``host`` now.

        Like a message, it waits while the host changes hands.

        :raises computed.exception.HostUnavailable: if no live worker serves it.
        """
        return self._route(host).cap.version

    def can_send_version(self, host: str, rpc_version: str) -> bool:
        """Whether a message at ``rpc_version`` may be sent to ``host`` now."""
        return not version.newer(rpc_version, self.version_cap(host))

    def can_send_console_output(self, host: str) -> bool:
        return self.can_send_version(host, version.METHOD_VERSIONS["get_console_output"])

    def can_send_instance_description(self, host: str) -> bool:
        """Whether a spawn keeps ``InstanceSpec.description`` (else it is dropped)."""
        return self.can_send_version(host, "1.1")

    def can_send_images(self, host: str) -> bool:
        """Whether ``host`` takes ``snapshot`` and ``delete_image`` (1.3)."""
        return self.can_send_version(host, version.METHOD_VERSIONS["snapshot"])

    def can_send_rescue(self, host: str) -> bool:
        """Whether ``host`` takes ``rescue`` and ``unrescue`` (1.3)."""
        return self.can_send_version(host, version.METHOD_VERSIONS["rescue"])

    def can_send_consoles(self, host: str) -> bool:
        """Whether ``host`` takes ``get_serial_console`` and ``get_graphical_console`` (1.3)."""
        return self.can_send_version(host, version.METHOD_VERSIONS["get_serial_console"])

    def can_send_migrations(self, host: str) -> bool:
        """Whether ``host`` takes the steps of a resize, migration and evacuation (1.4)."""
        return self.can_send_version(host, version.METHOD_VERSIONS["finish_migration"])

    def can_send_devices(self, host: str) -> bool:
        """Whether ``host`` takes the device operations and a spawn with devices (1.2)."""
        return self.can_send_version(host, "1.2")

    def call_counts(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """``{(host, version): (sent, backported, refused)}`` of this client so far.

        The same counts reach the registry every ``[upgrade_levels]
        counters_interval`` seconds, where ``computedctl upgrade-status`` shows them.
        """
        return self._counters.snapshot()

    # --------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Close the broker connections and the registry engine."""
        self._counters.flush(force=True)
        for link in self._links.values():
            link.cleanup()
        self._pool.shutdown()
        self._registry.close()

    def _lifecycle(self, ctxt: Any, host: str, method: str, cast: bool, **kwargs: Any) -> Any:
        if not cast:
            return self._call(ctxt, host, method, long=True, **kwargs)
        with self._metrics.cast(method):
            route = self._route(host)
            rpc_version, kwargs = self._fit(route, method, kwargs)
            bound = self._conf.client.cast_timeout
            with self._errors(host, method, bound, rpc_version):
                route.link.cast(Message(host, rpc_version, _context(ctxt), method, kwargs), bound)
        return None

    def _call(self, ctxt: Any, host: str, method: str, long: bool = False, **kwargs: Any) -> Any:
        with self._metrics.call(method):
            route = self._route(host)
            rpc_version, kwargs = self._fit(route, method, kwargs)
            client_opts = self._conf.client
            # A long call's worker sends a heartbeat every half call_timeout: the
            # call monitor notices a dead worker within call_timeout.
            timeout = client_opts.long_call_timeout if long else client_opts.call_timeout
            monitor = client_opts.call_timeout if long else None
            message = Message(host, rpc_version, _context(ctxt), method, kwargs)
            with self._errors(host, method, timeout, rpc_version, monitor):
                return route.link.call(message, timeout, monitor)

    def _route(self, host: str) -> _Route:
        """Where a message for ``host`` goes: its worker, version cap and broker.

        Like a message, it waits while the host changes hands.

        :raises computed.exception.HostUnavailable: if no live worker serves it.
        """
        worker = self._resolver.resolve(host)
        return _Route(host, worker, self._cap(host), self._link(worker.driver))

    def _cap(self, host: str) -> _pins.Cap:
        # The cap depends only on the pin and the registry copy: reuse it until the
        # copy is re-read or a worker in it may change liveness (heartbeat + down time).
        raw_pin = self._conf.upgrade_levels.compute
        key = (raw_pin, self._resolver.generation)
        cached = self._caps.get(host)
        if cached is not None and cached[0] == key and utcnow() < cached[1]:
            return cached[2]
        pin = _pins.parse_pin(raw_pin)
        cap = _pins.host_cap(pin, self._resolver.consumers(host), self._resolver.live_workers())
        self._caps[host] = (key, self._resolver.stable_until(), cap)
        return cap

    def _fit(
        self, route: _Route, method: str, kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The version to send ``method`` at on ``route``, and its arguments fitted to it.

        :raises computed.exception.UnsupportedVersion: if the host is too old for it.
        """
        host, cap = route.host, route.cap
        try:
            rpc_version, fitted, backported = _pins.fit_message(host, method, cap, kwargs)
        except exception.UnsupportedVersion:
            self._counters.count(host, cap.version, refused=True)
            self._metrics.refused(method)
            raise
        self._counters.count(host, rpc_version, backported=backported)
        self._metrics.fitted(method, backported)
        return rpc_version, fitted

    def _link(self, driver: str) -> BrokerLink:
        """The link to the broker of ``driver``'s hosts (its own URL, or the default)."""
        url = self._driver_urls.get(driver) if self._driver_urls else None
        link = self._links.get(url)
        if link is None:
            with self._lock:
                link = self._links.get(url)
                if link is None:
                    link = self._links[url] = BrokerLink(self._conf, url, self._pool)
        return link

    @contextlib.contextmanager
    def _errors(
        self,
        host: str,
        operation: str,
        timeout: float,
        rpc_version: str,
        monitor: float | None = None,
    ) -> Iterator[None]:
        """Turn oslo.messaging's failures into the project's exceptions.

        :param monitor: a long call's heartbeat timeout: a timeout well before
            ``timeout`` is the call monitor's, and says the worker went silent.
        """
        started = time.monotonic()
        try:
            yield
        except exception.ComputedError as exc:
            raise _local_copy(exc) from None
        except messaging.MessagingTimeout:
            if monitor is not None and time.monotonic() - started < timeout:
                raise exception.HostTimeout(
                    f"Host {host} stopped answering {operation}: no heartbeat from its "
                    f"worker for {monitor} s (it died or hangs)",
                    host=host,
                    operation=operation,
                    timeout=monitor,
                ) from None
            raise exception.HostTimeout(host=host, operation=operation, timeout=timeout) from None
        except messaging.RemoteError as exc:
            if exc.exc_type in ("UnsupportedVersion", "NoSuchMethod"):
                raise exception.UnsupportedVersion(
                    host=host,
                    operation=operation,
                    version=rpc_version,
                    reason=exc.value,
                ) from None
            raise exception.RPCError(
                host=host, operation=operation, reason=f"{exc.exc_type}: {exc.value}"
            ) from None
        except messaging.MessagingException as exc:
            raise exception.RPCError(
                host=host, operation=operation, reason=f"{type(exc).__name__}: {exc}"
            ) from exc


def _context(ctxt: Any) -> oslo_context.RequestContext:
    return ctxt if ctxt is not None else oslo_context.RequestContext()


def _warn_if_takeover_outlasts_calls(conf: cfg.ConfigOpts) -> None:
    """Warn when a call may time out before another worker takes a dead worker's host over.

    A call sent just after its host's worker died waits in the host's queue
    until another worker counts it as down (``[registry] down_time`` after
    its last heartbeat), takes the host over at that moment and serves it
    (docs/ownership.md).
    """
    takeover = conf.registry.down_time + TAKEOVER_ALLOWANCE
    if conf.client.call_timeout < takeover:
        LOG.warning(
            "[client] call_timeout (%s s) is shorter than a takeover: [registry] down_time "
            "(%g s) + %g s to serve the host; calls to a host whose worker died may time "
            "out before another worker serves it",
            conf.client.call_timeout,
            conf.registry.down_time,
            TAKEOVER_ALLOWANCE,
        )


def _local_copy(exc: exception.ComputedError) -> exception.ComputedError:
    """The exception as its original class, without the remote traceback in its text.

    oslo.messaging rebuilds a remote exception as a dynamic subclass whose
    message carries the worker's traceback; callers want the plain class and
    message, as if the error had been raised locally.
    """
    cls = type(exc)
    if not cls.__name__.endswith("_Remote"):
        return exc
    original = cls.__mro__[1]
    return original(*exc.args, **exc.kwargs)  # type: ignore[no-any-return]
