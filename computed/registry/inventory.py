"""Host inventory: what each host has and uses, as its worker measured it, and the disabled flag.

Workers write their hosts' measures (:meth:`Inventory.record_inventory`,
only rows that changed; :meth:`Inventory.confirm_inventory` stamps the
unchanged ones in one statement); operators set the disabled flag
(:meth:`Inventory.set_host_disabled`); the fleet API and ``computedctl
host list`` read it all in one query (:meth:`Inventory.list_inventory`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa

from computed import exception
from computed.registry import models
from computed.registry._db import Database, chunks, utcnow

__all__ = [
    "Inventory",
    "HostInventoryRecord",
    "HostFlag",
    "ROWS_PER_STATEMENT",
    "RESOURCES",
    "RATIOS",
]

#: Rows per statement: well under SQLite's limit on bound parameters.
ROWS_PER_STATEMENT = 200
#: A host's figures as the driver measures them (:class:`drivers.base.HostResources`).
RESOURCES = (
    "hypervisor_type",
    "hypervisor_version",
    "vcpus",
    "vcpus_used",
    "memory_mb",
    "memory_mb_used",
    "disk_gb",
    "disk_gb_used",
    "instances",
)
#: The worker's allocation ratios (:class:`computed._claims.Ratios`).
RATIOS = ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio")
#: The columns a worker writes.
_MEASURED = (
    "worker_id",
    "driver",
    "driver_version",
    "support_tier",
    "capabilities",
    *RESOURCES,
    *RATIOS,
    "measured_at",
)
#: The table, for Core statements: writing rows builds no ORM objects.
_TABLE = cast(sa.Table, models.HostInventory.__table__)


@dataclasses.dataclass(frozen=True)
class HostFlag:
    """An operator's word on a host."""

    disabled: bool
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class HostInventoryRecord:
    """A host's inventory row. Figures are None until a worker has measured the host."""

    host: str
    worker_id: str | None = None
    driver: str | None = None
    driver_version: str | None = None
    support_tier: str | None = None
    capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)
    hypervisor_type: str | None = None
    hypervisor_version: str | None = None
    vcpus: int | None = None
    vcpus_used: int | None = None
    memory_mb: int | None = None
    memory_mb_used: int | None = None
    disk_gb: int | None = None
    disk_gb_used: int | None = None
    instances: int | None = None
    cpu_allocation_ratio: float | None = None
    ram_allocation_ratio: float | None = None
    disk_allocation_ratio: float | None = None
    measured_at: datetime.datetime | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    disabled_at: datetime.datetime | None = None

    @property
    def measured(self) -> bool:
        return self.measured_at is not None

    def figures(self) -> tuple[Any, ...]:
        """What a worker writes, but the time of the measure: equal figures need no write."""
        return tuple(
            json.dumps(self.capabilities, sort_keys=True)
            if name == "capabilities"
            else getattr(self, name)
            for name in _MEASURED
            if name != "measured_at"
        )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("measured_at", "disabled_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat() + "Z"
        return data


class Inventory(Database):
    """The ``host_inventory`` table."""

    def record_inventory(self, records: Iterable[HostInventoryRecord]) -> int:
        """Write these hosts' measures (inserting rows as needed); the disabled flag stays.

        :returns: how many rows were written.
        """
        rows = [_measured_values(record) for record in records]
        if not rows:
            return 0
        insert = self._insert_new(_TABLE)
        upsert = insert.on_conflict_do_update(
            index_elements=["host"], set_={name: insert.excluded[name] for name in _MEASURED}
        )
        with self._connection() as connection:
            # One statement with many rows of parameters: compiled once, and
            # sent in batches of rows by SQLAlchemy ("insertmanyvalues").
            for chunk in chunks(rows, ROWS_PER_STATEMENT):
                connection.execute(upsert, list(chunk))
        return len(rows)

    def confirm_inventory(
        self, worker_id: str, hosts: Iterable[str], at: datetime.datetime | None = None
    ) -> None:
        """Record that these hosts were measured again at ``at`` and found unchanged."""
        hosts = sorted(hosts)
        if not hosts:
            return
        table = _TABLE
        with self._connection() as connection:
            for chunk in chunks(hosts, ROWS_PER_STATEMENT * 2):
                connection.execute(
                    sa.update(table)
                    .where(table.c.host.in_(chunk), table.c.worker_id == worker_id)
                    .values(measured_at=at or utcnow())
                )

    def host_flags(self, hosts: Iterable[str]) -> dict[str, HostFlag]:
        """The disabled flag of each of ``hosts`` that has one set.

        One query of the disabled hosts of the whole fleet (a few, usually),
        kept if they are among ``hosts``: cheaper than naming every host.
        """
        wanted = set(hosts)
        query = sa.select(_TABLE.c.host, _TABLE.c.disabled_reason).where(
            _TABLE.c.disabled.is_(True)
        )
        with self._connection() as connection:
            return {
                host: HostFlag(True, reason)
                for host, reason in connection.execute(query)
                if host in wanted
            }

    def set_host_disabled(self, host: str, disabled: bool, reason: str | None = None) -> None:
        """Disable a host (it takes no new instance) or enable it again.

        :raises computed.exception.RegistryError: if no worker declares the
            host and none has measured it (a misspelt name, most likely).
        """
        values = {
            "host": host,
            "disabled": disabled,
            "disabled_reason": reason if disabled else None,
            "disabled_at": utcnow() if disabled else None,
        }
        with self._connection() as connection:
            known = (
                connection.execute(
                    sa.select(models.WorkerHost.host).where(models.WorkerHost.host == host).limit(1)
                ).first()
                or connection.execute(
                    sa.select(models.HostInventory.host).where(models.HostInventory.host == host)
                ).first()
            )
            if known is None:
                raise exception.RegistryError(
                    reason=f"no worker declares host {host!r} (see 'computedctl hosts')"
                )
            insert = self._insert_new(models.HostInventory).values(values)
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["host"],
                    set_={name: insert.excluded[name] for name in values if name != "host"},
                )
            )

    def list_inventory(self) -> list[HostInventoryRecord]:
        """Every host's inventory row, by host name."""
        table = models.HostInventory.__table__
        with self._connection() as connection:
            rows = connection.execute(sa.select(table).order_by(table.c.host)).mappings()
            return [_record(row) for row in rows]


def _measured_values(record: HostInventoryRecord) -> dict[str, Any]:
    values: dict[str, Any] = {"host": record.host}
    for name in _MEASURED:
        value = getattr(record, name)
        values[name] = json.dumps(value, sort_keys=True) if name == "capabilities" else value
    values["measured_at"] = record.measured_at or utcnow()
    return values


def _record(row: Any) -> HostInventoryRecord:
    data = dict(row)
    data["capabilities"] = json.loads(data["capabilities"] or "{}")
    data["disabled"] = bool(data["disabled"])
    return HostInventoryRecord(**data)
