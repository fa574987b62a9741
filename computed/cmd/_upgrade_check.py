"""``computedctl upgrade check``: can this deployment take the release installed here?

Run it with the new release's code and the deployment's configuration before
restarting anything, and again after each step, as ``nova-status upgrade
check`` is run. It reads the configuration and the registry, never the
broker nor the hypervisors. Each check says Success, Warning (the upgrade
may go on; read the details) or Failure (fix it first), and the exit status
is the worst of them: 0, 1 or 2; 255 when the checks could not run.

The checks, built on oslo.upgradecheck:

- **Registry schema**: the database against this release's migrations.
- **Minimum worker version**: no live worker speaks less than the deployment
  supports (``[upgrade_levels] minimum_worker_version``, or the newest
  "oldest version served" among live workers), nor less than this release
  serves.
- **RPC version pin**: ``[upgrade_levels] compute`` is valid, lets every host
  be sent a version its workers serve, and (a warning) holds back no host
  that could take more.
- **Support tiers**: every live worker's driver version meets
  ``[conformance] required_tier``, from the recorded conformance runs.
- **Queue type**: quorum queues (``[oslo_messaging_rabbit]
  rabbit_quorum_queue``); classic ones are a warning (docs/delivery.md).
- **Broker TLS**: the transport URLs reach any broker off this machine over
  TLS.
- **Drivers' database roles**: on a PostgreSQL registry with the drivers'
  checks, every live worker's driver has a login role in its group
  (docs/security.md); a warning names the drivers that have none.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import ipaddress
import logging
from collections.abc import Callable

import oslo_messaging as messaging
import sqlalchemy as sa
from oslo_config import cfg
from oslo_upgradecheck import upgradecheck
from oslo_upgradecheck.upgradecheck import Code, Result
from oslo_utils import strutils

from computed import _sealing, exception, rpc, version
from computed.cmd import _base
from computed.cmd._upgrade_status import _Snapshot
from computed.conf import upgrade_levels
from computed.conf.conformance import TIERS
from computed.registry import Registry, WorkerRecord, migration, models
from computed.registry.api import TIER_UNTESTED, ConformanceRecord, safe_db_url, utcnow
from rpcapi import _pins

__all__ = ["UpgradeChecks", "UpgradeCheck"]

LOG = logging.getLogger(__name__)

#: The exit status when the checks could not run (oslo.upgradecheck's).
ERROR = 255


@dataclasses.dataclass(frozen=True)
class _Deployment:
    """What the checks read of the registry, read once."""

    workers: list[WorkerRecord]
    runs: dict[tuple[str, str], ConformanceRecord]
    down_time: float
    #: ``{driver: [member role, ...]}``; None without the drivers' checks.
    roles: dict[str, list[str]] | None = None

    def live(self) -> list[WorkerRecord]:
        now = utcnow()
        return [w for w in self.workers if w.is_alive(self.down_time, now)]


def _reads_registry(
    check: Callable[[UpgradeChecks, _Deployment], Result],
) -> Callable[[UpgradeChecks], Result]:
    """A check of the workers in the registry; one that cannot read it fails, saying why."""

    @functools.wraps(check)
    def run(checks: UpgradeChecks) -> Result:
        try:
            deployment = checks.deployment()
        except exception.RegistryError as exc:
            return Result(Code.FAILURE, f"The registry cannot be read: {exc}")
        return check(checks, deployment)

    return run


class UpgradeChecks(upgradecheck.UpgradeCommands):
    """The checks, over one configuration (oslo.upgradecheck runs them in order)."""

    display_title = "computed upgrade check"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        upgrade_levels.register_opts(conf)
        rpc.set_defaults(conf)
        self._conf = conf
        self._deployment: _Deployment | exception.RegistryError | None = None

    def deployment(self) -> _Deployment:
        """The registry's workers and conformance runs, read at the first call.

        :raises computed.exception.RegistryError: at every call, if the first
            could not read them.
        """
        if self._deployment is None:
            self._deployment = self._read()
        if isinstance(self._deployment, exception.RegistryError):
            raise self._deployment
        return self._deployment

    def _read(self) -> _Deployment | exception.RegistryError:
        try:
            registry = Registry(self._conf.registry.connection)
        except sa.exc.SQLAlchemyError as exc:
            return exception.RegistryError(reason=_first_line(exc))
        try:
            return _Deployment(
                registry.list_workers(),
                registry.latest_conformance(),
                self._conf.registry.down_time,
                registry.driver_roles() if registry.driver_checks_installed() else None,
            )
        except exception.RegistryError as exc:
            return exc
        finally:
            registry.close()

    def _check_schema(self) -> Result:
        """The registry schema against this release's migrations."""
        url = safe_db_url(self._conf.registry.connection)
        head = migration.head_revision()
        try:
            registry = Registry(self._conf.registry.connection)
            try:
                current = migration.current_revision(registry.engine)
                later = current is not None and current not in migration.known_revisions()
                missing = (
                    migration.missing_columns(registry.engine, models.Base.metadata)
                    if later
                    else []
                )
            finally:
                registry.close()
        except sa.exc.SQLAlchemyError as exc:
            return Result(Code.FAILURE, f"The registry {url} cannot be read: {_first_line(exc)}")
        if current == head:
            return Result(Code.SUCCESS, f"At revision {head}, this release's newest.")
        if current is None:
            return Result(
                Code.FAILURE,
                f"The registry {url} has no schema: run 'computedctl db sync' (or check "
                "[registry] connection).",
            )
        if later:
            if missing:
                return Result(
                    Code.FAILURE,
                    f"At revision {current}, newer than this release knows ({head}), and "
                    f"without {', '.join(missing[:10])}: a later release removed what this one "
                    "uses, and its workers would refuse to start.",
                )
            return Result(
                Code.SUCCESS,
                f"At revision {current}, migrated by a later release than this one ({head}); "
                "it has every table and column this release uses.",
            )
        if self._conf.registry.auto_migrate:
            return Result(
                Code.WARNING,
                f"At revision {current}; this release migrates it to {head}. The first worker "
                "of this release does it when it starts ([registry] auto_migrate), or run "
                "'computedctl db sync' now; older workers keep working on the new schema.",
            )
        return Result(
            Code.FAILURE,
            f"At revision {current}; this release needs {head}, and its workers do not migrate "
            "the schema ([registry] auto_migrate = false): run 'computedctl db sync' before "
            "starting them.",
        )

    @_reads_registry
    def _check_minimum_worker_version(self, deployment: _Deployment) -> Result:
        """No live worker speaks less than the deployment, or this release, supports."""
        option = self._conf.upgrade_levels.minimum_worker_version
        live = deployment.live()
        if option:
            try:
                required = upgrade_levels.resolve_version(option, "minimum_worker_version")
            except ValueError as exc:
                return Result(Code.FAILURE, f"{exc}; every worker refuses to start with it.")
            if version.newer(required, version.RPC_API_VERSION):
                return Result(
                    Code.FAILURE,
                    f"[upgrade_levels] minimum_worker_version = {option} asks for RPC "
                    f"{required}, newer than this release speaks ({version.RPC_API_VERSION}): "
                    "its workers would refuse to start. Lower it.",
                )
            source = f"[upgrade_levels] minimum_worker_version = {option}"
        elif live:
            newest = max(live, key=lambda w: version.parse(w.rpc_min_version))
            required = newest.rpc_min_version
            source = f"worker {newest.id} serves nothing older"
        else:
            return Result(Code.SUCCESS, "No live worker is registered.")
        too_old = [w for w in live if version.newer(required, w.rpc_version)]
        if too_old:
            return Result(
                Code.FAILURE,
                f"{_workers(too_old)} speak less than RPC {required}, the oldest version this "
                f"deployment supports ({source}); they would refuse to start again. Upgrade "
                f"computed and their drivers on their machines to a release that speaks "
                f"{required} or newer.",
            )
        left_behind = [w for w in live if version.newer(version.RPC_API_MIN_VERSION, w.rpc_version)]
        if left_behind:
            return Result(
                Code.WARNING,
                f"This release serves nothing older than RPC {version.RPC_API_MIN_VERSION}; "
                f"once its first worker registers, {_workers(left_behind)} count as too old "
                "and refuse to start again, and hosts they share with it are refused. "
                "Upgrade them in this round.",
            )
        return Result(
            Code.SUCCESS,
            f"Every live worker ({len(live)}) speaks RPC {required} or newer ({source}).",
        )

    @_reads_registry
    def _check_pin(self, deployment: _Deployment) -> Result:
        """``[upgrade_levels] compute`` is valid, serves every host, and holds back none."""
        option = self._conf.upgrade_levels.compute
        try:
            pin = _pins.parse_pin(option)
        except exception.ConfigError as exc:
            return Result(Code.FAILURE, f"{exc}; clients refuse to start with it.")
        snapshot = _Snapshot(deployment.workers, deployment.down_time)
        live = snapshot.live_workers()
        refused: list[str] = []
        held: list[str] = []
        for host in sorted({h for w in deployment.workers for h in w.hosts}):
            consumers = snapshot.consumers(host)
            if not consumers:
                continue
            cap = _pins.host_cap(pin, consumers, live)
            if version.newer(cap.floor, cap.version):
                refused.append(f"{host} (at most {cap.version}: {cap.reason}; serves {cap.floor}+)")
            elif version.newer(
                _pins.host_cap(upgrade_levels.AUTO, consumers, live).version, cap.version
            ):
                held.append(f"{host} ({cap.version}: {cap.reason})")
        if refused:
            return Result(
                Code.FAILURE,
                f"Clients refuse every call to {len(refused)} host(s), whose workers serve "
                f"nothing as old as the version they may be sent: {'; '.join(refused)}. Raise "
                "[upgrade_levels] compute (or set it to 'auto'), or upgrade the workers that "
                "hold the cap down.",
            )
        if held:
            return Result(
                Code.WARNING,
                f"[upgrade_levels] compute = {option} holds back {len(held)} host(s) whose "
                f"workers could take more: {'; '.join(held)}. That is its purpose while workers "
                "are being upgraded; set it to 'auto' once they all run this release.",
            )
        return Result(Code.SUCCESS, f"[upgrade_levels] compute = {option}.")

    @_reads_registry
    def _check_required_tier(self, deployment: _Deployment) -> Result:
        """Every live worker's driver version meets ``[conformance] required_tier``."""
        required = self._conf.conformance.required_tier
        if required == TIER_UNTESTED:
            return Result(
                Code.SUCCESS,
                "[conformance] required_tier = untested: any driver may serve hosts.",
            )
        live = deployment.live()
        if not live:
            return Result(Code.SUCCESS, "No live worker is registered.")
        below: dict[tuple[str, str], list[WorkerRecord]] = {}
        for worker in live:
            run = deployment.runs.get((worker.driver, worker.driver_version))
            tier = run.tier if run is not None else TIER_UNTESTED
            if TIERS.index(tier) < TIERS.index(required):
                below.setdefault((worker.driver, worker.driver_version), []).append(worker)
        if below:
            lines = []
            for (driver, driver_version), workers in sorted(below.items()):
                run = deployment.runs.get((driver, driver_version))
                tier = run.tier if run is not None else TIER_UNTESTED
                lines.append(
                    f"{driver} {driver_version} is {tier} (workers "
                    f"{', '.join(w.id for w in workers)}; run 'computed-conformance --host "
                    f"{workers[0].hosts[0]} --record' against it)"
                )
            return Result(
                Code.FAILURE,
                f"[conformance] required_tier = {required}, and clients refuse the hosts of "
                f"{'; '.join(lines)}. Record a run that passes, or lower the requirement.",
            )
        return Result(
            Code.SUCCESS,
            f"Every live worker's driver version is {required} or better "
            f"([conformance] required_tier = {required}).",
        )

    def _check_queue_type(self) -> Result:
        """Quorum queues, or a warning for classic ones."""
        rabbit = self._conf.oslo_messaging_rabbit
        if rabbit.rabbit_quorum_queue:
            return Result(
                Code.SUCCESS, "Quorum queues ([oslo_messaging_rabbit] rabbit_quorum_queue)."
            )
        durable = "durable" if rabbit.amqp_durable_queues else "transient"
        return Result(
            Code.WARNING,
            f"[oslo_messaging_rabbit] rabbit_quorum_queue = false: classic {durable} queues. "
            "Casts queued for a host are lost with the broker node that holds them "
            "(docs/delivery.md). Every worker and client of the vhost must agree: keep it "
            "false everywhere through this upgrade, or move to quorum queues on a fresh vhost "
            "(docs/upgrade.md, 'the queue type').",
        )

    @_reads_registry
    def _check_driver_roles(self, deployment: _Deployment) -> Result:
        """Each live worker's driver has a database role of its own (PostgreSQL)."""
        if deployment.roles is None:
            return Result(
                Code.SUCCESS,
                "Drivers' database roles are not in use (an SQLite registry, or PostgreSQL "
                "before revision 0008): any worker can write any driver's rows "
                "(docs/security.md).",
            )
        granted = {driver for driver, members in deployment.roles.items() if members}
        bare = sorted({w.driver for w in deployment.live()} - granted)
        if bare:
            return Result(
                Code.WARNING,
                f"No login role is a member of the group of driver(s) {', '.join(bare)}: "
                "their workers write the registry with rights over every driver's rows. Run "
                "'computedctl registry grant DRIVER ROLE' and give those workers ROLE's "
                "credentials in [registry] connection (docs/security.md).",
            )
        return Result(
            Code.SUCCESS,
            "Every live worker's driver has a database role of its own (docs/security.md).",
        )

    def _check_broker_tls(self) -> Result:
        """Brokers off this machine are reached over TLS."""
        urls = {"transport_url": self._conf.transport_url}
        notifications = self._conf.oslo_messaging_notifications.transport_url
        if notifications:
            urls["[oslo_messaging_notifications] transport_url"] = notifications
        plain: list[str] = []
        for option, url in urls.items():
            try:
                parsed = messaging.TransportURL.parse(self._conf, url)
            except messaging.InvalidTransportURL as exc:
                return Result(Code.FAILURE, f"{option}: {exc}")
            tls = self._conf.oslo_messaging_rabbit.ssl or strutils.bool_from_string(
                parsed.query.get("ssl")
            )
            remote = [h.hostname for h in parsed.hosts if not _loopback(h.hostname)]
            if remote and not tls:
                plain.append(f"{option} ({', '.join(sorted(set(remote)))})")
        if plain:
            return Result(
                Code.WARNING,
                f"Without TLS to brokers off this machine: {'; '.join(plain)}. Messages and "
                "credentials cross the network in clear: set [oslo_messaging_rabbit] ssl = true "
                "(and ssl_ca_file) on every worker and client, with the brokers' TLS port.",
            )
        return Result(Code.SUCCESS, "TLS to every broker off this machine (or none is).")

    def _check_journal_key(self) -> Result:
        """Secrets in journaled arguments are sealed ([registry] journal_key_file)."""
        path = self._conf.registry.journal_key_file
        try:
            sealer = _sealing.load(path)
        except exception.ConfigError as exc:
            return Result(Code.FAILURE, f"{exc}; a worker with this configuration exits (2).")
        if sealer is None:
            return Result(
                Code.WARNING,
                "[registry] journal_key_file is not set: a volume's credentials (a CHAP "
                "password) stay readable in the registry's journal while its attach is "
                "pending. Write a key with 'computedctl registry key PATH' and give every "
                "worker of a driver the same file (docs/security.md).",
            )
        return Result(Code.SUCCESS, f"Journaled secrets are sealed with {path}.")

    _upgrade_checks = (
        ("Registry schema", _check_schema),
        ("Minimum worker version", _check_minimum_worker_version),
        ("RPC version pin", _check_pin),
        ("Support tiers", _check_required_tier),
        ("Queue type", _check_queue_type),
        ("Broker TLS", _check_broker_tls),
        ("Drivers' database roles", _check_driver_roles),
        ("Journal secrets", _check_journal_key),
    )


