"""The fake driver is the executable specification: every transition from every state."""

from __future__ import annotations

import itertools
import uuid

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


@pytest.fixture
def driver() -> FakeDriver:
    conf = cfg.ConfigOpts()
    FakeDriver.register_opts(conf)
    conf([], default_config_files=[])
    fake = FakeDriver(conf)
    fake.init_host(HOST)
    return fake


def _spec(name: str = "vm", **extra: int) -> InstanceSpec:
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
