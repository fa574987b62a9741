"""The worker's life: start serving the hosts it owns, heartbeat, drain and stop.

A worker declares the hosts it can reach; it consumes the queues of those it
owns (:mod:`computed._ownership`), recomputed from the registry at start and
at every heartbeat, all through one server (:mod:`computed._server`).
Start-up is ordered so that a client never sees a host before its queue
exists: open the metrics endpoint (when enabled: a taken port stops the
worker before anything else), load the driver, check the broker, open the
registry, consume the owned hosts' queues, record the ownership, and only
then register. A host it no longer owns has its consumer cancelled (what is
still queued waits for the next owner), its running operations finish, and
it is released. A host it takes over from a worker that stopped has its
journal reconciled.
Stopping: mark the worker draining (the others take its hosts over), stop
consuming, let operations already running finish within the drain time,
then mark it stopped.
"""

from __future__ import annotations

import collections
import datetime
import functools
import logging
import os
import threading
import time
from importlib import metadata
from typing import Any

from oslo_config import cfg

from computed import _ownership, _sealing, _systemd, exception, version
from computed._claims import HostTracker, Ratios
from computed._inventory import InventoryPublisher
from computed._journal import Journal
from computed._server import Server
from computed._watcher import InstanceWatcher
from computed.conf import inventory as inventory_conf
from computed.conf import metrics as metrics_conf
from computed.conf import upgrade_levels
from computed.driver_loader import load_driver
from computed.manager import (
    ComputeManager,
    clean_up_evacuated,
    endpoints,
    reconcile,
    tracker_of,
)
from computed.metrics import WorkerMetrics, WorkerReadings
from computed.notifications import NotificationPublisher, OutcomeNotifier
from computed.objects import Migration, MigrationKind, MigrationStatus
from computed.registry import Registry, WorkerRecord
from computed.registry.api import STATE_DRAINING, STATE_STOPPED, HostInventoryRecord, utcnow
from drivers.base import ComputeDriver

__all__ = ["Worker"]

LOG = logging.getLogger(__name__)

#: Seconds between two purges of the journal's finished entries.
_PURGE_EVERY = 600.0
#: How long after another worker's heartbeat expires this one looks again:
#: past the expiry, so that the worker counts as down by then.
_PAST_EXPIRY = 0.05
#: Seconds between two batches of finished journal entries.
_FINISH_EVERY = 0.02


