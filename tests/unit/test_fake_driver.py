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
from computed.objects import (
    BlockDevice,
    InstanceInfo,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from drivers import base
from drivers.fake import FakeDriver

HOST = "fake-host"

#: How to bring a freshly spawned (running) instance into each state.
_REACH = {
    PowerState.RUNNING: [],
    PowerState.STOPPED: ["power_off"],
    PowerState.PAUSED: ["pause"],
    PowerState.SUSPENDED: ["suspend"],
    PowerState.RESCUED: ["rescue"],
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
    ("rescue", "running"): "rescued",
    ("rescue", "stopped"): "rescued",
    ("rescue", "rescued"): "rescued",
    ("rescue", "paused"): None,
    ("rescue", "suspended"): None,
    ("unrescue", "rescued"): "running",
    ("unrescue", "running"): "running",
    ("unrescue", "stopped"): None,
    ("unrescue", "paused"): None,
    ("unrescue", "suspended"): None,
    # A rescued instance takes no power operation: unrescue it first.
    **{
        (operation, "rescued"): None
        for operation in (
            "power_on",
            "power_off",
            "pause",
            "unpause",
            "suspend",
            "resume",
            "reboot.soft",
            "reboot.hard",
        )
    },
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


def _spec(name: str = "vm", **extra: object) -> InstanceSpec:
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name=name, vcpus=2, memory_mb=512, **extra)
    spec.validate()  # the worker validates every spec before a driver sees it
    return spec


def _apply(driver: FakeDriver, operation: str, uuid_: str) -> str:
    if operation.startswith("reboot."):
        info = driver.reboot(HOST, uuid_, operation.split(".")[1])
    elif operation == "rescue":
        info = driver.rescue(HOST, uuid_, "rescue-image")
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


# Devices (contract 1.2) ------------------------------------------------------


# The worker validates every argument before a driver sees it; so do these helpers.


def _volume(volume_id: str = "vol-1", kind: str = "iscsi", **data: object) -> VolumeConnection:
    connection = VolumeConnection(volume_id=volume_id, driver_volume_type=kind, data=data)
    connection.validate("attach_volume")
    return connection


def _vif(port_id: str, mac: str = "fa:16:3e:00:00:01", network: str = "public") -> NetworkInterface:
    vif = NetworkInterface(port_id=port_id, mac_address=mac, network=network)
    vif.validate("attach_interface")
    return vif


def _disks(info: InstanceInfo) -> dict[str, tuple[str, int | None, str | None]]:
    return {d.device_name: (d.kind, d.size_gb, d.volume_id) for d in info.block_devices}


def _in_state(driver: FakeDriver, state: str, **extra: object) -> InstanceSpec:
    spec = _spec(**extra)
    driver.spawn(HOST, spec)
    for step in _REACH[state]:
        _apply(driver, step, spec.uuid)
    return spec


def test_the_fake_declares_every_feature() -> None:
    assert FakeDriver.features == base.FEATURES
    assert set(base.DEVICE_OPERATIONS) | {"get_volume_connector"} <= FakeDriver.operations


def test_spawn_builds_and_names_every_device(driver: FakeDriver) -> None:
    spec = _spec(
        block_devices=[
            BlockDevice(kind="blank", size_gb=2),
            BlockDevice(kind="image", image="cirros", size_gb=3, boot_index=0),
            BlockDevice(kind="volume", connection_info=_volume("v1", size_gb=5)),
            BlockDevice(
                kind="volume", connection_info=_volume("v2", "file"), device_name="/dev/vdf"
            ),
        ],
        network_interfaces=[
            _vif("0123456789abcdef", "fa:16:3e:00:00:01"),
            _vif("fedcba9876543210", "fa:16:3e:00:00:02", "br-int"),
        ],
    )
    info = driver.spawn(HOST, spec)
    assert _disks(info) == {
        "vda": ("image", 3, None),
        "vdb": ("blank", 2, None),
        "vdc": ("volume", 5, "v1"),
        "vdf": ("volume", None, "v2"),
    }
    assert all(d.connection_info is None for d in info.block_devices)
    assert [(i.port_id, i.device_name, i.network) for i in info.network_interfaces] == [
        ("0123456789abcdef", "tap0123456789a", "public"),
        ("fedcba9876543210", "tapfedcba98765", "br-int"),
    ]
    assert driver.get_info(HOST, spec.uuid) == info
    assert driver.list_instances(HOST) == [info]
    console = driver.get_console_output(HOST, spec.uuid, None)
    assert "vdc: volume disk, 5 GiB" in console
    assert "tap0123456789a: link up on public" in console


def test_a_root_disk_from_an_image_is_vda(driver: FakeDriver) -> None:
    info = driver.spawn(HOST, _spec(image="cirros", disk_gb=10))
    assert [(d.device_name, d.kind, d.boot_index, d.image) for d in info.block_devices] == [
        ("vda", "image", 0, "cirros")
    ]
    assert driver.spawn(HOST, _spec()).block_devices == []  # no image, no disk described


def test_a_spawn_that_cannot_build_its_devices_leaves_nothing(driver: FakeDriver) -> None:
    first = driver.spawn(HOST, _spec(network_interfaces=[_vif("port-a")]))
    refused = [
        (exception.InvalidRequest, _spec(network_interfaces=[_vif("p", network="nowhere")])),
        (exception.DeviceConflict, _spec(network_interfaces=[_vif("port-b")])),  # same MAC
        (exception.DeviceConflict, _spec(network_interfaces=[_vif("port-a", "fa:16:3e:00:00:09")])),
        (
            exception.InvalidRequest,
            _spec(block_devices=[BlockDevice(kind="volume", connection_info=_volume(kind="tape"))]),
        ),
    ]
    for error, spec in refused:
        with pytest.raises(error):
            driver.spawn(HOST, spec)
    assert [i.uuid for i in driver.list_instances(HOST)] == [first.uuid]


def test_host_resources_count_local_disks_not_volumes(driver: FakeDriver) -> None:
    driver.spawn(
        HOST,
        _spec(
            block_devices=[
                BlockDevice(kind="image", image="cirros", size_gb=3, boot_index=0),
                BlockDevice(kind="blank", size_gb=2),
                BlockDevice(kind="volume", connection_info=_volume("v1", size_gb=50)),
            ]
        ),
    )
    boot_volume = BlockDevice(kind="volume", boot_index=0, connection_info=_volume("v2"))
    driver.spawn(HOST, _spec(block_devices=[boot_volume]))
    assert driver.get_host_resources(HOST).disk_gb_used == 5


def test_volume_connector(driver: FakeDriver) -> None:
    connector = driver.get_volume_connector(HOST)
    assert connector.host == HOST
    assert connector.initiator == f"iqn.2004-10.org.computed.fake:{HOST}"
    assert (connector.wwpns, connector.multipath) == ([], False)
    assert connector.ip and connector.platform and connector.os_type
    driver.init_host("Node_7.example")
    assert driver.get_volume_connector("Node_7.example").initiator.endswith(":node-7.example")
    with pytest.raises(exception.DriverError, match="not served"):
        driver.get_volume_connector("elsewhere")


def test_the_initiator_name_is_an_option(tmp_path: Path) -> None:
    fake = _driver()
    fake.conf.set_override("iscsi_initiator", "iqn.1993-08.org.debian:01:{host}", group="fake")
    assert fake.get_volume_connector(HOST).initiator == f"iqn.1993-08.org.debian:01:{HOST}"


def test_attach_volume_takes_the_next_free_name_or_the_one_asked(driver: FakeDriver) -> None:
    spec = _spec(image="cirros", disk_gb=1)
    driver.spawn(HOST, spec)
    info = driver.attach_volume(HOST, spec.uuid, _volume("v1", size_gb=4), None)
    info = driver.attach_volume(HOST, spec.uuid, _volume("v2", "file"), "/dev/vdx")
    info = driver.attach_volume(HOST, spec.uuid, _volume("v3", "rbd"), None)
    assert _disks(info) == {
        "vda": ("image", 1, None),
        "vdb": ("volume", 4, "v1"),
        "vdx": ("volume", None, "v2"),
        "vdc": ("volume", None, "v3"),
    }
    assert info.volume("v2") is not None and info.volume("v2").connection_info is None


def test_attach_volume_is_idempotent_by_volume_id(driver: FakeDriver) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    first = driver.attach_volume(HOST, spec.uuid, _volume("v1"), "vdc")
    again = driver.attach_volume(HOST, spec.uuid, _volume("v1"), "vdd")  # whatever the mountpoint
    assert again == first
    assert _disks(again) == {"vdc": ("volume", None, "v1")}


def test_a_taken_mountpoint_is_a_conflict(driver: FakeDriver) -> None:
    spec = _spec(image="cirros", disk_gb=1)
    driver.spawn(HOST, spec)
    driver.attach_volume(HOST, spec.uuid, _volume("v1"), "vdb")
    for mountpoint, holder in (("vdb", "volume v1"), ("/dev/vda", "the root disk")):
        with pytest.raises(exception.DeviceConflict, match=holder) as caught:
            driver.attach_volume(HOST, spec.uuid, _volume("v2"), mountpoint)
        assert caught.value.kwargs["device"] == "volume v2"
    assert driver.get_info(HOST, spec.uuid).volume("v2") is None


def test_an_unknown_volume_transport_is_refused(driver: FakeDriver) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="tape"):
        driver.attach_volume(HOST, spec.uuid, _volume(kind="tape"), None)


