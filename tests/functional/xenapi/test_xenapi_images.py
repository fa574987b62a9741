"""Snapshots, their removal and consoles (contract 1.3) against the xapi test server.

An observer's own ``XenAPI`` session checks what the pool really holds.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from typing import Any

import pytest

from computed import exception
from computed.objects import BlockDevice, VolumeConnection
from tests.functional import _drivers
from tests.functional._drivers import new_spec
from tests.functional.xenapi.conftest import HOST, POOL, DriverFactory
from tests.xapiserver import XapiTestServer

XenAPI = pytest.importorskip("XenAPI")

from drivers.xenapi.driver import XenAPIDriver  # noqa: E402
from tests.functional.xenapi.test_xenapi_driver import vm_of  # noqa: E402

pytestmark = pytest.mark.xenapi

GiB = 1024**3


def ignore(percent: int) -> None:
    pass


# Snapshot ---------------------------------------------------------------------


def test_snapshot_is_a_snapshot_vm_of_the_root_disk(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec(disk_gb=3)
    driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    seen: list[int] = []
    image = driver.snapshot(HOST, spec.uuid, "nightly", seen.append)
    (snapshot,) = xapi.VM.get_snapshots(vm)
    record = xapi.VM.get_record(snapshot)
    assert (record["is_a_snapshot"], record["snapshot_of"], record["name_label"]) == (
        True,
        vm,
        "nightly",
    )
    (vbd,) = record["VBDs"]
    vdi = xapi.VDI.get_record(xapi.VBD.get_VDI(vbd))
    assert vdi["is_a_snapshot"] and vdi["snapshot_of"] in [
        xapi.VBD.get_VDI(v) for v in xapi.VM.get_VBDs(vm)
    ]
    assert (image.image_id, image.name, image.instance_uuid, image.host) == (
        record["uuid"],
        "nightly",
        spec.uuid,
        HOST,
    )
    assert image.location == f"VM {record['uuid']}, VDI {vdi['uuid']}"
    assert (image.disk_format, image.size_bytes) == ("vhd", 3 * GiB)
    assert seen == sorted(seen) and seen[-1] == 100 and all(0 <= p <= 100 for p in seen)
    assert driver.get_info(HOST, spec.uuid).power_state == "running"  # as it was
    assert [i.uuid for i in driver.list_instances(HOST)] == [spec.uuid]  # no new instance


def test_snapshot_reports_the_tasks_progress(driver: XenAPIDriver, server: XapiTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    hold = server.hold_progress("VM.snapshot", 0.4)
    seen: list[int] = []

    def progress(percent: int) -> None:
        seen.append(percent)
        if percent >= 40:
            hold.release()

    done = threading.Thread(target=driver.snapshot, args=(HOST, spec.uuid, "held", progress))
    done.start()
    assert hold.reached.wait(30)
    done.join(60)
    assert 40 in seen and seen[-1] == 100 and seen == sorted(seen)


def test_snapshot_is_idempotent_by_name(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    first = driver.snapshot(HOST, spec.uuid, "before upgrade", ignore)
    driver.power_off(HOST, spec.uuid)
    again = driver.snapshot(HOST, spec.uuid, "before upgrade", ignore)
    assert again.obj_to_primitive() == first.obj_to_primitive()
    other = driver.snapshot(HOST, spec.uuid, "after upgrade", ignore)
    assert other.image_id != first.image_id
    assert len(xapi.VM.get_snapshots(vm_of(xapi, spec.uuid))) == 2
    assert driver.get_info(HOST, spec.uuid).power_state == "stopped"


def test_a_new_driver_finds_the_image(
    driver: XenAPIDriver, server: XapiTestServer, make_driver: DriverFactory
) -> None:
    """A worker that takes the host over repeats the snapshot: the image is found in xapi."""
    spec = new_spec()
    driver.spawn(HOST, spec)
    first = driver.snapshot(HOST, spec.uuid, "taken over", ignore)
    successor = make_driver(server.url)
    assert successor.snapshot(HOST, spec.uuid, "taken over", ignore).image_id == first.image_id


def test_snapshot_leaves_out_every_other_disk(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec(block_devices=[BlockDevice(kind="blank", size_gb=1)])
    assert len(driver.spawn(HOST, spec).block_devices) == 2
    image = driver.snapshot(HOST, spec.uuid, "root only", ignore)
    snapshot = xapi.VM.get_by_uuid(image.image_id)
    (vbd,) = xapi.VM.get_VBDs(snapshot)
    assert xapi.VBD.get_userdevice(vbd) == "0"


@pytest.mark.parametrize(("start", "state"), [("suspended", "suspended")])
def test_snapshot_refused_outside_its_states(
    driver: XenAPIDriver, xapi: Any, start: str, state: str
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    _drivers.reach(driver, HOST, spec.uuid, start)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.snapshot(HOST, spec.uuid, "refused", ignore)
    assert caught.value.kwargs == {
        "uuid": spec.uuid,
        "operation": "snapshot",
        "state": state,
        "allowed": "paused, running, stopped",
    }
    assert xapi.VM.get_snapshots(vm_of(xapi, spec.uuid)) == []


@pytest.mark.parametrize("start", ["paused", "stopped"])
def test_snapshot_keeps_the_power_state(driver: XenAPIDriver, start: str) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    _drivers.reach(driver, HOST, spec.uuid, start)
    driver.snapshot(HOST, spec.uuid, f"from {start}", ignore)
    assert driver.get_info(HOST, spec.uuid).power_state == start


def test_snapshot_errors(driver: XenAPIDriver, server: XapiTestServer, xapi: Any) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(exception.InstanceNotFound):
        driver.snapshot(HOST, missing, "nothing", ignore)
    spec = new_spec()
    driver.spawn(HOST, spec)
    server.inject_failure("VM.snapshot", ["SR_FULL", "1", "0"])
    with pytest.raises(exception.DriverError) as caught:
        driver.snapshot(HOST, spec.uuid, "full", ignore)
    assert (caught.value.kwargs["error_code"], caught.value.kwargs["pool"]) == ("SR_FULL", POOL)
    vm = vm_of(xapi, spec.uuid)
    server.inject_failure("VM.snapshot", ["VM_BAD_POWER_STATE", vm, "running", "suspended"])
    with pytest.raises(exception.InvalidPowerState) as changed:  # suspended meanwhile
        driver.snapshot(HOST, spec.uuid, "late", ignore)
    assert (changed.value.kwargs["state"], changed.value.kwargs["allowed"]) == (
        "suspended",
        "paused, running, stopped",
    )


def test_snapshot_of_a_boot_volume_is_unsupported(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    """An iSCSI SR cannot snapshot its LUNs: the image cannot be taken there."""
    iqn, portal = "iqn.2010-10.org.computed:snap", "198.51.100.9:3260"
    server.add_iscsi_lun(iqn, portal, 1, 2 * GiB)
    data = {"target_portal": portal, "target_iqn": iqn, "target_lun": 1}
    connection = VolumeConnection(volume_id="boot", driver_volume_type="iscsi", data=data)
    spec = new_spec(
        block_devices=[BlockDevice(kind="volume", boot_index=0, connection_info=connection)]
    )
    driver.spawn(HOST, spec)
    with pytest.raises(exception.UnsupportedOperation) as caught:
        driver.snapshot(HOST, spec.uuid, "of a volume", ignore)
    assert caught.value.kwargs["error_code"] == "SR_OPERATION_NOT_SUPPORTED"
    assert xapi.VM.get_snapshots(vm_of(xapi, spec.uuid)) == []


# delete_image -----------------------------------------------------------------


def test_delete_image_removes_the_snapshot_and_its_disks(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vdis_before = set(xapi.VDI.get_all())
    image = driver.snapshot(HOST, spec.uuid, "to delete", ignore)
    assert set(xapi.VDI.get_all()) != vdis_before
    driver.delete_image(HOST, image.image_id)
    assert set(xapi.VDI.get_all()) == vdis_before
    assert xapi.VM.get_snapshots(vm_of(xapi, spec.uuid)) == []
    driver.delete_image(HOST, image.image_id)  # missing: succeeds
    driver.delete_image(HOST, str(uuidlib.uuid4()))


def test_images_outlive_their_instance(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    image = driver.snapshot(HOST, spec.uuid, "kept", ignore)
    driver.destroy(HOST, spec.uuid)
    snapshot = xapi.VM.get_by_uuid(image.image_id)
    (vbd,) = xapi.VM.get_VBDs(snapshot)
    assert xapi.VDI.get_virtual_size(xapi.VBD.get_VDI(vbd)) == str(image.size_bytes)
    assert driver.list_instances(HOST) == []
    driver.delete_image(HOST, image.image_id)
    with pytest.raises(XenAPI.Failure):
        xapi.VM.get_by_uuid(image.image_id)


def test_delete_image_refuses_what_is_not_an_image(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vm_uuid = xapi.VM.get_uuid(vm_of(xapi, spec.uuid))
    with pytest.raises(exception.InvalidRequest):
        driver.delete_image(HOST, vm_uuid)  # the instance's own VM
    assert driver.get_info(HOST, spec.uuid).power_state == "running"


# Consoles ---------------------------------------------------------------------


def test_graphical_console_is_the_vms_vnc(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    (console,) = xapi.VM.get_consoles(vm)
    got = driver.get_graphical_console(HOST, spec.uuid)
    host = xapi.host.get_record(xapi.VM.get_resident_on(vm))
    assert (got.kind, got.protocol, got.host, got.port) == (
        "graphical",
        "vnc",
        host["address"],
        443,
    )
    assert got.path == f"/console?uuid={xapi.console.get_uuid(console)}"
    assert got.token == driver._sessions[POOL].ref  # the session, as nova handed it on
    got.validate("get_graphical_console")
    driver.pause(HOST, spec.uuid)
    assert driver.get_graphical_console(HOST, spec.uuid).path == got.path


def test_graphical_console_needs_a_domain(driver: XenAPIDriver, server: XapiTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.get_graphical_console(HOST, spec.uuid)
    assert caught.value.kwargs["allowed"] == "paused, rescued, running"
    with pytest.raises(exception.InstanceNotFound):
        driver.get_graphical_console(HOST, str(uuidlib.uuid4()))


def test_vm_without_a_graphical_console(driver: XenAPIDriver, server: XapiTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    pool = server.pool()
    with pool.lock:  # a PV guest whose VNC forwarding is off (disable_pv_vnc): text only
        for ref, _ in pool.items("console"):
            pool.update("console", ref, protocol="vt100")
    with pytest.raises(exception.UnsupportedOperation) as caught:
        driver.get_graphical_console(HOST, spec.uuid)
    assert caught.value.kwargs["operation"] == "get_graphical_console"
