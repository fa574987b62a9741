"""Moves of instances: each resize, migration or evacuation, and where it stands.

The orchestrator (``rpcapi.migration``) records a move before its first
step and its status after each; a worker that takes a host over finds here
the evacuations it must clean up; operators list them with ``computedctl
migration list``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from computed import exception
from computed.objects import Migration, MigrationStatus
from computed.registry import models
from computed.registry._db import Database, utcnow

__all__ = ["InstanceMigrations", "MigrationRecord"]


@dataclasses.dataclass(frozen=True)
class MigrationRecord:
    """A move as the registry holds it."""

    migration: Migration
    status: str
    error: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime

    @property
    def id(self) -> str:
        return str(self.migration.id)

    @property
    def final(self) -> bool:
        return self.status in MigrationStatus.FINAL

    def to_json(self) -> dict[str, Any]:
        m = self.migration
        return {
            "id": self.id,
            "instance_uuid": m.instance_uuid,
            "kind": m.kind,
            "source_host": m.source_host,
            "dest_host": m.dest_host,
            "status": self.status,
            "flavor": str(m.flavor),
            "old_flavor": str(m.old_flavor),
            "error": self.error,
            "created_at": self.created_at.isoformat() + "Z",
            "updated_at": self.updated_at.isoformat() + "Z",
        }


class InstanceMigrations(Database):
    """The ``instance_migrations`` table."""

    def create_migration(self, migration: Migration) -> MigrationRecord:
        """Record a new move, ``accepted``.

        :raises computed.exception.InvalidRequest: if another move of the
            instance is not over yet (one move at a time per instance).
        """
        now = utcnow()
        try:
            with self._transaction() as session:
                busy = self._active(session, migration.instance_uuid)
                if busy is None:
                    row = models.InstanceMigration(
                        id=migration.id,
                        instance_uuid=migration.instance_uuid,
                        kind=migration.kind,
                        source_host=migration.source_host,
                        dest_host=migration.dest_host,
                        status=MigrationStatus.ACCEPTED,
                        migration=json.dumps(migration.obj_to_primitive()),
                        error=None,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    return _record(row)
        except exception.RegistryError as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise
            # Another orchestrator recorded a move of the instance meanwhile.
            with self._transaction() as session:
                busy = self._active(session, migration.instance_uuid)
            if busy is None:
                raise
        raise exception.InvalidRequest(
            operation=f"{migration.kind} migration",
            reason=f"instance {migration.instance_uuid} is already being moved "
            f"({busy.kind} migration {busy.id}, {busy.status}); confirm, revert "
            f"or recover it first",
        )

    @staticmethod
    def _active(session: orm.Session, instance_uuid: str) -> models.InstanceMigration | None:
        return session.scalars(
            sa.select(models.InstanceMigration).where(
                models.InstanceMigration.instance_uuid == instance_uuid,
                models.InstanceMigration.status.not_in(MigrationStatus.FINAL),
            )
        ).first()

    def update_migration(
        self,
        migration_id: str,
        status: str,
        migration: Migration | None = None,
        error: str | None = None,
        expect: Collection[str] | None = None,
        operation: str = "update",
    ) -> MigrationRecord:
        """Move a migration to ``status`` (with its object as the last step left it).

        :param expect: the statuses it may be in now; another raises
            InvalidMigrationState (two callers racing to move it on: one wins).
        :raises computed.exception.MigrationNotFound: if there is no such migration.
        """
        with self._transaction() as session:
            row = session.get(models.InstanceMigration, migration_id, with_for_update=True)
            if row is None:
                raise exception.MigrationNotFound(migration=migration_id)
            if expect is not None and row.status not in expect:
                raise exception.InvalidMigrationState(
                    migration=migration_id,
                    operation=operation,
                    status=row.status,
                    allowed=", ".join(sorted(expect)),
                )
            row.status = status
            if migration is not None:
                row.migration = json.dumps(migration.obj_to_primitive())
            if error is not None:
                row.error = error
            row.updated_at = utcnow()
            return _record(row)

    def get_migration(self, migration_id: str) -> MigrationRecord:
        """:raises computed.exception.MigrationNotFound: if there is no such migration."""
        with self._transaction() as session:
            row = session.get(models.InstanceMigration, migration_id)
            if row is None:
                raise exception.MigrationNotFound(migration=migration_id)
            return _record(row)

    def list_migrations(
        self,
        instance_uuid: str | None = None,
        host: str | None = None,
        source_host: str | None = None,
        kind: str | None = None,
        statuses: Collection[str] | None = None,
        active: bool | None = None,
        limit: int | None = None,
    ) -> list[MigrationRecord]:
        """Moves, newest first, filtered.

        :param host: moves from or to this host.
        :param active: only moves not over yet (True) or only those over (False).
        """
        table = models.InstanceMigration
        query = sa.select(table).order_by(table.created_at.desc(), table.id)
        if instance_uuid is not None:
            query = query.where(table.instance_uuid == instance_uuid)
        if host is not None:
            query = query.where(sa.or_(table.source_host == host, table.dest_host == host))
        if source_host is not None:
            query = query.where(table.source_host == source_host)
        if kind is not None:
            query = query.where(table.kind == kind)
        if statuses is not None:
            query = query.where(table.status.in_(list(statuses)))
        if active is True:
            query = query.where(table.status.not_in(MigrationStatus.FINAL))
        elif active is False:
            query = query.where(table.status.in_(MigrationStatus.FINAL))
        if limit is not None:
            query = query.limit(limit)
        with self._transaction() as session:
            return [_record(row) for row in session.scalars(query)]


def _record(row: models.InstanceMigration) -> MigrationRecord:
    migration = Migration.obj_from_primitive(json.loads(row.migration))
    return MigrationRecord(
        migration=migration,
        status=row.status,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
