"""``computedctl db sync|version``, ``tiers`` and ``drivers``: the registry schema, the
support tiers recorded in it, and the drivers installed beside computedctl."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

from computed.cmd import _base
from computed.driver_loader import NAMESPACE
from computed.registry import migration
from computed.registry.api import TIER_UNTESTED

__all__ = ["SyncSchema", "ShowSchemaVersion", "ListTiers", "ListDrivers"]


class SyncSchema(_base.Command):
    """Bring the registry schema up to date (workers do it at start by default)."""

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        registry = self.registry()
        registry.migrate()
        current = migration.current_revision(registry.engine)
        if current == migration.head_revision():
            self.app.stdout.write(f"Registry schema at revision {current}.\n")
        else:
            self.app.stdout.write(
                f"Registry schema at revision {current}, newer than this release's "
                f"{migration.head_revision()}; it has every table and column this release uses.\n"
            )


class ShowSchemaVersion(_base.ShowOne):
    """Show the registry schema's revision, and this release's newest."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Sequence[Any]]:
        current = migration.current_revision(self.registry().engine)
        head = migration.head_revision()
        if current is None:
            state = "no schema: run 'computedctl db sync'"
        elif current == head:
            state = "current"
        elif current in migration.known_revisions():
            state = "older than this release: run 'computedctl db sync'"
        else:
            state = "newer than this release: migrated by a later one"
        return ("current", "newest", "state"), (current, head, state)


class ListTiers(_base.Lister):
    """List each driver version's support tier, from recorded conformance runs."""

    columns = (
        "driver",
        "driver_version",
        "tier",
        "run_at",
        "passed",
        "failed",
        "skipped",
        "failing",
    )
    long_columns = ("rpc_version", "host")

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        registry = self.registry()
        runs = registry.latest_conformance()
        running = {(w.driver, w.driver_version) for w in registry.list_workers()}
        for _, run in sorted(runs.items()):
            row = run.to_json()
            yield dict(
                row,
                run_at=_base.Text(row["run_at"], f"{run.run_at:%Y-%m-%d %H:%M}"),
                failing=_base.JoinedList(list(run.failing)),
            )
        for driver, driver_version in sorted(running - set(runs)):
            untested = dict.fromkeys(self.columns + self.long_columns)
            yield dict(untested, driver=driver, driver_version=driver_version, tier=TIER_UNTESTED)


class ListDrivers(_base.Lister):
    """List the drivers installed in this environment, and where each comes from."""

    columns = ("name", "entry_point", "distribution")

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        for entry_point in sorted(
            metadata.entry_points(group=NAMESPACE), key=lambda e: (e.name, e.value)
        ):
            yield {
                "name": entry_point.name,
                "entry_point": entry_point.value,
                "distribution": entry_point.dist.name if entry_point.dist else None,
            }
