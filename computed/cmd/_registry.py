"""``computedctl registry grant``: a driver's database role on a PostgreSQL registry;
``computedctl registry key``: a key to seal the journal's secrets with.

A driver's workers that connect with a role this command made a member of
the driver's group (``computed_driver_<driver>``) write only their own
driver's rows in the registry and read only its journal (docs/security.md).
Run it with the schema owner's connection (``[registry] connection``), or
print the SQL for a DBA with ``--sql``.
"""

from __future__ import annotations

import argparse
import os

from computed.cmd import _base
from computed.registry import roles

__all__ = ["GrantDriver", "NewKey"]


class GrantDriver(_base.Command):
    """Let a login role write the registry as one driver's workers, and only as them."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("driver", metavar="DRIVER", help="the driver's name, as in 'drivers'")
        parser.add_argument(
            "role", metavar="ROLE", help="the existing login role the driver's workers connect as"
        )
        parser.add_argument(
            "--sql",
            action="store_true",
            help="print the SQL instead of running it (for a DBA; nothing is connected to)",
        )
        parser.add_argument(
            "--schema",
            default="public",
            help="with --sql: the registry's schema (default public); without it, the "
            "connection's own is used",
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        driver, role = parsed_args.driver, parsed_args.role
        if parsed_args.sql:
            for statement in roles.grant_sql(driver, role, parsed_args.schema):
                self.app.stdout.write(f"{statement};\n")
            return
        registry = self.registry()
        try:
            registry.grant_driver(driver, role)
        finally:
            registry.close()
        self.app.stdout.write(
            f"Role {role} is a member of {roles.group_role(driver)}: workers connecting as "
            f"{role} write only driver {driver}'s rows in the registry. Give them its "
            "credentials in [registry] connection.\n"
        )


class NewKey(_base.Command):
    """Write a new key for [registry] journal_key_file, readable by its owner only."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("path", metavar="PATH", help="the file to create; it must not exist")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        from cryptography.fernet import Fernet

        path = parsed_args.path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise RuntimeError(f"cannot create {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key() + b"\n")
        self.app.stdout.write(
            f"Wrote a new key to {path} (mode 0600). Give every worker of a driver the same "
            f"file in [registry] journal_key_file, readable by the worker's user only.\n"
        )
