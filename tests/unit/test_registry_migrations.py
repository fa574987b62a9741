"""The registry's record of moves: one active move per instance, whatever races.

Each check takes the URL of an empty database; here they run on SQLite,
and ``tests/functional/test_registry_postgresql.py`` runs them on PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from computed import exception
from computed.objects import Flavor, Migration, MigrationStatus
from computed.registry import Registry, models

INSTANCE = "5b0c6f0e-3f8e-4e36-9a52-6cf0b8c4b0a1"


@contextlib.contextmanager
def _registry(url: str) -> Iterator[Registry]:
    registry = Registry(url)
    registry.migrate()
    try:
        yield registry
    finally:
        registry.close()


def _migration(migration_id: str) -> Migration:
    flavor = Flavor(vcpus=1, memory_mb=64, disk_gb=1)
    return Migration(
        id=migration_id,
        instance_uuid=INSTANCE,
        kind="live",
        source_host="h1",
        dest_host="h2",
        power_state="running",
        flavor=flavor,
        old_flavor=flavor,
    )


FIRST = "00000000-0000-4000-8000-000000000001"
SECOND = "00000000-0000-4000-8000-000000000002"


def check_a_second_move_of_a_moving_instance_is_refused_until_the_first_is_over(
    url: str,
) -> None:
    with _registry(url) as registry:
        _second_move_refused(registry)


def _second_move_refused(registry: Registry) -> None:
    registry.create_migration(_migration(FIRST))

    with pytest.raises(exception.InvalidRequest, match=f"already being moved .*{FIRST}"):
        registry.create_migration(_migration(SECOND))

    registry.update_migration(FIRST, MigrationStatus.COMPLETED)
    assert registry.create_migration(_migration(SECOND)).status == MigrationStatus.ACCEPTED
    assert [r.id for r in registry.list_migrations(instance_uuid=INSTANCE, active=True)] == [SECOND]


def check_the_database_itself_keeps_one_active_move_per_instance(url: str) -> None:
    """What a racing orchestrator's insert meets after both checked and found none."""
    with _registry(url) as registry:
        _one_active_row(registry)


def _one_active_row(registry: Registry) -> None:
    registry.create_migration(_migration(FIRST))
    row = {
        "id": SECOND,
        "instance_uuid": INSTANCE,
        "kind": "live",
        "source_host": "h1",
        "dest_host": "h2",
        "status": MigrationStatus.PRE_MIGRATING,
        "migration": "{}",
        "created_at": sa.func.now(),
        "updated_at": sa.func.now(),
    }
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as connection:
        connection.execute(sa.insert(models.InstanceMigration).values(row))
    registry.update_migration(FIRST, MigrationStatus.ERROR, error="it failed")
    with registry.engine.begin() as connection:
        connection.execute(sa.insert(models.InstanceMigration).values(row))


def check_a_status_change_can_require_the_status_it_comes_from(url: str) -> None:
    with _registry(url) as registry:
        _status_expected(registry)


def _status_expected(registry: Registry) -> None:
    registry.create_migration(_migration(FIRST))
    registry.update_migration(FIRST, MigrationStatus.RUNNING)

    with pytest.raises(exception.InvalidMigrationState, match="it is running, and confirm needs"):
        registry.update_migration(
            FIRST, MigrationStatus.CONFIRMED, expect={MigrationStatus.FINISHED}, operation="confirm"
        )
    with pytest.raises(exception.MigrationNotFound):
        registry.get_migration(SECOND)


CHECKS = [
    check_a_second_move_of_a_moving_instance_is_refused_until_the_first_is_over,
    check_the_database_itself_keeps_one_active_move_per_instance,
    check_a_status_change_can_require_the_status_it_comes_from,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__[len("check_") :])
def test_on_sqlite(tmp_path: Path, check: Callable[[str], None]) -> None:
    check(f"sqlite:///{tmp_path}/registry.sqlite")
