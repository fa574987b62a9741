"""The operation journal: lifecycle operations in flight on each host.

How a worker uses it is told in :mod:`computed._journal`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import sqlalchemy as sa

from computed.registry import models
from computed.registry._db import Database, utcnow

__all__ = [
    "OperationJournal",
    "JournalRecord",
    "JOURNAL_RECEIVED",
    "JOURNAL_RUNNING",
    "JOURNAL_DONE",
]

#: Journal states: the cast has been received but its operation has not
#: started; the driver is running the operation; the driver has returned.
JOURNAL_RECEIVED = "received"
JOURNAL_RUNNING = "running"
JOURNAL_DONE = "done"


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """A lifecycle operation in flight on a host (see ``operation_journal``)."""

    id: int
    host: str
    operation: str
    instance_uuid: str
    request_id: str
    context: dict[str, Any]
    arguments: dict[str, Any]
    state: str
    worker_id: str
    pid: int
    started_at: datetime.datetime


class OperationJournal(Database):
    """The ``operation_journal`` table."""

    def journal_begin(
        self,
        host: str,
        operation: str,
        instance_uuid: str,
        request_id: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
        worker_id: str,
        pid: int,
        state: str = JOURNAL_RUNNING,
    ) -> int:
        """Record an operation about to reach the driver; returns the entry's id.

        :param state: ``received`` for a cast journaled before its operation starts.
        """
        with self._connection() as connection:
            result = connection.execute(
                sa.insert(models.JournalEntry).values(
                    host=host,
                    operation=operation,
                    instance_uuid=instance_uuid,
                    request_id=request_id,
                    context=json.dumps(context, default=str),
                    arguments=json.dumps(arguments),
                    state=state,
                    worker_id=worker_id,
                    pid=pid,
                    started_at=utcnow(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def journal_done(self, entry_id: int) -> None:
        """The driver returned; only the outcome remains to be published."""
        self._journal_state(entry_id, JOURNAL_DONE)

    def journal_start(self, entry_id: int) -> None:
        """A received cast's operation is about to reach the driver."""
        self._journal_state(entry_id, JOURNAL_RUNNING)

    def _journal_state(self, entry_id: int, state: str) -> None:
        with self._connection() as connection:
            connection.execute(
                sa.update(models.JournalEntry)
                .where(models.JournalEntry.id == entry_id)
                .values(state=state)
            )

    def journal_finish(self, entry_id: int) -> None:
        with self._connection() as connection:
            connection.execute(
                sa.delete(models.JournalEntry).where(models.JournalEntry.id == entry_id)
            )

    def journal_entries(self, host: str | None = None) -> list[JournalRecord]:
        query = sa.select(models.JournalEntry).order_by(models.JournalEntry.id)
        if host is not None:
            query = query.where(models.JournalEntry.host == host)
        with self._transaction() as session:
            return [_journal(row) for row in session.scalars(query)]

    def journal_adopt(self, entry: JournalRecord, worker_id: str, pid: int) -> bool:
        """Take over an orphaned entry; False if another worker adopted it first."""
        with self._transaction() as session:
            result = session.execute(
                sa.update(models.JournalEntry)
                .where(
                    models.JournalEntry.id == entry.id,
                    models.JournalEntry.worker_id == entry.worker_id,
                    models.JournalEntry.pid == entry.pid,
                )
                .values(worker_id=worker_id, pid=pid)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]


def _journal(row: models.JournalEntry) -> JournalRecord:
    return JournalRecord(
        id=row.id,
        host=row.host,
        operation=row.operation,
        instance_uuid=row.instance_uuid,
        request_id=row.request_id,
        context=json.loads(row.context),
        arguments=json.loads(row.arguments),
        state=row.state,
        worker_id=row.worker_id,
        pid=row.pid,
        started_at=row.started_at,
    )
