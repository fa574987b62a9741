"""Drivers' database roles on a real PostgreSQL: one driver's credentials cannot
write another driver's rows, and real workers serve with their own driver's role."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from oslo_context import context
from oslo_upgradecheck.upgradecheck import Code

from computed import exception
from computed.objects import Flavor, InstanceSpec, Migration
from computed.registry import Registry, WorkerRecord
from computed.registry.api import STATE_STOPPED, HostInventoryRecord, NewJournalEntry
from computed.testing.notifications import NotificationCollector
from computed.testing.postgres import PostgreSQLServer
from tests.unit.test_registry_roles import driver_roles_check

from .conftest import Deployment, wait_until

pytestmark = pytest.mark.postgresql

#: The worker's [registry] down_time in the takeover test.
DOWN_TIME = 4.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgreSQLServer]:
    with PostgreSQLServer() as server:
        yield server


@dataclasses.dataclass
class Roles:
    """A migrated registry, its owner's URL, and login roles granted to drivers."""

    admin_url: str
    logins: dict[str, str]

    def url(self, login: str) -> str:
        url = sa.engine.make_url(self.admin_url).set(username=self.logins[login])
        return url.render_as_string(hide_password=False)


@pytest.fixture
def roles(postgres: PostgreSQLServer) -> Iterator[Roles]:
    """Login roles ``libvirt``, ``xenapi``, ``fake-a`` and ``fake-b``, each a member of its
    driver's group (the two fake ones of the same group)."""
    suffix = uuid.uuid4().hex[:8]
    admin = Registry(postgres.create_database(f"roles_{suffix}"))
    admin.migrate()
    drivers = {"libvirt": "libvirt", "xenapi": "xenapi", "fake-a": "fake", "fake-b": "fake"}
    logins = {name: f"{name.replace('-', '_')}_{suffix}" for name in drivers}
    with admin.engine.begin() as connection:
        for login in logins.values():
            connection.exec_driver_sql(f"CREATE ROLE {login} LOGIN")
    for name, driver in drivers.items():
        admin.grant_driver(driver, logins[name])
    try:
        yield Roles(admin.url, logins)
    finally:
        admin.close()


def _worker(worker_id: str, driver: str, hosts: tuple[str, ...]) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        driver=driver,
        hosts=hosts,
        rpc_version="1.4",
        rpc_min_version="1.0",
        support_tier="conformant",
    )


def _entry(host: str, worker_id: str, message_id: str) -> NewJournalEntry:
    return NewJournalEntry(
        host, "reboot", str(uuid.uuid4()), "req-1", {}, {}, worker_id, 1, message_id
    )


def _migration(source: str, dest: str) -> Migration:
    flavor = Flavor(vcpus=1, memory_mb=64, disk_gb=1)
    return Migration(
        id=str(uuid.uuid4()),
        instance_uuid=str(uuid.uuid4()),
        kind="live",
        source_host=source,
        dest_host=dest,
        power_state="running",
        flavor=flavor,
        old_flavor=flavor,
    )


@dataclasses.dataclass
class Rows:
    """What a xenapi worker wrote, and a libvirt worker's registry to try the rows with."""

    admin: Registry
    libvirt: Registry
    xenapi: Registry
    entry_id: int
    migration_id: str


@pytest.fixture
def rows(roles: Roles) -> Iterator[Rows]:
    admin, libvirt, xenapi = (
        Registry(u) for u in (roles.admin_url, roles.url("libvirt"), roles.url("xenapi"))
    )
    xenapi.register(_worker("x1", "xenapi", ("xh", "xh2")))
    xenapi.claim_hosts("x1", {"xh": "initial", "xh2": "initial"})
    (entry_id,) = xenapi.journal_receive([_entry("xh", "x1", "m-x")])
    assert entry_id is not None
    xenapi.record_inventory(
        [HostInventoryRecord(host="xh", worker_id="x1", driver="xenapi", vcpus=8)]
    )
    migration_id = admin.create_migration(_migration("xh", "xh2")).id
    libvirt.register(_worker("l1", "libvirt", ("lh",)))
    libvirt.claim_hosts("l1", {"lh": "initial"})
    try:
        yield Rows(admin, libvirt, xenapi, entry_id, migration_id)
    finally:
        for registry in (admin, libvirt, xenapi):
            registry.close()


