"""The XenAPI driver against the xapi test server, over real XML-RPC.

The driver class is used directly, as the worker uses it; an observer's own
``XenAPI`` session checks what really happened in the pool. The fake driver
is the specification: every lifecycle operation from every power state must
give the same result, or the same error word for word.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid as uuidlib
from typing import Any

import pytest

from computed import exception
from computed.objects import InstanceSpec, PowerState
from drivers import base
from tests.functional import _drivers
from tests.functional._drivers import new_spec, outcome
from tests.functional.xenapi.conftest import (
    HOST,
    PASSWORD,
    POOL,
    XAPI_HOST,
    DriverFactory,
    make_server,
)
from tests.xapiserver import XapiTestServer

XenAPI = pytest.importorskip("XenAPI")

from drivers.xenapi import constants  # noqa: E402
from drivers.xenapi.driver import XenAPIDriver  # noqa: E402

pytestmark = pytest.mark.xenapi

GiB = 1024**3
MiB = 1024**2


def vm_of(xapi: Any, uuid: str) -> str:
    refs = xapi.VM.get_by_name_label(constants.name_label(uuid))
    assert len(refs) == 1, refs
    return str(refs[0])


def instance_disks(xapi: Any, vm: str) -> list[str]:
    return [xapi.VBD.get_VDI(vbd) for vbd in xapi.VM.get_VBDs(vm)]


# Lifecycle -----------------------------------------------------------------


def test_spawn_builds_a_vm_from_the_template(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec("web 1", vcpus=2, memory_mb=6144, disk_gb=20)  # 6 GiB: int64 as strings
    info = driver.spawn(HOST, spec)
    (root,) = info.block_devices  # the template's disk, sized to disk_gb
    assert (root.kind, root.device_name, root.boot_index, root.size_gb, root.image) == (
        "image",
        "xvda",
        0,
        20,
        "Other install media",
    )
    assert info.network_interfaces == []
    assert without_devices(outcome(lambda: info)) == {
        "uuid": spec.uuid,
        "name": "web 1",
        "host": HOST,
        "power_state": "running",
        "vcpus": 2,
        "memory_mb": 6144,
        "disk_gb": 20,
    }
    vm = vm_of(xapi, spec.uuid)
    record = xapi.VM.get_record(vm)
    assert record["power_state"] == "Running"
    assert not record["is_a_template"]
    assert record["memory_static_max"] == str(6144 * MiB)
    assert (record["VCPUs_max"], record["VCPUs_at_startup"]) == ("2", "2")
    assert record["other_config"][constants.OTHER_CONFIG_UUID] == spec.uuid
    assert "disks" not in record["other_config"]  # provisioned
    host = xapi.host.get_by_name_label(XAPI_HOST)[0]
    assert record["resident_on"] == host == record["affinity"]
    (vdi,) = instance_disks(xapi, vm)
    assert xapi.VDI.get_virtual_size(vdi) == str(20 * GiB)


def test_spawn_is_idempotent_by_uuid(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    first = driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    again = driver.spawn(HOST, spec)  # returns the existing instance as it is
    assert again.uuid == first.uuid and again.power_state == "stopped"
    vm_of(xapi, spec.uuid)  # exactly one VM
    assert [i.uuid for i in driver.list_instances(HOST)] == [spec.uuid]


def without_devices(seen: Any) -> Any:
    """What a caller sees, less the device lists (compared by the device tests)."""
    if isinstance(seen, dict):
        return {k: v for k, v in seen.items() if k not in ("block_devices", "network_interfaces")}
    return seen


def run_from(drv: base.ComputeDriver, start: str, operation: str) -> Any:
    """Spawn, bring to ``start``, apply ``operation``: what the caller sees, uuid masked."""
    spec = new_spec(f"{start}-{operation}")
    drv.spawn(HOST, spec)
    _drivers.reach(drv, HOST, spec.uuid, start)
    got = outcome(lambda: _drivers.apply(drv, HOST, spec.uuid, operation))
    drv.destroy(HOST, spec.uuid)
    if isinstance(got, tuple):
        return (got[0], got[1].replace(spec.uuid, "<uuid>"))
    return {k: v for k, v in without_devices(got).items() if k != "uuid"}


#: Rescue takes an image and is compared in tests/functional/xenapi/test_xenapi_rescue.py.
POWER_TRANSITIONS = [key for key in _drivers.TRANSITION_KEYS if key not in base.RESCUE_OPERATIONS]


@pytest.mark.parametrize("start", list(_drivers.REACH))
@pytest.mark.parametrize("operation", POWER_TRANSITIONS)
def test_every_transition_matches_the_fake_driver(
    driver: XenAPIDriver, start: str, operation: str
) -> None:
    fake = _drivers.fake_driver(HOST)
    assert run_from(driver, start, operation) == run_from(fake, start, operation)


def test_invalid_power_state_is_exact(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.pause(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.suspend(HOST, spec.uuid)
    assert caught.value.kwargs == {
        "uuid": spec.uuid,
        "operation": "suspend",
        "state": "paused",
        "allowed": "running",
    }
    assert xapi.VM.get_power_state(vm_of(xapi, spec.uuid)) == "Paused"  # untouched


def test_state_changed_behind_the_drivers_back(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    """xapi refuses the call because the guest changed state since the driver looked."""
    spec = new_spec()
    driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    server.inject_failure("VM.pause", ["VM_BAD_POWER_STATE", vm, "running", "halted"])
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.pause(HOST, spec.uuid)
    assert caught.value.kwargs["state"] == "stopped"
    assert isinstance(caught.value.__cause__, XenAPI.Failure)


def test_reboots_give_a_new_domain(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    domids = [xapi.VM.get_domid(vm)]
    assert driver.reboot(HOST, spec.uuid, "soft").power_state == "running"
    domids.append(xapi.VM.get_domid(vm))
    driver.pause(HOST, spec.uuid)
    assert driver.reboot(HOST, spec.uuid, "hard").power_state == "running"
    domids.append(xapi.VM.get_domid(vm))
    assert len(set(domids)) == 3


def test_missing_instance(driver: XenAPIDriver) -> None:
    uuid = str(uuidlib.uuid4())
    for call in (
        lambda: driver.get_info(HOST, uuid),
        lambda: driver.power_on(HOST, uuid),
        lambda: driver.reboot(HOST, uuid, "hard"),
    ):
        with pytest.raises(exception.InstanceNotFound) as caught:
            call()
        assert caught.value.kwargs == {"uuid": uuid, "host": HOST}
    driver.destroy(HOST, uuid)  # missing: succeeds


def test_vm_destroyed_during_an_operation_is_not_found(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    server.inject_failure("VM.hard_shutdown", ["HANDLE_INVALID", "VM", vm])
    with pytest.raises(exception.InstanceNotFound):
        driver.power_off(HOST, spec.uuid)


@pytest.mark.parametrize("state", list(_drivers.REACH))
def test_destroy_removes_the_vm_and_its_disks(driver: XenAPIDriver, xapi: Any, state: str) -> None:
    vdis_before = set(xapi.VDI.get_all())
    spec = new_spec(disk_gb=3)
    driver.spawn(HOST, spec)
    _drivers.reach(driver, HOST, spec.uuid, state)
    vm = vm_of(xapi, spec.uuid)
    assert instance_disks(xapi, vm)
    driver.destroy(HOST, spec.uuid)
    assert xapi.VM.get_by_name_label(constants.name_label(spec.uuid)) == []
    assert set(xapi.VDI.get_all()) == vdis_before  # no disk, no suspend image left
    driver.destroy(HOST, spec.uuid)
    assert driver.list_instances(HOST) == []


def test_hosts_of_one_pool_see_only_their_instances(
    server: XapiTestServer, make_driver: DriverFactory, xapi: Any
) -> None:
    driver = make_driver(server.url, hosts={"c1": f"{POOL}/xs-a", "c2": f"{POOL}/xs-b"})
    one, two = new_spec("one"), new_spec("two")
    driver.spawn("c1", one)
    driver.spawn("c2", two)
    assert [i.uuid for i in driver.list_instances("c1")] == [one.uuid]
    assert [i.uuid for i in driver.list_instances("c2")] == [two.uuid]
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info("c2", one.uuid)
    driver.destroy("c2", one.uuid)  # not c2's: nothing happens
    assert driver.get_info("c1", one.uuid).power_state == "running"
    b = xapi.host.get_by_name_label("xs-b")[0]
    assert xapi.VM.get_resident_on(vm_of(xapi, two.uuid)) == b
    assert driver.get_host_resources("c2").instances == 1


def test_list_instances_skips_templates_and_foreign_vms(driver: XenAPIDriver, xapi: Any) -> None:
    template = xapi.VM.get_by_name_label("Other install media")[0]
    xapi.VM.clone(template, "someone else's")  # not tagged as ours
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    assert [(i.uuid, i.power_state) for i in driver.list_instances(HOST)] == [
        (spec.uuid, "stopped")
    ]


def test_host_resources(driver: XenAPIDriver) -> None:
    driver.spawn(HOST, new_spec(vcpus=2, memory_mb=1024, disk_gb=10))
    driver.spawn(HOST, new_spec(vcpus=1, memory_mb=512))
    resources = driver.get_host_resources(HOST)
    assert (resources.hypervisor_type, resources.hypervisor_version) == ("xen", "4.13.5")
    assert (resources.vcpus, resources.memory_mb) == (4, 16384)
    assert (resources.vcpus_used, resources.memory_mb_used, resources.disk_gb_used) == (3, 1536, 10)
    assert resources.instances == 2
    assert resources.disk_gb > 0


def test_concurrent_spawns_share_one_session(driver: XenAPIDriver, server: XapiTestServer) -> None:
    specs = [new_spec(f"vm{i}") for i in range(8)]
    failures: list[BaseException] = []

    def spawn(spec: InstanceSpec) -> None:
        try:
            driver.spawn(HOST, spec)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=spawn, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert {i.uuid for i in driver.list_instances(HOST)} == {s.uuid for s in specs}
    sessions = server.pool().sessions.values()
    assert [s.originator for s in sessions] == ["computed"]  # logged in once


def test_declared_capabilities() -> None:
    assert XenAPIDriver.name == "xenapi"
    assert XenAPIDriver.operations == frozenset(
        base.OPERATIONS_1_0
        + (
            "get_volume_connector",
            "attach_volume",
            "detach_volume",
            "extend_volume",
            "attach_interface",
            "detach_interface",
            "snapshot",
            "delete_image",
            "rescue",
            "unrescue",
            "get_graphical_console",
        )
        + base.MIGRATION_OPERATIONS
        + base.LIVE_MIGRATION_OPERATIONS
        + base.EVACUATION_OPERATIONS
    )
    assert "get_serial_console" not in XenAPIDriver.operations  # xapi has none to offer
    assert XenAPIDriver.features == {
        "reboot.soft",
        "reboot.hard",
        "spawn.ephemeral_disks",
        "spawn.volumes",
        "spawn.boot_from_volume",
        "spawn.network_interfaces",
    }
    assert XenAPIDriver.support_tier == base.SupportTier.PARTIAL


# Failures of xapi ----------------------------------------------------------


def test_failed_spawn_leaves_nothing_behind(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    vdis_before = set(xapi.VDI.get_all())
    spec = new_spec()
    server.inject_failure("VM.start_on", ["HOST_NOT_ENOUGH_FREE_MEMORY", "1", "0"])
    with pytest.raises(exception.DriverError) as caught:
        driver.spawn(HOST, spec)
    assert caught.value.kwargs["error_code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert caught.value.kwargs["error_params"] == ["1", "0"]
    assert caught.value.kwargs["pool"] == POOL
    assert xapi.VM.get_by_name_label(constants.name_label(spec.uuid)) == []
    assert set(xapi.VDI.get_all()) == vdis_before
    assert driver.spawn(HOST, spec).power_state == "running"  # again, afresh


def test_too_big_for_the_host(driver: XenAPIDriver) -> None:
    with pytest.raises(exception.DriverError) as caught:
        driver.spawn(HOST, new_spec(memory_mb=64 * 1024))
    assert caught.value.kwargs["error_code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert driver.list_instances(HOST) == []


def test_missing_template(server: XapiTestServer, make_driver: DriverFactory) -> None:
    driver = make_driver(server.url, template="No such template")
    with pytest.raises(exception.DriverError, match="no template named 'No such template'"):
        driver.spawn(HOST, new_spec())


def test_xapi_error_codes_map_onto_the_projects(
    driver: XenAPIDriver, server: XapiTestServer
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    server.inject_failure("VM.pause", ["MESSAGE_METHOD_UNKNOWN", "VM.pause"])
    with pytest.raises(exception.UnsupportedOperation) as unsupported:
        driver.pause(HOST, spec.uuid)
    assert unsupported.value.kwargs["operation"] == "pause"
    server.inject_failure("VM.suspend", ["VM_IS_TEMPLATE", "OpaqueRef:x", "suspend"])
    with pytest.raises(exception.InvalidRequest):
        driver.suspend(HOST, spec.uuid)
    server.inject_failure("VM.clean_reboot", ["VM_LACKS_FEATURE", "OpaqueRef:x"])
    with pytest.raises(exception.DriverError) as other:
        driver.reboot(HOST, spec.uuid, "soft")
    assert other.value.kwargs["error_code"] == "VM_LACKS_FEATURE"
    assert isinstance(other.value.__cause__, XenAPI.Failure)


def test_unknown_host_is_refused(driver: XenAPIDriver) -> None:
    with pytest.raises(exception.DriverError, match="not served"):
        driver.get_info("elsewhere", str(uuidlib.uuid4()))


def test_unknown_xapi_host(server: XapiTestServer, make_driver: DriverFactory) -> None:
    with pytest.raises(exception.DriverError, match="no host named 'xs-z'"):
        make_driver(server.url, hosts={HOST: f"{POOL}/xs-z"})


# Sessions and connections ----------------------------------------------------


def test_session_expired_by_the_server(driver: XenAPIDriver, server: XapiTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    assert server.expire_sessions() >= 1
    assert driver.pause(HOST, spec.uuid).power_state == "paused"  # logs in again
    server.set_session_ttl(0.2)
    time.sleep(0.4)
    assert driver.get_info(HOST, spec.uuid).power_state == "paused"


def test_pool_master_restarted(make_driver: DriverFactory) -> None:
    srv = make_server().start()
    port = srv.listeners[POOL].server_address[1]
    try:
        driver = make_driver(srv.url)
        spec = new_spec()
        driver.spawn(HOST, spec)
        srv.stop()
        started = time.monotonic()
        with pytest.raises(exception.DriverError) as caught:
            driver.get_info(HOST, spec.uuid)
        assert time.monotonic() - started < 3
        assert caught.value.kwargs["error_code"] == "POOL_UNREACHABLE"
        assert f"pool {POOL}" in str(caught.value)
        srv = make_server(port=port).start()  # a new master: no session, no VM
        with pytest.raises(exception.InstanceNotFound):
            driver.get_info(HOST, spec.uuid)
        assert driver.spawn(HOST, spec).power_state == "running"
        srv.stop()
        srv = make_server(port=port).start()  # restarted between two calls
        assert driver.list_instances(HOST) == []
    finally:
        srv.stop()


def test_bad_password(server: XapiTestServer, make_driver: DriverFactory) -> None:
    wrong = "wrong-Kx9-secret"
    with pytest.raises(exception.DriverError) as caught:
        make_driver(server.url, password=wrong)
    text = str(caught.value)
    assert f"pool {POOL} refused the login of user 'root'" in text
    assert wrong not in text and wrong not in repr(caught.value.kwargs)
    assert caught.value.kwargs["error_code"] == "SESSION_AUTHENTICATION_FAILED"
    assert wrong not in str(caught.value.__cause__)


def test_password_changed_while_running(driver: XenAPIDriver, server: XapiTestServer) -> None:
    server.pool().spec.password = "rotated"
    server.expire_sessions()
    with pytest.raises(exception.DriverError) as caught:
        driver.list_instances(HOST)
    assert caught.value.kwargs["error_code"] == "SESSION_AUTHENTICATION_FAILED"
    assert PASSWORD not in str(caught.value)


def test_unreachable_pool_fails_fast(make_driver: DriverFactory, closed_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(exception.DriverError) as caught:
        make_driver(f"http://127.0.0.1:{closed_port}/")
    assert time.monotonic() - started < 3
    assert caught.value.kwargs["error_code"] == "POOL_UNREACHABLE"
    assert "cannot reach pool pool1 at http://127.0.0.1:" in str(caught.value)


def test_silent_pool_times_out(make_driver: DriverFactory, silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(exception.DriverError) as caught:
        make_driver(f"http://127.0.0.1:{silent_port}/", call_timeout=0.5)
    assert time.monotonic() - started < 3
    assert caught.value.kwargs["error_code"] == "POOL_TIMEOUT"
    assert "did not answer login within 0.5 s" in str(caught.value)


def test_slow_task_is_cancelled(server: XapiTestServer, make_driver: DriverFactory) -> None:
    driver = make_driver(server.url, task_timeout=0.3)
    spec = new_spec()
    driver.spawn(HOST, spec)
    server.set_delay("VM.pause", 5.0, count=1)
    started = time.monotonic()
    with pytest.raises(exception.DriverError) as caught:
        driver.pause(HOST, spec.uuid)
    assert time.monotonic() - started < 3
    assert caught.value.kwargs["error_code"] == "TASK_TIMEOUT"


# TLS -----------------------------------------------------------------------


def test_https_with_the_pools_certificate(
    tls_server: XapiTestServer, make_driver: DriverFactory
) -> None:
    driver = make_driver(tls_server.url, ca_file=tls_server.certfile)
    spec = new_spec()
    assert driver.spawn(HOST, spec).power_state == "running"
    assert driver.power_off(HOST, spec.uuid).power_state == "stopped"
    driver.destroy(HOST, spec.uuid)


def test_https_ignore_ssl(tls_server: XapiTestServer, make_driver: DriverFactory) -> None:
    driver = make_driver(tls_server.url, ignore_ssl=True)
    assert driver.get_host_resources(HOST).hypervisor_type == "xen"


def test_https_untrusted_certificate(
    tls_server: XapiTestServer, make_driver: DriverFactory
) -> None:
    with pytest.raises(exception.DriverError) as caught:
        make_driver(tls_server.url)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


# Secrets -------------------------------------------------------------------


def test_the_password_is_never_logged(
    server: XapiTestServer,
    make_driver: DriverFactory,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    driver = make_driver(server.url)
    spec = new_spec()
    driver.spawn(HOST, spec)
    server.expire_sessions()
    driver.power_off(HOST, spec.uuid)
    driver.destroy(HOST, spec.uuid)
    for bad in (
        lambda: make_driver(server.url, password=PASSWORD + "x"),
        lambda: make_driver(f"http://127.0.0.1:{closed_port}/"),
    ):
        with pytest.raises(exception.DriverError) as caught:
            bad()
        errors.append(f"{caught.value} {caught.value.kwargs!r} {caught.value.__cause__!r}")
    conf = driver.conf
    conf.log_opt_values(logging.getLogger("conf"), logging.DEBUG)
    assert "xenapi.password" in caplog.text and "****" in caplog.text
    for session in driver._sessions.values():
        errors.append(repr(session.config))
    assert caplog.records, "nothing was logged"
    assert PASSWORD not in caplog.text
    for text in errors:
        assert PASSWORD not in text


def test_power_state_table() -> None:
    assert {s: constants.power_state(s) for s in ("Halted", "Running", "Paused", "Suspended")} == {
        "Halted": PowerState.STOPPED,
        "Running": PowerState.RUNNING,
        "Paused": PowerState.PAUSED,
        "Suspended": PowerState.SUSPENDED,
    }


def test_cleanup_logs_out_once_the_pool_serves_no_host(
    server: XapiTestServer, make_driver: DriverFactory
) -> None:
    driver = make_driver(server.url, hosts={"c1": f"{POOL}/xs-a", "c2": f"{POOL}/xs-b"})
    assert len(server.pool().sessions) == 1  # one session for both hosts
    driver.cleanup_host("c1")
    assert len(server.pool().sessions) == 1  # c2 still uses it
    driver.cleanup_host("c2")
    assert server.pool().sessions == {}


def test_configuration_errors(server: XapiTestServer, make_driver: DriverFactory) -> None:
    driver = make_driver(server.url, hosts={HOST: "nowhere"}, init=False)
    with pytest.raises(exception.DriverError, match="pool 'nowhere' has no URL"):
        driver.init_host(HOST)
    with pytest.raises(exception.DriverError, match=r"no pool for this host in \[xenapi\] hosts"):
        driver.init_host("unlisted")
    leaky = server.url.replace("http://", f"http://root:{PASSWORD}@")
    driver = make_driver(leaky, init=False)
    with pytest.raises(exception.DriverError, match="carries a password") as caught:
        driver.init_host(HOST)
    assert PASSWORD not in str(caught.value)


def test_two_pools_in_one_worker(make_driver: DriverFactory) -> None:
    with XapiTestServer(pools=[f"p1:root:{PASSWORD}", f"p2:root:{PASSWORD}"]) as srv:
        driver = make_driver(srv.urls, hosts={"a": "p1", "b": "p2"})
        one, two = new_spec(), new_spec()
        driver.spawn("a", one)
        driver.spawn("b", two)
        assert [i.uuid for i in driver.list_instances("a")] == [one.uuid]
        assert [i.uuid for i in driver.list_instances("b")] == [two.uuid]
        assert len(srv.pool("p1").refs("VDI")) == len(srv.pool("p2").refs("VDI"))
        srv.expire_sessions("p1")
        driver.destroy("a", one.uuid)
        assert driver.list_instances("a") == []
        assert driver.get_info("b", two.uuid).power_state == "running"
