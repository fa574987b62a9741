"""The Hyper-V driver's images, rescue and consoles (contract 1.3) against the WinRM test server.

Each operation is checked in what the driver returns and in the emulated
host's own state: its VHD files, each VM's drives, checkpoints and COM ports.
"""

from __future__ import annotations

import pytest

from computed import exception
from computed.objects import BlockDevice, PowerState
from drivers.hyperv.driver import HyperVDriver
from drivers.hyperv.imageops import image_id
from tests.functional._drivers import new_spec, outcome, reach
from tests.winrmserver import ControllerType, GiB, VhdType, VMState, WinRMTestServer, outofband

from .conftest import HOST, PASSWORD, USER, DriverFactory
from .test_hyperv_devices import IMAGE, VHD_DIR, VOL1, spec_with_devices, volume

pytestmark = pytest.mark.hyperv

RESCUE_IMAGE = VHD_DIR + "\\_base\\rescue-os.vhdx"
SCSI, IDE = ControllerType.SCSI, ControllerType.IDE


@pytest.fixture
def seeded(server: WinRMTestServer) -> WinRMTestServer:
    host = server.host(HOST)
    host.add_vhd(IMAGE, GiB)
    host.add_vhd(RESCUE_IMAGE, GiB)
    host.add_vhd(VOL1, GiB)
    return server


class Progress:
    """A ``progress`` callback that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, percent: int) -> None:
        self.seen.append(percent)


def image_spec(name: str = "vm") -> object:
    return new_spec(name, image="cirros", disk_gb=4)


def spawned(driver: HyperVDriver, state: str) -> object:
    """A new instance of the image, in ``state`` (rescued included)."""
    spec = image_spec()
    driver.spawn(HOST, spec)
    if state == PowerState.RESCUED:
        driver.rescue(HOST, spec.uuid, None)
    else:
        reach(driver, HOST, spec.uuid, state)
    return spec


def drives(server: WinRMTestServer, uuid: str) -> list[tuple[object, int, int, str]]:
    """The VM's drives in slot order: (controller type, number, location, path)."""
    [vm] = [v for v in server.host(HOST).vms() if uuid in v.notes]
    return sorted((*d.slot, d.path) for d in vm.drives)


# snapshot, delete_image ---------------------------------------------------------------


@pytest.mark.parametrize("state", [PowerState.RUNNING, PowerState.STOPPED, PowerState.PAUSED])
def test_snapshot_exports_the_root_disk_as_an_image_of_its_own(
    driver: HyperVDriver, seeded: WinRMTestServer, state: str
) -> None:
    spec = spec_with_devices()
    driver.spawn(HOST, spec)
    reach(driver, HOST, spec.uuid, state)
    before = outcome(lambda: driver.get_info(HOST, spec.uuid))
    progress = Progress()

    image = driver.snapshot(HOST, spec.uuid, "nightly: 2026-11-26", progress)

    ident = image_id(spec.uuid, "nightly: 2026-11-26")
    path = f"{VHD_DIR}\\_base\\{ident}.vhdx"
    assert (image.image_id, image.name, image.instance_uuid, image.host) == (
        ident,
        "nightly: 2026-11-26",
        spec.uuid,
        HOST,
    )
    assert (image.location, image.disk_format) == (path, "vhdx")
    assert image.size_bytes and image.size_bytes > 0
    host = seeded.host(HOST)
    made = host.vhd(path)
    assert made is not None
    assert (made.type, made.parent_path, made.size) == (VhdType.Dynamic, None, 4 * GiB)
    # Nothing of the checkpoint is left: the VM writes to its own disks again.
    [vm] = host.vms()
    assert vm.checkpoints == [] and not any(p.endswith(".avhdx") for p in host.vhd_paths())
    assert drives(seeded, spec.uuid)[0][3] == f"{VHD_DIR}\\{spec.uuid}-root.vhdx"
    assert outcome(lambda: driver.get_info(HOST, spec.uuid)) == before
    assert progress.seen == sorted(progress.seen) and progress.seen[0] == 0
    assert progress.seen[-1] == 100 and len(progress.seen) >= 4


