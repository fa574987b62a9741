"""The fake driver is the executable specification: every transition from every state.

Every test runs against both of its stores: the worker's memory, and state
files in a directory (``[fake] state_dir``) that outlive the driver object.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from oslo_config import cfg

from computed import exception
from computed.objects import InstanceSpec, PowerState
from drivers import base
from drivers.fake import FakeDriver

HOST = "fake-host"

#: How to bring a freshly spawned (running) instance into each state.
_REACH = {
    PowerState.RUNNING: [],
    PowerState.STOPPED: ["power_off"],
    PowerState.PAUSED: ["pause"],
    PowerState.SUSPENDED: ["suspend"],
}

#: The specification, written out by hand: (operation, from) -> result state,
#: or None where the operation must be refused.
_EXPECTED = {
    ("power_on", "running"): "running",
    ("power_on", "stopped"): "running",
    ("power_on", "paused"): None,
    ("power_on", "suspended"): None,
    ("power_off", "running"): "stopped",
    ("power_off", "stopped"): "stopped",
    ("power_off", "paused"): "stopped",
    ("power_off", "suspended"): "stopped",
    ("pause", "running"): "paused",
    ("pause", "paused"): "paused",
    ("pause", "stopped"): None,
    ("pause", "suspended"): None,
    ("unpause", "paused"): "running",
    ("unpause", "running"): "running",
    ("unpause", "stopped"): None,
    ("unpause", "suspended"): None,
    ("suspend", "running"): "suspended",
    ("suspend", "suspended"): "suspended",
    ("suspend", "stopped"): None,
    ("suspend", "paused"): None,
    ("resume", "suspended"): "running",
    ("resume", "running"): "running",
    ("resume", "stopped"): None,
    ("resume", "paused"): None,
    ("reboot.soft", "running"): "running",
    ("reboot.soft", "paused"): None,
    ("reboot.soft", "stopped"): None,
    ("reboot.soft", "suspended"): None,
    ("reboot.hard", "running"): "running",
    ("reboot.hard", "paused"): "running",
    ("reboot.hard", "stopped"): None,
    ("reboot.hard", "suspended"): None,
}


def _driver(state_dir: str = "") -> FakeDriver:
    conf = cfg.ConfigOpts()
    FakeDriver.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("state_dir", state_dir, group="fake")
    fake = FakeDriver(conf)
    fake.init_host(HOST)
    return fake


@pytest.fixture(params=["memory", "state_dir"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> FakeDriver:
    return _driver(str(tmp_path / "state") if request.param == "state_dir" else "")


def _spec(name: str = "vm", **extra: int | str) -> InstanceSpec:
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name=name, vcpus=2, memory_mb=512, **extra)
    spec.validate()  # the worker validates every spec before a driver sees it
    return spec


def _apply(driver: FakeDriver, operation: str, uuid_: str) -> str:
    if operation.startswith("reboot."):
        info = driver.reboot(HOST, uuid_, operation.split(".")[1])
    else:
        info = getattr(driver, operation)(HOST, uuid_)
    return str(info.power_state)


def test_the_table_covers_every_operation_and_state() -> None:
    assert set(_EXPECTED) == set(itertools.product(base.TRANSITIONS, PowerState.ALL))


@pytest.mark.parametrize(("operation", "state"), sorted(_EXPECTED))
def test_transition(driver: FakeDriver, operation: str, state: str) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    for step in _REACH[state]:
        _apply(driver, step, spec.uuid)
    assert driver.get_info(HOST, spec.uuid).power_state == state
    expected = _EXPECTED[(operation, state)]
    if expected is None:
        with pytest.raises(exception.InvalidPowerState) as caught:
            _apply(driver, operation, spec.uuid)
        assert caught.value.kwargs["state"] == state
        assert caught.value.kwargs["operation"] == operation
        assert driver.get_info(HOST, spec.uuid).power_state == state
        assert f"it is {state}" in str(caught.value)
    else:
        assert _apply(driver, operation, spec.uuid) == expected


def test_spawn_is_idempotent_by_uuid(driver: FakeDriver) -> None:
    spec = _spec()
    first = driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    again = driver.spawn(HOST, spec)
    assert again.uuid == first.uuid
    assert again.power_state == PowerState.STOPPED
    assert len(driver.list_instances(HOST)) == 1


def test_destroy_missing_instance_succeeds(driver: FakeDriver) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    driver.destroy(HOST, spec.uuid)
    driver.destroy(HOST, spec.uuid)
    assert driver.list_instances(HOST) == []
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info(HOST, spec.uuid)


def test_operations_on_a_missing_instance_name_it(driver: FakeDriver) -> None:
    missing = str(uuid.uuid4())
    for operation in base.TRANSITIONS:
        with pytest.raises(exception.InstanceNotFound) as caught:
            _apply(driver, operation, missing)
        assert caught.value.kwargs == {"uuid": missing, "host": HOST}


def test_resources_follow_the_instances(driver: FakeDriver) -> None:
    driver.spawn(HOST, _spec("a", disk_gb=10))
    driver.spawn(HOST, _spec("b", disk_gb=5))
    resources = driver.get_host_resources(HOST)
    assert (resources.instances, resources.vcpus_used) == (2, 4)
    assert (resources.memory_mb_used, resources.disk_gb_used) == (1024, 15)
    assert resources.hypervisor_type == "fake"
    assert resources.vcpus == 64


def test_hosts_are_separate(driver: FakeDriver) -> None:
    driver.init_host("other")
    driver.spawn(HOST, _spec())
    assert driver.list_instances("other") == []


def test_a_host_it_does_not_serve_is_an_error(driver: FakeDriver) -> None:
    with pytest.raises(exception.DriverError, match="not served"):
        driver.list_instances("elsewhere")


# The state directory: one hypervisor for every driver object that names it.


def test_a_later_driver_finds_the_instances_as_they_were(tmp_path: Path) -> None:
    first = _driver(str(tmp_path))
    spec = _spec(description="kept")
    first.spawn(HOST, spec)
    first.reboot(HOST, spec.uuid, "hard")
    first.pause(HOST, spec.uuid)
    console = first.get_console_output(HOST, spec.uuid, None)
    del first

    later = _driver(str(tmp_path))
    assert later.get_info(HOST, spec.uuid).power_state == PowerState.PAUSED
    assert later.get_console_output(HOST, spec.uuid, None) == console
    assert "description: kept" in console
    assert later.spawn(HOST, spec).power_state == PowerState.PAUSED  # still idempotent
    assert later.get_host_resources(HOST).instances == 1


def test_two_drivers_at_once_see_one_hypervisor(tmp_path: Path) -> None:
    old, new = _driver(str(tmp_path)), _driver(str(tmp_path))
    spec = _spec()
    old.spawn(HOST, spec)
    new.power_off(HOST, spec.uuid)
    assert old.get_info(HOST, spec.uuid).power_state == PowerState.STOPPED
    old.destroy(HOST, spec.uuid)
    assert new.list_instances(HOST) == []


def test_a_host_in_the_directory_is_not_served_until_initialised(tmp_path: Path) -> None:
    _driver(str(tmp_path)).spawn(HOST, _spec())
    other = _driver(str(tmp_path))
    with pytest.raises(exception.DriverError, match="not served"):
        other.list_instances("elsewhere")
    other.init_host("elsewhere")
    assert other.list_instances("elsewhere") == []


def test_any_host_name_is_one_file_in_the_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fake = _driver(str(state))
    fake.init_host("../a/b")
    fake.spawn("../a/b", _spec())
    assert len(fake.list_instances("../a/b")) == 1
    assert fake.list_instances(HOST) == []
    assert sorted(p.parent for p in tmp_path.rglob("*.json")) == [state]


_SPAWNER = """
import sys, uuid
from oslo_config import cfg
from computed.objects import InstanceSpec
from drivers.fake import FakeDriver

