"""The Hyper-V driver's devices (contract 1.2) against the WinRM test server, over real WinRM.

Disks, volumes and adapters are checked twice: in what the driver reports
and in the emulated host's own state (its VHD files, drives and adapters).
"""

from __future__ import annotations

import json

import pytest

from computed import exception
from computed.objects import BlockDevice, NetworkInterface, PowerState, VolumeConnection
from drivers.hyperv.driver import HyperVDriver
from tests.functional._drivers import new_spec, reach
from tests.winrmserver import ControllerType, GiB, VhdType, VMState, WinRMTestServer, provision

from .conftest import HOST, PASSWORD, USER, DriverFactory

pytestmark = pytest.mark.hyperv

VHD_DIR = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks"
IMAGE = VHD_DIR + "\\_base\\cirros.vhdx"
VOL1 = "D:\\volumes\\vol-1.vhdx"
VOL2 = "D:\\volumes\\vol-2.vhdx"
SCSI, IDE = ControllerType.SCSI, ControllerType.IDE


@pytest.fixture
def seeded(server: WinRMTestServer) -> WinRMTestServer:
    host = server.host(HOST)
    host.add_vhd(IMAGE, GiB)
    host.add_vhd(VOL1, GiB)
    host.add_vhd(VOL2, 2 * GiB)
    return server


def volume(volume_id: str, path: str, kind: str = "file") -> VolumeConnection:
    data = {"device_path": path} if kind == "file" else {"target_iqn": "iqn.x", "target_lun": 1}
    return VolumeConnection(volume_id=volume_id, driver_volume_type=kind, data=data)


def vif(port: str, mac: str, network: str = "Default Switch") -> NetworkInterface:
    return NetworkInterface(port_id=port, mac_address=mac, network=network)


def spec_with_devices(name: str = "vm") -> object:
    return new_spec(
        name,
        block_devices=[
            BlockDevice(kind="image", image="cirros", size_gb=4, boot_index=0, device_name="vda"),
            BlockDevice(kind="blank", size_gb=2),
            BlockDevice(kind="volume", connection_info=volume("vol-1", VOL1), device_name="vdc"),
        ],
        network_interfaces=[vif("port-1", "02:00:00:00:00:01")],
    )


def devices(info: object) -> list[tuple[object, ...]]:
    return [
        (d.kind, d.device_name, d.boot_index, d.size_gb, d.image, d.volume_id)
        for d in info.block_devices  # type: ignore[attr-defined]
    ]


def interfaces(info: object) -> list[tuple[object, ...]]:
    return [
        (i.port_id, i.mac_address, i.network, i.device_name)
        for i in info.network_interfaces  # type: ignore[attr-defined]
    ]


def test_spawn_builds_every_device_of_the_spec(
    driver: HyperVDriver, seeded: WinRMTestServer, make_driver: DriverFactory
) -> None:
    spec = spec_with_devices()
    info = driver.spawn(HOST, spec)

    expected_devices = [
        ("image", "vda", 0, 4, "cirros", None),
        ("blank", "sdb", None, 2, None, None),
        ("volume", "vdc", None, None, None, "vol-1"),
    ]
    assert devices(info) == expected_devices
    # Reported as the contract says: every field set, no connection info.
    assert [d.connection_info for d in info.block_devices] == [None] * 3
    assert interfaces(info) == [("port-1", "02:00:00:00:00:01", "Default Switch", "port-1")]
    assert info.disk_gb == 4
    host = seeded.host(HOST)
    [vm] = host.vms()
    root = f"{VHD_DIR}\\{spec.uuid}-root.vhdx"
    ephemeral = f"{VHD_DIR}\\{spec.uuid}-ephemeral1.vhdx"
    assert [(d.slot, d.path) for d in vm.drives] == [
        ((SCSI, 0, 0), root),
        ((SCSI, 0, 1), ephemeral),
        ((SCSI, 0, 2), VOL1),
    ]
    assert (host.vhd(root).type, host.vhd(root).parent_path, host.vhd(root).size) == (
        VhdType.Differencing,
        IMAGE,
        4 * GiB,
    )
    assert (host.vhd(ephemeral).type, host.vhd(ephemeral).size) == (VhdType.Dynamic, 2 * GiB)
    assert [(a.name, a.switch_name, a.mac_address) for a in vm.adapters] == [
        ("port-1", "Default Switch", "020000000001")
    ]
    assert vm.state == VMState.Running
    # What Hyper-V does not store (names, volume ids) a restarted worker reads from the notes.
    again = make_driver({HOST: seeded.urls[HOST]})
    assert devices(again.get_info(HOST, spec.uuid)) == expected_devices
    assert devices(again.spawn(HOST, spec)) == expected_devices
    assert devices(again.list_instances(HOST)[0]) == expected_devices

    driver.destroy(HOST, spec.uuid)
    assert host.vms() == []
    assert host.vhd_paths() == sorted([IMAGE, VOL1, VOL2])  # volumes and images stay


