"""Images, rescue and consoles (contract 1.3) with the libvirt driver against a real libvirtd.

The test driver has storage pools whose volumes ``storageVolCreateXMLFrom``
copies (at once, and without data: its volumes are records), keeps the
domain XML and metadata it is given, and runs no guest, so it gives a pty
serial console no path and a VNC display no port. The copy of real data, a
rescue boot and consoles with ports are in ``test_libvirt_guest.py``, under
qemu.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from computed import exception
from computed.objects import BlockDevice, PowerState, VolumeConnection
from computed.testing.libvirtd import Libvirtd
from drivers import base
from tests.functional import _drivers
from tests.functional._drivers import new_spec

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import imageops  # noqa: E402
from drivers.libvirt.driver import LibvirtDriver  # noqa: E402

from .conftest import HOST, DriverFactory  # noqa: E402

pytestmark = pytest.mark.libvirt

POOL = "default-pool"  # the test driver's built-in pool, at /default-pool
IMAGE = "cirros"
RESCUE_IMAGE = "rescue-system"
GIB = 1024**3


@pytest.fixture
def pool(virt: Any) -> Iterator[Any]:
    """The test node's pool with a 1 GiB image and a smaller rescue image; emptied afterwards."""
    pool = virt.storagePoolLookupByName(POOL)
    for name, size in ((IMAGE, GIB), (RESCUE_IMAGE, GIB // 4)):
        pool.createXML(
            f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity></volume>", 0
        )
    yield pool
    for vol in pool.listAllVolumes(0):
        vol.delete(0)


@pytest.fixture
def pooled(daemon: Libvirtd, virt: Any, pool: Any, make_driver: DriverFactory) -> LibvirtDriver:
    """A driver keeping disks and images in the test node's pool."""
    return make_driver(daemon.uri_for(), storage_pool=POOL)


class Progress:
    """A ``progress`` callback that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, percent: int) -> None:
        with self._lock:
            self.seen.append(percent)


def spawn_from_image(driver: LibvirtDriver, name: str = "vm", **fields: Any) -> Any:
    spec = new_spec(
        name,
        image=IMAGE,
        disk_gb=2,
        block_devices=[BlockDevice(kind="image", image=IMAGE, size_gb=2, boot_index=0)],
        **fields,
    )
    return driver.spawn(HOST, spec)


def volumes(pool: Any) -> set[str]:
    return {vol.name() for vol in pool.listAllVolumes(0)}


def dom_xml(virt: Any, uuid: str) -> ET.Element:
    return ET.fromstring(virt.lookupByUUIDString(uuid).XMLDesc(0))


def disk_sources(xml: ET.Element) -> dict[str, str | None]:
    return {
        d.find("target").get("dev"): d.find("source").get("file")
        for d in xml.iterfind("devices/disk")
    }


# snapshot, delete_image ----------------------------------------------------------------


@pytest.mark.parametrize("start", sorted(base.SNAPSHOT_STATES))
def test_snapshot_copies_the_root_disk_into_the_pool(
    pooled: LibvirtDriver, pool: Any, virt: Any, start: str
) -> None:
    info = spawn_from_image(pooled)
    _drivers.reach(pooled, HOST, info.uuid, start)
    progress = Progress()

    image = pooled.snapshot(HOST, info.uuid, "nightly 2026-11-26", progress)

    name = f"snapshot-{info.uuid}-nightly 2026-11-26"
    assert image.to_dict() == {
        "image_id": f"{POOL}/{name}",
        "name": "nightly 2026-11-26",
        "instance_uuid": info.uuid,
        "host": HOST,
        "location": f"/{POOL}/{name}",
        "disk_format": "raw",
        "size_bytes": 2 * GIB,
    }
    vol = pool.storageVolLookupByName(name)
    assert vol.info()[1] == 2 * GIB
    assert ET.fromstring(vol.XMLDesc(0)).find("target/format").get("type") == "raw"
    assert progress.seen[0] == 0 and progress.seen[-1] == 100
    assert progress.seen == sorted(progress.seen)
    # The instance is as it was: a running one was paused for the copy only.
    assert pooled.get_info(HOST, info.uuid).power_state == start


def test_a_snapshot_is_taken_once_per_instance_and_name(
    pooled: LibvirtDriver, pool: Any, virt: Any
) -> None:
    first, second = spawn_from_image(pooled, "first"), spawn_from_image(pooled, "second")
    image = pooled.snapshot(HOST, first.uuid, "backup", Progress())
    before = volumes(pool)

    again = Progress()
    assert pooled.snapshot(HOST, first.uuid, "backup", again) == image
    assert volumes(pool) == before  # nothing copied
    other = pooled.snapshot(HOST, second.uuid, "backup", Progress())
    assert other.image_id != image.image_id and other.instance_uuid == second.uuid
    renamed = pooled.snapshot(HOST, first.uuid, "backup-2", Progress())
    assert renamed.image_id not in (image.image_id, other.image_id)


def test_a_snapshot_is_found_again_by_a_new_driver(
    pooled: LibvirtDriver, daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    """The lookup is the volume's name: a worker taking the host over finds the image."""
    info = spawn_from_image(pooled)
    image = pooled.snapshot(HOST, info.uuid, "before upgrade", Progress())
    successor = make_driver(daemon.uri_for(), storage_pool=POOL)
    progress = Progress()
    assert successor.snapshot(HOST, info.uuid, "before upgrade", progress) == image


def test_a_long_image_name_still_names_one_volume(pooled: LibvirtDriver, pool: Any) -> None:
    info = spawn_from_image(pooled)
    long_a, long_b = "a" * 254 + "1", "a" * 254 + "2"
    first = pooled.snapshot(HOST, info.uuid, long_a, Progress())
    second = pooled.snapshot(HOST, info.uuid, long_b, Progress())
    assert first.image_id != second.image_id
    assert all(len(ref.image_id.split("/", 1)[1].encode()) <= 255 for ref in (first, second))
    assert pooled.snapshot(HOST, info.uuid, long_a, Progress()) == first
    assert first.name == long_a


def test_images_outlive_their_instance_until_deleted(pooled: LibvirtDriver, pool: Any) -> None:
    info = spawn_from_image(pooled)
    image = pooled.snapshot(HOST, info.uuid, "keep", Progress())
    volume = image.image_id.split("/", 1)[1]

    pooled.destroy(HOST, info.uuid)
    assert volume in volumes(pool)
    assert f"{info.uuid}-vda" not in volumes(pool)  # its disk went with it

    pooled.delete_image(HOST, image.image_id)
    assert volume not in volumes(pool)
    pooled.delete_image(HOST, image.image_id)  # gone already: fine


def test_a_snapshot_serves_as_the_image_of_a_new_instance(pooled: LibvirtDriver, pool: Any) -> None:
    info = spawn_from_image(pooled)
    image = pooled.snapshot(HOST, info.uuid, "golden", Progress())
    volume = image.image_id.split("/", 1)[1]
    clone = new_spec(
        "clone", block_devices=[BlockDevice(kind="image", image=volume, size_gb=2, boot_index=0)]
    )
    assert pooled.spawn(HOST, clone).block_devices[0].image == volume


@pytest.mark.parametrize(
    "image_id", [f"{POOL}/{IMAGE}", f"{POOL}/no-such-snapshot", "no-such-pool/snapshot-x", "x"]
)
def test_delete_image_deletes_nothing_but_images(
    pooled: LibvirtDriver, pool: Any, image_id: str
) -> None:
    before = volumes(pool)
    pooled.delete_image(HOST, image_id)
    assert volumes(pool) == before  # the base image above all


def test_snapshot_refused_outside_its_states(pooled: LibvirtDriver, pool: Any) -> None:
    info = spawn_from_image(pooled)
    pooled.suspend(HOST, info.uuid)
    before = volumes(pool)
    with pytest.raises(exception.InvalidPowerState) as refused:
        pooled.snapshot(HOST, info.uuid, "x", Progress())
    assert refused.value.kwargs == {
        "uuid": info.uuid,
        "operation": "snapshot",
        "state": "suspended",
        "allowed": "paused, running, stopped",
    }
    assert volumes(pool) == before


def test_snapshot_of_a_missing_instance(pooled: LibvirtDriver) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(exception.InstanceNotFound) as caught:
        pooled.snapshot(HOST, missing, "x", Progress())
    assert caught.value.kwargs == {"uuid": missing, "host": HOST}


def test_snapshot_needs_a_root_disk_in_a_pool(pooled: LibvirtDriver, driver: LibvirtDriver) -> None:
    volume_backed = new_spec(
        "from-volume",
        block_devices=[
            BlockDevice(
                kind="volume",
                boot_index=0,
                connection_info=VolumeConnection(
                    volume_id="boot", driver_volume_type="file", data={"device_path": "/srv/b"}
                ),
            )
        ],
    )
    pooled.spawn(HOST, volume_backed)
    with pytest.raises(exception.UnsupportedOperation, match="snapshot"):
        pooled.snapshot(HOST, volume_backed.uuid, "x", Progress())
    # Without [libvirt] storage_pool there is nowhere to keep an image.
    spec = new_spec("no-pool")
    driver.spawn(HOST, spec)
    with pytest.raises(exception.UnsupportedOperation) as caught:
        driver.snapshot(HOST, spec.uuid, "x", Progress())
    assert "storage_pool" in caught.value.kwargs["detail"]


# rescue, unrescue ---------------------------------------------------------------------


#: Every transition into or out of rescued (the others are in test_libvirt_driver.py).
RESCUE_TRANSITIONS = [
    (start, operation)
    for start in [*_drivers.REACH, PowerState.RESCUED]
    for operation in sorted(base.TRANSITIONS)
    if start == PowerState.RESCUED or operation in base.RESCUE_OPERATIONS
]


@pytest.mark.parametrize(("start", "operation"), RESCUE_TRANSITIONS)
def test_transitions_of_rescue_match_the_fake_driver(
    pooled: LibvirtDriver, start: str, operation: str
) -> None:
    """Into and out of rescued, every transition as the fake driver makes it."""
    fake = _drivers.fake_driver(HOST)
    spec = new_spec("spec", image=IMAGE, disk_gb=2)

    def run(subject: base.ComputeDriver) -> tuple[Any, Any, str]:
        subject.spawn(HOST, spec)
        if start == PowerState.RESCUED:
            subject.rescue(HOST, spec.uuid, None)
        else:
            _drivers.reach(subject, HOST, spec.uuid, start)
        assert subject.get_info(HOST, spec.uuid).power_state == start
        first = _drivers.outcome(lambda: _drivers.apply(subject, HOST, spec.uuid, operation))
        second = _drivers.outcome(lambda: _drivers.apply(subject, HOST, spec.uuid, operation))
        return first, second, subject.get_info(HOST, spec.uuid).power_state

    assert run(pooled) == run(fake)


@pytest.mark.parametrize("start", [PowerState.RUNNING, PowerState.STOPPED])
def test_rescue_boots_the_rescue_disk_with_the_root_disk_second(
    pooled: LibvirtDriver, pool: Any, virt: Any, start: str
) -> None:
    info = spawn_from_image(pooled)
    _drivers.reach(pooled, HOST, info.uuid, start)
    own = pooled.get_info(HOST, info.uuid)

    rescued = pooled.rescue(HOST, info.uuid, None)

    assert rescued.power_state == PowerState.RESCUED
    # The instance's own devices, not the rescue disk.
    assert rescued.block_devices == own.block_devices
    assert rescued.network_interfaces == own.network_interfaces
    dom = virt.lookupByUUIDString(info.uuid)
    assert dom.isActive()
    xml = dom_xml(virt, info.uuid)
    assert disk_sources(xml) == {
        "vda": f"/{POOL}/{info.uuid}-rescue",
        "vdb": f"/{POOL}/{info.uuid}-vda",
    }
    assert xml.find("devices/disk/target[@dev='vda']/../boot").get("order") == "1"
    assert xml.find("devices/disk/target[@dev='vdb']/../boot") is None
    rescue_disk = pool.storageVolLookupByName(f"{info.uuid}-rescue")
    assert rescue_disk.info()[1] == GIB  # a copy of the image the instance was built from
    assert [i.power_state for i in pooled.list_instances(HOST) if i.uuid == info.uuid] == [
        PowerState.RESCUED
    ]


def test_rescue_then_unrescue_gives_the_instance_back(
    pooled: LibvirtDriver, pool: Any, virt: Any
) -> None:
    info = spawn_from_image(pooled)
    before = ET.tostring(dom_xml(virt, info.uuid).find("devices"))
    pooled.rescue(HOST, info.uuid, RESCUE_IMAGE)
    assert pool.storageVolLookupByName(f"{info.uuid}-rescue").info()[1] == GIB // 4

    # Again: already rescued, nothing to do.
    assert pooled.rescue(HOST, info.uuid, RESCUE_IMAGE).power_state == PowerState.RESCUED

    back = pooled.unrescue(HOST, info.uuid)
    assert back == info
    assert virt.lookupByUUIDString(info.uuid).isActive()
    assert ET.tostring(dom_xml(virt, info.uuid).find("devices")) == before
    assert f"{info.uuid}-rescue" not in volumes(pool)
    assert pooled.unrescue(HOST, info.uuid) == info  # running already: nothing to do


def test_a_rescued_instance_takes_no_other_operation(pooled: LibvirtDriver, pool: Any) -> None:
    info = spawn_from_image(pooled)
    pooled.rescue(HOST, info.uuid, None)
    connection = VolumeConnection(
        volume_id="v1", driver_volume_type="file", data={"device_path": "/srv/v1"}
    )
    calls = {
        **{
            op: (lambda op=op: _drivers.apply(pooled, HOST, info.uuid, op))
            for op in base.TRANSITIONS
            if op not in base.RESCUE_OPERATIONS
        },
        "attach_volume": lambda: pooled.attach_volume(HOST, info.uuid, connection, None),
        "detach_volume": lambda: pooled.detach_volume(HOST, info.uuid, "v1"),
        "detach_interface": lambda: pooled.detach_interface(HOST, info.uuid, "p1"),
        "snapshot": lambda: pooled.snapshot(HOST, info.uuid, "x", Progress()),
    }
    for operation, call in calls.items():
        with pytest.raises(exception.InvalidPowerState) as refused:
            call()
        assert refused.value.kwargs["state"] == PowerState.RESCUED, operation
    assert pooled.get_info(HOST, info.uuid).power_state == PowerState.RESCUED


def test_rescue_and_unrescue_refused_from_other_states(pooled: LibvirtDriver) -> None:
    info = spawn_from_image(pooled)
    pooled.pause(HOST, info.uuid)
    with pytest.raises(exception.InvalidPowerState) as refused:
        pooled.rescue(HOST, info.uuid, None)
    assert refused.value.kwargs == {
        "uuid": info.uuid,
        "operation": "rescue",
        "state": "paused",
        "allowed": "running, stopped",
    }
    pooled.power_off(HOST, info.uuid)
    with pytest.raises(exception.InvalidPowerState) as refused:
        pooled.unrescue(HOST, info.uuid)
    assert refused.value.kwargs["allowed"] == "rescued"


def test_a_rescued_instance_is_rescued_for_a_new_driver(
    pooled: LibvirtDriver, daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    """Rescued is read from the domain's metadata, by any worker."""
    info = spawn_from_image(pooled)
    pooled.rescue(HOST, info.uuid, None)
    successor = make_driver(daemon.uri_for(), storage_pool=POOL)
    assert successor.get_info(HOST, info.uuid).power_state == PowerState.RESCUED
    assert successor.unrescue(HOST, info.uuid) == info


def test_destroying_a_rescued_instance_removes_the_rescue(
    pooled: LibvirtDriver, pool: Any, virt: Any
) -> None:
    info = spawn_from_image(pooled)
    pooled.rescue(HOST, info.uuid, None)
    pooled.destroy(HOST, info.uuid)
    assert not {f"{info.uuid}-rescue", f"{info.uuid}-vda"} & volumes(pool)
    with pytest.raises(exception.InstanceNotFound):
        pooled.get_info(HOST, info.uuid)


def test_rescue_needs_an_image(pooled: LibvirtDriver, pool: Any, virt: Any) -> None:
    connection = VolumeConnection(
        volume_id="boot", driver_volume_type="file", data={"device_path": "/srv/boot"}
    )
    spec = new_spec(
        "from-volume",
        block_devices=[BlockDevice(kind="volume", boot_index=0, connection_info=connection)],
    )
    own = pooled.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="rescue image"):
        pooled.rescue(HOST, spec.uuid, None)
    with pytest.raises(exception.InvalidRequest, match="no-such-image"):
        pooled.rescue(HOST, spec.uuid, "no-such-image")
    assert pooled.get_info(HOST, spec.uuid) == own  # untouched
    assert f"{spec.uuid}-rescue" not in volumes(pool)

    # Named, the rescue image boots with the boot volume second.
    assert pooled.rescue(HOST, spec.uuid, RESCUE_IMAGE).block_devices == own.block_devices
    xml = dom_xml(virt, spec.uuid)
    assert disk_sources(xml) == {"vda": f"/{POOL}/{spec.uuid}-rescue", "vdb": "/srv/boot"}
    assert xml.find("devices/disk/target[@dev='vdb']/../serial").text == "boot"
    assert pooled.unrescue(HOST, spec.uuid) == own


@pytest.mark.parametrize("operation", ["rescue", "unrescue"])
def test_rescue_of_a_missing_instance(pooled: LibvirtDriver, operation: str) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(exception.InstanceNotFound):
        if operation == "rescue":
            pooled.rescue(HOST, missing, None)
        else:
            pooled.unrescue(HOST, missing)


# consoles ------------------------------------------------------------------------------


def test_serial_consoles_on_tcp_ports_of_the_range(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    driver = make_driver(
        daemon.uri_for(), serial_port_range="20000:20001", console_listen="192.0.2.5"
    )
    first, second, third = (new_spec(name) for name in ("a", "b", "c"))
    driver.spawn(HOST, first)
    driver.spawn(HOST, second)

    consoles = [driver.get_serial_console(HOST, s.uuid) for s in (first, second)]
    assert [(c.kind, c.protocol, c.host, c.port, c.path) for c in consoles] == [
        ("serial", "tcp", "192.0.2.5", 20000, None),
        ("serial", "tcp", "192.0.2.5", 20001, None),
    ]
    serial = dom_xml(virt, first.uuid).find("devices/serial")
    assert serial.get("type") == "tcp"
    assert serial.find("source").attrib == {
        "mode": "bind",
        "host": "192.0.2.5",
        "service": "20000",
    }
    with pytest.raises(exception.DriverError, match="20000:20001"):
        driver.spawn(HOST, third)  # every port taken
    driver.destroy(HOST, first.uuid)
    driver.spawn(HOST, third)
    assert driver.get_serial_console(HOST, third.uuid).port == 20000  # free again


def test_a_rescued_instance_keeps_its_serial_console(
    daemon: Libvirtd, virt: Any, pool: Any, make_driver: DriverFactory
) -> None:
    driver = make_driver(daemon.uri_for(), storage_pool=POOL, serial_port_range="20000:20009")
    info = spawn_from_image(driver)
    console = driver.get_serial_console(HOST, info.uuid)
    driver.rescue(HOST, info.uuid, None)
    assert driver.get_serial_console(HOST, info.uuid) == console


def test_a_display_with_a_port_and_password(driver: LibvirtDriver, virt: Any) -> None:
    """A domain defined elsewhere with a fixed port: the port, and the password as token."""
    uuid = str(uuidlib.uuid4())
    virt.createXML(
        f"<domain type='test'><name>vnc</name><uuid>{uuid}</uuid><memory>131072</memory>"
        "<vcpu>1</vcpu><os><type>hvm</type></os><devices>"
        "<graphics type='spice' port='5930' autoport='no' listen='0.0.0.0' passwd='s3cret'/>"
        "</devices></domain>",
        0,
    )
    try:
        console = driver.get_graphical_console(HOST, uuid)
    finally:
        virt.lookupByUUIDString(uuid).destroy()  # transient: gone with it
    assert (console.kind, console.protocol, console.port, console.token) == (
        "graphical",
        "spice",
        5930,
        "s3cret",
    )
    assert console.host == virt.getHostname()  # the hypervisor's, for a wildcard listen


def test_consoles_the_test_driver_gives_no_path_or_port(driver: LibvirtDriver, virt: Any) -> None:
    """By default a pty serial console and a VNC display with libvirt's port: the
    test driver runs no guest, so neither exists there."""
    spec = new_spec()
    driver.spawn(HOST, spec)
    devices = dom_xml(virt, spec.uuid).find("devices")
    assert devices.find("serial").get("type") == "pty"
    display = devices.find("graphics")
    assert (display.get("type"), display.get("autoport"), display.get("listen")) == (
        "vnc",
        "yes",
        "127.0.0.1",
    )
    for call in (driver.get_serial_console, driver.get_graphical_console):
        with pytest.raises(exception.UnsupportedOperation) as caught:
            call(HOST, spec.uuid)
        assert caught.value.kwargs["driver"] == "libvirt"


def test_no_display_when_configured_so(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    driver = make_driver(daemon.uri_for(), graphics_type="none")
    spec = new_spec()
    driver.spawn(HOST, spec)
    assert dom_xml(virt, spec.uuid).find("devices/graphics") is None


@pytest.mark.parametrize("operation", ["get_serial_console", "get_graphical_console"])
def test_consoles_refused_when_stopped_and_missing(driver: LibvirtDriver, operation: str) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as refused:
        getattr(driver, operation)(HOST, spec.uuid)
    assert refused.value.kwargs["allowed"] == "paused, rescued, running"
    with pytest.raises(exception.InstanceNotFound):
        getattr(driver, operation)(HOST, str(uuidlib.uuid4()))


# events --------------------------------------------------------------------------------


class Changed:
    """The ``changed`` callback of ``watch_instances``: :meth:`wait` for a UUID."""

    def __init__(self) -> None:
        self.uuids: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, uuid: str) -> None:
        with self._cond:
            self.uuids.append(uuid)
            self._cond.notify_all()

    def wait(self, uuid: str, timeout: float = 10) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: uuid in self.uuids, timeout), self.uuids
            self.uuids.clear()


def test_changes_behind_the_drivers_back_are_reported(driver: LibvirtDriver, virt: Any) -> None:
    changed = Changed()
    driver.watch_instances(HOST, changed)
    spec = new_spec()
    driver.spawn(HOST, spec)
    changed.wait(spec.uuid)
    virt.lookupByUUIDString(spec.uuid).suspend()  # another connection pauses it
    changed.wait(spec.uuid)
    assert driver.get_info(HOST, spec.uuid).power_state == PowerState.PAUSED


def test_events_resume_by_themselves_after_libvirtd_restarts(
    own_daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    """No call reopens the connection: the driver does, and reports what it finds."""
    driver = make_driver(own_daemon.uri_for())
    changed = Changed()
    driver.watch_instances(HOST, changed)
    own_daemon.restart()
    observer = libvirt.open(own_daemon.uri_for())
    try:
        # Every domain, reported once the connection is back ...
        changed.wait(observer.lookupByName("test").UUIDString(), timeout=30)
        uuid = str(uuidlib.uuid4())
        observer.createXML(
            f"<domain type='test'><name>late</name><uuid>{uuid}</uuid><memory>131072</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os></domain>",
            0,
        )
        changed.wait(uuid)  # ... and their events again
    finally:
        observer.close()


def test_imageops_names_images_apart_from_disks() -> None:
    """Destroying an instance deletes its ``<uuid>-*`` volumes; its images are not such."""
    uuid = str(uuidlib.uuid4())
    assert not imageops.volume_name(uuid, "x").startswith(uuid)
    assert imageops.rescue_volume(uuid).startswith(f"{uuid}-")
