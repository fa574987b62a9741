"""The Hyper-V driver moving instances (contract 1.4) between two hosts of the WinRM test server.

Each step is called as the orchestrator calls it, on the host it runs on,
and checked in what the driver returns and in the emulated hosts' own
state: which host has the VM, its size, its VHD files, its migration jobs.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from oslo_utils import uuidutils

from computed import exception
from computed.objects import Flavor, InstanceInfo, Migration, PowerState
from drivers.hyperv.driver import HyperVDriver
from tests.functional._drivers import new_spec, reach
from tests.winrmserver import GiB, VMState, WinRMTestServer

from .conftest import HOST, OTHER_HOST
from .test_hyperv_devices import IMAGE, VHD_DIR, vif

pytestmark = pytest.mark.hyperv


@pytest.fixture
def seeded(server: WinRMTestServer) -> WinRMTestServer:
    for name in (HOST, OTHER_HOST):
        server.host(name).add_vhd(IMAGE, GiB)
    return server


def spawned(driver: HyperVDriver, state: str = PowerState.RUNNING) -> InstanceInfo:
    spec = new_spec(
        "mover", image="cirros", disk_gb=4, network_interfaces=[vif("port-1", "02:00:00:00:00:01")]
    )
    driver.spawn(HOST, spec)
    reach(driver, HOST, spec.uuid, state)
    return driver.get_info(HOST, spec.uuid)


def migration(info: InstanceInfo, kind: str, dest: str, flavor: Flavor | None = None) -> Migration:
    old = Flavor(vcpus=info.vcpus, memory_mb=info.memory_mb, disk_gb=info.disk_gb)
    return Migration(
        id=uuidutils.generate_uuid(),
        instance_uuid=info.uuid,
        kind=kind,
        source_host=HOST,
        dest_host=dest,
        power_state=info.power_state,
        flavor=flavor or old,
        old_flavor=old,
        instance=info,
        source_data={},
        dest_data={},
    )


def where(driver: HyperVDriver, uuid: str) -> dict[str, str]:
    return {
        host: str(i.power_state)
        for host in (HOST, OTHER_HOST)
        for i in driver.list_instances(host)
        if i.uuid == uuid
    }


def cold_to_other_host(driver: HyperVDriver, info: InstanceInfo) -> tuple[Migration, list[Any]]:
    move = migration(info, "cold", OTHER_HOST)
    move.dest_data = driver.check_migration_destination(OTHER_HOST, move)
    handed = driver.migrate_disk_and_power_off(HOST, info.uuid, move)
    again = driver.migrate_disk_and_power_off(HOST, info.uuid, move)
    assert where(driver, info.uuid) == {HOST: PowerState.STOPPED}
    move.source_data = handed
    first = driver.finish_migration(OTHER_HOST, move)
    second = driver.finish_migration(OTHER_HOST, move)
    return move, [handed, again, first, second]


def test_cold_migration_moves_the_vm_and_its_disk(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    info = spawned(driver)
    vm_id = seeded.host(HOST).vms()[0].id
    move, (handed, again, first, second) = cold_to_other_host(driver, info)
    assert handed == again
    assert first == second
    assert first.power_state == PowerState.RUNNING and first.host == OTHER_HOST
    assert where(driver, info.uuid) == {OTHER_HOST: PowerState.RUNNING}
    there = seeded.host(OTHER_HOST).vm(vm_id)
    assert there is not None and there.state == VMState.Running
    root = f"{VHD_DIR}\\{info.uuid}-root.vhdx"
    assert seeded.host(OTHER_HOST).vhd(root) is not None
    assert seeded.host(HOST).vhd(root) is None
    driver.confirm_migration(HOST, move)
    driver.confirm_migration(HOST, move)
    assert where(driver, info.uuid) == {OTHER_HOST: PowerState.RUNNING}


def test_cold_migration_reverted_is_back_on_its_source(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    info = spawned(driver)
    move, _ = cold_to_other_host(driver, info)
    driver.revert_migration(OTHER_HOST, move)
    driver.revert_migration(OTHER_HOST, move)
    assert where(driver, info.uuid) == {HOST: PowerState.STOPPED}
    back = driver.finish_revert_migration(HOST, move)
    assert back == driver.finish_revert_migration(HOST, move)
    assert back.power_state == PowerState.RUNNING
    assert [(v.port_id, v.mac_address) for v in back.network_interfaces] == [
        ("port-1", "02:00:00:00:00:01")
    ]
    assert where(driver, info.uuid) == {HOST: PowerState.RUNNING}


@pytest.mark.parametrize("state", [PowerState.RUNNING, PowerState.STOPPED])
def test_resize_confirmed_keeps_the_new_size(
    driver: HyperVDriver, seeded: WinRMTestServer, state: str
) -> None:
    info = spawned(driver, state)
    bigger = Flavor(vcpus=2, memory_mb=info.memory_mb * 2, disk_gb=info.disk_gb + 2)
    move = migration(info, "resize", HOST, bigger)
    move.dest_data = driver.check_migration_destination(HOST, move)
    move.source_data = driver.migrate_disk_and_power_off(HOST, info.uuid, move)
    resized = driver.finish_migration(HOST, move)
    assert resized == driver.finish_migration(HOST, move)
    assert (resized.vcpus, resized.memory_mb, resized.disk_gb) == (2, info.memory_mb * 2, 6)
    assert resized.power_state == state
    host = seeded.host(HOST)
    root = host.vhd(f"{VHD_DIR}\\{info.uuid}-root.vhdx")
    assert root is not None and root.size == 6 * GiB
    kept = [p for p in host.vhd_paths() if f"{info.uuid}-root-" in p]
    assert len(kept) == 1
    driver.confirm_migration(HOST, move)
    driver.confirm_migration(HOST, move)
    assert not [p for p in host.vhd_paths() if f"{info.uuid}-root-" in p]
    assert driver.get_info(HOST, info.uuid).disk_gb == 6


def test_resize_reverted_gets_its_old_size_and_disk_back(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    info = spawned(driver)
    bigger = Flavor(vcpus=2, memory_mb=info.memory_mb * 2, disk_gb=info.disk_gb + 2)
    move = migration(info, "resize", HOST, bigger)
    move.source_data = driver.migrate_disk_and_power_off(HOST, info.uuid, move)
    driver.finish_migration(HOST, move)
    driver.revert_migration(HOST, move)
    back = driver.finish_revert_migration(HOST, move)
    assert (back.vcpus, back.memory_mb, back.disk_gb) == (info.vcpus, info.memory_mb, 4)
    assert back.power_state == PowerState.RUNNING
    host = seeded.host(HOST)
    root = host.vhd(f"{VHD_DIR}\\{info.uuid}-root.vhdx")
    assert root is not None and root.size == 4 * GiB and root.parent_path == IMAGE
    assert [d.device_name for d in back.block_devices] == [
        d.device_name for d in info.block_devices
    ]


class Progress:
    """A ``progress`` callback that keeps what it was told; ``moving`` is set past 0."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.moving = threading.Event()

    def __call__(self, percent: int) -> None:
        self.seen.append(percent)
        if percent > 0:
            self.moving.set()


