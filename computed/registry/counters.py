"""Counters of the RPC messages clients sent, backported or refused, per host and version."""

from __future__ import annotations

import dataclasses
import datetime

import sqlalchemy as sa

from computed.registry import models
from computed.registry._db import Database, utcnow

__all__ = ["CallCounters", "CallCount"]


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


class CallCounters(Database):
    """The ``rpc_call_counts`` table, written by clients."""

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
