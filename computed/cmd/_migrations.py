"""``computedctl migration list|show|confirm|revert|abort|recover`` and
``computedctl host maintenance``: moves of instances.

Listing reads the registry; the actions run the move's next steps through
the client library (``ComputeAPI.migrations``), so ``computedctl`` needs
the brokers' URLs like any client (the same configuration files).
"""

from __future__ import annotations

import argparse
import contextlib
import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from computed.cmd import _base
from computed.registry.instance_migrations import MigrationRecord

if typing.TYPE_CHECKING:
    from rpcapi import ComputeAPI

__all__ = [
    "ListMigrations",
    "ShowMigration",
    "ConfirmMigration",
    "RevertMigration",
    "AbortMigration",
    "RecoverMigration",
    "HostMaintenance",
]

_COLUMNS = ("id", "instance_uuid", "kind", "source_host", "dest_host", "status", "updated_at")
_LONG_COLUMNS = ("flavor", "old_flavor", "created_at", "error")


class ListMigrations(_base.Lister):
    """List moves of instances (resizes, migrations, evacuations), newest first."""

    columns = _COLUMNS
    long_columns = _LONG_COLUMNS

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--host", help="only moves from or to this host")
        parser.add_argument("--instance", metavar="UUID", help="only moves of this instance")
        parser.add_argument(
            "--active", action="store_true", help="only moves in progress (or awaiting confirm)"
        )
        parser.add_argument("--limit", type=int, default=50, help="how many (default 50)")
        return parser

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        registry = self.registry()
        try:
            records = registry.list_migrations(
                instance_uuid=parsed_args.instance,
                host=parsed_args.host,
                active=True if parsed_args.active else None,
                limit=parsed_args.limit,
            )
        finally:
            registry.close()
        return (record.to_json() for record in records)


class ShowMigration(_base.ShowOne):
    """Show one move: its hosts, sizes, status and the error that stopped it, if any."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("migration_id", metavar="ID", help="the migration's id")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Sequence[Any]]:
        registry = self.registry()
        try:
            data = registry.get_migration(parsed_args.migration_id).to_json()
        finally:
            registry.close()
        names = _COLUMNS + _LONG_COLUMNS
        return names, [data[name] for name in names]


class _MigrationAction(_base.Command):
    """An action on one move, run through the client library."""

    #: What the action does, as a verb for the output (confirmed, reverted, ...).
    done = ""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("migration_id", metavar="ID", help="the migration's id")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        with _client(self) as api:
            record = self.act(api, parsed_args.migration_id)
        migration = record.migration
        self.app.stdout.write(
            f"{migration.describe()}: {record.status}"
            + (f" ({record.error})" if record.error else "")
            + "\n"
        )
        return 0

    def act(self, api: ComputeAPI, migration_id: str) -> MigrationRecord:
        raise NotImplementedError


class ConfirmMigration(_MigrationAction):
    """Keep a finished resize or cold migration: the source's copy is removed."""

    def act(self, api: ComputeAPI, migration_id: str) -> MigrationRecord:
        return api.migrations.confirm(None, migration_id)


class RevertMigration(_MigrationAction):
    """Undo a finished resize or cold migration: the instance goes back as it was."""

    def act(self, api: ComputeAPI, migration_id: str) -> MigrationRecord:
        return api.migrations.revert(None, migration_id)


class AbortMigration(_MigrationAction):
    """Ask the source to stop a live migration in progress."""

    def act(self, api: ComputeAPI, migration_id: str) -> MigrationRecord:
        return api.migrations.abort(None, migration_id)


class RecoverMigration(_MigrationAction):
    """Take up a move whose orchestrator stopped, where it stood (see docs/migration.md)."""

    def act(self, api: ComputeAPI, migration_id: str) -> MigrationRecord:
        return api.migrations.recover(None, migration_id)


class HostMaintenance(_base.Command):
    """Disable a host for new work and move its instances to other hosts of its driver.

    Live where an instance runs and the driver migrates live, else cold (and
    confirmed), each to the host of its driver with the most free memory
    that fits it. Prints a line per instance as it goes and exits 1 if any
    could not be moved; the host stays disabled (``computedctl host enable``).
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("host", metavar="HOST", help="the compute host to empty")
        parser.add_argument(
            "--reason", default="maintenance", help="why it is disabled (default: maintenance)"
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        def say(line: str) -> None:
            self.app.stdout.write(line + "\n")
            self.app.stdout.flush()

        with _client(self) as api:
            report = api.migrations.drain_host(
                None, parsed_args.host, parsed_args.reason, progress=say
            )
        for uuid, why in report.failed:
            self.app.stdout.write(f"not moved: {uuid}: {why}\n")
        return 1 if report.failed else 0


@contextlib.contextmanager
def _client(command: _base.Command) -> Iterator[ComputeAPI]:
    """A ComputeAPI on computedctl's configuration, cleaned up afterwards."""
    from rpcapi import ComputeAPI  # the client library: only the actions need it

    api = ComputeAPI(command.conf)
    try:
        yield api
    finally:
        api.cleanup()
