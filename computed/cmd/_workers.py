"""``computedctl workers``, ``hosts``, ``moves`` and ``worker disable|enable|drain|delete``."""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

from cliff import columns

from computed import _ownership
from computed.cmd import _base
from computed.registry import WorkerRecord
from computed.registry.api import STATE_DRAINING, TIER_UNTESTED, MoveRecord, utcnow

__all__ = [
    "ListWorkers",
    "ListHosts",
    "ListMoves",
    "DisableWorker",
    "EnableWorker",
    "DrainWorker",
    "DeleteWorker",
]


class ListWorkers(_base.Lister):
    """List workers: driver, status, RPC version, support tier, heartbeat and hosts."""

    columns = ("id", "driver", "status", "rpc_version", "tier", "heartbeat_age", "hosts")
    long_columns = (
        "driver_version",
        "group",
        "rpc_min_version",
        "state",
        "disabled",
        "disabled_reason",
        "support_tier",
        "machine",
        "pid",
        "started_at",
        "heartbeat_at",
        "capabilities",
    )

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        registry = self.registry()
        runs = registry.latest_conformance()
        down_time = self.conf.registry.down_time
        now = utcnow()
        for worker in registry.list_workers():
            run = runs.get((worker.driver, worker.driver_version))
            status = worker.status(down_time, now)
            yield dict(
                worker.to_json(),
                status=_base.Text(status, _status_text(worker, status)),
                tier=run.tier if run is not None else TIER_UNTESTED,
                heartbeat_age=_base.Text(worker.heartbeat_age(now), _age_text),
                hosts=_base.JoinedList(list(worker.hosts)),
                capabilities=_base.Text(worker.capabilities, json.dumps),
            )


class ListHosts(_base.Lister):
    """List hosts: the worker consuming each one's queue, its candidates, liveness.

    OWNER is what the registry records (the worker that claimed the host
    last); EXPECTED_OWNER is the owner the hash ring gives over the live
    candidates now, which differs only during a handover.
    """

    columns = ("host", "owner", "candidates", "driver", "group", "rpc_version", "alive")
    long_columns = ("owner_since", "expected_owner", "workers", "worker", "status")

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "--moves",
            action="store_true",
            help="also list the recent moves of host owners (table or --json)",
        )
        return parser

    def run(self, parsed_args: argparse.Namespace) -> int:
        if not parsed_args.moves:
            return super().run(parsed_args)
        moves = self.registry().list_moves(limit=20)
        if parsed_args.json:
            hosts = [_plain(row) for row in self.rows(parsed_args)]
            json.dump(
                {"hosts": hosts, "moves": [m.to_json() for m in moves]},
                self.app.stdout,
                indent=2,
            )
            self.app.stdout.write("\n")
            return 0
        if parsed_args.formatter != "table":
            raise ValueError(
                "--moves combines two listings and so goes with the table format or --json; "
                f"for -f {parsed_args.formatter}, run 'computedctl moves' on its own"
            )
        super().run(parsed_args)
        self.app.stdout.write("\n")
        parsed_args.columns = []
        names, rows = ListMoves.listing(moves)
        self.produce_output(parsed_args, names, rows)
        return 0

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        registry = self.registry()
        workers = registry.list_workers()
        owners = registry.list_owners()
        down_time = self.conf.registry.down_time
        now = utcnow()
        by_id = {w.id: w for w in workers}
        expected = _ownership.assignment(workers, down_time, now)
        for host in sorted({h for w in workers for h in w.hosts}):
            declared = sorted(w.id for w in workers if host in w.hosts)
            recorded = owners.get(host)
            owner_id = recorded.worker_id if recorded is not None else None
            ring_owner, candidates = expected.get(host, (None, []))
            serving = by_id.get(owner_id or "") or by_id.get(ring_owner or "") or by_id[declared[0]]
            yield {
                "host": host,
                "owner": owner_id,
                "owner_since": recorded.since.isoformat() + "Z" if recorded else None,
                "expected_owner": ring_owner,
                "candidates": _base.JoinedList(candidates),
                "workers": declared,
                "worker": serving.id,
                "driver": serving.driver,
                "group": serving.group or serving.driver,
                "rpc_version": serving.rpc_version,
                "status": serving.status(down_time, now),
                "alive": any(by_id[w].is_alive(down_time, now) for w in declared),
            }


class ListMoves(_base.Lister):
    """List recent changes of host owners, newest first (initial, takeover, rebalance)."""

    columns = ("moved_at", "host", "from_worker_id", "to_worker_id", "reason")

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--host", help="only this host")
        parser.add_argument("--limit", type=int, default=20, help="how many (default 20)")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        moves = self.registry().list_moves(limit=parsed_args.limit, host=parsed_args.host)
        return self.listing(moves)

    @classmethod
    def listing(cls, moves: Sequence[MoveRecord]) -> tuple[Sequence[str], list[list[Any]]]:
        rows = [
            dict(m.to_json(), moved_at=_base.Text(m.to_json()["moved_at"], _moved_at(m.moved_at)))
            for m in moves
        ]
        return cls.columns, [[row[name] for name in cls.columns] for row in rows]


class _WorkerAction(_base.Command):
    """An action on one worker, named by its id."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("worker_id", metavar="ID", help="the worker's id (computedctl workers)")
        return parser


class DisableWorker(_WorkerAction):
    """Stop routing calls to a worker: calls to its hosts fail at once."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--reason", default="disabled by an operator")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        self.registry().set_disabled(parsed_args.worker_id, True, parsed_args.reason)
        self.app.stdout.write(
            f"Worker {parsed_args.worker_id} disabled: calls to its hosts now fail at once.\n"
        )


class EnableWorker(_WorkerAction):
    """Route calls to a worker again."""

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        self.registry().set_disabled(parsed_args.worker_id, False)
        self.app.stdout.write(f"Worker {parsed_args.worker_id} enabled.\n")


class DrainWorker(_WorkerAction):
    """Before stopping a worker: clients hold its hosts' messages for the next worker."""

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        self.registry().set_state(parsed_args.worker_id, STATE_DRAINING)
        client = self.conf.client
        self.app.stdout.write(
            f"Worker {parsed_args.worker_id} marked draining: clients send nothing more to it "
            f"and hold messages for its hosts, up to {client.handover_timeout:g} s ([client] "
            "handover_timeout), until a worker serves them again; workers sharing its hosts "
            "take them over. Stop it once clients have re-read the registry ([client] "
            f"cache_ttl, {client.cache_ttl:g} s), then start its replacement.\n"
        )


class DeleteWorker(_WorkerAction):
    """Forget a worker that will not come back."""

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        self.registry().delete(parsed_args.worker_id)
        self.app.stdout.write(f"Worker {parsed_args.worker_id} deleted from the registry.\n")


def _status_text(worker: WorkerRecord, status: str) -> str:
    if status == "disabled" and worker.disabled_reason:
        return f"disabled ({worker.disabled_reason})"
    return status


def _age_text(age: float | None) -> str:
    return "-" if age is None else f"{age:.0f}s ago"


def _moved_at(moved_at: datetime.datetime) -> str:
    return f"{moved_at:%Y-%m-%d %H:%M:%S}"


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON has it."""
    return {
        key: value.machine_readable() if isinstance(value, columns.FormattableColumn) else value
        for key, value in row.items()
    }