@pytest.mark.parametrize("state", PowerState.ALL)
def test_devices_change_only_in_the_device_states(driver: FakeDriver, state: str) -> None:
    spec = _in_state(driver, state, network_interfaces=[_vif("port-0")])
    changes = [
        lambda: driver.attach_volume(HOST, spec.uuid, _volume("v1"), None),
        lambda: driver.attach_interface(HOST, spec.uuid, _vif("port-1", "fa:16:3e:00:00:02")),
        lambda: driver.detach_interface(HOST, spec.uuid, "port-0"),
    ]
    for change in changes:
        if state in base.DEVICE_STATES:
            assert change().power_state == state
        else:
            with pytest.raises(exception.InvalidPowerState) as caught:
                change()
            assert caught.value.kwargs["state"] == state
    info = driver.get_info(HOST, spec.uuid)
    attached = state in base.DEVICE_STATES
    assert (info.volume("v1") is not None, info.interface("port-1") is not None) == (
        attached,
        attached,
    )
    assert (info.interface("port-0") is None) == attached


@pytest.mark.parametrize("state", PowerState.ALL)
def test_repeated_device_operations_succeed_in_any_state(driver: FakeDriver, state: str) -> None:
    spec = _spec(network_interfaces=[_vif("port-0")])
    driver.spawn(HOST, spec)
    driver.attach_volume(HOST, spec.uuid, _volume("v1", size_gb=2), None)
    for step in _REACH[state]:
        _apply(driver, step, spec.uuid)
    driver.attach_volume(HOST, spec.uuid, _volume("v1"), None)
    driver.attach_interface(HOST, spec.uuid, _vif("port-0"))
    driver.extend_volume(HOST, spec.uuid, "v1", 2)
    driver.detach_volume(HOST, spec.uuid, "gone")
    driver.detach_interface(HOST, spec.uuid, "gone")