def prepared(driver: HyperVDriver, info: InstanceInfo) -> Migration:
    move = migration(info, "live", OTHER_HOST)
    move.dest_data = driver.check_migration_destination(OTHER_HOST, move)
    move.dest_data = {**move.dest_data, **driver.pre_live_migration(OTHER_HOST, move)}
    return move


def test_live_migration_reports_progress_and_arrives_running(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    info = spawned(driver)
    move = prepared(driver, info)
    progress = Progress()
    driver.live_migration(HOST, info.uuid, move, progress)
    assert progress.seen[0] == 0 and progress.seen[-1] == 100
    assert progress.seen == sorted(progress.seen) and len(progress.seen) > 2
    assert where(driver, info.uuid) == {OTHER_HOST: PowerState.RUNNING}
    arrived = driver.post_live_migration_at_destination(OTHER_HOST, move)
    assert arrived.host == OTHER_HOST and arrived.power_state == PowerState.RUNNING
    # Run again once the instance has left, it returns at once.
    driver.live_migration(HOST, info.uuid, move, Progress())
    assert not seeded.host(HOST).migration_jobs


def test_live_migration_aborted_stays_on_its_source(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    info = spawned(driver)
    move = prepared(driver, info)
    gate = threading.Event()
    seeded.host(HOST).migration_gate = gate
    progress = Progress()
    outcome: list[BaseException | None] = []

    def migrate() -> None:
        try:
            driver.live_migration(HOST, info.uuid, move, progress)
            outcome.append(None)
        except exception.ComputedError as exc:
            outcome.append(exc)

    mover = threading.Thread(target=migrate)
    mover.start()
    assert progress.moving.wait(30)
    driver.abort_live_migration(HOST, info.uuid, move)
    gate.set()
    mover.join(30)
    assert isinstance(outcome[0], exception.MigrationAborted)
    assert where(driver, info.uuid) == {HOST: PowerState.RUNNING}
    leftover = f"{VHD_DIR}\\{info.uuid}-root.vhdx"
    assert seeded.host(OTHER_HOST).vhd(leftover) is not None  # the copy it had begun
    driver.rollback_live_migration_at_destination(OTHER_HOST, move)
    driver.rollback_live_migration_at_destination(OTHER_HOST, move)
    assert seeded.host(OTHER_HOST).vhd(leftover) is None
    # Aborted and rolled back, it moves all the same when asked again.
    driver.live_migration(HOST, info.uuid, prepared(driver, info), Progress())
    assert where(driver, info.uuid) == {OTHER_HOST: PowerState.RUNNING}


def test_live_migration_refused_where_a_switch_is_missing(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    info = spawned(driver)
    move = migration(info, "live", OTHER_HOST)
    seeded.host(OTHER_HOST).switches = ("elsewhere",)
    with pytest.raises(exception.MigrationPreCheckFailed, match="Default Switch"):
        driver.check_migration_destination(OTHER_HOST, move)


def test_evacuation_rebuilds_from_the_spec(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    spec = new_spec("evacuee", image="cirros", disk_gb=4)
    info = driver.spawn(HOST, spec)
    move = migration(info, "evacuation", OTHER_HOST)
    move.spec = spec
    move.power_state = PowerState.STOPPED
    driver.check_migration_destination(OTHER_HOST, move)
    rebuilt = driver.evacuate(OTHER_HOST, move)
    assert rebuilt == driver.evacuate(OTHER_HOST, move)
    assert rebuilt.host == OTHER_HOST and rebuilt.power_state == PowerState.STOPPED
    assert (rebuilt.vcpus, rebuilt.memory_mb, rebuilt.disk_gb) == (
        info.vcpus,
        info.memory_mb,
        info.disk_gb,
    )
