"""Reading and writing the registry.

Workers register themselves, heartbeat and deregister; clients and the
operator CLI read :class:`WorkerRecord` snapshots. Records are plain data,
detached from any database session, so a client can cache them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, orm

from computed import exception
from computed.registry import migration, models

__all__ = [
    "Registry",
    "WorkerRecord",
    "ConformanceRecord",
    "CallCount",
    "HostOwnerRecord",
    "MoveRecord",
    "JournalRecord",
    "utcnow",
    "STATE_UP",
    "STATE_DRAINING",
    "STATE_STOPPED",
    "TIER_UNTESTED",
    "JOURNAL_RECEIVED",
    "JOURNAL_RUNNING",
    "JOURNAL_DONE",
]

LOG = logging.getLogger(__name__)

STATE_UP = "up"
STATE_DRAINING = "draining"
STATE_STOPPED = "stopped"

#: Journal states: the cast has been received but its operation has not
#: started; the driver is running the operation; the driver has returned.
JOURNAL_RECEIVED = "received"
JOURNAL_RUNNING = "running"
JOURNAL_DONE = "done"

#: The tier of a driver version with no recorded conformance run.
TIER_UNTESTED = "untested"


def utcnow() -> datetime.datetime:
    """Naive UTC now, the form timestamps are stored in."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class WorkerRecord:
    """A worker as the registry knows it."""

    id: str
    driver: str
    hosts: tuple[str, ...]
    rpc_version: str
    rpc_min_version: str
    support_tier: str
    capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)
    driver_version: str = ""
    machine: str = ""
    pid: int = 0
    state: str = STATE_UP
    disabled: bool = False
    disabled_reason: str | None = None
    #: Workers share hosts only within their driver and group ('' means the driver's name).
    group: str = ""
    started_at: datetime.datetime | None = None
    heartbeat_at: datetime.datetime | None = None

    def heartbeat_age(self, now: datetime.datetime | None = None) -> float | None:
        if self.heartbeat_at is None:
            return None
        return ((now or utcnow()) - self.heartbeat_at).total_seconds()

    def status(self, down_time: float, now: datetime.datetime | None = None) -> str:
        """One word for operators: up, down, draining, stopped or disabled."""
        if self.state != STATE_UP:
            return self.state
        if self.disabled:
            return "disabled"
        age = self.heartbeat_age(now)
        return "up" if age is not None and age <= down_time else "down"

    def is_alive(self, down_time: float, now: datetime.datetime | None = None) -> bool:
        return self.status(down_time, now) == "up"

    def may_be_running(self, down_time: float, now: datetime.datetime | None = None) -> bool:
        """Up or draining with a fresh heartbeat: it may still be consuming or operating."""
        if self.state not in (STATE_UP, STATE_DRAINING):
            return False
        age = self.heartbeat_age(now)
        return age is not None and age <= down_time

    @property
    def pool(self) -> tuple[str, str]:
        """The workers that share hosts: same driver, same group."""
        return (self.driver, self.group or self.driver)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hosts"] = list(self.hosts)
        for key in ("started_at", "heartbeat_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat() + "Z"
        return data


@dataclasses.dataclass(frozen=True)
class ConformanceRecord:
    """The outcome of one conformance run against one driver version."""

    driver: str
    driver_version: str
    rpc_version: str
    host: str
    passed: int
    failed: int
    skipped: int
    failing: tuple[str, ...]
    tier: str
    run_at: datetime.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failing"] = list(self.failing)
        data["run_at"] = self.run_at.isoformat() + "Z" if self.run_at else None
        return data


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


@dataclasses.dataclass(frozen=True)
class CallCount:
    """Messages one client sent to one host at one RPC version (see ``rpc_call_counts``)."""

    client: str
    host: str
    rpc_version: str
    sent: int = 0
    backported: int = 0
    refused: int = 0
    updated_at: datetime.datetime | None = None


class Registry:
    """The registry database behind one SQLAlchemy engine.

    :param url: an SQLAlchemy URL; SQLite files are opened in WAL mode with a
        busy timeout so that several processes can share them.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self, attempts: int = 5) -> None:
        """Bring the schema up to date; safe when several processes race to do it."""
        for attempt in range(1, attempts + 1):
            try:
                migration.upgrade(self.engine)
                return
            except sa.exc.SQLAlchemyError as exc:
                if self.is_current():
                    return
                if attempt == attempts:
                    raise exception.RegistryError(reason=f"schema migration failed: {exc}") from exc
                time.sleep(0.2 * attempt)

    def is_current(self) -> bool:
        try:
            return migration.current_revision(self.engine) == migration.head_revision()
        except sa.exc.SQLAlchemyError:
            return False

    # Workers ---------------------------------------------------------------

    def register(self, record: WorkerRecord) -> WorkerRecord:
        """Insert or replace the worker's record and host list; mark it up now."""
        now = utcnow()
        with self._transaction() as session:
            row = session.get(models.Worker, record.id)
            if row is None:
                row = models.Worker(id=record.id, disabled=False)
                session.add(row)
            row.driver = record.driver
            row.group = record.group
            row.driver_version = record.driver_version
            row.machine = record.machine
            row.pid = record.pid
            row.rpc_version = record.rpc_version
            row.rpc_min_version = record.rpc_min_version
            row.capabilities = json.dumps(record.capabilities, sort_keys=True)
            row.support_tier = record.support_tier
            row.state = STATE_UP
            row.started_at = now
            row.heartbeat_at = now
            row.hosts = [models.WorkerHost(host=host) for host in record.hosts]
            session.flush()
            return _record(row)

    def heartbeat(self, worker_id: str) -> bool:
        """Record that the worker is alive. Returns False if its record is gone."""
        with self._transaction() as session:
            result = session.execute(
                sa.update(models.Worker)
                .where(models.Worker.id == worker_id)
                .values(heartbeat_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def set_state(self, worker_id: str, state: str) -> None:
        """Record the worker's state; a change of state also counts as a heartbeat.

        :raises computed.exception.RegistryError: if there is no such worker.
        """
        with self._transaction() as session:
            result = session.execute(
                sa.update(models.Worker)
                .where(models.Worker.id == worker_id)
                .values(state=state, heartbeat_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise exception.RegistryError(reason=f"no worker {worker_id!r} is registered")

    def set_disabled(self, worker_id: str, disabled: bool, reason: str | None = None) -> None:
        """:raises computed.exception.RegistryError: if there is no such worker."""
        with self._transaction() as session:
            row = self._get_row(session, worker_id)
            row.disabled = disabled
            row.disabled_reason = reason if disabled else None

    def delete(self, worker_id: str) -> None:
        """:raises computed.exception.RegistryError: if there is no such worker."""
        with self._transaction() as session:
            session.delete(self._get_row(session, worker_id))

    def get(self, worker_id: str) -> WorkerRecord:
        with self._transaction() as session:
            return _record(self._get_row(session, worker_id))

    def list_workers(self) -> list[WorkerRecord]:
        with self._transaction() as session:
            rows = session.scalars(sa.select(models.Worker).order_by(models.Worker.id))
            return [_record(row) for row in rows]

    # Host ownership ------------------------------------------------------------

    def claim_hosts(self, worker_id: str, reasons: dict[str, str]) -> None:
        """Record that ``worker_id`` consumes these hosts' queues now, and the moves.

        :param reasons: ``{host: reason}``, the reason a move is recorded with
            (``takeover`` or ``rebalance``; a first owner's is ``initial``).
        """
        if not reasons:
            return
        now = utcnow()
        with self._transaction() as session:
            rows = {
                row.host: row
                for row in session.scalars(
                    sa.select(models.HostOwner).where(models.HostOwner.host.in_(list(reasons)))
                )
            }
            for host, reason in sorted(reasons.items()):
                row = rows.get(host)
                if row is None:
                    row = models.HostOwner(host=host, since=now)
                    session.add(row)
                if row.worker_id == worker_id:
                    continue
                previous = row.worker_id or row.previous_worker_id
                row.previous_worker_id = previous
                row.worker_id = worker_id
                row.since = now
                if previous != worker_id:
                    session.add(
                        models.HostMove(
                            host=host,
                            from_worker_id=previous,
                            to_worker_id=worker_id,
                            reason=reason if previous else "initial",
                            moved_at=now,
                        )
                    )

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
        with self._transaction() as session:
            return {row.host: _owner(row) for row in session.scalars(sa.select(models.HostOwner))}

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

    # Operation journal -----------------------------------------------------------

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

    # Conformance ---------------------------------------------------------------

    def record_conformance(self, record: ConformanceRecord) -> ConformanceRecord:
        """Store a run; the newest run of a driver version decides its tier."""
        run_at = record.run_at or utcnow()
        with self._transaction() as session:
            session.add(
                models.ConformanceRun(
                    driver=record.driver,
                    driver_version=record.driver_version,
                    rpc_version=record.rpc_version,
                    host=record.host,
                    run_at=run_at,
                    passed=record.passed,
                    failed=record.failed,
                    skipped=record.skipped,
                    failing=json.dumps(list(record.failing)),
                    tier=record.tier,
                )
            )
        return dataclasses.replace(record, run_at=run_at)

    def latest_conformance(self) -> dict[tuple[str, str], ConformanceRecord]:
        """The newest recorded run of every (driver, driver version)."""
        latest: dict[tuple[str, str], ConformanceRecord] = {}
        with self._transaction() as session:
            rows = session.scalars(
                sa.select(models.ConformanceRun).order_by(
                    models.ConformanceRun.run_at, models.ConformanceRun.id
                )
            )
            for row in rows:
                latest[(row.driver, row.driver_version)] = ConformanceRecord(
                    driver=row.driver,
                    driver_version=row.driver_version,
                    rpc_version=row.rpc_version,
                    host=row.host,
                    passed=row.passed,
                    failed=row.failed,
                    skipped=row.skipped,
                    failing=tuple(json.loads(row.failing)),
                    tier=row.tier,
                    run_at=row.run_at,
                )
        return latest

    # RPC call counters ---------------------------------------------------------

    def add_call_counts(self, counts: list[CallCount]) -> None:
        """Add each count to the stored totals of its (client, host, version)."""
        now = utcnow()
        with self._transaction() as session:
            for count in counts:
                key = (count.client, count.host, count.rpc_version)
                row = session.get(models.RPCCallCount, key)
                if row is None:
                    row = models.RPCCallCount(
                        client=count.client,
                        host=count.host,
                        rpc_version=count.rpc_version,
                        sent=0,
                        backported=0,
                        refused=0,
                    )
                    session.add(row)
                row.sent += count.sent
                row.backported += count.backported
                row.refused += count.refused
                row.updated_at = now

    def list_call_counts(self) -> list[CallCount]:
        with self._transaction() as session:
            rows = session.scalars(
                sa.select(models.RPCCallCount).order_by(
                    models.RPCCallCount.host,
                    models.RPCCallCount.rpc_version,
                    models.RPCCallCount.client,
                )
            )
            return [
                CallCount(
                    client=row.client,
                    host=row.host,
                    rpc_version=row.rpc_version,
                    sent=row.sent,
                    backported=row.backported,
                    refused=row.refused,
                    updated_at=row.updated_at,
                )
                for row in rows
            ]

    # -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[orm.Session]:
        """A session in a transaction; database failures become RegistryError."""
        with self._errors(), self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, for the hot paths: Core statements cost
        a fraction of an ORM session's CPU. Failures become RegistryError."""
        with self._errors(), self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0]
            if "no such table" in detail or "does not exist" in detail:
                detail += " (the schema is missing or old: run 'computedctl db sync')"
            raise exception.RegistryError(reason=f"{safe_db_url(self.url)}: {detail}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise exception.RegistryError(reason=f"{safe_db_url(self.url)}: {exc}") from exc

    @staticmethod
    def _get_row(session: orm.Session, worker_id: str) -> models.Worker:
        row = session.get(models.Worker, worker_id)
        if row is None:
            raise exception.RegistryError(reason=f"no worker {worker_id!r} is registered")
        return row


def safe_db_url(url: str) -> str:
    """The database URL without its password, fit for errors and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


def _record(row: models.Worker) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        driver=row.driver,
        hosts=tuple(sorted(h.host for h in row.hosts)),
        rpc_version=row.rpc_version,
        rpc_min_version=row.rpc_min_version,
        support_tier=row.support_tier,
        capabilities=json.loads(row.capabilities or "{}"),
        driver_version=row.driver_version,
        machine=row.machine,
        pid=row.pid,
        state=row.state,
        disabled=row.disabled,
        disabled_reason=row.disabled_reason,
        group=row.group or "",
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
    )


def _owner(row: models.HostOwner) -> HostOwnerRecord:
    return HostOwnerRecord(
        host=row.host,
        worker_id=row.worker_id,
        previous_worker_id=row.previous_worker_id,
        since=row.since,
    )


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


def _make_engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL loses no committed transaction when a process
        # dies, only (the last ones) when the machine does; FULL would
        # fsync every commit, the worker's main cost per cast.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
