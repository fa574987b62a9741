"""The worker's life: start serving its hosts, heartbeat, drain and stop.

Start-up is ordered so that a client never sees a host before its queue is
being consumed: load the driver, check the broker, open the registry, start
one RPC server per host, and only then register. Stopping reverses it:
mark the worker draining (clients stop choosing it), stop consuming, let
operations already running finish within the drain time, then mark it
stopped.
"""

from __future__ import annotations

import logging
import os
import threading

import oslo_messaging as messaging
from oslo_config import cfg

from computed import exception, rpc, version
from computed.conf import upgrade_levels
from computed.driver_loader import load_driver
from computed.manager import ComputeManager, endpoints
from computed.notifications import OutcomeNotifier
from computed.registry import Registry, WorkerRecord
from computed.registry.api import STATE_DRAINING, STATE_STOPPED
from drivers.base import ComputeDriver

__all__ = ["Worker"]

LOG = logging.getLogger(__name__)


class Worker:
    """One ``computed`` process: one driver, several hosts, one RPC server per host."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.worker_id = ""
        self.driver: ComputeDriver | None = None
        self.registry: Registry | None = None
        self._transport: messaging.Transport | None = None
        self._notification_transport: messaging.Transport | None = None
        self._servers: list[messaging.MessageHandlingServer] = []
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def hosts(self) -> list[str]:
        return list(dict.fromkeys(self.conf.hosts))

    @property
    def started_anything(self) -> bool:
        """Whether :meth:`start` got as far as opening the registry."""
        return self.registry is not None

    def start(self) -> None:
        """Start serving.

        :raises computed.exception.ConfigError: no hosts are configured.
        :raises computed.exception.DriverLoadError: the driver cannot be loaded.
        :raises computed.exception.BrokerUnavailable: the broker does not answer in time.
        :raises computed.exception.RegistryError: the registry cannot be used.
        :raises computed.exception.ConfigError: this worker is older than the
            oldest RPC version the deployment supports.
        """
        conf = self.conf
        if not self.hosts:
            raise exception.ConfigError(reason="no hosts to serve: set 'hosts' or pass --hosts")
        driver = self.driver = load_driver(conf.driver, conf)
        self.worker_id = conf.worker_id or f"{conf.machine}-{driver.name}"
        self._transport = rpc.get_transport(conf)
        rpc.check_broker(conf, conf.transport_url, conf.broker_connect_timeout)
        self.registry = self._open_registry()
        _check_not_too_old(conf, self.registry)
        for host in self.hosts:
            driver.init_host(host)
        self._notification_transport = rpc.get_notification_transport(conf)
        notifier = OutcomeNotifier(conf, self._notification_transport)
        for host in self.hosts:
            manager = ComputeManager(host, driver, self.worker_id, notifier)
            server = messaging.get_rpc_server(
                self._transport,
                messaging.Target(topic=rpc.TOPIC, server=host),
                endpoints(manager),
                serializer=rpc.RequestContextSerializer(),
            )
            server.start()
            self._servers.append(server)
        self.registry.register(self._record())
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()
        LOG.info(
            "Worker %s serving %d host(s) with driver %s at RPC %s: %s",
            self.worker_id,
            len(self.hosts),
            driver.name,
            version.RPC_API_VERSION,
            ", ".join(self.hosts),
        )

    def stop(self) -> bool:
        """Stop consuming, drain, deregister. Returns False if the drain timed out."""
        if self._stopping.is_set():
            return True
        self._stopping.set()
        self._set_state(STATE_DRAINING)
        for server in self._servers:
            server.stop()
        drainer = threading.Thread(target=self._drain, name="drain", daemon=True)
        drainer.start()
        drainer.join(self.conf.drain_timeout)
        drained = not drainer.is_alive()
        if not drained:
            LOG.warning(
                "Operations still running after the drain time of %s s; stopping anyway",
                self.conf.drain_timeout,
            )
        self._set_state(STATE_STOPPED)
        if self.driver is not None:
            for host in self.hosts:
                try:
                    self.driver.cleanup_host(host)
                except Exception:
                    LOG.exception("Driver clean-up failed for host %s", host)
        if drained:
            for transport in (self._transport, self._notification_transport):
                if transport is not None:
                    transport.cleanup()
        LOG.info("Worker %s stopped", self.worker_id)
        return drained

    # ------------------------------------------------------------------------

    def _open_registry(self) -> Registry:
        registry = Registry(self.conf.registry.connection)
        try:
            if self.conf.registry.auto_migrate:
                registry.migrate()
            elif not registry.is_current():
                raise exception.RegistryError(
                    reason="the registry schema is out of date; run 'computedctl db sync'"
                )
            registry.list_workers()
        except exception.RegistryError:
            raise
        except Exception as exc:
            raise exception.RegistryError(reason=f"{type(exc).__name__}: {exc}") from exc
        return registry

    def _record(self) -> WorkerRecord:
        driver = self.driver
        assert driver is not None
        return WorkerRecord(
            id=self.worker_id,
            driver=driver.name,
            driver_version=driver.version,
            hosts=tuple(self.hosts),
            rpc_version=version.RPC_API_VERSION,
            rpc_min_version=version.RPC_API_MIN_VERSION,
            support_tier=driver.support_tier.value,
            capabilities={
                "operations": sorted(driver.operations),
                "features": sorted(driver.features),
            },
            machine=self.conf.machine,
            pid=os.getpid(),
        )

    def _beat(self) -> None:
        assert self.registry is not None
        while not self._stopping.wait(self.conf.heartbeat_interval):
            try:
                if not self.registry.heartbeat(self.worker_id):
                    LOG.warning("Registry record of %s vanished; registering again", self.worker_id)
                    self.registry.register(self._record())
            except Exception as exc:
                LOG.warning("Heartbeat failed: %s", exc)

    def _drain(self) -> None:
        for server in self._servers:
            server.wait()

    def _set_state(self, state: str) -> None:
        if self.registry is None or not self.worker_id:
            return
        try:
            self.registry.set_state(self.worker_id, state)
        except Exception as exc:
            LOG.warning("Could not mark %s %s in the registry: %s", self.worker_id, state, exc)


def _check_not_too_old(conf: cfg.ConfigOpts, registry: Registry) -> None:
    """Refuse to serve if this worker speaks less than the deployment still supports.

    The deployment's minimum is ``[upgrade_levels] minimum_worker_version``
    when set; otherwise the newest "oldest version served" among the live
    workers: once every worker of a new major has dropped the previous one,
    a worker that speaks only the previous major would take messages it
    cannot serve.

    :raises computed.exception.ConfigError: saying what to upgrade.
    """
    upgrade_levels.register_opts(conf)
    option = conf.upgrade_levels.minimum_worker_version
    if option:
        try:
            required = upgrade_levels.resolve_version(option, "minimum_worker_version")
        except ValueError as exc:
            raise exception.ConfigError(reason=str(exc)) from None
        source = "[upgrade_levels] minimum_worker_version"
    else:
        live = [
            w
            for w in registry.list_workers()
            if w.is_alive(conf.registry.down_time) and w.id != (conf.worker_id or "")
        ]
        if not live:
            return
        newest = max(live, key=lambda w: version.parse(w.rpc_min_version))
        required = newest.rpc_min_version
        source = f"worker {newest.id} (RPC {newest.rpc_version}) serves nothing older"
    if version.newer(required, version.RPC_API_VERSION):
        raise exception.ConfigError(
            reason=f"this worker speaks RPC {version.RPC_API_VERSION}, older than {required}, "
            f"the oldest version this deployment supports ({source}); upgrade computed and "
            f"the '{conf.driver}' driver on this machine to a release that speaks "
            f"{required} or newer"
        )