def test_device_operations_on_a_missing_instance_name_it(driver: FakeDriver) -> None:
    missing = str(uuid.uuid4())
    for operation in (
        lambda: driver.attach_volume(HOST, missing, _volume(), None),
        lambda: driver.detach_volume(HOST, missing, "vol-1"),
        lambda: driver.extend_volume(HOST, missing, "vol-1", 2),
        lambda: driver.attach_interface(HOST, missing, _vif("port-1")),
        lambda: driver.detach_interface(HOST, missing, "port-1"),
    ):
        with pytest.raises(exception.InstanceNotFound) as caught:
            operation()
        assert caught.value.kwargs == {"uuid": missing, "host": HOST}


def test_detach_volume_is_idempotent(driver: FakeDriver) -> None:
    volume = BlockDevice(kind="volume", connection_info=_volume("v1"))
    spec = _spec(block_devices=[volume])  # a volume from the spawn detaches like any other
    driver.spawn(HOST, spec)
    assert driver.detach_volume(HOST, spec.uuid, "v1").block_devices == []
    assert driver.detach_volume(HOST, spec.uuid, "v1").block_devices == []
    assert "vda: volume v1 detached" in driver.get_console_output(HOST, spec.uuid, 1)


def test_the_boot_volume_does_not_detach(driver: FakeDriver) -> None:
    boot = BlockDevice(kind="volume", boot_index=0, connection_info=_volume("root-vol"))
    spec = _spec(block_devices=[boot])
    info = driver.spawn(HOST, spec)
    assert _disks(info) == {"vda": ("volume", None, "root-vol")}
    with pytest.raises(exception.InvalidRequest, match="boot volume"):
        driver.detach_volume(HOST, spec.uuid, "root-vol")
    assert driver.get_info(HOST, spec.uuid).volume("root-vol") is not None


