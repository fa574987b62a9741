"""``computedctl``: the operator's view of workers and hosts, and registry upkeep.

::

    computedctl workers [--json]        every worker, its driver, version and state
    computedctl hosts [--json]          every host and the worker serving it
    computedctl worker disable ID [--reason TEXT]
    computedctl worker enable ID
    computedctl worker delete ID
    computedctl db sync                 bring the registry schema up to date
    computedctl db version              the schema revision in use
    computedctl drivers                 drivers installed in this environment
    computedctl upgrade-status [--json] versions, per-host caps, backported/refused counts
    computedctl tiers [--json]          each driver version's tier, from recorded conformance runs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from computed import conf as computed_conf
from computed import exception
from computed.cmd import _upgrade_status
from computed.driver_loader import available_drivers
from computed.registry import Registry, WorkerRecord, migration
from computed.registry.api import TIER_UNTESTED, utcnow

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    conf = computed_conf.CONF
    computed_conf.register_all(conf)
    config_args: list[str] = []
    for path in args.config_file or []:
        config_args += ["--config-file", path]
    try:
        conf(
            config_args,
            project="computed",
            default_config_files=None if not args.config_file else [],
        )
    except cfg.Error as exc:
        return _fail(f"configuration error: {exc}")
    try:
        return int(args.handler(args, conf) or 0)
    except exception.ComputedError as exc:
        return _fail(str(exc))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="computedctl", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file",
        action="append",
        metavar="PATH",
        help="configuration file (repeatable); default: the usual computed.conf locations",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    workers = commands.add_parser("workers", help="list workers")
    workers.add_argument("--json", action="store_true", help="machine-readable output")
    workers.set_defaults(handler=_list_workers)

    hosts = commands.add_parser("hosts", help="list hosts and who serves them")
    hosts.add_argument("--json", action="store_true", help="machine-readable output")
    hosts.set_defaults(handler=_list_hosts)

    worker = commands.add_parser("worker", help="disable, enable or delete a worker")
    actions = worker.add_subparsers(dest="action", required=True, metavar="ACTION")
    disable = actions.add_parser("disable", help="stop routing calls to a worker")
    disable.add_argument("worker_id")
    disable.add_argument("--reason", default="disabled by an operator")
    disable.set_defaults(handler=_disable)
    enable = actions.add_parser("enable", help="route calls to a worker again")
    enable.add_argument("worker_id")
    enable.set_defaults(handler=_enable)
    delete = actions.add_parser("delete", help="forget a worker that will not come back")
    delete.add_argument("worker_id")
    delete.set_defaults(handler=_delete)

    db = commands.add_parser("db", help="registry schema")
    db_actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_actions.add_parser("sync", help="upgrade the schema to the newest").set_defaults(
        handler=_db_sync
    )
    db_actions.add_parser("version", help="show the schema revision").set_defaults(
        handler=_db_version
    )

    commands.add_parser("drivers", help="list installed drivers").set_defaults(handler=_drivers)
    _upgrade_status.add_parser(commands)

    tiers = commands.add_parser("tiers", help="support tiers from recorded conformance runs")
    tiers.add_argument("--json", action="store_true", help="machine-readable output")
    tiers.set_defaults(handler=_tiers)
    return parser


# Handlers -------------------------------------------------------------------


def _list_workers(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    registry = _registry(conf)
    workers = registry.list_workers()
    runs = registry.latest_conformance()
    down_time = conf.registry.down_time
    now = utcnow()

    def tier(worker: WorkerRecord) -> str:
        run = runs.get((worker.driver, worker.driver_version))
        return run.tier if run is not None else TIER_UNTESTED

    if args.json:
        _print_json(
            [dict(w.to_json(), status=w.status(down_time, now), tier=tier(w)) for w in workers]
        )
        return
    rows = [
        (
            w.id,
            w.driver,
            _status(w, down_time, now),
            w.rpc_version,
            tier(w),
            _age(w, now),
            ",".join(w.hosts),
        )
        for w in workers
    ]
    _print_table(("WORKER", "DRIVER", "STATUS", "RPC", "TIER", "HEARTBEAT", "HOSTS"), rows)
    if not workers:
        print("No worker has registered yet.")


def _list_hosts(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    workers = _registry(conf).list_workers()
    down_time = conf.registry.down_time
    now = utcnow()
    entries = sorted((host, w) for w in workers for host in w.hosts)
    if args.json:
        _print_json(
            [
                {
                    "host": host,
                    "worker": w.id,
                    "driver": w.driver,
                    "rpc_version": w.rpc_version,
                    "status": w.status(down_time, now),
                    "alive": w.is_alive(down_time, now),
                }
                for host, w in entries
            ]
        )
        return
    rows = [
        (host, w.id, w.driver, w.rpc_version, "yes" if w.is_alive(down_time, now) else "no")
        for host, w in entries
    ]
    _print_table(("HOST", "WORKER", "DRIVER", "RPC", "ALIVE"), rows)
    if not entries:
        print("No host is registered yet.")


def _disable(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    _registry(conf).set_disabled(args.worker_id, True, args.reason)
    print(f"Worker {args.worker_id} disabled: calls to its hosts now fail at once.")


def _enable(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    _registry(conf).set_disabled(args.worker_id, False)
    print(f"Worker {args.worker_id} enabled.")


def _delete(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    _registry(conf).delete(args.worker_id)
    print(f"Worker {args.worker_id} deleted from the registry.")


def _tiers(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    registry = _registry(conf)
    runs = registry.latest_conformance()
    running = {(w.driver, w.driver_version) for w in registry.list_workers()}
    untested = sorted(running - set(runs))
    if args.json:
        _print_json(
            [run.to_json() for _, run in sorted(runs.items())]
            + [{"driver": d, "driver_version": v, "tier": TIER_UNTESTED} for d, v in untested]
        )
        return
    rows = [
        (
            run.driver,
            run.driver_version,
            run.tier,
            f"{run.run_at:%Y-%m-%d %H:%M}" if run.run_at else "-",
            f"{run.passed}/{run.failed}/{run.skipped}",
            ",".join(run.failing) or "-",
        )
        for _, run in sorted(runs.items())
    ] + [(d, v, TIER_UNTESTED, "-", "-", "-") for d, v in untested]
    _print_table(
        ("DRIVER", "VERSION", "TIER", "RUN AT (UTC)", "PASS/FAIL/SKIP", "FAILING CHECKS"), rows
    )
    if not rows:
        print("No conformance run is recorded and no worker is registered.")


def _db_sync(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    registry = Registry(conf.registry.connection)
    registry.migrate()
    print(f"Registry schema at revision {migration.current_revision(registry.engine)}.")


def _db_version(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    registry = Registry(conf.registry.connection)
    current = migration.current_revision(registry.engine) or "none"
    print(f"current {current}, newest {migration.head_revision()}")


def _drivers(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    names = available_drivers()
    print("\n".join(names) if names else "No driver is installed.")


# Output ----------------------------------------------------------------------


def _registry(conf: cfg.ConfigOpts) -> Registry:
    return Registry(conf.registry.connection)


def _status(worker: WorkerRecord, down_time: float, now: Any) -> str:
    status = worker.status(down_time, now)
    if status == "disabled" and worker.disabled_reason:
        return f"disabled ({worker.disabled_reason})"
    return status


def _age(worker: WorkerRecord, now: Any) -> str:
    age = worker.heartbeat_age(now)
    return "-" if age is None else f"{age:.0f}s ago"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    print()


def _fail(message: str) -> int:
    print(f"computedctl: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
