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
import sys
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from computed import version
from computed.conf import upgrade_levels
from computed.registry import Registry
from computed.registry.api import utcnow
from rpcapi import _pins
from rpcapi._resolver import HostResolver

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "upgrade-status",
        help="versions, per-host caps and backported/refused counters of a rolling upgrade",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_upgrade_status)


def _upgrade_status(args: argparse.Namespace, conf: cfg.ConfigOpts) -> None:
    upgrade_levels.register_opts(conf)
    report = _report(conf)
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        print()
        return
    _print(report)


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
        self._by_host = {}
        for worker in workers:
            for host in worker.hosts:
                self._by_host.setdefault(host, []).append(worker)


def _print(report: dict[str, Any]) -> None:
    print(
        f"[upgrade_levels] compute = {report['pin']}; clients of this release speak "
        f"{report['client_version']}"
        + (
            f"; minimum_worker_version = {report['minimum_worker_version']}"
            if report["minimum_worker_version"]
            else ""
        )
    )
    print()
    rows = [
        (w["id"], w["driver"], w["status"], w["rpc_version"], w["rpc_min_version"])
        for w in report["workers"]
    ]
    _table(("WORKER", "DRIVER", "STATUS", "RPC", "SERVES FROM"), rows)
    print()
    host_rows: list[tuple[str, ...]] = []
    for host in report["hosts"]:
        workers = ", ".join(
            f"{w['id']} {w['rpc_version']} ({w['status']})" for w in host["workers"]
        )
        versions = sorted(host["counts"], key=version.parse) or ["-"]
        for i, rpc_version in enumerate(versions):
            totals = host["counts"].get(rpc_version, {})
            host_rows.append(
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
    _table(("HOST", "CAP", "VERSION", "SENT", "BACKPORTED", "REFUSED", "WORKERS"), host_rows)
    if not report["hosts"]:
        print("No host is registered yet.")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