def test_extend_volume(driver: FakeDriver) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    with pytest.raises(exception.DeviceNotFound) as caught:
        driver.extend_volume(HOST, spec.uuid, "v1", 2)
    assert caught.value.kwargs == {"device": "volume v1", "uuid": spec.uuid, "host": HOST}
    driver.attach_volume(HOST, spec.uuid, _volume("v1"), None)  # size unknown
    assert driver.extend_volume(HOST, spec.uuid, "v1", 3).volume("v1").size_gb == 3
    assert driver.extend_volume(HOST, spec.uuid, "v1", 3).volume("v1").size_gb == 3
    with pytest.raises(exception.InvalidRequest, match="3 GiB"):
        driver.extend_volume(HOST, spec.uuid, "v1", 2)
    assert driver.get_info(HOST, spec.uuid).volume("v1").size_gb == 3


def test_attach_interface_is_idempotent_by_port_id(driver: FakeDriver) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    first = driver.attach_interface(HOST, spec.uuid, _vif("abcdefghijklmnop"))
    again = driver.attach_interface(HOST, spec.uuid, _vif("abcdefghijklmnop"))
    assert again == first
    assert [(i.port_id, i.device_name) for i in again.network_interfaces] == [
        ("abcdefghijklmnop", "tapabcdefghijk")
    ]
    assert driver.detach_interface(HOST, spec.uuid, "abcdefghijklmnop").network_interfaces == []
    assert driver.detach_interface(HOST, spec.uuid, "abcdefghijklmnop").network_interfaces == []


def test_a_mac_address_or_port_in_use_is_a_conflict(driver: FakeDriver) -> None:
    one, two = _spec("one"), _spec("two")
    driver.spawn(HOST, one)
    driver.spawn(HOST, two)
    driver.attach_interface(HOST, one.uuid, _vif("port-1", "fa:16:3e:00:00:01"))
    for target, vif, reason in (
        (one, _vif("port-2", "FA:16:3E:00:00:01"), "belongs to port port-1"),
        (two, _vif("port-2", "fa:16:3e:00:00:01"), "belongs to port port-1"),
        (two, _vif("port-1", "fa:16:3e:00:00:02"), f"attached to instance {one.uuid}"),
    ):
        with pytest.raises(exception.DeviceConflict, match=reason):
            driver.attach_interface(HOST, target.uuid, vif)
    assert driver.get_info(HOST, two.uuid).network_interfaces == []


def test_an_interface_plugs_only_into_a_network_the_host_has(driver: FakeDriver) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="'nowhere' does not exist") as caught:
        driver.attach_interface(HOST, spec.uuid, _vif("port-1", network="nowhere"))
    assert "br-int, public, private" in str(caught.value)
    driver.conf.set_override("networks", ["nowhere"], group="fake")
    assert driver.attach_interface(HOST, spec.uuid, _vif("port-1", network="nowhere"))


