"""Recorded conformance runs, from which each driver version's support tier follows."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import sqlalchemy as sa

from computed.registry import models
from computed.registry._db import Database, utcnow

__all__ = ["ConformanceRuns", "ConformanceRecord", "TIER_UNTESTED"]

#: The tier of a driver version with no recorded conformance run.
TIER_UNTESTED = "untested"


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


class ConformanceRuns(Database):
    """The ``conformance_runs`` table."""

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