#: Writes of a libvirt worker's role to the xenapi worker's rows, each refused.
FOREIGN_WRITES: dict[str, Callable[[Rows], object]] = {
    "update-worker": lambda r: r.libvirt.set_state("x1", STATE_STOPPED),
    "take-over-worker-record": lambda r: r.libvirt.register(_worker("x1", "libvirt", ("lh",))),
    "delete-worker": lambda r: r.libvirt.delete("x1"),
    "declare-its-host": lambda r: r.libvirt.register(_worker("l2", "libvirt", ("xh",))),
    "claim-its-host": lambda r: r.libvirt.claim_hosts("l1", {"xh": "takeover"}),
    "release-its-host": lambda r: r.libvirt.release_hosts(["xh"], "x1"),
    "journal-as-its-worker": lambda r: r.libvirt.journal_receive([_entry("lh", "x1", "m-1")]),
    "journal-on-its-host": lambda r: r.libvirt.journal_receive([_entry("xh", "l1", "m-2")]),
    "inventory-of-its-host": lambda r: r.libvirt.record_inventory(
        [HostInventoryRecord(host="xh", worker_id="l1", driver="libvirt", vcpus=999)]
    ),
    "inventory-as-its-driver": lambda r: r.libvirt.record_inventory(
        [HostInventoryRecord(host="lh", worker_id="l1", driver="xenapi", vcpus=1)]
    ),
    "move-off-its-host": lambda r: r.libvirt.update_migration(r.migration_id, "cleaned"),
}


@pytest.mark.parametrize("write", FOREIGN_WRITES.values(), ids=FOREIGN_WRITES.keys())
def test_a_drivers_role_cannot_write_another_drivers_rows(
    rows: Rows, write: Callable[[Rows], object]
) -> None:
    before = _snapshot(rows.admin)
    with pytest.raises(exception.RegistryError, match=r"refused: role libvirt_\w+ may"):
        write(rows)
    assert _snapshot(rows.admin) == before


def _snapshot(registry: Registry) -> tuple[object, ...]:
    return (
        registry.list_workers(),
        registry.list_owners(),
        registry.list_moves(),
        registry.journal_entries(),
        registry.list_inventory(),
        registry.list_migrations(),
    )


def test_a_drivers_role_neither_reads_nor_changes_another_drivers_journal(rows: Rows) -> None:
    (foreign,) = rows.xenapi.journal_entries()
    assert rows.libvirt.journal_entries() == []
    assert rows.libvirt.journal_message_states(["m-x"]) == {}
    rows.libvirt.journal_done(rows.entry_id, {"phase": "end"})
    rows.libvirt.journal_finish([rows.entry_id])
    assert not rows.libvirt.journal_adopt(foreign, "l1", 1)
    with rows.libvirt.engine.begin() as connection:
        deleted = connection.execute(sa.text("DELETE FROM operation_journal"))
        assert deleted.rowcount == 0
    assert rows.admin.journal_entries() == [foreign]
    assert rows.xenapi.journal_message_states(["m-x"]) == {"m-x": "received"}