def test_devices_survive_power_cycles(driver: FakeDriver) -> None:
    spec = _spec(image="cirros", disk_gb=1, network_interfaces=[_vif("port-1")])
    info = driver.spawn(HOST, spec)
    info = driver.attach_volume(HOST, spec.uuid, _volume("v1"), None)
    for operation in ("power_off", "power_on", "reboot.hard", "suspend", "resume"):
        _apply(driver, operation, spec.uuid)
    after = driver.get_info(HOST, spec.uuid)
    assert (after.block_devices, after.network_interfaces) == (
        info.block_devices,
        info.network_interfaces,
    )


def test_a_later_driver_finds_the_devices(tmp_path: Path) -> None:
    first = _driver(str(tmp_path))
    spec = _spec(image="cirros", disk_gb=1, network_interfaces=[_vif("port-1")])
    first.spawn(HOST, spec)
    first.attach_volume(HOST, spec.uuid, _volume("v1", password="secret"), None)
    info = first.attach_interface(HOST, spec.uuid, _vif("port-2", "fa:16:3e:00:00:02"))
    del first
    later = _driver(str(tmp_path))
    assert later.get_info(HOST, spec.uuid) == info
    later.detach_volume(HOST, spec.uuid, "v1")
    assert _disks(_driver(str(tmp_path)).get_info(HOST, spec.uuid)) == {"vda": ("image", 1, None)}
    assert "secret" not in (tmp_path / f"{HOST}.json").read_text()  # no connection info kept


def test_a_state_file_from_before_devices_still_loads(tmp_path: Path) -> None:
    spec = _spec()
    _driver(str(tmp_path)).spawn(HOST, spec)
    path = tmp_path / f"{HOST}.json"
    saved = json.loads(path.read_text())
    for each in saved["instances"].values():
        del each["block_devices"], each["network_interfaces"]
    path.write_text(json.dumps(saved))
    info = _driver(str(tmp_path)).get_info(HOST, spec.uuid)
    assert (info.block_devices, info.network_interfaces) == ([], [])


# Images, rescue and consoles (contract 1.3) ----------------------------------------


def test_a_snapshot_reports_its_progress_and_is_taken_once_per_name(driver: FakeDriver) -> None:
    spec = _spec(image="cirros", disk_gb=2)
    driver.spawn(HOST, spec)
    steps: list[int] = []
    image = driver.snapshot(HOST, spec.uuid, "nightly", steps.append)
    assert (image.name, image.instance_uuid, image.host) == ("nightly", spec.uuid, HOST)
    assert image.size_bytes == 2 << 30
    assert steps == [0, 25, 50, 75]  # the worker reports 100 when the driver returns
    again = driver.snapshot(HOST, spec.uuid, "nightly", steps.append)
    assert again.image_id == image.image_id
    assert steps == [0, 25, 50, 75], "a snapshot the instance has is not taken again"
    other = driver.snapshot(HOST, spec.uuid, "weekly", steps.append)
    assert other.image_id != image.image_id


@pytest.mark.parametrize("state", [PowerState.STOPPED, PowerState.PAUSED])
def test_a_snapshot_leaves_the_state_it_found(driver: FakeDriver, state: str) -> None:
    spec = _spec()
    driver.spawn(HOST, spec)
    for step in _REACH[state]:
        _apply(driver, step, spec.uuid)
    driver.snapshot(HOST, spec.uuid, "image", lambda _: None)
    assert driver.get_info(HOST, spec.uuid).power_state == state


