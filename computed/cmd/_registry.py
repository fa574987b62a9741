"""``computedctl registry grant``: a driver's database role on a PostgreSQL registry.

A driver's workers that connect with a role this command made a member of
the driver's group (``computed_driver_<driver>``) write only their own
driver's rows in the registry and read only its journal (docs/security.md).
Run it with the schema owner's connection (``[registry] connection``), or
print the SQL for a DBA with ``--sql``.
"""

from __future__ import annotations

import argparse

from computed.cmd import _base
from computed.registry import roles

__all__ = ["GrantDriver"]


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