class UpgradeCheck(_base.Command):
    """Check that this deployment can take the release installed here (exit 0, 1 or 2)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--json",
            action="store_true",
            help="the results as JSON; by default a table",
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        checks = UpgradeChecks(self.conf)
        # oslo.upgradecheck's check() prints its table, or its JSON when the
        # options its own main() parses say --json: give it those options.
        options = cfg.ConfigOpts()
        upgradecheck.register_cli_options(options, checks)
        options(
            ["upgrade", "check", *(["--json"] if parsed_args.json else [])],
            project="computed",
            default_config_files=[],
            default_config_dirs=[],
        )
        upgradecheck.CONF = options
        try:
            return int(checks.check())
        except Exception as exc:
            LOG.debug("The upgrade checks failed", exc_info=True)
            self.app.stderr.write(f"computedctl: error: the checks could not run: {exc}\n")
            return ERROR


def _workers(workers: list[WorkerRecord]) -> str:
    return ", ".join(f"{w.id} (RPC {w.rpc_version}, driver {w.driver})" for w in workers)


def _first_line(exc: Exception) -> str:
    """SQLAlchemy's message without the lines it adds (a link to its documentation)."""
    return str(exc).strip().splitlines()[0]


def _loopback(hostname: str | None) -> bool:
    """Whether a broker host is this machine (no host at all means localhost)."""
    if not hostname or hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False
