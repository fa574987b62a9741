"""``computedctl upgrade-status``: where a rolling upgrade stands.

Per worker: the RPC versions it speaks and serves. Per host: its workers,
the version a client with this configuration would send it now (the same
rule as :mod:`rpcapi`: its own version, the ``[upgrade_levels] compute`` pin
and what the workers consuming the host's queue report), and the counters
clients wrote to the registry: messages sent, backported and refused, per
version.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from cliff.formatters import table
from oslo_config import cfg

from computed import version
from computed.cmd import _base
from computed.conf import upgrade_levels
from computed.registry import Registry
from computed.registry.api import utcnow
from rpcapi import _pins
from rpcapi._resolver import HostResolver

__all__ = ["ShowUpgradeStatus"]

#: The report's two tables, drawn as every listing of computedctl draws its own.
_TABLES = table.TableFormatter()


class ShowUpgradeStatus(_base.Command):
    """Show versions, per-host caps and backported/refused counters of a rolling upgrade."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        _TABLES.add_argument_group(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        upgrade_levels.register_opts(self.conf)
        report = _report(self.conf)
        if parsed_args.json:
            json.dump(report, self.app.stdout, indent=2, sort_keys=True)
            self.app.stdout.write("\n")
            return
        self._print(report, parsed_args)

    def _print(self, report: dict[str, Any], parsed_args: argparse.Namespace) -> None:
        out = self.app.stdout
        out.write(
            f"[upgrade_levels] compute = {report['pin']}; clients of this release speak "
            f"{report['client_version']}"
            + (
                f"; minimum_worker_version = {report['minimum_worker_version']}"
                if report["minimum_worker_version"]
                else ""
            )
            + "\n\n"
        )
        worker_columns = ("worker", "driver", "status", "rpc_version", "serves_from")
        _TABLES.emit_list(
            worker_columns,
            [
                (w["id"], w["driver"], w["status"], w["rpc_version"], w["rpc_min_version"])
                for w in report["workers"]
            ],
            out,
            parsed_args,
        )
        out.write("\n")
        host_columns = ("host", "cap", "version", "sent", "backported", "refused", "workers")
        _TABLES.emit_list(host_columns, _host_rows(report["hosts"]), out, parsed_args)


def _report(conf: cfg.ConfigOpts) -> dict[str, Any]:
    pin = _pins.parse_pin(conf.upgrade_levels.compute)
    registry = Registry(conf.registry.connection)
    try:
        workers = registry.list_workers()
        counts = registry.list_call_counts()
    finally:
        registry.close()
    resolver = _Snapshot(workers, conf.registry.down_time)
    now = utcnow()
    by_host: dict[str, dict[str, Any]] = {}
    for worker in workers:
        for host in worker.hosts:
            entry = by_host.setdefault(host, {"host": host, "workers": [], "counts": {}})
            entry["workers"].append(
                {
                    "id": worker.id,
                    "rpc_version": worker.rpc_version,
                    "status": worker.status(conf.registry.down_time, now),
                }
            )
    for host, entry in by_host.items():
        consumers = resolver.consumers(host)
        if consumers:
            cap = _pins.host_cap(pin, consumers, resolver.live_workers())
            entry["cap"], entry["cap_reason"] = cap.version, cap.reason
        else:
            entry["cap"], entry["cap_reason"] = None, "no worker consumes its queue"
    for count in counts:
        entry = by_host.setdefault(count.host, {"host": count.host, "workers": [], "counts": {}})
        entry.setdefault("cap", None)
        entry.setdefault("cap_reason", "no worker has registered it")
        totals = entry["counts"].setdefault(
            count.rpc_version, {"sent": 0, "backported": 0, "refused": 0}
        )
        totals["sent"] += count.sent
        totals["backported"] += count.backported
        totals["refused"] += count.refused
    return {
        "pin": pin,
        "client_version": version.RPC_API_VERSION,
        "minimum_worker_version": conf.upgrade_levels.minimum_worker_version,
        "workers": [
            {
                "id": w.id,
                "driver": w.driver,
                "status": w.status(conf.registry.down_time, now),
                "rpc_version": w.rpc_version,
                "rpc_min_version": w.rpc_min_version,
                "hosts": list(w.hosts),
            }
            for w in workers
        ],
        "hosts": [by_host[h] for h in sorted(by_host)],
    }


class _Snapshot(HostResolver):
    """The client's view of the registry, built from one read."""

    def __init__(self, workers: list[Any], down_time: float) -> None:
        self._down_time = down_time
        self._index(workers)


def _host_rows(hosts: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per host and version it was sent; the host's own cells on its first row."""
    rows: list[tuple[str, ...]] = []
    for host in hosts:
        workers = ", ".join(
            f"{w['id']} {w['rpc_version']} ({w['status']})" for w in host["workers"]
        )
        versions = sorted(host["counts"], key=version.parse) or ["-"]
        for i, rpc_version in enumerate(versions):
            totals = host["counts"].get(rpc_version, {})
            rows.append(
                (
                    host["host"] if i == 0 else "",
                    (host["cap"] or "-") if i == 0 else "",
                    rpc_version,
                    str(totals.get("sent", "-")),
                    str(totals.get("backported", "-")),
                    str(totals.get("refused", "-")),
                    workers if i == 0 else "",
                )
            )
    return rows
