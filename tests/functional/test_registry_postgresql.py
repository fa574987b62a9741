"""The registry on a real PostgreSQL: migrations, records, the journal, and a worker using it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from computed import exception
from computed.registry import Registry, WorkerRecord, migration
from computed.registry.api import STATE_STOPPED, HostFlag, HostInventoryRecord
from computed.testing.postgres import PostgreSQLServer
from rpcapi import ComputeAPI
from tests.unit import test_registry_journal, test_registry_migrations
from tests.unit.test_registry import schema_differences

from .conftest import Deployment

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgreSQLServer]:
    with PostgreSQLServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgreSQLServer) -> str:
    return postgres.create_database(f"registry_{uuid.uuid4().hex[:8]}")


def test_migrations_and_records(pg_url: str) -> None:
    registry = Registry(pg_url)
    with pytest.raises(exception.RegistryError, match="computedctl db sync"):
        registry.list_workers()
    registry.migrate()
    assert migration.current_revision(registry.engine) == migration.head_revision()
    assert schema_differences(registry.engine) == []
    registry.register(
        WorkerRecord(
            id="w1",
            driver="fake",
            hosts=("a", "b"),
            rpc_version="1.0",
            rpc_min_version="1.0",
            support_tier="conformant",
            capabilities={"operations": ["ping"]},
        )
    )
    registry.register(
        WorkerRecord(
            id="w1",
            driver="fake",
            hosts=("c",),
            rpc_version="1.0",
            rpc_min_version="1.0",
            support_tier="conformant",
        )
    )
    (record,) = registry.list_workers()
    assert record.hosts == ("c",) and record.status(60) == "up"
    assert registry.heartbeat("w1") and not registry.heartbeat("w2")
    registry.set_disabled("w1", True, "maintenance")
    assert registry.get("w1").status(60) == "disabled"
    registry.delete("w1")
    assert registry.list_workers() == []
    registry.close()


def test_worker_and_client_share_a_postgresql_registry(deployment: Deployment, pg_url: str) -> None:
    deployment.registry_url = pg_url
    worker = deployment.start_worker(["pg-host"])
    api = ComputeAPI(deployment.conf, registry=Registry(pg_url))
    try:
        assert api.ping(None, "pg-host").worker_id == "w1"
        assert worker.terminate() == 0
        assert Registry(pg_url).get("w1").state == STATE_STOPPED
    finally:
        api.cleanup()


@pytest.mark.parametrize(
    "check",
    test_registry_journal.CHECKS,
    ids=lambda check: check.__name__[len("check_") :],
)
def test_journal(pg_url: str, check: Callable[[str], None]) -> None:
    """The journal's checks of ``tests/unit/test_registry_journal.py``, on PostgreSQL."""
    check(pg_url)


@pytest.mark.parametrize(
    "check",
    test_registry_migrations.CHECKS,
    ids=lambda check: check.__name__[len("check_") :],
)
def test_instance_migrations(pg_url: str, check: Callable[[str], None]) -> None:
    """The checks of ``tests/unit/test_registry_migrations.py``, on PostgreSQL."""
    check(pg_url)


def test_workers_claiming_the_same_new_hosts_at_once_all_succeed(pg_url: str) -> None:
    """Workers starting together claim hosts nobody has claimed yet, at the same
    moment: each claim succeeds (none fails on the key another one inserts),
    and each host ends with exactly one of them as its owner."""
    setup = Registry(pg_url)
    setup.migrate()
    hosts = [f"new-{i}" for i in range(600)]
    claimants = [Registry(pg_url) for _ in range(4)]
    start = threading.Barrier(len(claimants))
    errors: list[BaseException] = []

    def claim(registry: Registry, worker_id: str) -> None:
        start.wait(30)
        try:
            registry.claim_hosts(worker_id, dict.fromkeys(hosts, "rebalance"))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [
        threading.Thread(target=claim, args=(registry, f"w{i}"))
        for i, registry in enumerate(claimants)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    owners = setup.list_owners()
    assert sorted(owners) == sorted(hosts)
    assert {o.worker_id for o in owners.values()} <= {f"w{i}" for i in range(4)}
    for registry in (setup, *claimants):
        registry.close()


def test_inventory_owners_and_worker_states_on_postgresql(pg_url: str) -> None:
    """The statements of an idle heartbeat and of the inventory, on PostgreSQL: many
    rows written in one statement, then again with new figures; the disabled
    flags; a record said otherwise claimed again; the workers' narrow rows."""
    registry = Registry(pg_url)
    registry.migrate()
    hosts = [f"inv-{i:03d}" for i in range(450)]
    registry.register(
        WorkerRecord(
            id="inv",
            driver="fake",
            hosts=tuple(hosts),
            rpc_version="1.0",
            rpc_min_version="1.0",
            support_tier="untested",
        )
    )
    for used in (1, 2):
        written = registry.record_inventory(
            HostInventoryRecord(host=host, worker_id="inv", driver="fake", vcpus=8, vcpus_used=used)
            for host in hosts
        )
        assert written == len(hosts)
        rows = {r.host: r for r in registry.list_inventory() if r.host in hosts}
        assert {r.vcpus_used for r in rows.values()} == {used}
    registry.set_host_disabled("inv-007", True, "firmware")
    assert registry.host_flags(hosts[:10]) == {"inv-007": HostFlag(True, "firmware")}
    assert registry.host_flags(hosts[10:]) == {}
    registry.claim_hosts("inv", dict.fromkeys(hosts, "rebalance"))
    registry.release_hosts(["inv-001"], "inv")
    assert registry.confirm_hosts("inv", hosts) == ["inv-001"]
    assert registry.confirm_hosts("inv", hosts) == []
    (state,) = [s for s in registry.worker_states() if s.id == "inv"]
    assert (state.driver, state.state, state.disabled) == ("fake", "up", False)
    registry.close()
