"""The registry and the client's cached view of it, on SQLite (and PostgreSQL when marked)."""

from __future__ import annotations

import datetime
import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from computed import exception
from computed.registry import Registry, WorkerRecord, migration, models
from computed.registry.api import STATE_DRAINING, STATE_STOPPED
from rpcapi._resolver import HostResolver


def _record(worker_id: str = "w1", hosts: tuple[str, ...] = ("h1", "h2")) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        driver="fake",
        hosts=hosts,
        rpc_version="1.0",
        rpc_min_version="1.0",
        support_tier="conformant",
        capabilities={"operations": ["spawn"]},
    )


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    registry = Registry(f"sqlite:///{tmp_path}/sub/registry.sqlite")
    registry.migrate()
    yield registry
    registry.close()


def _age(registry: Registry, worker_id: str, seconds: float) -> None:
    """Pretend the worker's last heartbeat was ``seconds`` ago."""
    with registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE workers SET heartbeat_at = :t WHERE id = :id"),
            {
                "t": datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                - datetime.timedelta(seconds=seconds),
                "id": worker_id,
            },
        )


def test_schema_is_at_head(registry: Registry) -> None:
    assert migration.current_revision(registry.engine) == migration.head_revision()
    registry.migrate()  # a second run changes nothing
    assert registry.is_current()


def schema_differences(engine: sa.Engine) -> list[object]:
    """What the migrated schema lacks or has beyond the models (alembic's diff)."""
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), models.Base.metadata))


def test_migrations_build_the_schema_the_models_describe(registry: Registry) -> None:
    assert schema_differences(registry.engine) == []


def test_register_and_read_back(registry: Registry) -> None:
    registry.register(_record())
    (record,) = registry.list_workers()
    assert record.hosts == ("h1", "h2")
    assert record.capabilities == {"operations": ["spawn"]}
    assert record.status(60) == "up"


def test_registering_again_replaces_hosts(registry: Registry) -> None:
    registry.register(_record())
    registry.register(_record(hosts=("h3",)))
    assert registry.get("w1").hosts == ("h3",)


def test_status_words(registry: Registry) -> None:
    registry.register(_record())
    _age(registry, "w1", 120)
    assert registry.get("w1").status(60) == "down"
    assert registry.heartbeat("w1")
    assert registry.get("w1").status(60) == "up"
    registry.set_disabled("w1", True, "maintenance")
    assert registry.get("w1").status(60) == "disabled"
    registry.set_disabled("w1", False)
    registry.set_state("w1", STATE_DRAINING)
    assert registry.get("w1").status(60) == "draining"


def test_heartbeat_of_unknown_worker_says_so(registry: Registry) -> None:
    assert registry.heartbeat("ghost") is False


def test_unknown_worker_is_a_clear_error(registry: Registry) -> None:
    with pytest.raises(exception.RegistryError, match="no worker 'ghost'"):
        registry.set_disabled("ghost", True)


def test_missing_schema_says_what_to_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exception.RegistryError, match="computedctl db sync"):
        Registry(f"sqlite:///{tmp_path}/empty.sqlite").list_workers()


def test_resolver_finds_the_live_owner(registry: Registry) -> None:
    registry.register(_record())
    resolver = HostResolver(registry, ttl=60, down_time=30)
    assert resolver.resolve("h2").id == "w1"


def test_resolver_rereads_at_once_for_a_new_host(registry: Registry) -> None:
    resolver = HostResolver(registry, ttl=3600, down_time=30)
    with pytest.raises(exception.HostUnavailable, match="no worker has registered it"):
        resolver.resolve("h1")
    registry.register(_record())
    resolver._read_at -= 1  # past the minimum interval between forced re-reads
    assert resolver.resolve("h1").id == "w1"