conf = cfg.ConfigOpts()
FakeDriver.register_opts(conf)
conf([], default_config_files=[])
conf.set_override("state_dir", sys.argv[1], group="fake")
driver = FakeDriver(conf)
driver.init_host(sys.argv[2])
sys.stdin.readline()  # start together
for i in range(int(sys.argv[3])):
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name=f"p{i}", vcpus=1, memory_mb=64)
    spec.validate()
    driver.spawn(sys.argv[2], spec)
"""


def test_changes_from_concurrent_processes_are_all_kept(tmp_path: Path) -> None:
    """Two processes spawning on one host at once lose none of each other's instances."""
    count = 150
    command = [sys.executable, "-c", _SPAWNER, str(tmp_path), HOST, str(count)]
    processes = [subprocess.Popen(command, stdin=subprocess.PIPE) for _ in range(2)]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
    assert [process.wait(60) for process in processes] == [0, 0]
    assert len(_driver(str(tmp_path)).list_instances(HOST)) == 2 * count


def test_a_damaged_state_file_is_a_driver_error_naming_it(tmp_path: Path) -> None:
    fake = _driver(str(tmp_path))
    (tmp_path / f"{HOST}.json").write_text("{not json")
    with pytest.raises(exception.DriverError, match=f"{HOST}.json"):
        fake.list_instances(HOST)
    with pytest.raises(exception.DriverError, match=f"{HOST}.json"):
        _driver(str(tmp_path))


def test_a_state_dir_that_cannot_be_made_fails_init_host(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(exception.DriverError, match="cannot keep state"):
        _driver(str(tmp_path / "file" / "state"))


def test_the_state_file_is_plain_json(tmp_path: Path) -> None:
    spec = _spec()
    _driver(str(tmp_path)).spawn(HOST, spec)
    saved = json.loads((tmp_path / f"{HOST}.json").read_text())
    assert saved["host"] == HOST
    assert saved["instances"][spec.uuid]["power_state"] == PowerState.RUNNING


def test_overrides_stay_with_their_config(tmp_path: Path) -> None:
    first, second = cfg.ConfigOpts(), cfg.ConfigOpts()
    for conf in (first, second):
        FakeDriver.register_opts(conf)
        conf([], default_config_files=[])
    first.set_override("state_dir", str(tmp_path), group="fake")
    assert second.fake.state_dir == ""
