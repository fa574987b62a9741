"""SQLAlchemy models of the registry. Schema changes go through alembic migrations."""

from __future__ import annotations

import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy import text as sa_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Worker",
    "WorkerHost",
    "ConformanceRun",
    "RPCCallCount",
    "HostOwner",
    "HostMove",
    "JournalEntry",
    "JournalMessage",
    "HostInventory",
    "InstanceMigration",
]


class Base(DeclarativeBase):
    pass


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    driver: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column(String(255), default="")
    driver_version: Mapped[str] = mapped_column(String(64), default="")
    machine: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    rpc_version: Mapped[str] = mapped_column(String(16))
    rpc_min_version: Mapped[str] = mapped_column(String(16))
    capabilities: Mapped[str] = mapped_column(Text, default="{}")
    support_tier: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started_at: Mapped[datetime.datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime.datetime] = mapped_column(DateTime)

    hosts: Mapped[list[WorkerHost]] = relationship(
        back_populates="worker", cascade="all, delete-orphan", lazy="selectin"
    )


class WorkerHost(Base):
    __tablename__ = "worker_hosts"

    worker_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    )
    host: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)

    worker: Mapped[Worker] = relationship(back_populates="hosts")


class ConformanceRun(Base):
    """One run of the conformance suite against one driver version."""

    __tablename__ = "conformance_runs"
    __table_args__ = (Index("ix_conformance_runs_driver", "driver", "driver_version", "run_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    driver: Mapped[str] = mapped_column(String(64))
    driver_version: Mapped[str] = mapped_column(String(64))
    rpc_version: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    run_at: Mapped[datetime.datetime] = mapped_column(DateTime)
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    #: JSON list of the ids of the checks that failed.
    failing: Mapped[str] = mapped_column(Text)
    tier: Mapped[str] = mapped_column(String(32))


class RPCCallCount(Base):
    """Messages one client sent to one host at one RPC version, written by the client."""

    __tablename__ = "rpc_call_counts"

    client: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    rpc_version: Mapped[str] = mapped_column(String(16), primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    backported: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime)


class HostOwner(Base):
    """The worker consuming a host's queue now (none between a release and a claim)."""

    __tablename__ = "host_owners"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    worker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    previous_worker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    since: Mapped[datetime.datetime] = mapped_column(DateTime)


class HostMove(Base):
    """One change of a host's owner."""

    __tablename__ = "host_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    from_worker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    to_worker_id: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(64))
    moved_at: Mapped[datetime.datetime] = mapped_column(DateTime, index=True)


class JournalEntry(Base):
    """A lifecycle operation a worker received or started on a host and has not yet finished.

    Deleted when finished; its message id stays in ``journal_messages``.
    """

    __tablename__ = "operation_journal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    operation: Mapped[str] = mapped_column(String(64))
    instance_uuid: Mapped[str] = mapped_column(String(36))
    request_id: Mapped[str] = mapped_column(String(255))
    #: JSON of the request context, to report the outcome under the same request id.
    context: Mapped[str] = mapped_column(Text)
    #: JSON of the operation's arguments (versioned objects as primitives).
    arguments: Mapped[str] = mapped_column(Text)
    #: ``received`` until the operation starts (casts), ``running`` until the
    #: driver returns, then ``done`` until the outcome is published.
    state: Mapped[str] = mapped_column(String(16))
    worker_id: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime.datetime] = mapped_column(DateTime)
    #: The oslo.messaging id (``_unique_id``) of the message the operation came in.
    message_id: Mapped[str | None] = mapped_column(
        String(255), nullable=True, unique=True, index=True
    )
    #: JSON of the outcome once the driver returned (state ``done``): what a new
    #: owner publishes if this worker died before it did.
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The driver of the worker that journaled it; on PostgreSQL a trigger
    #: fills it, and a driver's database role reads only its own driver's
    #: entries (docs/security.md).
    driver: Mapped[str | None] = mapped_column(String(64), nullable=True)


class JournalMessage(Base):
    """A message whose operation was journaled, kept after the operation finished.

    A tombstone (``finished_at`` set) lets a worker recognise a redelivered
    message; it lives apart from ``operation_journal`` because a worker of
    an earlier release reads every row there as an operation in flight.
    """

    __tablename__ = "journal_messages"

    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime.datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime, nullable=True, index=True
    )
    #: As ``operation_journal.driver``; None for a message journaled before
    #: the registry knew drivers' roles.
    driver: Mapped[str | None] = mapped_column(String(64), nullable=True)


class HostInventory(Base):
    """One host's resources as its worker last measured them, and the operator's flag.

    The worker that serves the host writes the measure (every column but
    ``disabled*``); an operator writes ``disabled*`` (``computedctl host
    disable``), which a row may hold before any worker has measured the host.
    """

    __tablename__ = "host_inventory"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    worker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    driver: Mapped[str | None] = mapped_column(String(64), nullable=True)
    driver_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    support_tier: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: JSON: ``{"operations": [...], "features": [...]}``.
    capabilities: Mapped[str | None] = mapped_column(Text, nullable=True)
    hypervisor_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hypervisor_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vcpus_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mb_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disk_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disk_gb_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cpu_allocation_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    ram_allocation_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    disk_allocation_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: When the worker last measured the host (None: never).
    measured_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    disabled_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)


#: A move not over yet: one per instance at most (MigrationStatus.FINAL).
_ACTIVE_MIGRATION = (
    "status NOT IN ('confirmed', 'reverted', 'completed', 'aborted', 'cleaned', 'error')"
)


class InstanceMigration(Base):
    """One move of an instance (``computed.objects.Migration``) and where it stands."""

    __tablename__ = "instance_migrations"
    __table_args__ = (
        Index(
            "ix_instance_migrations_one_active",
            "instance_uuid",
            unique=True,
            sqlite_where=sa_text(_ACTIVE_MIGRATION),
            postgresql_where=sa_text(_ACTIVE_MIGRATION),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    source_host: Mapped[str] = mapped_column(String(255), index=True)
    dest_host: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    #: The Migration object as its JSON primitive.
    migration: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime)