def test_a_failed_spawn_leaves_nothing_behind(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    host = seeded.host(HOST)
    spec = new_spec(
        block_devices=[
            BlockDevice(kind="image", image="cirros", size_gb=2, boot_index=0),
            BlockDevice(kind="blank", size_gb=1),
        ],
        network_interfaces=[vif("port-1", "02:00:00:00:00:01", network="no-such-switch")],
    )
    with pytest.raises(exception.InvalidRequest, match="unable to find a virtual switch"):
        driver.spawn(HOST, spec)
    assert host.vms() == [] and host.vhd_paths() == sorted([IMAGE, VOL1, VOL2])

    missing_image = new_spec(
        block_devices=[BlockDevice(kind="image", image="nope", size_gb=2, boot_index=0)]
    )
    with pytest.raises(exception.InvalidRequest, match="image 'nope' not found"):
        driver.spawn(HOST, missing_image)
    too_small = new_spec(
        block_devices=[BlockDevice(kind="image", image="cirros", size_gb=1, boot_index=0)]
    )
    host.vhd(IMAGE).size = 2 * GiB
    with pytest.raises(exception.InvalidRequest, match="larger than the root disk of 1 GiB"):
        driver.spawn(HOST, too_small)
    iscsi = new_spec(
        block_devices=[BlockDevice(kind="volume", connection_info=volume("v9", "", kind="iscsi"))]
    )
    with pytest.raises(exception.UnsupportedOperation, match="'iscsi' volume"):
        driver.spawn(HOST, iscsi)
    assert host.vms() == []


def test_a_spawn_interrupted_after_making_its_disks_is_repeated(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    host = seeded.host(HOST)
    spec = spec_with_devices()
    # What a worker that died mid-spawn leaves: the disks, no VM.
    host.add_vhd(f"{VHD_DIR}\\{spec.uuid}-root.vhdx", GiB)
    host.add_vhd(f"{VHD_DIR}\\{spec.uuid}-ephemeral1.vhdx", GiB)
    info = driver.spawn(HOST, spec)
    assert info.power_state == PowerState.RUNNING and len(info.block_devices) == 3


def test_attach_and_detach_volumes(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    host = seeded.host(HOST)
    spec = new_spec()
    driver.spawn(HOST, spec)
    [vm] = host.vms()

    info = driver.attach_volume(HOST, spec.uuid, volume("vol-1", VOL1), "/dev/vdb")
    assert devices(info) == [("volume", "vdb", None, None, None, "vol-1")]
    assert [(d.slot, d.path) for d in vm.drives] == [((SCSI, 0, 0), VOL1)]
    # Idempotent by volume id, whatever the mountpoint.
    assert devices(driver.attach_volume(HOST, spec.uuid, volume("vol-1", VOL1), "vdx")) == devices(
        info
    )
    with pytest.raises(exception.DeviceConflict, match="the device name vdb is taken"):
        driver.attach_volume(HOST, spec.uuid, volume("vol-2", VOL2), "vdb")
    with pytest.raises(exception.DeviceConflict, match="attached already as vdb"):
        driver.attach_volume(HOST, spec.uuid, volume("vol-3", VOL1), None)
    with pytest.raises(exception.UnsupportedOperation, match="'iscsi' volume") as iscsi:
        driver.attach_volume(HOST, spec.uuid, volume("vol-4", "", kind="iscsi"), None)
    assert iscsi.value.kwargs["volume_type"] == "iscsi"
    with pytest.raises(exception.InvalidRequest, match="cannot find the file specified"):
        driver.attach_volume(HOST, spec.uuid, volume("vol-5", "D:\\volumes\\gone.vhdx"), None)
    with pytest.raises(exception.InvalidRequest, match="device_path"):
        driver.attach_volume(HOST, spec.uuid, volume("vol-6", "relative.vhdx"), None)

    info = driver.attach_volume(HOST, spec.uuid, volume("vol-2", VOL2), None)
    assert devices(info)[1] == ("volume", "sdb", None, None, None, "vol-2")
    info = driver.detach_volume(HOST, spec.uuid, "vol-1")
    assert [d.volume_id for d in info.block_devices] == ["vol-2"]
    assert [d.path for d in vm.drives] == [VOL2]
    assert driver.detach_volume(HOST, spec.uuid, "vol-1").block_devices == info.block_devices
    # The failed attaches left no record behind: vol-1's file attaches again as a new volume.
    assert devices(driver.attach_volume(HOST, spec.uuid, volume("vol-7", VOL1), None))[0][5] == (
        "vol-7"
    )

    reach(driver, HOST, spec.uuid, PowerState.PAUSED)
    with pytest.raises(exception.InvalidPowerState) as refused:
        driver.detach_volume(HOST, spec.uuid, "vol-2")
    assert refused.value.kwargs["state"] == PowerState.PAUSED
    with pytest.raises(exception.InstanceNotFound):
        driver.attach_volume(HOST, new_spec().uuid, volume("vol-1", VOL1), None)


def test_extend_volume(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.attach_volume(HOST, spec.uuid, volume("vol-2", VOL2), None)

    info = driver.extend_volume(HOST, spec.uuid, "vol-2", 3)
    assert info.volume("vol-2").size_gb == 3
    assert seeded.host(HOST).vhd(VOL2).size == 3 * GiB
    assert driver.extend_volume(HOST, spec.uuid, "vol-2", 3).volume("vol-2").size_gb == 3
    with pytest.raises(exception.InvalidRequest, match="more than 2 GiB"):
        driver.extend_volume(HOST, spec.uuid, "vol-2", 2)
    with pytest.raises(exception.DeviceNotFound) as missing:
        driver.extend_volume(HOST, spec.uuid, "vol-9", 5)
    assert missing.value.kwargs == {"device": "volume vol-9", "uuid": spec.uuid, "host": HOST}


def test_attach_and_detach_interfaces(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    [vm] = seeded.host(HOST).vms()

    port = vif("port-[1]*", "02:00:00:00:00:0a")  # wildcard characters stay literal
    info = driver.attach_interface(HOST, spec.uuid, port)
    assert interfaces(info) == [("port-[1]*", "02:00:00:00:00:0a", "Default Switch", "port-[1]*")]
    assert interfaces(driver.attach_interface(HOST, spec.uuid, port)) == interfaces(info)
    with pytest.raises(exception.DeviceConflict, match="MAC address 02:00:00:00:00:0a is taken"):
        driver.attach_interface(HOST, spec.uuid, vif("port-2", "02:00:00:00:00:0a"))
    with pytest.raises(exception.InvalidRequest, match='virtual switch with name "lan"'):
        driver.attach_interface(HOST, spec.uuid, vif("port-3", "02:00:00:00:00:0b", "lan"))
    driver.attach_interface(HOST, spec.uuid, vif("port-[2]", "02:00:00:00:00:0c"))

    info = driver.detach_interface(HOST, spec.uuid, "port-[1]*")
    assert [i.port_id for i in info.network_interfaces] == ["port-[2]"]
    assert [a.name for a in vm.adapters] == ["port-[2]"]
    assert driver.detach_interface(HOST, spec.uuid, "port-[1]*").network_interfaces == (
        info.network_interfaces
    )


def test_generation_1_boots_from_ide_and_hot_plugs_on_scsi_only(
    server: WinRMTestServer, make_driver: DriverFactory
) -> None:
    host = server.host(HOST)
    host.add_vhd(IMAGE, GiB)
    host.add_vhd(VOL1, GiB)
    driver = make_driver({HOST: server.urls[HOST]}, generation=1)
    spec = new_spec(
        block_devices=[BlockDevice(kind="image", image="cirros", size_gb=2, boot_index=0)]
    )
    info = driver.spawn(HOST, spec)
    assert devices(info) == [("image", "hda", 0, 2, "cirros", None)]
    [vm] = host.vms()
    assert vm.drives[0].slot == (IDE, 0, 0)

    info = driver.attach_volume(HOST, spec.uuid, volume("vol-1", VOL1), None)
    assert [d.device_name for d in info.block_devices] == ["hda", "sda"]
    assert vm.drives[1].slot == (SCSI, 0, 0)
    # Hyper-V adds adapters to a running generation 1 VM not at all: only once it is off.
    with pytest.raises(exception.InvalidPowerState) as refused:
        driver.attach_interface(HOST, spec.uuid, vif("port-1", "02:00:00:00:00:01"))
    assert refused.value.kwargs["allowed"] == PowerState.STOPPED
    driver.power_off(HOST, spec.uuid)
    info = driver.attach_interface(HOST, spec.uuid, vif("port-1", "02:00:00:00:00:01"))
    assert [i.port_id for i in info.network_interfaces] == ["port-1"]


def test_boot_from_volume(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    spec = new_spec(
        block_devices=[
            BlockDevice(kind="volume", connection_info=volume("boot", VOL1), boot_index=0)
        ]
    )
    info = driver.spawn(HOST, spec)
    assert devices(info) == [("volume", "sda", 0, None, None, "boot")]
    with pytest.raises(exception.InvalidRequest, match="boot volume"):
        driver.detach_volume(HOST, spec.uuid, "boot")
    assert devices(driver.get_info(HOST, spec.uuid)) == devices(info)
    driver.destroy(HOST, spec.uuid)
    assert VOL1 in seeded.host(HOST).vhd_paths()


def test_a_volume_made_by_the_provisioning_command_attaches(
    driver: HyperVDriver, server: WinRMTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """What [conformance] volume_command runs: a VHDX made over WinRM, as a storage admin would."""
    volume_id = "0b5c2a8e-5d0f-4c1e-9a57-3c1f2d9e4b11"
    command = ["--url", server.urls[HOST], "--user", USER, "--password", PASSWORD]
    assert provision.main([*command, volume_id, "2"]) == 0
    connection = json.loads(capsys.readouterr().out)
    path = f"\\\\storage\\volumes\\{volume_id}.vhdx"
    assert connection == {"driver_volume_type": "file", "data": {"device_path": path}}
    made = server.host(HOST).vhd(path)
    assert made is not None and (made.type, made.size) == (VhdType.Dynamic, 2 * GiB)

    spec = new_spec()
    driver.spawn(HOST, spec)
    info = driver.attach_volume(
        HOST, spec.uuid, VolumeConnection(volume_id=volume_id, **connection), None
    )
    assert devices(info) == [("volume", "sda", None, None, None, volume_id)]
    # The same volume twice is the host's refusal, on stderr.
    assert provision.main([*command, volume_id, "2"]) == 1
    assert "The file exists" in capsys.readouterr().err


def test_get_volume_connector(driver: HyperVDriver, server: WinRMTestServer) -> None:
    connector = driver.get_volume_connector(HOST)
    assert (connector.host, connector.initiator, connector.wwpns, connector.multipath) == (
        HOST,
        "iqn.1991-05.com.microsoft:hv01",
        [],
        False,
    )
    assert connector.os_type == "windows"
