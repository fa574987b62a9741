"""The libvirt driver against a real libvirtd (test driver, over the remote protocol).

The driver class is used directly, as the worker uses it; an observer's own
libvirt connection checks what really happened in libvirtd. The fake driver
is the specification: every lifecycle operation from every power state must
give the same result, or the same error word for word.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from oslo_config import cfg

from computed import exception
from computed.objects import InstanceSpec, PowerState
from computed.testing.libvirtd import Libvirtd
from drivers import base

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import constants  # noqa: E402
from drivers.libvirt.driver import LibvirtDriver  # noqa: E402
from tests.functional import _drivers  # noqa: E402
from tests.functional._drivers import new_spec, outcome  # noqa: E402

from .conftest import HOST, DriverFactory, Events  # noqa: E402

pytestmark = pytest.mark.libvirt


TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
# The node XML <test:runstate> values are libvirt's virDomainState numbers.
RUNNING, BLOCKED, PAUSED, SHUTDOWN, SHUTOFF, CRASHED, PMSUSPENDED = range(1, 8)


def domain_xml(virt: Any, uuid: str) -> ET.Element:
    return ET.fromstring(virt.lookupByUUIDString(uuid).XMLDesc(0))


def node_xml(*domains: tuple[str, int, str]) -> str:
    """A test-driver node holding ``(name, runstate, uuid)`` domains."""
    body = "".join(
        f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>"
        f"<memory unit='KiB'>262144</memory><vcpu>2</vcpu><os><type>hvm</type></os>"
        f"<test:runstate>{state}</test:runstate></domain>"
        for name, state, uuid in domains
    )
    return (
        f"<node xmlns:test='{TEST_NS}'><cpu><mhz>2000</mhz><nodes>1</nodes>"
        f"<sockets>1</sockets><cores>4</cores><threads>2</threads></cpu>"
        f"<memory>8388608</memory>{body}</node>"
    )


# spawn, get_info, list_instances -------------------------------------------------


def test_spawn_defines_and_starts_a_domain(driver: LibvirtDriver, virt: Any) -> None:
    spec = new_spec(
        "web </name><devices/> & co",
        vcpus=2,
        memory_mb=256,
        disk_gb=7,
        image="debian-12",
        metadata={"role": "db"},
    )
    info = driver.spawn(HOST, spec)
    assert outcome(lambda: info) == {
        "uuid": spec.uuid,
        "name": spec.name,
        "host": HOST,
        "power_state": "running",
        "vcpus": 2,
        "memory_mb": 256,
        "disk_gb": 7,
        # Without [libvirt] storage_pool the root disk is recorded, not made.
        "block_devices": [],
        "network_interfaces": [],
    }
    dom = virt.lookupByUUIDString(spec.uuid)
    assert dom.isActive() and dom.isPersistent()
    assert dom.name() == f"computed-{spec.uuid}"
    xml = domain_xml(virt, spec.uuid)
    assert xml.findtext("memory") == str(256 * 1024)
    assert xml.find("memory").get("unit") == "KiB"
    assert xml.findtext("vcpu") == "2"
    assert xml.findtext("os/type") == "hvm"
    assert xml.find("devices/devices") is None  # the name smuggled nothing in
    stored = xml.find(f"metadata/{{{constants.METADATA_NS}}}instance")
    assert stored is not None
    assert stored.findtext(f"{{{constants.METADATA_NS}}}name") == spec.name
    assert stored.findtext(f"{{{constants.METADATA_NS}}}disk_gb") == "7"
    assert stored.findtext(f"{{{constants.METADATA_NS}}}image") == "debian-12"


def test_spawn_of_an_existing_uuid_returns_it(driver: LibvirtDriver, virt: Any) -> None:
    spec = new_spec("first", memory_mb=128)
    first = driver.spawn(HOST, spec)
    driver.pause(HOST, spec.uuid)
    again = InstanceSpec(uuid=spec.uuid, name="second", vcpus=4, memory_mb=512)
    again.validate()
    info = driver.spawn(HOST, again)
    assert (info.name, info.vcpus, info.memory_mb) == (first.name, 1, 128)
    assert info.power_state == PowerState.PAUSED  # returned as it is, not restarted
    uuids = [d.UUIDString() for d in virt.listAllDomains()]
    assert uuids.count(spec.uuid) == 1


def test_spawn_refuses_text_xml_cannot_hold(driver: LibvirtDriver, virt: Any) -> None:
    spec = new_spec("bell\x07")
    with pytest.raises(exception.InvalidRequest, match="control characters"):
        driver.spawn(HOST, spec)
    with pytest.raises(libvirt.libvirtError):
        virt.lookupByUUIDString(spec.uuid)


def test_two_instances_may_share_a_name(driver: LibvirtDriver) -> None:
    a, b = new_spec("twin"), new_spec("twin")
    driver.spawn(HOST, a)
    driver.spawn(HOST, b)
    names = {i.uuid: i.name for i in driver.list_instances(HOST)}
    assert names[a.uuid] == names[b.uuid] == "twin"


def test_list_instances_shows_every_domain(driver: LibvirtDriver, virt: Any) -> None:
    spec = new_spec("mine", disk_gb=3)
    driver.spawn(HOST, spec)
    driver.suspend(HOST, spec.uuid)
    listed = {i.uuid: i for i in driver.list_instances(HOST)}
    builtin = virt.lookupByName("test")  # the test driver's own domain: no metadata
    assert set(listed) == {spec.uuid, builtin.UUIDString()}
    mine, other = listed[spec.uuid], listed[builtin.UUIDString()]
    assert (mine.name, mine.power_state, mine.disk_gb) == ("mine", "suspended", 3)
    assert (other.name, other.power_state, other.disk_gb) == ("test", "running", 0)
    assert other.memory_mb == builtin.info()[1] // 1024
    assert driver.get_info(HOST, spec.uuid) == mine


# Lifecycle: the fake driver's results, exactly ---------------------------------------


# Rescue needs an image and a storage pool: its transitions are in test_libvirt_images.py.
LIFECYCLE_KEYS = [key for key in _drivers.TRANSITION_KEYS if key not in base.RESCUE_OPERATIONS]


@pytest.mark.parametrize("start", list(_drivers.REACH))
@pytest.mark.parametrize("operation", LIFECYCLE_KEYS)
def test_transition_matches_the_fake_driver(
    driver: LibvirtDriver, virt: Any, start: str, operation: str
) -> None:
    fake = _drivers.fake_driver(HOST)
    spec = new_spec("spec")

    def run(subject: base.ComputeDriver) -> tuple[Any, Any, str]:
        subject.spawn(HOST, spec)
        _drivers.reach(subject, HOST, spec.uuid, start)
        assert subject.get_info(HOST, spec.uuid).power_state == start
        first = outcome(lambda: _drivers.apply(subject, HOST, spec.uuid, operation))
        # ... and the same again: a second call is a no-op or the same refusal
        second = outcome(lambda: _drivers.apply(subject, HOST, spec.uuid, operation))
        return first, second, subject.get_info(HOST, spec.uuid).power_state

    expected = run(fake)
    assert run(driver) == expected
    dom = virt.lookupByUUIDString(spec.uuid)
    final = expected[2]
    assert bool(dom.isActive()) == (final in (PowerState.RUNNING, PowerState.PAUSED))
    assert bool(dom.hasManagedSaveImage(0)) == (final == PowerState.SUSPENDED)


@pytest.mark.parametrize("operation", ["get_info", "destroy", *LIFECYCLE_KEYS])
def test_missing_instance_matches_the_fake_driver(driver: LibvirtDriver, operation: str) -> None:
    fake = _drivers.fake_driver(HOST)
    missing = str(uuidlib.uuid4())

    def call(subject: base.ComputeDriver) -> Any:
        if operation == "get_info":
            return subject.get_info(HOST, missing)
        if operation == "destroy":
            return subject.destroy(HOST, missing)
        return _drivers.apply(subject, HOST, missing, operation)

    expected = outcome(lambda: call(fake))
    assert outcome(lambda: call(driver)) == expected
    assert expected is None or expected[0] == "InstanceNotFound"


def test_not_found_is_worded_as_everywhere_and_keeps_its_cause(driver: LibvirtDriver) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(exception.InstanceNotFound) as caught:
        driver.get_info(HOST, missing)
    assert caught.value.kwargs == {"uuid": missing, "host": HOST}
    cause = caught.value.__cause__
    assert isinstance(cause, libvirt.libvirtError)
    assert cause.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


# destroy -------------------------------------------------------------------------------


@pytest.mark.parametrize("start", list(_drivers.REACH))
def test_destroy_removes_the_domain_in_any_state(
    driver: LibvirtDriver, virt: Any, start: str
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    _drivers.reach(driver, HOST, spec.uuid, start)
    driver.destroy(HOST, spec.uuid)
    with pytest.raises(libvirt.libvirtError) as caught:
        virt.lookupByUUIDString(spec.uuid)
    assert caught.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    driver.destroy(HOST, spec.uuid)  # and again: nothing to do, no error
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info(HOST, spec.uuid)


def test_destroy_of_a_transient_domain(driver: LibvirtDriver, virt: Any) -> None:
    uuid = str(uuidlib.uuid4())
    virt.createXML(
        f"<domain type='test'><name>transient</name><uuid>{uuid}</uuid>"
        "<memory>131072</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>",
        0,
    )
    assert driver.get_info(HOST, uuid).power_state == PowerState.RUNNING
    driver.destroy(HOST, uuid)
    assert uuid not in {i.uuid for i in driver.list_instances(HOST)}


# power_off variants, events ----------------------------------------------------------------


def test_power_off_of_a_suspended_instance_discards_its_image(
    driver: LibvirtDriver, virt: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.suspend(HOST, spec.uuid)
    assert virt.lookupByUUIDString(spec.uuid).hasManagedSaveImage(0)
    assert driver.power_off(HOST, spec.uuid).power_state == PowerState.STOPPED
    assert not virt.lookupByUUIDString(spec.uuid).hasManagedSaveImage(0)


def test_lifecycle_events_reach_listeners(driver: LibvirtDriver) -> None:
    events = Events()
    driver.add_event_listener(events)
    spec = new_spec()
    driver.spawn(HOST, spec)
    assert events.wait(spec.uuid, "started").power_state == PowerState.RUNNING
    driver.pause(HOST, spec.uuid)
    assert events.wait(spec.uuid, "suspended").power_state == PowerState.PAUSED
    driver.power_off(HOST, spec.uuid)
    stopped = events.wait(spec.uuid, "stopped")
    assert (stopped.power_state, stopped.detail) == (
        PowerState.STOPPED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
    )
    assert stopped.host == HOST and stopped.domain == f"computed-{spec.uuid}"
    driver.remove_event_listener(events)


def test_power_off_tries_the_power_button_first_when_configured(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    driver = make_driver(daemon.uri_for(), shutdown_timeout=5.0)
    events = Events()
    driver.add_event_listener(events)
    spec = new_spec()
    driver.spawn(HOST, spec)
    assert driver.power_off(HOST, spec.uuid).power_state == PowerState.STOPPED
    # the test driver's guest obeys the button at once: stopped by shutdown, not destroyed
    assert events.wait(spec.uuid, "stopped").detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN
    # a paused guest cannot hear the button: forced off
    driver.power_on(HOST, spec.uuid)
    driver.pause(HOST, spec.uuid)
    events.seen.clear()
    assert driver.power_off(HOST, spec.uuid).power_state == PowerState.STOPPED
    assert events.wait(spec.uuid, "stopped").detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED


# host --------------------------------------------------------------------------------------


def test_host_resources_add_up_the_instances(driver: LibvirtDriver, virt: Any) -> None:
    a = new_spec(vcpus=2, memory_mb=256, disk_gb=10)
    b = new_spec(vcpus=1, memory_mb=128, disk_gb=5)
    driver.spawn(HOST, a)
    driver.spawn(HOST, b)
    driver.power_off(HOST, b.uuid)  # stopped instances keep their allocation
    resources = driver.get_host_resources(HOST)
    _model, memory_mb, cpus, *_ = virt.getInfo()
    builtin = virt.lookupByName("test").info()
    assert resources.host == HOST
    assert resources.hypervisor_type == "test"
    version = virt.getVersion()
    assert resources.hypervisor_version == (
        f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"
    )
    assert (resources.vcpus, resources.memory_mb) == (cpus, memory_mb)
    assert resources.vcpus_used == 3 + builtin[3]
    assert resources.memory_mb_used == 384 + builtin[1] // 1024
    assert (resources.disk_gb, resources.disk_gb_used) == (0, 15)
    assert resources.instances == 3


def test_host_disk_from_a_storage_pool(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    pool = virt.listAllStoragePools()[0]
    driver = make_driver(daemon.uri_for(), storage_pool=pool.name())
    assert driver.get_host_resources(HOST).disk_gb == pool.info()[1] // 1024**3


def test_unknown_storage_pool_is_a_driver_error(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    driver = make_driver(daemon.uri_for(), storage_pool="no-such-pool")
    with pytest.raises(exception.DriverError, match="no-such-pool") as caught:
        driver.get_host_resources(HOST)
    assert caught.value.error_code == libvirt.VIR_ERR_NO_STORAGE_POOL
    assert isinstance(caught.value.__cause__, libvirt.libvirtError)


# domains preloaded in given states ---------------------------------------------------------


def test_node_xml_domains_in_every_state(daemon: Libvirtd, make_driver: DriverFactory) -> None:
    states = {
        RUNNING: "running",
        BLOCKED: "running",
        PAUSED: "paused",
        SHUTDOWN: "stopped",
        SHUTOFF: "stopped",
        CRASHED: "stopped",
        PMSUSPENDED: "suspended",
    }
    uuids = {state: str(uuidlib.uuid4()) for state in states}
    node = daemon.write_node_xml(
        node_xml(*((f"pre{state}", state, uuids[state]) for state in states)), "states.xml"
    )
    driver = make_driver(daemon.uri_for(node))
    listed = {i.uuid: i for i in driver.list_instances(HOST)}
    assert {u: listed[u].power_state for u in uuids.values()} == {
        uuids[s]: expected for s, expected in states.items()
    }
    assert listed[uuids[RUNNING]].name == f"pre{RUNNING}"
    assert (listed[uuids[RUNNING]].vcpus, listed[uuids[RUNNING]].memory_mb) == (2, 256)
    resources = driver.get_host_resources(HOST)
    assert (resources.vcpus, resources.memory_mb, resources.instances) == (8, 8192, 7)

    # still shutting down or crashed but kept: stopped, and power_on starts afresh
    for state in (SHUTDOWN, CRASHED):
        assert driver.power_on(HOST, uuids[state]).power_state == PowerState.RUNNING
    assert driver.unpause(HOST, uuids[PAUSED]).power_state == PowerState.RUNNING
    assert driver.pause(HOST, uuids[BLOCKED]).power_state == PowerState.PAUSED
    assert driver.power_on(HOST, uuids[SHUTOFF]).power_state == PowerState.RUNNING
    # the test driver cannot wake a guest suspended to RAM: libvirt's "no support" mapped
    with pytest.raises(exception.UnsupportedOperation) as caught:
        driver.resume(HOST, uuids[PMSUSPENDED])
    assert caught.value.error_code == libvirt.VIR_ERR_NO_SUPPORT
    assert driver.power_off(HOST, uuids[PMSUSPENDED]).power_state == PowerState.STOPPED


def test_power_off_finishes_a_shutdown_in_progress(
    daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    uuid = str(uuidlib.uuid4())
    node = daemon.write_node_xml(node_xml(("going", SHUTDOWN, uuid)), "shutdown.xml")
    driver = make_driver(daemon.uri_for(node))
    info = driver.power_off(HOST, uuid)  # stopped already as the contract sees it...
    assert info.power_state == PowerState.STOPPED
    with pytest.raises(exception.InvalidPowerState):
        driver.pause(HOST, uuid)  # ... and now really off: nothing left to pause
    assert driver.power_on(HOST, uuid).power_state == PowerState.RUNNING


# several hosts, unreachable hosts, reconnecting ---------------------------------------------------


def test_one_driver_serves_several_hosts(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    empty = daemon.write_node_xml("<node/>", "empty.xml")
    driver = make_driver({"h1": daemon.uri_for(), "h2": daemon.uri_for(empty)})
    spec = new_spec()
    driver.spawn("h2", spec)
    assert [i.uuid for i in driver.list_instances("h2")] == [spec.uuid]
    assert driver.get_info("h2", spec.uuid).host == "h2"
    assert spec.uuid not in {i.uuid for i in driver.list_instances("h1")}
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info("h1", spec.uuid)
    with pytest.raises(exception.DriverError, match="not served"):
        driver.list_instances("h3")


def test_connection_uri_is_the_default_for_every_host(daemon: Libvirtd, virt: Any) -> None:
    conf = cfg.ConfigOpts()
    LibvirtDriver.register_opts(conf)
    conf([])
    conf.set_override("connection_uri", daemon.uri_for(), "libvirt")
    driver = LibvirtDriver(conf)
    driver.init_host("anywhere")
    try:
        assert "test" in {i.name for i in driver.list_instances("anywhere")}
    finally:
        driver.cleanup_host("anywhere")


def test_init_host_fails_clearly_when_libvirtd_is_unreachable(
    tmp_path: Any, make_driver: DriverFactory
) -> None:
    uri = f"test+unix:///default?socket={tmp_path}/nothing-here"
    with pytest.raises(exception.DriverError, match="cannot connect to") as caught:
        make_driver(uri)
    assert caught.value.host == HOST
    assert caught.value.error_code == libvirt.VIR_ERR_SYSTEM_ERROR


def test_reconnects_after_libvirtd_restarts(
    own_daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    driver = make_driver(own_daemon.uri_for())
    before = new_spec()
    driver.spawn(HOST, before)
    own_daemon.restart()
    # the test driver forgets its domains with the daemon; the connection is back
    assert before.uuid not in {i.uuid for i in driver.list_instances(HOST)}
    after = new_spec()
    assert driver.spawn(HOST, after).power_state == PowerState.RUNNING
    assert driver.get_info(HOST, after.uuid).power_state == PowerState.RUNNING


def test_reconnects_after_each_of_several_restarts(
    own_daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    driver = make_driver(own_daemon.uri_for())
    for _ in range(3):
        own_daemon.restart()
        assert "test" in {i.name for i in driver.list_instances(HOST)}


def test_calls_fail_while_libvirtd_is_down_then_recover(
    own_daemon: Libvirtd, make_driver: DriverFactory
) -> None:
    driver = make_driver(own_daemon.uri_for())
    own_daemon.stop_daemon()
    for _ in range(2):  # and stays failing, quickly, without hanging
        with pytest.raises(exception.DriverError, match="cannot connect to"):
            driver.list_instances(HOST)
    own_daemon.start_daemon()
    assert "test" in {i.name for i in driver.list_instances(HOST)}
