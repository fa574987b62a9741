"""``computedctl host list|disable|enable``: the host inventory and the operators' flag."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from computed.cmd import _base
from computed.objects.fleet import RESOURCES, capacity
from computed.registry.api import HostInventoryRecord, utcnow

__all__ = ["ListHostInventory", "DisableHost", "EnableHost"]


class ListHostInventory(_base.Lister):
    """List each host's inventory: what its worker measured, what is free, whether it is disabled.

    FREE is what the host can still take under its worker's allocation
    ratios; AGE is the time since its worker measured it.
    """

    columns = (
        "host",
        "driver",
        "status",
        "vcpus",
        "memory_mb",
        "disk_gb",
        "instances",
        "age",
    )
    long_columns = (
        "worker_id",
        "driver_version",
        "support_tier",
        "hypervisor_type",
        "hypervisor_version",
        "vcpus_used",
        "memory_mb_used",
        "disk_gb_used",
        "free_vcpus",
        "free_memory_mb",
        "free_disk_gb",
        "cpu_allocation_ratio",
        "ram_allocation_ratio",
        "disk_allocation_ratio",
        "alive",
        "disabled",
        "disabled_reason",
        "disabled_at",
        "measured_at",
    )

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        registry = self.registry()
        down_time = self.conf.registry.down_time
        now = utcnow()
        live = {h for w in registry.list_workers() if w.is_alive(down_time, now) for h in w.hosts}
        for record in registry.list_inventory():
            row = record.to_json()
            row["alive"] = record.host in live
            row["status"] = _status(record, record.host in live)
            age = (now - record.measured_at).total_seconds() if record.measured_at else None
            row["age"] = _base.Text(age, "-" if age is None else f"{age:.0f}s ago")
            for total, used, ratio in RESOURCES:
                free = _free(record, total, used, ratio)
                row[f"free_{total}"] = free
                row[total] = _base.Text(
                    free, f"{_text(free)} free of {_text(getattr(record, total))}"
                )
            yield row


class _HostAction(_base.Command):
    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("host", metavar="HOST", help="the host's name (computedctl hosts)")
        return parser


class DisableHost(_HostAction):
    """Take no new instance on a host: its worker refuses spawns (and incoming moves) with HostDisabled.

    What runs there keeps running, and the host still answers every other
    operation. Its worker learns the flag at its next heartbeat.
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--reason", default="disabled by an operator")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        self.registry().set_host_disabled(parsed_args.host, True, parsed_args.reason)
        self.app.stdout.write(
            f"Host {parsed_args.host} disabled: it takes no new instance once its worker has "
            f"read the flag, within heartbeat_interval ({self.conf.heartbeat_interval:g} s).\n"
        )


class EnableHost(_HostAction):
    """Let a disabled host take new instances again."""

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        self.registry().set_host_disabled(parsed_args.host, False)
        self.app.stdout.write(f"Host {parsed_args.host} enabled.\n")


def _status(record: HostInventoryRecord, alive: bool) -> _base.Text[str]:
    if record.disabled:
        return _base.Text("disabled", f"disabled ({record.disabled_reason})")
    if not record.measured:
        return _base.Text("unmeasured", "unmeasured")
    status = "up" if alive else "down"
    return _base.Text(status, status)


def _free(record: HostInventoryRecord, total: str, used: str, ratio: str) -> int | None:
    """What the host has free of a resource; None if unmeasured or not limited."""
    measured_total = getattr(record, total)
    if measured_total is None:
        return None
    limit = capacity(measured_total, getattr(record, ratio) or 0.0)
    return None if limit is None else max(limit - (getattr(record, used) or 0), 0)


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)
