"""Drivers' database roles: what lets a driver's workers write only their own driver's rows.

On PostgreSQL, revision 0008 installs the checks: a role that is a member
of a driver's group role (``computed_driver_<driver>``) may write only that
driver's rows in the tables workers write (those :data:`GUARD_TRIGGER`
guards), and of the hosts that driver's workers hold, and reads only that
driver's journal.
:meth:`DriverRoles.grant_driver` makes the group, grants it what a worker
needs and makes a login role its member; :func:`grant_sql` is the same as
SQL for a DBA. SQLite has no roles: whoever can open the file can write
anything in it (docs/security.md).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from computed import exception
from computed.registry._db import Database, safe_db_url

__all__ = ["DriverRoles", "ROLE_PREFIX", "GUARD_TRIGGER", "group_role", "grant_sql"]

#: A driver's group role is this prefix and the driver's name.
ROLE_PREFIX = "computed_driver_"

#: The trigger that guards each table a worker writes (revision 0008): a
#: driver's group is granted writes on exactly those tables.
GUARD_TRIGGER = "computed_2_check_write"

#: PostgreSQL truncates names beyond 63 bytes.
_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{63 - len(ROLE_PREFIX)}}}")
_LOGIN = re.compile(r"[^\x00]{1,63}")


def _quote(name: str) -> str:
    """``name`` as a PostgreSQL identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def group_role(driver: str) -> str:
    """The group role of ``driver``'s workers.

    :raises computed.exception.InvalidRequest: if the name cannot make a role name.
    """
    if not _NAME.fullmatch(driver):
        raise exception.InvalidRequest(
            operation="registry grant",
            reason=f"driver name {driver!r} cannot name a database role: letters, digits, "
            f"'_' and '-' only, at most {63 - len(ROLE_PREFIX)} of them",
        )
    return ROLE_PREFIX + driver


def grant_sql(driver: str, login_role: str, schema: str = "public") -> list[str]:
    """The statements that make ``driver``'s group role, grant it what a
    worker needs in ``schema``, and make ``login_role`` its member.

    Re-running them is harmless; run them again after an upgrade that adds
    tables.

    :raises computed.exception.InvalidRequest: if a name is unusable.
    """
    if not _LOGIN.fullmatch(login_role):
        raise exception.InvalidRequest(
            operation="registry grant", reason=f"{login_role!r} is not a role name"
        )
    group = _quote(group_role(driver))
    login = _quote(login_role)
    where = _quote(schema)
    in_literal = where.replace("'", "''")
    guarded = (
        "SELECT DISTINCT event_object_table FROM information_schema.triggers "
        f"WHERE trigger_name = '{GUARD_TRIGGER}' AND event_object_schema = "
        + "'"
        + schema.replace("'", "''")
        + "'"
    )
    return [
        f"DO $$ BEGIN CREATE ROLE {group} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        f"GRANT USAGE ON SCHEMA {where} TO {group}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {where} TO {group}",
        f"DO $$ DECLARE t text; BEGIN FOR t IN {guarded} LOOP EXECUTE "
        f"format('GRANT INSERT, UPDATE, DELETE ON {in_literal}.%I TO {group}', t); "
        "END LOOP; END $$",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {where} TO {group}",
        f"GRANT {group} TO {login}",
    ]


class DriverRoles(Database):
    """Drivers' group roles on a PostgreSQL registry."""

    def grant_driver(self, driver: str, login_role: str) -> list[str]:
        """Make ``driver``'s group role and ``login_role`` its member; returns the statements run.

        :raises computed.exception.RegistryError: if the registry is not on
            PostgreSQL, its schema lacks the checks (revision 0008), the
            login role does not exist, or this role may not grant.
        """
        self._require_checks()
        with self._connection() as connection:
            if not self._role_exists(connection, login_role):
                raise exception.RegistryError(
                    reason=f"{safe_db_url(self.url)}: role {login_role!r} does not exist: "
                    f"create it first (CREATE ROLE ... LOGIN PASSWORD '...')"
                )
            schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
            statements = grant_sql(driver, login_role, schema)
            for statement in statements:
                connection.exec_driver_sql(statement.replace("%", "%%"))
        return statements

    def driver_roles(self) -> dict[str, list[str]]:
        """Each driver's group role that exists, with its members: ``{driver: [role, ...]}``.

        Empty on SQLite, which has no roles.
        """
        if self.engine.dialect.name != "postgresql":
            return {}
        query = sa.text(
            "SELECT substr(g.rolname, :start), m.rolname FROM pg_roles g "
            "LEFT JOIN pg_auth_members a ON a.roleid = g.oid "
            "LEFT JOIN pg_roles m ON m.oid = a.member "
            "WHERE starts_with(g.rolname, :prefix) ORDER BY 1, 2"
        )
        roles: dict[str, list[str]] = {}
        with self._connection() as connection:
            rows = connection.execute(query, {"start": len(ROLE_PREFIX) + 1, "prefix": ROLE_PREFIX})
            for driver, member in rows:
                roles.setdefault(driver, [])
                if member is not None:
                    roles[driver].append(member)
        return roles

    def driver_checks_installed(self) -> bool:
        """Whether the registry refuses a driver's role another driver's rows (revision 0008
        on PostgreSQL). Always False on SQLite."""
        if self.engine.dialect.name != "postgresql":
            return False
        with self._connection() as connection:
            found = connection.execute(
                sa.text("SELECT to_regproc('computed_check_write') IS NOT NULL")
            ).scalar_one()
        return bool(found)

    def _require_checks(self) -> None:
        if self.engine.dialect.name != "postgresql":
            raise exception.RegistryError(
                reason=f"{safe_db_url(self.url)}: drivers' roles need a PostgreSQL registry; "
                "an SQLite file has no roles (its mode, 0600, is its only protection)"
            )
        if not self.driver_checks_installed():
            raise exception.RegistryError(
                reason=f"{safe_db_url(self.url)}: the schema lacks the drivers' checks "
                "(revision 0008): run 'computedctl db sync' first"
            )

    @staticmethod
    def _role_exists(connection: sa.Connection, role: str) -> bool:
        query = sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role")
        return connection.execute(query, {"role": role}).first() is not None