def test_resolver_notices_death_without_waiting_for_its_ttl(registry: Registry) -> None:
    registry.register(_record())
    resolver = HostResolver(registry, ttl=3600, down_time=0.3)
    resolver.resolve("h1")
    time.sleep(0.5)  # no heartbeat comes: the cached one grows older than down_time
    with pytest.raises(
        exception.HostUnavailable, match=r"worker w1 is down, last heartbeat \d+ s ago"
    ):
        resolver.resolve("h1")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.set_disabled("w1", True, "maintenance"), "worker w1 is disabled: maintenance"),
        (lambda r: r.set_state("w1", STATE_STOPPED), "worker w1 is stopped"),
        (lambda r: r.set_state("w1", STATE_DRAINING), "worker w1 is draining"),
    ],
)
def test_resolver_says_why_a_host_is_unavailable(registry: Registry, change, reason) -> None:  # type: ignore[no-untyped-def]
    registry.register(_record())
    change(registry)
    with pytest.raises(exception.HostUnavailable) as caught:
        HostResolver(registry, ttl=0, down_time=30).resolve("h1")
    assert caught.value.kwargs == {"host": "h1", "reason": reason}


@pytest.mark.parametrize("state", [STATE_DRAINING, STATE_STOPPED])
def test_resolver_waits_for_the_next_worker_of_a_host_changing_hands(
    registry: Registry, state: str
) -> None:
    registry.register(_record("old", ("h1",)))
    registry.set_state("old", state)
    resolver = HostResolver(registry, ttl=0, down_time=30, handover_timeout=10)
    successor = threading.Timer(0.6, registry.register, args=(_record("new", ("h1",)),))
    started = time.monotonic()
    successor.start()
    try:
        assert resolver.resolve("h1").id == "new"
    finally:
        successor.join()
    assert 0.5 < time.monotonic() - started < 5


def test_resolver_gives_up_on_a_host_nobody_takes_over(registry: Registry) -> None:
    registry.register(_record("old", ("h1",)))
    registry.set_state("old", STATE_STOPPED)
    resolver = HostResolver(registry, ttl=0, down_time=30, handover_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(exception.HostUnavailable) as caught:
        resolver.resolve("h1")
    assert time.monotonic() - started >= 0.5
    assert re.fullmatch(
        r"worker old is stopped, last heartbeat [01] s ago, and no worker served the host "
        r"again within the handover timeout of 0\.5 s",
        caught.value.kwargs["reason"],
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: _age(r, "old", 120), "stopped two minutes ago"),
        (lambda r: r.set_disabled("old", True, "retired"), "disabled"),
    ],
)
def test_resolver_does_not_wait_for_a_worker_that_is_not_coming_back(
    registry: Registry, change: Callable[[Registry], None], why: str
) -> None:
    registry.register(_record("old", ("h1",)))
    registry.set_state("old", STATE_STOPPED)
    change(registry)
    resolver = HostResolver(registry, ttl=0, down_time=30, handover_timeout=60)
    started = time.monotonic()
    with pytest.raises(exception.HostUnavailable, match="worker old is"):
        resolver.resolve("h1")
    assert time.monotonic() - started < 5, why


def test_resolver_prefers_a_live_worker_over_a_dead_one(registry: Registry) -> None:
    registry.register(_record("old", ("h1",)))
    registry.register(_record("new", ("h1",)))
    _age(registry, "old", 600)
    assert HostResolver(registry, ttl=0, down_time=30).resolve("h1").id == "new"


def test_the_sqlite_registry_is_private_to_its_owner(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = Registry(f"sqlite:///{tmp_path}/private.sqlite")
    registry.migrate()
    registry.register(_record())
    files = sorted(tmp_path.glob("private.sqlite*"))
    assert {f.name for f in files} >= {"private.sqlite", "private.sqlite-wal"}
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
    registry.close()


def test_config_files_written_for_tests_are_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from computed.testing.workers import write_config

    path = tmp_path / "worker.conf"
    path.write_text("old")
    path.chmod(0o644)
    write_config(str(path), {"DEFAULT": {"transport_url": "rabbit://u:secret@h:5672/"}})
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "secret" in path.read_text()
