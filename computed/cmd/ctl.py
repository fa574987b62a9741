"""``computedctl``: the operator's view of workers and hosts, and registry upkeep.

::

    computedctl workers [--json]        every worker, its driver, version and state
    computedctl hosts [--json] [--moves] every host, its owner, its candidates (and recent moves)
    computedctl moves [--json] [--host H] [--limit N]  recent changes of host owners
    computedctl worker disable ID [--reason TEXT]
    computedctl worker enable ID
    computedctl worker drain ID         clients hold its hosts' messages; stop it next
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

from computed import _ownership, exception
from computed import conf as computed_conf
from computed.cmd import _upgrade_status
from computed.driver_loader import available_drivers
from computed.registry import Registry, WorkerRecord, migration
from computed.registry.api import STATE_DRAINING, TIER_UNTESTED, MoveRecord, utcnow

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

    hosts = commands.add_parser("hosts", help="list hosts, their owner and candidates")
    hosts.add_argument("--json", action="store_true", help="machine-readable output")
    hosts.add_argument("--moves", action="store_true", help="also list recent moves")
    hosts.set_defaults(handler=_list_hosts)

    moves = commands.add_parser("moves", help="recent changes of host owners, newest first")
    moves.add_argument("--json", action="store_true", help="machine-readable output")
    moves.add_argument("--host", help="only this host")
    moves.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    moves.set_defaults(handler=_list_moves)

    worker = commands.add_parser("worker", help="disable, enable, drain or delete a worker")
    actions = worker.add_subparsers(dest="action", required=True, metavar="ACTION")
    disable = actions.add_parser("disable", help="stop routing calls to a worker")
    disable.add_argument("worker_id")
    disable.add_argument("--reason", default="disabled by an operator")
    disable.set_defaults(handler=_disable)
    enable = actions.add_parser("enable", help="route calls to a worker again")
    enable.add_argument("worker_id")
    enable.set_defaults(handler=_enable)
    drain = actions.add_parser(
        "drain",
        help="before stopping a worker: clients hold its hosts' messages for the next worker",
    )
    drain.add_argument("worker_id")
    drain.set_defaults(handler=_drain)
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
    """One row per host: the worker consuming its queue, the candidates, liveness.

    OWNER is what the registry records (the worker that claimed the host
    last); EXPECTED is the owner the hash ring gives over the live
    candidates now, which differs only during a handover.
    """
    registry = _registry(conf)
    workers = registry.list_workers()
    owners = registry.list_owners()
    down_time = conf.registry.down_time
    now = utcnow()
    by_id = {w.id: w for w in workers}
    expected = _ownership.assignment(workers, down_time, now)
    rows: list[dict[str, Any]] = []
    for host in sorted({h for w in workers for h in w.hosts}):
        declared = sorted(w.id for w in workers if host in w.hosts)
        recorded = owners.get(host)
        owner_id = recorded.worker_id if recorded is not None else None
        ring_owner, candidates = expected.get(host, (None, []))
        serving = by_id.get(owner_id or "") or by_id.get(ring_owner or "") or by_id[declared[0]]
        alive = any(by_id[w].is_alive(down_time, now) for w in declared)
        rows.append(
            {
                "host": host,
                "owner": owner_id,
                "owner_since": recorded.since.isoformat() + "Z" if recorded else None,
                "expected_owner": ring_owner,
                "candidates": candidates,
                "workers": declared,
                "worker": serving.id,
                "driver": serving.driver,
                "group": serving.group or serving.driver,
                "rpc_version": serving.rpc_version,
                "status": serving.status(down_time, now),
                "alive": alive,
            }
        )
    moves = registry.list_moves(limit=20) if args.moves else []
    if args.json:
        if args.moves:
            _print_json({"hosts": rows, "moves": [m.to_json() for m in moves]})
        else:
            _print_json(rows)
        return
    _print_table(
        ("HOST", "OWNER", "CANDIDATES", "DRIVER", "GROUP", "RPC", "ALIVE"),
        [
            (
                r["host"],
                r["owner"] or "-",
                ",".join(r["candidates"]) or "-",
                r["driver"],
                r["group"],
                r["rpc_version"],
                "yes" if r["alive"] else "no",
            )
            for r in rows
        ],
    )
    if not rows:
        print("No host is registered yet.")
    if args.moves:
        print()
        _print_moves(moves)


def _list_moves(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    moves = _registry(conf).list_moves(limit=args.limit, host=args.host)
    if args.json:
        _print_json([m.to_json() for m in moves])
        return
    _print_moves(moves)


def _print_moves(moves: Sequence[MoveRecord]) -> None:
    if not moves:
        print("No host has moved yet.")
        return
    _print_table(
        ("MOVED AT (UTC)", "HOST", "FROM", "TO", "REASON"),
        [
            (
                f"{m.moved_at:%Y-%m-%d %H:%M:%S}",
                m.host,
                m.from_worker_id or "-",
                m.to_worker_id,
                m.reason,
            )
            for m in moves
        ],
    )


def _disable(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    _registry(conf).set_disabled(args.worker_id, True, args.reason)
    print(f"Worker {args.worker_id} disabled: calls to its hosts now fail at once.")


def _enable(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    _registry(conf).set_disabled(args.worker_id, False)
    print(f"Worker {args.worker_id} enabled.")


def _drain(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    _registry(conf).set_state(args.worker_id, STATE_DRAINING)
    print(
        f"Worker {args.worker_id} marked draining: clients send nothing more to it and hold "
        f"messages for its hosts, up to {conf.client.handover_timeout:g} s ([client] "
        "handover_timeout), until a worker serves them again; workers sharing its hosts take "
        f"them over. Stop it once clients have re-read the registry ([client] cache_ttl, "
        f"{conf.client.cache_ttl:g} s), then start its replacement."
    )


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
    current = migration.current_revision(registry.engine)
    if current == migration.head_revision():
        print(f"Registry schema at revision {current}.")
    else:
        print(
            f"Registry schema at revision {current}, newer than this release's "
            f"{migration.head_revision()}; it has every table and column this release uses."
        )


def _db_version(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    registry = Registry(conf.registry.connection)
    current = migration.current_revision(registry.engine) or "none"
    known = current == "none" or current in migration.known_revisions()
    newer = "" if known else " (newer than this release: migrated by a later one)"
    print(f"current {current}{newer}, newest {migration.head_revision()}")


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