def test_snapshot_is_idempotent_by_instance_and_name(
    driver: HyperVDriver, seeded: WinRMTestServer, make_driver: DriverFactory
) -> None:
    spec = image_spec()
    other = image_spec("other")
    driver.spawn(HOST, spec)
    driver.spawn(HOST, other)
    first = driver.snapshot(HOST, spec.uuid, "base", Progress())
    host = seeded.host(HOST)
    images = host.vhd_paths()
    # A restarted worker finds the image by its file name and takes no second one.
    again = make_driver(dict(seeded.urls)).snapshot(HOST, spec.uuid, "base", Progress())
    assert (
        again.obj_to_primitive()["computed_object.data"]
        == first.obj_to_primitive()["computed_object.data"]
    )
    assert host.vhd_paths() == images
    # Another name, or another instance, is another image; names differing in case too.
    assert driver.snapshot(HOST, spec.uuid, "Base", Progress()).image_id != first.image_id
    assert driver.snapshot(HOST, other.uuid, "base", Progress()).image_id != first.image_id
    assert len(host.vhd_paths()) == len(images) + 2


def test_an_image_outlives_its_instance_and_boots_another(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    image = driver.snapshot(HOST, spec.uuid, "golden", Progress())
    driver.destroy(HOST, spec.uuid)
    host = seeded.host(HOST)
    assert host.vhd(image.location) is not None
    # Taken again after the instance is gone, it is still the instance's image; a new
    # one of a missing instance is refused...
    again = driver.snapshot(HOST, spec.uuid, "golden", Progress())
    assert (again.image_id, again.location) == (image.image_id, image.location)
    with pytest.raises(exception.InstanceNotFound):
        driver.snapshot(HOST, spec.uuid, "silver", Progress())
    # ... and its id is an image name spawn takes.
    clone = new_spec("clone", image=image.image_id, disk_gb=4)
    assert driver.spawn(HOST, clone).power_state == PowerState.RUNNING
    assert host.vhd(f"{VHD_DIR}\\{clone.uuid}-root.vhdx").parent_path == image.location


def test_delete_image_removes_it_and_a_missing_one_succeeds(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    image = driver.snapshot(HOST, spec.uuid, "old", Progress())
    host = seeded.host(HOST)
    driver.delete_image(HOST, image.image_id)
    assert host.vhd(image.location) is None
    driver.delete_image(HOST, image.image_id)
    # An id the driver never makes names no file: nothing outside its images is touched.
    driver.delete_image(HOST, "..\\..\\Windows\\system")
    driver.delete_image(HOST, "cirros")
    assert host.vhd(IMAGE) is not None
    # Deleted, the name can be taken again.
    assert host.vhd(driver.snapshot(HOST, spec.uuid, "old", Progress()).location) is not None


@pytest.mark.parametrize("state", [PowerState.SUSPENDED, PowerState.RESCUED])
def test_snapshot_outside_its_states_is_invalid_power_state(
    driver: HyperVDriver, seeded: WinRMTestServer, state: str
) -> None:
    spec = spawned(driver, state)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.snapshot(HOST, spec.uuid, "x", Progress())
    assert caught.value.kwargs == {
        "uuid": spec.uuid,
        "operation": "snapshot",
        "state": state,
        "allowed": "paused, running, stopped",
    }
    assert seeded.host(HOST).vms()[0].checkpoints == []


def test_snapshot_of_a_missing_instance_is_instance_not_found(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    with pytest.raises(exception.InstanceNotFound):
        driver.snapshot(HOST, spec.uuid, "x", Progress())


def test_a_failed_copy_leaves_no_checkpoint_and_no_image(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    host = seeded.host(HOST)
    files = host.vhd_paths()
    host.fail_next("Convert-VHD", "The system cannot find the path specified. (0x80070003)")
    with pytest.raises(exception.DriverError, match="0x80070003"):
        driver.snapshot(HOST, spec.uuid, "x", Progress())
    assert host.vms()[0].checkpoints == [] and host.vhd_paths() == files
    assert driver.snapshot(HOST, spec.uuid, "x", Progress()).name == "x"


def test_a_checkpoint_an_interrupted_snapshot_left_is_removed(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    host = seeded.host(HOST)
    [vm] = host.vms()
    host.checkpoint(vm, "computed-image:x")  # the worker died before it could remove it
    driver.snapshot(HOST, spec.uuid, "x", Progress())
    assert vm.checkpoints == []
    assert drives(seeded, spec.uuid)[0][3].endswith("-root.vhdx")


# rescue, unrescue ------------------------------------------------------------------------


@pytest.mark.parametrize("state", [PowerState.RUNNING, PowerState.STOPPED])
def test_rescue_boots_the_rescue_image_with_the_root_disk_second(
    driver: HyperVDriver, seeded: WinRMTestServer, state: str
) -> None:
    spec = spec_with_devices()
    driver.spawn(HOST, spec)
    reach(driver, HOST, spec.uuid, state)
    own = outcome(lambda: driver.get_info(HOST, spec.uuid))
    root = f"{VHD_DIR}\\{spec.uuid}-root.vhdx"
    rescue = f"{VHD_DIR}\\{spec.uuid}-rescue.vhdx"

    info = driver.rescue(HOST, spec.uuid, "rescue-os")

    # It reports its own devices; the host shows the rescue disk in the boot slot.
    assert outcome(lambda: info) == {**own, "power_state": PowerState.RESCUED}
    assert outcome(lambda: driver.get_info(HOST, spec.uuid)) == outcome(lambda: info)
    [listed] = driver.list_instances(HOST)
    assert listed.power_state == PowerState.RESCUED
    host = seeded.host(HOST)
    [vm] = host.vms()
    assert vm.state == VMState.Running
    layout = drives(seeded, spec.uuid)
    assert layout[0] == (SCSI, 0, 0, rescue)
    assert (SCSI, 0, 3, root) in layout  # the first free location: 1 and 2 hold the others
    assert host.vhd(rescue).parent_path == RESCUE_IMAGE
    # Rescued again: a no-op.
    assert outcome(lambda: driver.rescue(HOST, spec.uuid, "cirros")) == outcome(lambda: info)
    assert drives(seeded, spec.uuid) == layout


def test_unrescue_boots_the_own_root_disk_with_every_device(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = spec_with_devices()
    driver.spawn(HOST, spec)
    own = outcome(lambda: driver.get_info(HOST, spec.uuid))
    layout = drives(seeded, spec.uuid)
    driver.rescue(HOST, spec.uuid, None)

    info = driver.unrescue(HOST, spec.uuid)

    assert outcome(lambda: info) == own
    assert drives(seeded, spec.uuid) == layout
    host = seeded.host(HOST)
    assert host.vhd(f"{VHD_DIR}\\{spec.uuid}-rescue.vhdx") is None
    assert host.vms()[0].state == VMState.Running
    # Unrescuing a running instance: a no-op.
    assert outcome(lambda: driver.unrescue(HOST, spec.uuid)) == own


def test_a_rescue_survives_a_worker_restart(
    driver: HyperVDriver, seeded: WinRMTestServer, make_driver: DriverFactory
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    restarted = make_driver(dict(seeded.urls))
    assert restarted.get_info(HOST, spec.uuid).power_state == PowerState.RESCUED
    assert restarted.unrescue(HOST, spec.uuid).power_state == PowerState.RUNNING


@pytest.mark.parametrize(
    "operation",
    ["power_off", "pause", "suspend", "reboot", "attach_volume", "snapshot", "rescue-other"],
)
def test_a_rescued_instance_takes_only_unrescue_destroy_and_queries(
    driver: HyperVDriver, seeded: WinRMTestServer, operation: str
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    calls = {
        "power_off": lambda: driver.power_off(HOST, spec.uuid),
        "pause": lambda: driver.pause(HOST, spec.uuid),
        "suspend": lambda: driver.suspend(HOST, spec.uuid),
        "reboot": lambda: driver.reboot(HOST, spec.uuid, "hard"),
        "attach_volume": lambda: driver.attach_volume(HOST, spec.uuid, volume("vol-1", VOL1), None),
        "snapshot": lambda: driver.snapshot(HOST, spec.uuid, "x", Progress()),
    }
    if operation == "rescue-other":
        assert driver.rescue(HOST, spec.uuid, "rescue-os").power_state == PowerState.RESCUED
        return
    with pytest.raises(exception.InvalidPowerState) as caught:
        calls[operation]()
    assert caught.value.kwargs["state"] == PowerState.RESCUED


def test_destroying_a_rescued_instance_removes_the_rescue_disk(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    driver.destroy(HOST, spec.uuid)
    host = seeded.host(HOST)
    assert host.vms() == []
    assert host.vhd_paths() == sorted([IMAGE, RESCUE_IMAGE, VOL1])


@pytest.mark.parametrize("state", [PowerState.PAUSED, PowerState.SUSPENDED])
def test_rescue_outside_running_and_stopped_is_invalid_power_state(
    driver: HyperVDriver, seeded: WinRMTestServer, state: str
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    reach(driver, HOST, spec.uuid, state)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.rescue(HOST, spec.uuid, None)
    assert caught.value.kwargs["allowed"] == "running, stopped"
    with pytest.raises(exception.InvalidPowerState):
        driver.unrescue(HOST, spec.uuid)


def test_rescue_needs_an_image(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    boot_volume = BlockDevice(
        kind="volume", connection_info=volume("vol-1", VOL1), boot_index=0, device_name="vda"
    )
    spec = new_spec("from a volume", block_devices=[boot_volume])
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="name a rescue image"):
        driver.rescue(HOST, spec.uuid, None)
    with pytest.raises(exception.InvalidRequest, match="not found"):
        driver.rescue(HOST, spec.uuid, "no-such-image")
    # With one named, the boot volume becomes the second disk.
    assert driver.rescue(HOST, spec.uuid, "rescue-os").power_state == PowerState.RESCUED
    assert (SCSI, 0, 1, VOL1) in drives(seeded, spec.uuid)
    assert driver.unrescue(HOST, spec.uuid).block_devices[0].volume_id == "vol-1"
    assert drives(seeded, spec.uuid) == [(SCSI, 0, 0, VOL1)]


def test_a_failed_rescue_is_undone(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    own = outcome(lambda: driver.get_info(HOST, spec.uuid))
    layout = drives(seeded, spec.uuid)
    host = seeded.host(HOST)
    host.fail_next("Start-VM", "'vm' failed to start. (0x80004005)")
    with pytest.raises(exception.DriverError, match="failed to start"):
        driver.rescue(HOST, spec.uuid, None)
    assert outcome(lambda: driver.get_info(HOST, spec.uuid)) == own
    assert drives(seeded, spec.uuid) == layout
    assert host.vhd(f"{VHD_DIR}\\{spec.uuid}-rescue.vhdx") is None


def test_unrescue_finishes_a_rescue_interrupted_half_way(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    layout = drives(seeded, spec.uuid)
    host = seeded.host(HOST)
    # The rescue disk cannot be added once the root disk is out, nor the root disk
    # put back by the undo: the VM is left off, without its root disk.
    host.fail_next("Add-VMHardDiskDrive", "Failed to add device 'Virtual Hard Disk'.")
    host.fail_next("Add-VMHardDiskDrive", "Failed to add device 'Virtual Hard Disk'.")
    with pytest.raises(exception.DriverError):
        driver.rescue(HOST, spec.uuid, None)
    assert driver.get_info(HOST, spec.uuid).power_state == PowerState.RESCUED
    assert host.vms()[0].drives == []
    assert driver.unrescue(HOST, spec.uuid).power_state == PowerState.RUNNING
    assert drives(seeded, spec.uuid) == layout


def test_generation_1_rescues_from_ide(seeded: WinRMTestServer, make_driver: DriverFactory) -> None:
    driver = make_driver(dict(seeded.urls), generation=1)
    spec = image_spec()
    driver.spawn(HOST, spec)
    root = f"{VHD_DIR}\\{spec.uuid}-root.vhdx"
    driver.rescue(HOST, spec.uuid, None)
    assert drives(seeded, spec.uuid) == [
        (IDE, 0, 0, f"{VHD_DIR}\\{spec.uuid}-rescue.vhdx"),
        (SCSI, 0, 0, root),
    ]
    driver.unrescue(HOST, spec.uuid)
    assert drives(seeded, spec.uuid) == [(IDE, 0, 0, root)]


# consoles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [PowerState.RUNNING, PowerState.PAUSED, PowerState.RESCUED])
def test_consoles_are_the_com_pipe_and_vmconnect(
    driver: HyperVDriver, seeded: WinRMTestServer, state: str
) -> None:
    spec = spawned(driver, state)
    [vm] = seeded.host(HOST).vms()
    pipe = f"\\\\.\\pipe\\computed-{spec.uuid}"
    assert vm.com_ports == [pipe, ""]

    serial = driver.get_serial_console(HOST, spec.uuid)
    graphical = driver.get_graphical_console(HOST, spec.uuid)

    assert {f: getattr(serial, f) for f in serial.fields} == {
        "instance_uuid": spec.uuid,
        "kind": "serial",
        "protocol": "pipe",
        "host": "127.0.0.1",
        "port": None,
        "path": pipe,
        "token": None,
    }
    assert {f: getattr(graphical, f) for f in graphical.fields} == {
        "instance_uuid": spec.uuid,
        "kind": "graphical",
        "protocol": "rdp",
        "host": "127.0.0.1",
        "port": 2179,
        "path": str(vm.id),
        "token": None,
    }
    serial.validate("get_serial_console")
    graphical.validate("get_graphical_console")


def test_the_vmconnect_port_is_the_hosts(driver: HyperVDriver, seeded: WinRMTestServer) -> None:
    seeded.host(HOST).vmconnect_port = 12179
    spec = image_spec()
    driver.spawn(HOST, spec)
    assert driver.get_graphical_console(HOST, spec.uuid).port == 12179


@pytest.mark.parametrize("operation", ["get_serial_console", "get_graphical_console"])
def test_consoles_need_a_console_state(
    driver: HyperVDriver, seeded: WinRMTestServer, operation: str
) -> None:
    spec = image_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as caught:
        getattr(driver, operation)(HOST, spec.uuid)
    assert caught.value.kwargs["allowed"] == "paused, rescued, running"
    with pytest.raises(exception.InstanceNotFound):
        getattr(driver, operation)(HOST, new_spec().uuid)


def test_a_vm_without_a_com_pipe_has_no_serial_console(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    vm = seeded.host(HOST).add_vm("by hand", state=VMState.Running)
    with pytest.raises(exception.UnsupportedOperation) as caught:
        driver.get_serial_console(HOST, str(vm.id))
    assert "not connected to a named pipe" in caught.value.kwargs["detail"]
    assert driver.get_graphical_console(HOST, str(vm.id)).path == str(vm.id)


def test_an_instance_without_a_root_disk_is_rescued_and_imaged_too(
    driver: HyperVDriver, seeded: WinRMTestServer
) -> None:
    spec = new_spec("diskless", disk_gb=2)
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="name a rescue image"):
        driver.rescue(HOST, spec.uuid, None)
    assert driver.rescue(HOST, spec.uuid, "rescue-os").block_devices == []
    assert drives(seeded, spec.uuid) == [(SCSI, 0, 0, f"{VHD_DIR}\\{spec.uuid}-rescue.vhdx")]
    assert driver.unrescue(HOST, spec.uuid).power_state == PowerState.RUNNING
    assert drives(seeded, spec.uuid) == []
    # Its image is what a disk of its disk_gb never written reads: blank.
    image = driver.snapshot(HOST, spec.uuid, "empty", Progress())
    made = seeded.host(HOST).vhd(image.location)
    assert (made.type, made.size, made.parent_path) == (VhdType.Dynamic, 2 * GiB, None)
    assert seeded.host(HOST).vms()[0].checkpoints == []


# the out-of-band command the conformance suite changes instances with ------------------


def test_the_out_of_band_command_stops_and_removes_an_instances_vm(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    command = ["--url", server.urls[HOST], "--user", USER, "--password", PASSWORD]
    first, second = new_spec("first"), new_spec("second")
    driver.spawn(HOST, first)
    driver.spawn(HOST, second)
    assert outofband.main([*command, "stop", HOST, first.uuid]) == 0
    assert driver.get_info(HOST, first.uuid).power_state == PowerState.STOPPED
    assert outofband.main([*command, "delete", HOST, second.uuid]) == 0
    assert [i.uuid for i in driver.list_instances(HOST)] == [first.uuid]
    assert outofband.main([*command, "delete", HOST, second.uuid]) == 1
