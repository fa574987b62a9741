"""Host ownership: the worker consuming each host's queue now, and the history of moves."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa

from computed.registry import models
from computed.registry._db import Database, chunks, utcnow

__all__ = ["Ownership", "HostOwnerRecord", "MoveRecord"]

#: Rows per INSERT: well under SQLite's limit on bound parameters.
_HOSTS_PER_STATEMENT = 500
#: The tables, for Core statements: the hot paths build no ORM objects.
_OWNERS = cast(sa.Table, models.HostOwner.__table__)
_MOVES = cast(sa.Table, models.HostMove.__table__)


@dataclasses.dataclass(frozen=True)
class HostOwnerRecord:
    """The worker consuming a host's queue now (``worker_id`` None while handed over)."""

    host: str
    worker_id: str | None
    previous_worker_id: str | None
    since: datetime.datetime


@dataclasses.dataclass(frozen=True)
class MoveRecord:
    """One change of a host's owner; ``reason`` is initial, takeover or rebalance."""

    host: str
    from_worker_id: str | None
    to_worker_id: str
    reason: str
    moved_at: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["moved_at"] = self.moved_at.isoformat() + "Z"
        return data


class Ownership(Database):
    """The ``host_owners`` and ``host_moves`` tables."""

    def claim_hosts(self, worker_id: str, reasons: dict[str, str]) -> None:
        """Record that ``worker_id`` consumes these hosts' queues now, and the moves.

        Only rows that name another worker (or none) are written.

        :param reasons: ``{host: reason}``, the reason a move is recorded with
            (``takeover`` or ``rebalance``; a first owner's is ``initial``).
        """
        if not reasons:
            return
        now = utcnow()
        owners = _OWNERS
        with self._connection() as connection:
            rows = self._owner_rows(connection, list(reasons))
            missing = sorted(set(reasons) - set(rows))
            if missing:
                # Rows of hosts nobody has claimed yet, skipping those another
                # worker inserts at the same moment (workers starting
                # together); each row is then updated like any other.
                for chunk in chunks(missing, _HOSTS_PER_STATEMENT):
                    connection.execute(
                        self._insert_new(models.HostOwner)
                        .values([{"host": host, "since": now} for host in chunk])
                        .on_conflict_do_nothing(index_elements=["host"])
                    )
                rows.update(self._owner_rows(connection, missing))
            updates: list[dict[str, Any]] = []
            moves: list[dict[str, Any]] = []
            for host, reason in sorted(reasons.items()):
                holder, last = rows[host]
                if holder == worker_id:
                    continue
                previous = holder or last
                updates.append({"b_host": host, "previous_worker_id": previous})
                if previous != worker_id:
                    moves.append(
                        {
                            "host": host,
                            "from_worker_id": previous,
                            "to_worker_id": worker_id,
                            "reason": reason if previous else "initial",
                            "moved_at": now,
                        }
                    )
            if updates:
                connection.execute(
                    sa.update(owners)
                    .where(owners.c.host == sa.bindparam("b_host"))
                    .values(worker_id=worker_id, since=now),
                    updates,
                )
            if moves:
                connection.execute(sa.insert(_MOVES), moves)

    def confirm_hosts(self, worker_id: str, hosts: Iterable[str]) -> list[str]:
        """Say again that ``worker_id`` consumes these hosts; returns those whose record said otherwise.

        One read of the hosts recorded as the worker's (a column, no
        objects); a record that names another worker, or none, is claimed
        again (two workers starting together can each claim a host before
        seeing the other, and the one that gives it back leaves the record
        with no owner).
        """
        owners = _OWNERS
        query = sa.select(owners.c.host).where(owners.c.worker_id == worker_id)
        with self._connection() as connection:
            recorded = set(connection.scalars(query))
        wrong = sorted(set(hosts) - recorded)
        self.claim_hosts(worker_id, dict.fromkeys(wrong, "rebalance"))
        return wrong

    @staticmethod
    def _owner_rows(
        connection: sa.Connection, hosts: list[str]
    ) -> dict[str, tuple[str | None, str | None]]:
        """``{host: (worker_id, previous_worker_id)}`` of the rows these hosts have."""
        owners = _OWNERS
        rows: dict[str, tuple[str | None, str | None]] = {}
        for chunk in chunks(hosts, _HOSTS_PER_STATEMENT):
            query = sa.select(owners.c.host, owners.c.worker_id, owners.c.previous_worker_id).where(
                owners.c.host.in_(chunk)
            )
            rows.update((host, (holder, last)) for host, holder, last in connection.execute(query))
        return rows

    def claim_host(self, host: str, worker_id: str, reason: str) -> None:
        self.claim_hosts(worker_id, {host: reason})

    def release_hosts(self, hosts: list[str], worker_id: str) -> None:
        """Record that ``worker_id`` stopped consuming these hosts (those it still owned)."""
        if not hosts:
            return
        with self._transaction() as session:
            session.execute(
                sa.update(models.HostOwner)
                .where(models.HostOwner.host.in_(hosts), models.HostOwner.worker_id == worker_id)
                .values(worker_id=None, previous_worker_id=worker_id, since=utcnow())
            )

    def release_host(self, host: str, worker_id: str) -> None:
        self.release_hosts([host], worker_id)

    def list_owners(self) -> dict[str, HostOwnerRecord]:
        with self._connection() as connection:
            rows = connection.execute(sa.select(_OWNERS)).mappings()
            return {row["host"]: HostOwnerRecord(**row) for row in rows}

    def list_moves(self, limit: int = 50, host: str | None = None) -> list[MoveRecord]:
        """The newest ``limit`` moves, newest first."""
        query = sa.select(models.HostMove).order_by(models.HostMove.id.desc()).limit(limit)
        if host is not None:
            query = query.where(models.HostMove.host == host)
        with self._transaction() as session:
            return [
                MoveRecord(
                    host=row.host,
                    from_worker_id=row.from_worker_id,
                    to_worker_id=row.to_worker_id,
                    reason=row.reason,
                    moved_at=row.moved_at,
                )
                for row in session.scalars(query)
            ]