def test_a_drivers_role_writes_its_own_rows(rows: Rows) -> None:
    libvirt = rows.libvirt
    (entry_id,) = libvirt.journal_receive([_entry("lh", "l1", "m-l")])
    assert entry_id is not None
    libvirt.journal_start(entry_id)
    libvirt.journal_done(entry_id, {"phase": "end"})
    assert [e.state for e in libvirt.journal_entries()] == ["done"]
    libvirt.journal_finish([entry_id])
    assert libvirt.journal_message_states(["m-l"]) == {"m-l": "finished"}
    libvirt.record_inventory(
        [HostInventoryRecord(host="lh", worker_id="l1", driver="libvirt", vcpus=4)]
    )
    libvirt.confirm_inventory("l1", ["lh"])
    libvirt.release_hosts(["lh"], "l1")
    libvirt.set_state("l1", STATE_STOPPED)
    libvirt.delete("l1")
    assert [w.id for w in rows.admin.list_workers()] == ["x1"]
    # No caller names the journal's driver: the registry filled it in from the role.
    with rows.admin.engine.connect() as connection:
        result = connection.execute(sa.text("SELECT message_id, driver FROM journal_messages"))
        drivers = {message_id: driver for message_id, driver in result}
    assert drivers == {"m-x": "xenapi", "m-l": "libvirt"}


def test_upgrade_check_warns_of_a_driver_without_a_role(rows: Rows) -> None:
    assert driver_roles_check(rows.admin.url).code == Code.SUCCESS
    rows.admin.register(_worker("h1", "hyperv", ("hh",)))
    result = driver_roles_check(rows.admin.url)
    assert result.code == Code.WARNING
    assert "driver(s) hyperv" in result.details and "registry grant" in result.details


def test_a_worker_serves_with_its_drivers_role(
    deployment: Deployment, roles: Roles, notifications: NotificationCollector
) -> None:
    host = f"role-{uuid.uuid4().hex[:6]}"
    worker = deployment.start_worker([host], "fa1", registry={"connection": roles.url("fake-a")})
    admin = Registry(roles.admin_url)
    deployment.registry_url = roles.admin_url
    api = deployment.api()
    try:
        assert api.ping(None, host).worker_id == "fa1"
        spec = InstanceSpec(uuid=str(uuid.uuid4()), name="r1", vcpus=1, memory_mb=64)
        api.spawn(None, host, spec)
        ctxt = context.RequestContext()
        api.reboot(ctxt, host, spec.uuid, "soft", cast=True)
        notifications.for_request(ctxt.request_id, "instance.reboot.end")
        with admin.engine.connect() as connection:
            journaled = connection.execute(sa.text("SELECT DISTINCT driver FROM journal_messages"))
            assert journaled.scalars().all() == ["fake"]
        assert worker.terminate() == 0
        assert admin.get("fa1").state == STATE_STOPPED
    finally:
        admin.close()


def test_a_worker_with_another_drivers_role_cannot_start(
    deployment: Deployment, roles: Roles
) -> None:
    worker = deployment.start_worker(
        ["role-x"], "fx", wait=False, registry={"connection": roles.url("xenapi")}
    )
    assert worker.wait(120) == 4
    assert "refused: role xenapi_" in worker.log()


def test_another_login_of_the_same_driver_takes_over_the_journal(
    deployment: Deployment, roles: Roles, notifications: NotificationCollector
) -> None:
    host = f"role-{uuid.uuid4().hex[:6]}"
    first = deployment.start_worker(
        [host],
        "fa1",
        registry={"connection": roles.url("fake-a"), "down_time": DOWN_TIME},
        fake={"spawn_delay": 30},
    )
    admin = Registry(roles.admin_url)
    deployment.registry_url = roles.admin_url
    api = deployment.api()
    try:
        ctxt = context.RequestContext()
        spec = InstanceSpec(uuid=str(uuid.uuid4()), name="t1", vcpus=1, memory_mb=64)
        api.spawn(ctxt, host, spec, cast=True)
        notifications.for_request(ctxt.request_id, "instance.spawn.start")
        first.kill()
        second = deployment.start_worker(
            [host], "fa2", registry={"connection": roles.url("fake-b"), "down_time": DOWN_TIME}
        )
        end = notifications.for_request(ctxt.request_id, "instance.spawn.end", timeout=90)
        assert end.payload.uuid == spec.uuid
        wait_until(lambda: admin.journal_entries(host) == [], 30, "the journal emptying")
        assert f"Reconciled spawn of {spec.uuid} on {host} left by fa1" in second.log()
        assert api.ping(None, host).worker_id == "fa2"
    finally:
        admin.close()