class Worker:
    """One ``computed`` process: one driver, several hosts, one server for all of them."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.worker_id = ""
        self.driver: ComputeDriver | None = None
        self.registry: Registry | None = None
        self._publisher: NotificationPublisher | None = None
        self._notifier: OutcomeNotifier | None = None
        self._journal: Journal | None = None
        self._server: Server | None = None
        self._managers: dict[str, ComputeManager] = {}
        self._releasing: list[threading.Thread] = []
        self._owning = threading.Lock()
        #: What ownership was last computed from, and the hosts it gave.
        self._seen: _ownership.Fingerprint | None = None
        self._wanted: set[str] = set()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._watcher: InstanceWatcher | None = None
        self._inventory: InventoryPublisher | None = None
        #: Seconds between systemd watchdog pings, when the unit has a watchdog.
        self._watchdog: float | None = None
        #: When the registry last took a heartbeat (time.monotonic()).
        self._beaten: float | None = None
        #: Journal entries of other workers settled here, by (operation, outcome).
        self._replays: collections.Counter[tuple[str, str]] = collections.Counter()
        self._replays_lock = threading.Lock()
        self.metrics = WorkerMetrics()
        self.metrics.observe(
            WorkerReadings(
                hosts_owned=lambda: len(self._managers),
                heartbeat_age=self._heartbeat_age,
                journal_waiting=lambda: self._journal.waiting if self._journal else 0,
                broker_reconnects=self._broker_reconnects,
                refused=lambda: self._server.refused() if self._server else {},
                replays=self._replays_so_far,
            )
        )

    @property
    def hosts(self) -> list[str]:
        return list(dict.fromkeys(self.conf.hosts))

    @property
    def owned_hosts(self) -> list[str]:
        """The hosts whose queues this worker consumes now."""
        return sorted(self._managers)

    @property
    def started_anything(self) -> bool:
        """Whether :meth:`start` got as far as opening the registry."""
        return self.registry is not None

    def start(self) -> None:
        """Start serving.

        :raises computed.exception.ConfigError: no hosts are configured.
        :raises computed.exception.ConfigError: metrics are enabled and their
            port is taken.
        :raises computed.exception.DriverLoadError: the driver cannot be loaded.
        :raises computed.exception.BrokerUnavailable: the broker does not answer in time.
        :raises computed.exception.RegistryError: the registry cannot be used.
        :raises computed.exception.ConfigError: this worker is older than the
            oldest RPC version the deployment supports.
        """
        conf = self.conf
        if not self.hosts:
            raise exception.ConfigError(reason="no hosts to serve: set 'hosts' or pass --hosts")
        metrics_conf.register_opts(conf)
        if conf.metrics.enabled:
            self.metrics.serve(conf.metrics.listen_address, conf.metrics.port)
        driver = self.driver = load_driver(conf.driver, conf)
        # The id is settled once the registry says whether a live worker holds it.
        provisional = conf.worker_id or f"{conf.machine}-{driver.name}"
        server = self._server = Server(conf, f"{provisional}:{os.getpid()}")
        server.start()
        self.registry = self._open_registry()
        self.worker_id = self._identity(self.registry, driver)
        _check_not_too_old(conf, self.registry)
        self.metrics.describe_worker(
            worker_id=self.worker_id,
            driver=driver.name,
            driver_version=driver.version,
            version=_release(),
            rpc_version=version.RPC_API_VERSION,
            rpc_min_version=version.RPC_API_MIN_VERSION,
        )
        for host in self.hosts:
            driver.init_host(host)
        self._publisher = NotificationPublisher(conf, f"{self.worker_id}:{os.getpid()}")
        self._notifier = OutcomeNotifier(conf, self._publisher)
        self._journal = server.journal = Journal(
            self.registry,
            self.worker_id,
            os.getpid(),
            finish_every=_FINISH_EVERY,
            sealer=_sealing.load(conf.registry.journal_key_file),
        )
        self._inventory = self._inventory_publisher()
        self.rebalance()
        self._inventory.start()
        self._watcher = InstanceWatcher(
            lambda: dict(self._managers), conf.notifications.instance_sync_interval
        )
        for host in self.hosts:
            driver.watch_instances(host, functools.partial(self._watcher.changed, host))
        self._watcher.start()
        self.registry.register(self._record())
        self._beaten = time.monotonic()
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()
        self._watchdog = _systemd.watchdog_period()
        if self._watchdog is not None and conf.heartbeat_interval > self._watchdog:
            LOG.warning(
                "heartbeat_interval (%g s) is longer than half the unit's WatchdogSec "
                "(%g s): systemd will take this worker for hung",
                conf.heartbeat_interval,
                self._watchdog,
            )
        _systemd.notify(
            "READY=1", f"STATUS=serving {len(self._managers)} of {len(self.hosts)} host(s)"
        )
        threading.Thread(target=self._follow_ownership, name="ownership", daemon=True).start()
        LOG.info(
            "Worker %s (driver %s, group %s, RPC %s) can serve %d host(s) and owns %d: %s",
            self.worker_id,
            driver.name,
            self._group,
            version.RPC_API_VERSION,
            len(self.hosts),
            len(self._managers),
            ", ".join(self.owned_hosts) or "none yet",
        )

    def rebalance(self) -> float | None:
        """Serve exactly the hosts this worker owns now, according to the registry.

        New hosts are served (their server started, then the ownership
        recorded, then orphaned journal entries reconciled); hosts it no
        longer owns are stopped in the background, draining what runs.
        Ownership is computed again only when something it depends on
        changed (:func:`computed._ownership.fingerprint`): an idle worker
        reads one narrow row per worker and the hosts recorded as its own.

        :returns: seconds until another worker of its driver would count as
            down if it heartbeats no more
            (:func:`computed._ownership.next_expiry`), or None.
        """
        assert self.registry is not None
        assert self.driver is not None
        with self._owning:
            if self._stopping.is_set():
                return None
            now = utcnow()
            down_time = self.conf.registry.down_time
            states = self.registry.worker_states()
            seen = _ownership.fingerprint(states, down_time, now)
            if seen != self._seen or set(self._managers) != self._wanted:
                self._recompute(seen, now)
            # The record of a host served all along can say otherwise: a
            # worker that started beside this one, before it saw it, may
            # have claimed the host, then given it back. Said again, it
            # costs a read of the hosts recorded as this worker's; only a
            # wrong record is written.
            self.registry.confirm_hosts(self.worker_id, self._managers)
            self._reconcile_orphans(_ownership.running(states, down_time, now))
            return _ownership.next_expiry(states, self.driver.name, self.worker_id, down_time, now)

    def _recompute(self, seen: _ownership.Fingerprint, now: datetime.datetime) -> None:
        """Compute the hosts this worker owns from the workers' records; take and release."""
        assert self.registry is not None
        self._seen = None  # until this pass has done all it should
        workers = self.registry.list_workers()
        me = next((w for w in workers if w.id == self.worker_id), None)
        if me is not None and (me.disabled or me.state == STATE_DRAINING):
            # Disabled workers own nothing; nor does one an operator
            # drained ('computedctl worker drain') before stopping it.
            wanted: set[str] = set()
        else:
            wanted = _ownership.owned_by(self._record(), workers, self.conf.registry.down_time, now)
        self._release(sorted(set(self._managers) - wanted))
        taken = sorted(wanted - set(self._managers))
        if taken:
            self._take(taken, workers)
        self._seen, self._wanted = seen, wanted

    def _take(self, hosts: list[str], workers: list[WorkerRecord]) -> None:
        """Consume these hosts' queues, then record the claim (one transaction)."""
        assert self.registry is not None and self._server is not None
        assert self.driver is not None and self._notifier is not None
        managers = {
            host: ComputeManager(
                host,
                self.driver,
                self.worker_id,
                self._notifier,
                self._journal,
                self.metrics.operations,
                self._tracker(host),
            )
            for host in hosts
        }
        served = self._server.serve({host: endpoints(m) for host, m in managers.items()})
        if not served:
            return
        for host in served:
            self._managers[host] = managers[host]
        owners = self.registry.list_owners()
        down_time = self.conf.registry.down_time
        running = {w.id for w in workers if w.may_be_running(down_time)}
        reasons = {}
        for host in served:
            holder = owners[host].worker_id if host in owners else None
            gone = holder is not None and holder not in running
            reasons[host] = "takeover" if gone else "rebalance"
        self.registry.claim_hosts(self.worker_id, reasons)
        if self._watcher is not None:
            self._watcher.hosts_changed()
        if self._inventory is not None:
            self._inventory.read_flags()
            for host in served:
                self._inventory.changed(host)
        LOG.info("Worker %s now serves %s", self.worker_id, ", ".join(served))
        evacuated = [
            record.migration
            for record in self.registry.list_migrations(
                kind=MigrationKind.EVACUATION, statuses={MigrationStatus.COMPLETED}
            )
            if record.migration.source_host in managers
        ]
        if evacuated:
            threading.Thread(
                target=self._clean_up_evacuated, args=(evacuated,), name="evacuated", daemon=True
            ).start()

    def _clean_up_evacuated(self, evacuated: list[Migration]) -> None:
        """Remove the instances evacuated from hosts this worker has just taken."""
        assert self.registry is not None
        for migration in evacuated:
            manager = self._managers.get(migration.source_host)
            if manager is None:
                continue
            try:
                clean_up_evacuated(manager, migration)
                self.registry.update_migration(
                    migration.id,
                    MigrationStatus.CLEANED,
                    expect={MigrationStatus.COMPLETED},
                    operation="clean up",
                )
            except Exception as exc:
                LOG.warning(
                    "Could not remove instance %s, evacuated from %s: %s",
                    migration.instance_uuid,
                    migration.source_host,
                    exc,
                )

    def _release(self, hosts: list[str]) -> None:
        """Stop consuming these hosts in the background, letting running operations finish."""
        if not hosts:
            return
        assert self._server is not None
        server = self._server
        for host in hosts:
            self._managers.pop(host, None)
        if self._inventory is not None:
            self._inventory.forget(hosts)

        def finish() -> None:
            server.release(hosts)
            server.wait_idle(hosts, None)
            with self._owning:  # a host taken back meanwhile stays claimed
                released = [host for host in hosts if host not in self._managers]
            if self.registry is not None:
                try:
                    self.registry.release_hosts(released, self.worker_id)
                except Exception as exc:
                    LOG.warning("Could not record the release of %s: %s", ", ".join(hosts), exc)
            LOG.info("Worker %s handed over %s", self.worker_id, ", ".join(hosts))

        thread = threading.Thread(target=finish, name="release", daemon=True)
        thread.start()
        self._releasing = [t for t in self._releasing if t.is_alive()] + [thread]

    def _reconcile_orphans(self, running: set[tuple[str, int]]) -> None:
        """Settle journal entries, on hosts this worker owns, of workers no longer running.

        :param running: ``(id, pid)`` of the workers that may still be running.
        """
        assert self.registry is not None
        running = running | {(self.worker_id, os.getpid())}
        orphans = [
            entry
            for entry in self.registry.journal_entries()
            if entry.host in self._managers and (entry.worker_id, entry.pid) not in running
        ]
        for entry in orphans:
            manager = self._managers[entry.host]
            threading.Thread(
                target=self._reconcile, args=(manager, entry), name="reconcile", daemon=True
            ).start()

    def _replays_so_far(self) -> dict[tuple[str, str], int]:
        with self._replays_lock:
            return dict(self._replays)

    def _reconcile(self, manager: ComputeManager, entry: Any) -> None:
        try:
            outcome: str | None = reconcile(manager, entry)
        except Exception:
            LOG.exception("Reconciling journal entry %s failed", entry.id)
            outcome = None
        with self._replays_lock:
            self._replays[entry.operation, outcome or "failed"] += 1
        if outcome is None:
            return
        LOG.info(
            "Reconciled %s of %s on %s left by %s: %s",
            entry.operation,
            entry.instance_uuid,
            entry.host,
            entry.worker_id,
            outcome,
        )

    @property
    def _group(self) -> str:
        assert self.driver is not None
        return str(self.conf.group or self.driver.name)

    def stop(self) -> bool:
        """Stop consuming, drain, deregister. Returns False if the drain timed out."""
        if self._stopping.is_set():
            return True
        self._stopping.set()
        _systemd.notify("STOPPING=1", "STATUS=draining")
        self._set_state(STATE_DRAINING)
        if self._server is not None:
            with self._owning:
                self._server.release(self.owned_hosts)
        drainer = threading.Thread(target=self._drain, name="drain", daemon=True)
        drainer.start()
        drainer.join(self.conf.drain_timeout)
        drained = not drainer.is_alive()
        if not drained:
            LOG.warning(
                "Operations still running after the drain time of %s s; stopping anyway",
                self.conf.drain_timeout,
            )
        if self._watcher is not None:
            self._watcher.stop()
        if self._inventory is not None:
            self._inventory.stop()
        self._set_state(STATE_STOPPED)
        self._stopped.set()
        if self.driver is not None:
            for host in self.hosts:
                try:
                    self.driver.cleanup_host(host)
                except Exception:
                    LOG.exception("Driver clean-up failed for host %s", host)
        if self._server is not None:
            self._server.stop(0)
        if self._journal is not None:
            self._journal.close()
        if self._publisher is not None:
            self._publisher.close()
        self.metrics.close()
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

    def _identity(self, registry: Registry, driver: ComputeDriver) -> str:
        """This worker's id: the configured one, or the default if no live worker holds it.

        Two live workers under one id would break each other's hosts. A
        configured id that a live worker holds is refused; the default id
        (``<machine>-<driver>``, what running the same command twice on one
        machine gives) becomes ``<machine>-<driver>-<pid>`` instead.

        :raises computed.exception.ConfigError: the configured id is in use.
        """
        conf = self.conf
        wanted = conf.worker_id or f"{conf.machine}-{driver.name}"
        holder = next((w for w in registry.list_workers() if w.id == wanted), None)
        if holder is None or not self._still_running(holder):
            return wanted
        age = holder.heartbeat_age()
        where = f"pid {holder.pid} on {holder.machine or 'an unnamed machine'}"
        if conf.worker_id:
            raise exception.ConfigError(
                reason=f"worker id {wanted!r} is held by a live worker ({where}, last "
                f"heartbeat {age or 0:.0f} s ago); stop that worker, or give this one "
                "another id with --worker-id or [DEFAULT] worker_id"
            )
        unique = f"{wanted}-{os.getpid()}"
        LOG.warning(
            "Worker id %s is held by a live worker (%s); this one is %s. Set [DEFAULT] "
            "worker_id to give it a stable id of its own",
            wanted,
            where,
            unique,
        )
        return unique

    def _still_running(self, holder: WorkerRecord) -> bool:
        """Whether the worker recorded under an id may still run (not a crashed predecessor)."""
        if not holder.may_be_running(self.conf.registry.down_time):
            return False
        if holder.machine == self.conf.machine and holder.pid:
            return holder.pid != os.getpid() and _process_exists(holder.pid)
        return True

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
            group=self._group,
            capabilities={
                "operations": sorted(driver.operations),
                "features": sorted(driver.features),
            },
            machine=self.conf.machine,
            pid=os.getpid(),
        )

    def _inventory_publisher(self) -> InventoryPublisher:
        """What records this worker's hosts in the registry's inventory (:mod:`computed._inventory`)."""
        assert self.registry is not None and self.driver is not None
        record = self._record()
        inventory_conf.register_opts(self.conf)
        return InventoryPublisher(
            self.registry,
            lambda: {host: tracker_of(m) for host, m in self._managers.items()},
            HostInventoryRecord(
                host="",
                worker_id=self.worker_id,
                driver=record.driver,
                driver_version=record.driver_version,
                support_tier=record.support_tier,
                capabilities=record.capabilities,
            ),
            self.conf.heartbeat_interval,
            self.conf.inventory_interval,
        )

    def _tracker(self, host: str) -> HostTracker:
        """The resources, claims and disabled flag of a host this worker starts serving."""
        assert self.driver is not None
        conf = self.conf
        publisher = self._inventory
        return HostTracker(
            host,
            self.driver,
            Ratios(
                conf.cpu_allocation_ratio, conf.ram_allocation_ratio, conf.disk_allocation_ratio
            ),
            publisher.changed if publisher is not None else None,
        )

    def _beat(self) -> None:
        """Heartbeat, on a thread of its own so slow handovers never delay it.

        It goes on while the worker drains: a draining worker may still be
        running operations, and its journal entries are not another worker's
        to reconcile until it has stopped or its heartbeat has.
        """
        assert self.registry is not None
        while not self._stopped.wait(self.conf.heartbeat_interval):
            try:
                if not self.registry.heartbeat(self.worker_id):
                    LOG.warning("Registry record of %s vanished; registering again", self.worker_id)
                    self.registry.register(self._record())
            except Exception as exc:
                LOG.warning("Heartbeat failed: %s", exc)
                continue
            self._beaten = time.monotonic()
            # systemd's watchdog is fed only while the registry and the broker answer.
            if self._watchdog is not None and self._server and self._server.broker_connected():
                _systemd.notify("WATCHDOG=1")

    def _heartbeat_age(self) -> float | None:
        beaten = self._beaten
        return None if beaten is None else time.monotonic() - beaten

    def _broker_reconnects(self) -> dict[str, int]:
        reconnects = self._server.broker_reconnects() if self._server is not None else {}
        if self._publisher is not None:
            reconnects["notifications"] = self._publisher.reconnects
        return reconnects

    def _follow_ownership(self) -> None:
        """Recompute ownership every heartbeat interval, and as soon as another
        worker's heartbeat grows older than ``down_time``; now and then, purge
        the journal."""
        purged = time.monotonic()
        interval = self.conf.heartbeat_interval
        wait = interval
        while not self._stopping.wait(wait):
            wait = interval
            try:
                expiry = self.rebalance()
            except Exception as exc:
                LOG.warning("Recomputing host ownership failed: %s", exc)
            else:
                if expiry is not None:
                    wait = min(interval, max(expiry, 0.0) + _PAST_EXPIRY)
            if self._journal is not None and time.monotonic() - purged > _PURGE_EVERY:
                purged = time.monotonic()
                gone = self._journal.purge(self.conf.listener.duplicate_window)
                LOG.debug("Purged %d finished journal entries", gone)

    def _drain(self) -> None:
        if self._server is not None:
            self._server.wait_idle(self.owned_hosts, None)
        for thread in self._releasing:
            thread.join()
        if self.registry is not None:
            try:
                self.registry.release_hosts(self.owned_hosts, self.worker_id)
            except Exception as exc:
                LOG.warning("Could not record the release of this worker's hosts: %s", exc)

    def _set_state(self, state: str) -> None:
        if self.registry is None or not self.worker_id:
            return
        try:
            self.registry.set_state(self.worker_id, state)
        except Exception as exc:
            LOG.warning("Could not mark %s %s in the registry: %s", self.worker_id, state, exc)


def _release() -> str:
    """The installed computed release."""
    try:
        return metadata.version("computed")
    except metadata.PackageNotFoundError:
        return "unknown"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
