"""Moving instances with the XenAPI driver, against the xapi test server.

One driver serves two compute hosts of one pool (``c1`` on xapi host xs-a,
``c2`` on xs-b, the pool's storage shared), and runs each step of a move as
the orchestrator would; an observer's own ``XenAPI`` session checks where
xapi has the VM. After every step the instance is listed on exactly one
compute host.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from typing import Any

import pytest

from computed import exception
from computed.objects import Flavor, InstanceInfo, Migration, PowerState
from tests.functional._drivers import new_spec
from tests.functional.xenapi.conftest import POOL, DriverFactory
from tests.xapiserver import XapiTestServer

XenAPI = pytest.importorskip("XenAPI")

from drivers.xenapi import constants  # noqa: E402
from drivers.xenapi.driver import XenAPIDriver  # noqa: E402

pytestmark = pytest.mark.xenapi

GiB = 1024**3
MiB = 1024**2
HOSTS = {"c1": f"{POOL}/xs-a", "c2": f"{POOL}/xs-b"}


@pytest.fixture
def two(server: XapiTestServer, make_driver: DriverFactory) -> XenAPIDriver:
    return make_driver(server.url, hosts=HOSTS)


def where(driver: XenAPIDriver, uuid: str) -> dict[str, str]:
    """``{compute host: power state}`` of every host that lists the instance."""
    return {
        host: str(info.power_state)
        for host in HOSTS
        for info in driver.list_instances(host)
        if info.uuid == uuid
    }


def vm_of(xapi: Any, uuid: str) -> str:
    refs = xapi.VM.get_by_name_label(constants.name_label(uuid))
    assert len(refs) == 1, refs
    return str(refs[0])


def xapi_host(xapi: Any, name: str) -> str:
    return str(xapi.host.get_by_name_label(name)[0])


def moving(
    info: InstanceInfo, kind: str, source: str, dest: str, flavor: Flavor | None = None
) -> Migration:
    old = Flavor(vcpus=info.vcpus, memory_mb=info.memory_mb, disk_gb=info.disk_gb)
    migration = Migration(
        id=str(uuidlib.uuid4()),
        instance_uuid=info.uuid,
        kind=kind,
        source_host=source,
        dest_host=dest,
        power_state=info.power_state,
        flavor=flavor or old,
        old_flavor=old,
        instance=info,
    )
    migration.validate("test")
    return migration


def checked(driver: XenAPIDriver, migration: Migration) -> Migration:
    migration.assign(dest_data=driver.check_migration_destination(migration.dest_host, migration))
    return migration


def spawn(driver: XenAPIDriver, host: str = "c1", **fields: Any) -> InstanceInfo:
    fields.setdefault("memory_mb", 512)
    fields.setdefault("disk_gb", 2)
    return driver.spawn(host, new_spec("mover", **fields))


# Live migration ---------------------------------------------------------------


def test_a_live_migration_moves_the_running_vm_to_the_other_host_with_progress(
    two: XenAPIDriver, xapi: Any
) -> None:
    info = spawn(two)
    migration = checked(two, moving(info, "live", "c1", "c2"))
    assert two.pre_live_migration("c2", migration) == {}
    seen: list[int] = []

    two.live_migration("c1", info.uuid, migration, seen.append)

    assert seen == sorted(seen) and seen[-1] == 100
    vm = vm_of(xapi, info.uuid)
    assert xapi.VM.get_resident_on(vm) == xapi_host(xapi, "xs-b")
    assert xapi.VM.get_affinity(vm) == xapi_host(xapi, "xs-b")
    assert where(two, info.uuid) == {"c2": PowerState.RUNNING}
    moved = two.post_live_migration_at_destination("c2", migration)
    assert (moved.host, moved.block_devices) == ("c2", info.block_devices)
    # Run again after the VM has left, the step returns at once.
    two.live_migration("c1", info.uuid, migration, seen.append)
    assert where(two, info.uuid) == {"c2": PowerState.RUNNING}


def test_an_aborted_live_migration_leaves_the_vm_running_on_its_source(
    server: XapiTestServer, two: XenAPIDriver, xapi: Any
) -> None:
    info = spawn(two)
    migration = checked(two, moving(info, "live", "c1", "c2"))
    hold = server.hold_progress("VM.pool_migrate", 0.4)
    outcome: list[BaseException | None] = []

    def migrate() -> None:
        try:
            two.live_migration("c1", info.uuid, migration, lambda _: None)
            outcome.append(None)
        except exception.ComputedError as exc:
            outcome.append(exc)

    mover = threading.Thread(target=migrate)
    mover.start()
    assert hold.reached.wait(10)
    two.abort_live_migration("c1", info.uuid, migration)
    hold.release()
    mover.join(10)

    assert isinstance(outcome[0], exception.MigrationAborted), outcome
    assert xapi.VM.get_resident_on(vm_of(xapi, info.uuid)) == xapi_host(xapi, "xs-a")
    two.rollback_live_migration_at_destination("c2", migration)
    assert where(two, info.uuid) == {"c1": PowerState.RUNNING}


def test_a_live_migration_refuses_a_destination_without_room(
    two: XenAPIDriver,
) -> None:
    info = spawn(two, memory_mb=14 * 1024)  # xs-b has 15 GiB free
    spawn(two, host="c2", memory_mb=2 * 1024)
    with pytest.raises(exception.MigrationPreCheckFailed, match="MiB free"):
        two.check_migration_destination("c2", moving(info, "live", "c1", "c2"))


# Cold migration and resize --------------------------------------------------------


def test_a_cold_migration_moves_the_vm_and_confirm_keeps_it_there(
    two: XenAPIDriver, xapi: Any
) -> None:
    info = spawn(two)
    migration = checked(two, moving(info, "cold", "c1", "c2"))
    handed = two.migrate_disk_and_power_off("c1", info.uuid, migration)
    assert two.migrate_disk_and_power_off("c1", info.uuid, migration) == handed
    assert where(two, info.uuid) == {"c1": PowerState.STOPPED}
    migration.assign(source_data=handed)

    first = two.finish_migration("c2", migration)
    assert two.finish_migration("c2", migration) == first
    assert where(two, info.uuid) == {"c2": PowerState.RUNNING}
    assert xapi.VM.get_resident_on(vm_of(xapi, info.uuid)) == xapi_host(xapi, "xs-b")
    two.confirm_migration("c1", migration)
    two.confirm_migration("c1", migration)
    other = xapi.VM.get_other_config(vm_of(xapi, info.uuid))
    assert not [k for k in other if k.startswith("computed_move")]
    assert where(two, info.uuid) == {"c2": PowerState.RUNNING}


def test_a_reverted_cold_migration_is_back_on_its_source(two: XenAPIDriver, xapi: Any) -> None:
    info = spawn(two)
    migration = checked(two, moving(info, "cold", "c1", "c2"))
    migration.assign(source_data=two.migrate_disk_and_power_off("c1", info.uuid, migration))
    two.finish_migration("c2", migration)

    two.revert_migration("c2", migration)
    assert where(two, info.uuid) == {"c1": PowerState.STOPPED}
    back = two.finish_revert_migration("c1", migration)
    assert two.finish_revert_migration("c1", migration) == back

    assert where(two, info.uuid) == {"c1": PowerState.RUNNING}
    assert xapi.VM.get_resident_on(vm_of(xapi, info.uuid)) == xapi_host(xapi, "xs-a")


def test_a_resize_grows_the_vm_and_a_revert_gives_back_its_old_size_and_disk(
    two: XenAPIDriver, xapi: Any
) -> None:
    info = spawn(two)
    flavor = Flavor(vcpus=2, memory_mb=1024, disk_gb=3)
    migration = checked(two, moving(info, "resize", "c1", "c1", flavor))
    migration.assign(source_data=two.migrate_disk_and_power_off("c1", info.uuid, migration))

    resized = two.finish_migration("c1", migration)

    assert (resized.vcpus, resized.memory_mb, resized.disk_gb) == (2, 1024, 3)
    assert [d.size_gb for d in resized.block_devices] == [3]
    assert where(two, info.uuid) == {"c1": PowerState.RUNNING}
    vm = vm_of(xapi, info.uuid)
    assert xapi.VM.get_memory_static_max(vm) == str(1024 * MiB)

    two.revert_migration("c1", migration)
    back = two.finish_revert_migration("c1", migration)

    assert (back.vcpus, back.memory_mb, back.disk_gb) == (1, 512, 2)
    assert [d.size_gb for d in back.block_devices] == [2]
    assert back.power_state == PowerState.RUNNING
    kept = xapi.VDI.get_by_name_label(f"{constants.name_label(info.uuid)}-pre-{migration.id}")
    assert [xapi.VDI.get_VBDs(v) != [] for v in kept] == [True]  # the kept disk is the root again


def test_a_confirmed_resize_of_a_stopped_vm_keeps_its_size_and_drops_the_kept_disk(
    two: XenAPIDriver, xapi: Any
) -> None:
    info = two.power_off("c1", spawn(two).uuid)
    flavor = Flavor(vcpus=1, memory_mb=768, disk_gb=4)
    migration = checked(two, moving(info, "resize", "c1", "c1", flavor))
    migration.assign(source_data=two.migrate_disk_and_power_off("c1", info.uuid, migration))
    resized = two.finish_migration("c1", migration)
    assert (resized.power_state, resized.memory_mb, resized.disk_gb) == ("stopped", 768, 4)

    two.confirm_migration("c1", migration)

    label = f"{constants.name_label(info.uuid)}-pre-{migration.id}"
    assert xapi.VDI.get_by_name_label(label) == []
    assert where(two, info.uuid) == {"c1": PowerState.STOPPED}


# Evacuation ---------------------------------------------------------------------


def evacuation(info: InstanceInfo, spec: Any, state: str = PowerState.RUNNING) -> Migration:
    flavor = Flavor(vcpus=info.vcpus, memory_mb=info.memory_mb, disk_gb=info.disk_gb)
    migration = Migration(
        id=str(uuidlib.uuid4()),
        instance_uuid=info.uuid,
        kind="evacuation",
        source_host="c1",
        dest_host="c2",
        power_state=state,
        flavor=flavor,
        old_flavor=flavor,
        instance=None,
        spec=spec,
    )
    migration.validate("test")
    return migration


def test_an_instance_of_a_dead_host_is_started_on_the_other_from_its_shared_disks(
    server: XapiTestServer, two: XenAPIDriver, xapi: Any
) -> None:
    spec = new_spec("evacuee", memory_mb=512, disk_gb=2)
    info = two.spawn("c1", spec)
    vm = vm_of(xapi, info.uuid)
    server.set_host_live("xs-a", False)
    assert xapi.VM.get_power_state(vm) == "Running"  # as xapi shows it until reset
    migration = evacuation(info, spec)
    checked(two, migration)

    evacuated = two.evacuate("c2", migration)

    assert evacuated.power_state == PowerState.RUNNING
    assert vm_of(xapi, info.uuid) == vm  # the same VM, its disks kept
    assert xapi.VM.get_resident_on(vm) == xapi_host(xapi, "xs-b")
    assert where(two, info.uuid) == {"c2": PowerState.RUNNING}
    # The worker next serving c1 destroys only what c1 lists: nothing of it.
    assert [i.uuid for i in two.list_instances("c1")] == []
    assert two.evacuate("c2", migration) == evacuated


def test_a_dead_host_is_refused_as_a_destination(server: XapiTestServer, two: XenAPIDriver) -> None:
    info = spawn(two)
    server.set_host_live("xs-b", False)
    with pytest.raises(exception.MigrationPreCheckFailed, match="not live"):
        two.check_migration_destination("c2", moving(info, "cold", "c1", "c2"))


def test_an_instance_whose_disks_the_destination_cannot_see_is_rebuilt_from_its_image(
    make_driver: DriverFactory, xapi: Any, server: XapiTestServer
) -> None:
    # A pool of one host and its local storage, and a compute host on it only.
    spec = new_spec("rebuilt", memory_mb=512, disk_gb=2)
    driver = make_driver(server.url, hosts=HOSTS)
    info = driver.spawn("c1", spec)
    old = vm_of(xapi, info.uuid)
    sr = xapi.VDI.get_SR(xapi.VBD.get_VDI(xapi.VM.get_VBDs(old)[0]))
    for pbd in xapi.SR.get_PBDs(sr):  # xs-b loses sight of the storage
        if xapi.PBD.get_host(pbd) == xapi_host(xapi, "xs-b"):
            server.pool().update("PBD", pbd, currently_attached=False)
    server.set_host_live("xs-a", False)

    rebuilt = driver.evacuate("c2", evacuation(info, spec, PowerState.STOPPED))

    assert rebuilt.power_state == PowerState.STOPPED
    assert where(driver, info.uuid) == {"c1": PowerState.RUNNING, "c2": PowerState.STOPPED}
    assert len(xapi.VM.get_by_name_label(constants.name_label(info.uuid))) == 2
