"""The registry's entry point: :class:`Registry`, every concern over one engine.

Each concern lives in its own module, with its records: workers
(:mod:`~computed.registry.workers`), host ownership
(:mod:`~computed.registry.ownership`), the operation journal
(:mod:`~computed.registry.journal`), conformance runs
(:mod:`~computed.registry.conformance`), RPC call counters
(:mod:`~computed.registry.counters`), the host inventory
(:mod:`~computed.registry.inventory`), moves of instances
(:mod:`~computed.registry.instance_migrations`) and drivers' database roles
(:mod:`~computed.registry.roles`). Their names are importable from here
too.
"""

from __future__ import annotations

from computed.registry._db import safe_db_url, utcnow
from computed.registry.conformance import TIER_UNTESTED, ConformanceRecord, ConformanceRuns
from computed.registry.counters import CallCount, CallCounters
from computed.registry.instance_migrations import InstanceMigrations, MigrationRecord
from computed.registry.inventory import HostFlag, HostInventoryRecord, Inventory
from computed.registry.journal import (
    JOURNAL_DONE,
    JOURNAL_FINISHED,
    JOURNAL_RECEIVED,
    JOURNAL_RUNNING,
    JournalRecord,
    NewJournalEntry,
    OperationJournal,
)
from computed.registry.ownership import HostOwnerRecord, MoveRecord, Ownership
from computed.registry.roles import DriverRoles
from computed.registry.workers import (
    STATE_DRAINING,
    STATE_STOPPED,
    STATE_UP,
    WorkerRecord,
    Workers,
    WorkerState,
)

__all__ = [
    "Registry",
    "WorkerRecord",
    "WorkerState",
    "ConformanceRecord",
    "CallCount",
    "HostOwnerRecord",
    "MoveRecord",
    "MigrationRecord",
    "JournalRecord",
    "NewJournalEntry",
    "HostInventoryRecord",
    "HostFlag",
    "utcnow",
    "safe_db_url",
    "STATE_UP",
    "STATE_DRAINING",
    "STATE_STOPPED",
    "TIER_UNTESTED",
    "JOURNAL_RECEIVED",
    "JOURNAL_RUNNING",
    "JOURNAL_DONE",
    "JOURNAL_FINISHED",
]


class Registry(
    Workers,
    Ownership,
    OperationJournal,
    ConformanceRuns,
    CallCounters,
    Inventory,
    InstanceMigrations,
    DriverRoles,
):
    """The registry database behind one SQLAlchemy engine.

    :param url: an SQLAlchemy URL; SQLite files are opened in WAL mode with a
        busy timeout so that several processes can share them.
    """
