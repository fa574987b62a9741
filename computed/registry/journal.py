"""The operation journal: lifecycle operations in flight on each host, keyed by message.

A worker journals each lifecycle message before acknowledging it, keyed
by its oslo.messaging id (:meth:`OperationJournal.journal_receive`, state
``received``), marks the entry ``running`` when the operation reaches the
driver and ``done`` when the driver returns, and finishes it once the
outcome is published (:meth:`~OperationJournal.journal_finish`). Finishing
removes the entry and keeps its message id as a tombstone (``finished``)
until :meth:`~OperationJournal.journal_purge`, so that a redelivered
message is recognised: the journal takes a message id once.

Tombstones live in their own table, ``journal_messages``: a worker of the
previous release reads every row of ``operation_journal`` as an operation
in flight, and would reconcile a finished one. How a worker uses the
journal is told in :mod:`computed._journal`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from computed import exception
from computed.registry import models
from computed.registry._db import (
    Database,
    DriverCursor,
    DriverStatement,
    chunks,
    insert_new,
    utcnow,
)

__all__ = [
    "OperationJournal",
    "JournalRecord",
    "NewJournalEntry",
    "JOURNAL_RECEIVED",
    "JOURNAL_RUNNING",
    "JOURNAL_DONE",
    "JOURNAL_FINISHED",
]

#: Journal states: the message has been received but its operation has not
#: started; the driver is running the operation; the driver has returned;
#: the outcome is published (only the message id remains, a tombstone).
JOURNAL_RECEIVED = "received"
JOURNAL_RUNNING = "running"
JOURNAL_DONE = "done"
JOURNAL_FINISHED = "finished"

#: The columns of an entry but its id, message id and outcome (what :func:`_row` gives).
_ENTRY_COLUMNS = (
    "host",
    "operation",
    "instance_uuid",
    "request_id",
    "context",
    "arguments",
    "state",
    "worker_id",
    "pid",
    "started_at",
)

#: Ids per ``IN (...)`` list: SQLite binds at most 32,766 parameters per statement.
_IDS_PER_STATEMENT = 1000


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
    #: The id of the message the operation came in (None for one journaled without).
    message_id: str | None = None
    #: Once ``done``: the outcome to publish (``phase``, then ``power_state`` or the error).
    outcome: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class NewJournalEntry:
    """A lifecycle message to journal (see :meth:`OperationJournal.journal_receive`)."""

    host: str
    operation: str
    instance_uuid: str
    request_id: str
    #: The request context, to report the outcome under the same request id.
    context: dict[str, Any]
    #: The operation's arguments as primitives (what a replay needs).
    arguments: dict[str, Any]
    worker_id: str
    pid: int
    #: The message's oslo.messaging id (``_unique_id``).
    message_id: str
    state: str = JOURNAL_RECEIVED


class OperationJournal(Database):
    """The ``operation_journal`` and ``journal_messages`` tables."""

    def journal_receive(self, entries: Sequence[NewJournalEntry]) -> list[int | None]:
        """Journal messages, all in one transaction; returns each one's entry id, in order.

        A message whose id the journal already holds (an entry in any state,
        or a finished one's tombstone), or that comes earlier in ``entries``,
        is not journaled again: its position gets None. When several
        processes journal the same message at once, one of them gets its id.

        :raises computed.exception.RegistryError: if the journal cannot be
            written (then none of ``entries`` is journaled).
        """
        first: dict[str, int] = {}
        for position, entry in enumerate(entries):
            first.setdefault(entry.message_id, position)
        if not first:
            return []
        now = utcnow()
        with self._driver_transaction() as cursor:
            # Sorted, so that two transactions taking overlapping ids wait on
            # each other's in the same order on PostgreSQL, never deadlock.
            taken = [m for m in sorted(first) if _take_message_id(cursor, m, now)]
            ids = {m: _insert_entry(cursor, entries[first[m]], now) for m in taken}
        return [
            ids.get(entry.message_id) if first[entry.message_id] == position else None
            for position, entry in enumerate(entries)
        ]

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
        message_id: str | None = None,
    ) -> int:
        """Record an operation about to reach the driver; returns the entry's id.

        :param state: ``received`` for a message journaled before its operation starts.
        :param message_id: the id of the message the operation came in, if it is to
            be journaled once only (:meth:`journal_receive` tells duplicates apart).
        :raises computed.exception.RegistryError: if the journal cannot be
            written, or already holds ``message_id``.
        """
        fields = (host, operation, instance_uuid, request_id, context, arguments, worker_id, pid)
        if message_id is not None:
            (entry_id,) = self.journal_receive([NewJournalEntry(*fields, message_id, state)])
            if entry_id is None:
                raise exception.RegistryError(reason=f"message {message_id} is already journaled")
            return entry_id
        with self._connection() as connection:
            row = _row(NewJournalEntry(*fields, message_id="", state=state), utcnow())
            result = connection.execute(sa.insert(models.JournalEntry).values(row))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def journal_done(
        self,
        entry_id: int,
        outcome: dict[str, Any] | None = None,
        finish: Sequence[int] = (),
    ) -> None:
        """The driver returned with ``outcome``; only publishing it remains.

        :param finish: entries to finish in the same transaction (see
            :meth:`journal_finish`): one commit for both.
        """
        state = {"entry_id": entry_id, "state": JOURNAL_DONE}
        with self._driver_transaction() as cursor:
            cursor.execute(
                _SET_STATE, [state | {"outcome": json.dumps(outcome) if outcome else None}]
            )
            _finish(cursor, finish)

    def journal_start(self, entry_id: int, finish: Sequence[int] = ()) -> None:
        """A received cast's operation is about to reach the driver.

        :param finish: entries to finish in the same transaction.
        """
        with self._driver_transaction() as cursor:
            cursor.execute(
                _SET_STATE, [{"entry_id": entry_id, "state": JOURNAL_RUNNING, "outcome": None}]
            )
            _finish(cursor, finish)

    def journal_finish(self, entry_ids: int | Sequence[int]) -> None:
        """The outcomes are published: remove the entries, all in one transaction,
        and keep their message ids as tombstones until :meth:`journal_purge`."""
        ids = [entry_ids] if isinstance(entry_ids, int) else list(entry_ids)
        with self._driver_transaction() as cursor:
            _finish(cursor, ids)

    def journal_purge(self, before: datetime.datetime) -> int:
        """Forget the tombstones of messages finished before ``before``; returns how many.

        A message whose entry an earlier release deleted without marking it
        finished counts as finished when it was received.
        """
        message, entry = models.JournalMessage, models.JournalEntry
        unfinished_gone = sa.and_(
            message.finished_at.is_(None),
            message.received_at < before,
            ~sa.exists().where(entry.message_id == message.message_id),
        )
        with self._connection() as connection:
            result = connection.execute(
                sa.delete(message).where(sa.or_(message.finished_at < before, unfinished_gone))
            )
            return int(result.rowcount)

    def journal_message_states(self, message_ids: Sequence[str]) -> dict[str, str]:
        """The journal state of each of these messages it holds (``finished``: a tombstone)."""
        message, entry = models.JournalMessage, models.JournalEntry
        states: dict[str, str] = {}
        with self._connection() as connection:
            for chunk in chunks(sorted(set(message_ids)), _IDS_PER_STATEMENT):
                rows = connection.execute(
                    sa.select(message.message_id, entry.state)
                    .outerjoin(entry, entry.message_id == message.message_id)
                    .where(message.message_id.in_(chunk))
                )
                states.update((m, state or JOURNAL_FINISHED) for m, state in rows)
        return states

    def journal_entries(self, host: str | None = None) -> list[JournalRecord]:
        """The entries not finished yet, of ``host`` or of every host, oldest first."""
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


# The statements each lifecycle operation runs, built once and run on the
# driver's cursor (see Database._driver_transaction).

_SET_STATE = DriverStatement(
    sa.update(models.JournalEntry)
    .where(models.JournalEntry.id == sa.bindparam("entry_id"))
    .values(state=sa.bindparam("state"), outcome=sa.bindparam("outcome"))
)

#: One row each, run as one ``executemany``: an ``IN`` list is compiled again
#: for each length, which cost more than the rows.
_MARK_FINISHED = DriverStatement(
    sa.update(models.JournalMessage)
    .where(
        models.JournalMessage.message_id
        == sa.select(models.JournalEntry.message_id)
        .where(models.JournalEntry.id == sa.bindparam("entry_id"))
        .scalar_subquery()
    )
    .values(finished_at=sa.bindparam("now", type_=models.JournalMessage.finished_at.type))
)
_DELETE_ENTRY = DriverStatement(
    sa.delete(models.JournalEntry).where(models.JournalEntry.id == sa.bindparam("entry_id"))
)


#: Records a message id unless the journal holds it already; returns it if it did not.
_TAKE_MESSAGE_ID = DriverStatement(
    lambda dialect: (
        insert_new(dialect, models.JournalMessage)
        .values(
            message_id=sa.bindparam("message_id"),
            received_at=sa.bindparam("received_at", type_=models.JournalMessage.received_at.type),
        )
        .on_conflict_do_nothing(index_elements=[models.JournalMessage.message_id])
        .returning(models.JournalMessage.message_id)
    )
)
_INSERT_ENTRY = DriverStatement(
    sa.insert(models.JournalEntry)
    .values(
        {
            column: sa.bindparam(column, type_=models.JournalEntry.__table__.c[column].type)
            for column in (*_ENTRY_COLUMNS, "message_id")
        }
    )
    .returning(models.JournalEntry.id)
)


def _take_message_id(cursor: DriverCursor, message_id: str, now: datetime.datetime) -> bool:
    """Record ``message_id`` in the journal; False if it held it already."""
    return bool(cursor.fetch(_TAKE_MESSAGE_ID, {"message_id": message_id, "received_at": now}))


def _insert_entry(cursor: DriverCursor, entry: NewJournalEntry, now: datetime.datetime) -> int:
    """Insert the entry of a message whose id was just taken; returns its id."""
    row = _row(entry, now) | {"message_id": entry.message_id}
    ((entry_id,),) = cursor.fetch(_INSERT_ENTRY, row)
    return int(entry_id)


def _finish(cursor: DriverCursor, ids: Sequence[int]) -> None:
    """Finish entries in ``cursor``'s transaction: tombstones for their messages."""
    now = utcnow()
    cursor.execute(_MARK_FINISHED, [{"entry_id": i, "now": now} for i in ids])
    cursor.execute(_DELETE_ENTRY, [{"entry_id": i} for i in ids])


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
        message_id=row.message_id,
        outcome=json.loads(row.outcome) if row.outcome else None,
    )


def _row(entry: NewJournalEntry, now: datetime.datetime) -> dict[str, Any]:
    """The entry's columns, but for its message id."""
    return {
        "host": entry.host,
        "operation": entry.operation,
        "instance_uuid": entry.instance_uuid,
        "request_id": entry.request_id,
        "context": json.dumps(entry.context, default=str),
        "arguments": json.dumps(entry.arguments),
        "state": entry.state,
        "worker_id": entry.worker_id,
        "pid": entry.pid,
        "started_at": now,
    }
