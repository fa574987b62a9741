"""Workers: who they are, which hosts they can serve, and whether they are alive.

Workers register themselves, heartbeat and deregister; clients and the
operator CLI read :class:`WorkerRecord` snapshots. Records are plain data,
detached from any database session, so a client can cache them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy import orm

from computed import exception
from computed.registry import models
from computed.registry._db import Database, utcnow

__all__ = ["Workers", "WorkerRecord", "WorkerState", "STATE_UP", "STATE_DRAINING", "STATE_STOPPED"]

STATE_UP = "up"
STATE_DRAINING = "draining"
STATE_STOPPED = "stopped"

#: The tables, for Core statements.
_WORKERS = cast(sa.Table, models.Worker.__table__)
_HOSTS = cast(sa.Table, models.WorkerHost.__table__)


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
        return may_be_running(self.state, self.heartbeat_at, down_time, now or utcnow())

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


class WorkerState(NamedTuple):
    """A worker's row without its hosts: what :meth:`Workers.worker_states` reads."""

    id: str
    driver: str
    group: str
    pid: int
    state: str
    disabled: bool
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime

    def fresh(self, down_time: float, now: datetime.datetime) -> bool:
        """Whether its last heartbeat is within ``down_time`` of ``now``."""
        return _fresh(self.heartbeat_at, down_time, now)

    def may_be_running(self, down_time: float, now: datetime.datetime) -> bool:
        """As :meth:`WorkerRecord.may_be_running`."""
        return may_be_running(self.state, self.heartbeat_at, down_time, now)


def may_be_running(
    state: str, heartbeat_at: datetime.datetime | None, down_time: float, now: datetime.datetime
) -> bool:
    """Up or draining with a heartbeat within ``down_time`` of ``now``: a worker
    in that state may still be consuming or operating."""
    return state in (STATE_UP, STATE_DRAINING) and _fresh(heartbeat_at, down_time, now)


def _fresh(
    heartbeat_at: datetime.datetime | None, down_time: float, now: datetime.datetime
) -> bool:
    return heartbeat_at is not None and (now - heartbeat_at).total_seconds() <= down_time


class Workers(Database):
    """The ``workers`` and ``worker_hosts`` tables."""

    def register(self, record: WorkerRecord) -> WorkerRecord:
        """Insert or replace the worker's record and host list; mark it up now.

        Core statements: a worker declaring a thousand hosts writes them in
        one statement, with no object per host.
        """
        now = utcnow()
        values = {
            "driver": record.driver,
            "group": record.group,
            "driver_version": record.driver_version,
            "machine": record.machine,
            "pid": record.pid,
            "rpc_version": record.rpc_version,
            "rpc_min_version": record.rpc_min_version,
            "capabilities": json.dumps(record.capabilities, sort_keys=True),
            "support_tier": record.support_tier,
            "state": STATE_UP,
            "started_at": now,
            "heartbeat_at": now,
        }
        with self._connection() as connection:
            result = connection.execute(
                sa.update(_WORKERS).where(_WORKERS.c.id == record.id).values(values)
            )
            if not result.rowcount:
                connection.execute(
                    sa.insert(_WORKERS).values(id=record.id, disabled=False, **values)
                )
            connection.execute(sa.delete(_HOSTS).where(_HOSTS.c.worker_id == record.id))
            if record.hosts:
                connection.execute(
                    sa.insert(_HOSTS),
                    [{"worker_id": record.id, "host": host} for host in record.hosts],
                )
            query = sa.select(_WORKERS).where(_WORKERS.c.id == record.id)
            return _record(connection.execute(query).mappings().one(), record.hosts)

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
        """:raises computed.exception.RegistryError: if there is no such worker."""
        query = sa.select(_WORKERS).where(_WORKERS.c.id == worker_id)
        hosts = sa.select(_HOSTS.c.host).where(_HOSTS.c.worker_id == worker_id)
        with self._connection() as connection:
            row = connection.execute(query).mappings().one_or_none()
            if row is None:
                raise _not_registered(worker_id)
            return _record(row, connection.scalars(hosts))

    def list_workers(self) -> list[WorkerRecord]:
        """Every worker with its hosts, by id: two Core queries, no ORM objects."""
        workers, hosts = _WORKERS, _HOSTS
        declared: dict[str, list[str]] = {}
        with self._connection() as connection:
            rows = connection.execute(sa.select(workers).order_by(workers.c.id)).mappings().all()
            query = sa.select(hosts.c.worker_id, hosts.c.host).order_by(hosts.c.host)
            for worker_id, host in connection.execute(query):
                declared.setdefault(worker_id, []).append(host)
        return [_record(row, declared.get(row["id"], [])) for row in rows]

    def worker_states(self) -> list[WorkerState]:
        """What ownership depends on of each worker, but its hosts: one narrow query.

        A worker's hosts change only when it registers, which stamps
        ``started_at``: the states are a cheap way to tell that
        :meth:`list_workers` would answer as it did before.
        """
        columns = [_WORKERS.c[name] for name in WorkerState._fields]
        with self._connection() as connection:
            query = sa.select(*columns).order_by(_WORKERS.c.id)
            return [WorkerState(*row) for row in connection.execute(query)]

    @staticmethod
    def _get_row(session: orm.Session, worker_id: str) -> models.Worker:
        row = session.get(models.Worker, worker_id)
        if row is None:
            raise _not_registered(worker_id)
        return row


def _not_registered(worker_id: str) -> exception.RegistryError:
    return exception.RegistryError(reason=f"no worker {worker_id!r} is registered")


def _record(row: sa.RowMapping, hosts: Iterable[str]) -> WorkerRecord:
    """A record from a worker's row and its hosts."""
    return WorkerRecord(
        id=row["id"],
        driver=row["driver"],
        hosts=tuple(sorted(hosts)),
        rpc_version=row["rpc_version"],
        rpc_min_version=row["rpc_min_version"],
        support_tier=row["support_tier"],
        capabilities=json.loads(row["capabilities"] or "{}"),
        driver_version=row["driver_version"],
        machine=row["machine"],
        pid=row["pid"],
        state=row["state"],
        disabled=bool(row["disabled"]),
        disabled_reason=row["disabled_reason"],
        group=row["group"] or "",
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
    )