@pytest.mark.parametrize("state", [PowerState.SUSPENDED, PowerState.RESCUED])
def test_a_snapshot_is_refused_outside_its_states(driver: FakeDriver, state: str) -> None:
    spec = _spec(image="cirros")
    driver.spawn(HOST, spec)
    for step in _REACH[state]:
        _apply(driver, step, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.snapshot(HOST, spec.uuid, "image", lambda _: None)
    assert caught.value.kwargs["state"] == state
    with pytest.raises(exception.InstanceNotFound):
        driver.snapshot(HOST, str(uuid.uuid4()), "image", lambda _: None)


def test_an_image_outlives_its_instance_and_its_driver(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    first = _driver(state_dir)
    spec = _spec()
    first.spawn(HOST, spec)
    image = first.snapshot(HOST, spec.uuid, "kept", lambda _: None)
    first.destroy(HOST, spec.uuid)
    saved = json.loads((tmp_path / "state" / f"{HOST}.json").read_text())
    assert list(saved["images"]) == [image.image_id]
    assert saved["images"][image.image_id]["instance_uuid"] == spec.uuid
    second = _driver(state_dir)
    second.delete_image(HOST, image.image_id)
    second.delete_image(HOST, image.image_id)  # gone already: still a success
    assert json.loads((tmp_path / "state" / f"{HOST}.json").read_text())["images"] == {}


def test_a_state_file_from_before_images_is_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / f"{HOST}.json").write_text(json.dumps({"host": HOST, "instances": {}}))
    driver = _driver(str(state))
    spec = _spec()
    driver.spawn(HOST, spec)
    driver.snapshot(HOST, spec.uuid, "first", lambda _: None)
    assert len(json.loads((state / f"{HOST}.json").read_text())["images"]) == 1


def test_a_rescue_boots_the_rescue_image_and_keeps_the_devices(driver: FakeDriver) -> None:
    spec = _spec(
        network_interfaces=[
            NetworkInterface(port_id="p1", mac_address="fa:16:3e:00:00:01", network="public")
        ],
        image="cirros",
        disk_gb=1,
    )
    before = driver.spawn(HOST, spec)
    rescued = driver.rescue(HOST, spec.uuid, "rescue-image")
    assert rescued.power_state == PowerState.RESCUED
    assert rescued.block_devices == before.block_devices
    assert rescued.network_interfaces == before.network_interfaces
    log = driver.get_console_output(HOST, spec.uuid, None)
    assert "rescue: booting rescue-image, with vda as the second disk" in log
    with pytest.raises(exception.InvalidPowerState):
        driver.attach_interface(
            HOST,
            spec.uuid,
            NetworkInterface(port_id="p2", mac_address="fa:16:3e:00:00:02", network="public"),
        )
    back = driver.unrescue(HOST, spec.uuid)
    assert back.power_state == PowerState.RUNNING
    assert back.block_devices == before.block_devices
    assert back.network_interfaces == before.network_interfaces


def test_a_rescue_defaults_to_the_instances_own_image(driver: FakeDriver) -> None:
    spec = _spec(image="cirros")
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    assert "rescue: booting cirros" in driver.get_console_output(HOST, spec.uuid, None)


def test_an_instance_booted_from_a_volume_needs_a_rescue_image(driver: FakeDriver) -> None:
    boot = BlockDevice(kind="volume", boot_index=0, connection_info=_volume("root-vol"))
    spec = _spec(block_devices=[boot])
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="name a rescue image"):
        driver.rescue(HOST, spec.uuid, None)
    assert driver.get_info(HOST, spec.uuid).power_state == PowerState.RUNNING
    assert driver.rescue(HOST, spec.uuid, "rescue").power_state == PowerState.RESCUED


def test_destroying_a_rescued_instance_removes_it(driver: FakeDriver) -> None:
    spec = _spec(image="cirros")
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    driver.destroy(HOST, spec.uuid)
    assert driver.list_instances(HOST) == []


@pytest.mark.parametrize("kind", ["serial", "graphical"])
def test_consoles_of_an_instance_with_one(driver: FakeDriver, kind: str) -> None:
    spec = _spec(image="cirros")
    driver.spawn(HOST, spec)
    get = getattr(driver, f"get_{kind}_console")
    for state in (PowerState.RUNNING, PowerState.PAUSED, PowerState.RESCUED):
        if state == PowerState.PAUSED:
            driver.pause(HOST, spec.uuid)
        elif state == PowerState.RESCUED:
            driver.unpause(HOST, spec.uuid)
            driver.rescue(HOST, spec.uuid, None)
        console = get(HOST, spec.uuid)
        assert (console.kind, console.instance_uuid) == (kind, spec.uuid)
        console.validate(f"get_{kind}_console")
        assert get(HOST, spec.uuid).port == console.port  # the same console every time
    driver.unrescue(HOST, spec.uuid)
    driver.power_off(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState):
        get(HOST, spec.uuid)
    with pytest.raises(exception.InstanceNotFound):
        get(HOST, str(uuid.uuid4()))
