"""The Hyper-V driver against the WinRM test server, over real WinRM.

The driver class is used directly, as the worker uses it, with an oslo.config
configuration; the emulated host's own state (its VMs, its wire log) checks
what really happened. The fake driver is the specification: every lifecycle
operation from every power state must give the same result, or the same
error word for word.
"""

from __future__ import annotations

import base64
import logging
import queue
import re
import threading
import time
import uuid as uuidlib

import pytest

from computed import exception
from computed.objects import PowerState
from drivers.hyperv import powershell as ps
from drivers.hyperv.driver import HyperVDriver
from drivers.hyperv.vmops import encode_notes
from tests.functional import _drivers
from tests.functional._drivers import new_spec, outcome
from tests.winrmserver import MiB, VMState, WinRMTestServer

from .conftest import (
    HOST,
    OTHER_HOST,
    PASSWORD,
    USER,
    DriverFactory,
    spawn_then_remove_behind_its_back,
)

pytestmark = pytest.mark.hyperv


def scripts_sent(server: WinRMTestServer) -> list[str]:
    """The PowerShell scripts in the wire log (readable over https only)."""
    found = []
    for record in server.wire_log:
        match = re.search(rb"powershell -encodedcommand ([A-Za-z0-9+/=]+)", record.body)
        if match:
            found.append(base64.b64decode(match.group(1)).decode("utf-16-le"))
    return found


# spawn, get_info, list_instances, get_host_resources --------------------------------


def test_spawn_creates_and_starts_a_vm_labelled_with_the_uuid(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    spec = new_spec("web-1", vcpus=2, memory_mb=512, disk_gb=7)
    info = driver.spawn(HOST, spec)

    expected = {
        "uuid": spec.uuid,
        "name": "web-1",
        "host": HOST,
        "power_state": PowerState.RUNNING,
        "vcpus": 2,
        "memory_mb": 512,
        "disk_gb": 7,
        "block_devices": [],
        "network_interfaces": [],
    }
    assert outcome(lambda: info) == expected
    assert outcome(lambda: driver.get_info(HOST, spec.uuid)) == expected
    [vm] = server.host(HOST).vms()
    assert (vm.name, vm.state, vm.processor_count) == ("web-1", VMState.Running, 2)
    assert (vm.memory_startup, vm.generation, vm.drives) == (512 * MiB, 2, [])
    assert vm.notes == encode_notes(spec) and spec.uuid in vm.notes
    assert server.host(OTHER_HOST).vms() == []
    assert server.open_shells() == 0


def test_spawn_is_idempotent_by_uuid(
    driver: HyperVDriver, server: WinRMTestServer, make_driver: DriverFactory
) -> None:
    spec = new_spec()
    first = outcome(lambda: driver.spawn(HOST, spec))
    assert outcome(lambda: driver.spawn(HOST, spec)) == first
    # A driver that never saw the instance (a restarted worker) finds it by its notes.
    again = make_driver({HOST: server.urls[HOST]})
    assert outcome(lambda: again.spawn(HOST, spec)) == first
    assert len(server.host(HOST).vms()) == 1


def test_spawn_keeps_names_hyperv_cannot_hold(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    long_name = "n" * 255
    odd_name = "naïve\tname ☃"
    long_spec, odd_spec = new_spec(long_name), new_spec(odd_name)
    assert driver.spawn(HOST, long_spec).name == long_name
    assert driver.spawn(HOST, odd_spec).name == odd_name
    assert driver.get_info(HOST, odd_spec.uuid).name == odd_name
    assert sorted(len(vm.name) for vm in server.host(HOST).vms()) == [12, 100]


def test_list_instances_and_host_resources_per_host(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    a = driver.spawn(HOST, new_spec("a", vcpus=1, memory_mb=128, disk_gb=1))
    b = driver.spawn(HOST, new_spec("b", vcpus=3, memory_mb=256, disk_gb=2))
    c = driver.spawn(OTHER_HOST, new_spec("c"))
    driver.power_off(HOST, b.uuid)

    assert sorted(i.uuid for i in driver.list_instances(HOST)) == sorted([a.uuid, b.uuid])
    assert [i.uuid for i in driver.list_instances(OTHER_HOST)] == [c.uuid]
    resources = driver.get_host_resources(HOST)
    assert {f: getattr(resources, f) for f in resources.fields} == {
        "host": HOST,
        "hypervisor_type": "hyperv",
        "hypervisor_version": "unknown",
        "vcpus": 8,
        "vcpus_used": 4,
        "memory_mb": 32 * 1024,
        "memory_mb_used": 384,
        "disk_gb": 0,
        "disk_gb_used": 3,
        "instances": 2,
    }


def test_vms_the_driver_did_not_create_are_listed_by_their_hyperv_id(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    vm = server.host(HOST).add_vm("by hand", state=VMState.Running, processor_count=4)
    [info] = driver.list_instances(HOST)
    assert (info.uuid, info.name, info.vcpus, info.power_state) == (
        str(vm.id),
        "by hand",
        4,
        PowerState.RUNNING,
    )
    assert driver.pause(HOST, str(vm.id)).power_state == PowerState.PAUSED


def test_the_driver_serves_the_configured_hosts_only(driver: HyperVDriver) -> None:
    with pytest.raises(exception.DriverError, match="not served by this worker"):
        driver.list_instances("HV99")


# Lifecycle: the same outcome as the fake driver from every power state ---------------


@pytest.mark.parametrize("state", list(_drivers.REACH))
@pytest.mark.parametrize("operation", _drivers.TRANSITION_KEYS)
def test_lifecycle_matches_the_fake_driver(
    driver: HyperVDriver, server: WinRMTestServer, state: str, operation: str
) -> None:
    fake = _drivers.fake_driver(HOST)
    spec = new_spec()
    for each in (fake, driver):
        each.spawn(HOST, spec)
        _drivers.reach(each, HOST, spec.uuid, state)
    assert outcome(lambda: driver.get_info(HOST, spec.uuid))["power_state"] == state

    expected = outcome(lambda: _drivers.apply(fake, HOST, spec.uuid, operation))
    assert outcome(lambda: _drivers.apply(driver, HOST, spec.uuid, operation)) == expected
    assert outcome(lambda: driver.get_info(HOST, spec.uuid)) == outcome(
        lambda: fake.get_info(HOST, spec.uuid)
    )


def test_wrong_state_is_the_contracts_invalid_power_state(driver: HyperVDriver) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.pause(HOST, spec.uuid)
    assert caught.value.kwargs == {
        "uuid": spec.uuid,
        "operation": "pause",
        "state": "stopped",
        "allowed": "running",
    }
    assert str(caught.value) == (
        f"Cannot pause instance {spec.uuid}: it is stopped, and pause needs one of: running."
    )


def test_reboots_really_restart_the_vm(driver: HyperVDriver, server: WinRMTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    [vm] = server.host(HOST).vms()
    driver.reboot(HOST, spec.uuid, "soft")
    driver.reboot(HOST, spec.uuid, "hard")
    driver.pause(HOST, spec.uuid)
    assert driver.reboot(HOST, spec.uuid, "hard").power_state == PowerState.RUNNING
    assert vm.boot_count == 4


def test_a_vm_between_two_states_is_refused_clearly(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    spec = new_spec()
    server.host(HOST).add_vm("busy", state=VMState.Stopping, notes=encode_notes(spec))
    assert driver.get_info(HOST, spec.uuid).power_state == PowerState.STOPPED
    with pytest.raises(exception.DriverError, match="is Stopping in Hyper-V"):
        driver.power_on(HOST, spec.uuid)


# Missing instances ------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["get_info", "power_on", "power_off", "reboot.soft"])
def test_a_missing_instance_is_instance_not_found(driver: HyperVDriver, operation: str) -> None:
    uuid = str(uuidlib.uuid4())
    if operation == "get_info":
        result = outcome(lambda: driver.get_info(HOST, uuid))
    else:
        result = outcome(lambda: _drivers.apply(driver, HOST, uuid, operation))
    assert result == ("InstanceNotFound", f"Instance {uuid} not found on host {HOST}.")


def test_destroy_removes_the_vm_and_succeeds_when_missing(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    running, paused, saved = new_spec(), new_spec(), new_spec()
    for spec in (running, paused, saved):
        driver.spawn(HOST, spec)
    driver.pause(HOST, paused.uuid)
    driver.suspend(HOST, saved.uuid)
    for spec in (running, paused, saved):
        driver.destroy(HOST, spec.uuid)
        driver.destroy(HOST, spec.uuid)
    driver.destroy(HOST, str(uuidlib.uuid4()))
    assert server.host(HOST).vms() == []
    assert driver.list_instances(HOST) == []


def test_a_vm_removed_behind_the_drivers_back_is_not_found(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    uuid = spawn_then_remove_behind_its_back(driver, server)
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info(HOST, uuid)
    driver.destroy(HOST, uuid)


# Spawn failures leave nothing behind ------------------------------------------------


def test_spawn_refuses_memory_hyperv_cannot_assign(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    for memory_mb in (16, 129):
        with pytest.raises(exception.InvalidRequest, match="startup memory"):
            driver.spawn(HOST, new_spec(memory_mb=memory_mb))
    assert server.host(HOST).vms() == []


def test_a_failed_spawn_removes_its_vm(driver: HyperVDriver, server: WinRMTestServer) -> None:
    too_many_cpus = new_spec(vcpus=64)
    with pytest.raises(exception.InvalidRequest, match="64 virtual processors"):
        driver.spawn(HOST, too_many_cpus)
    too_big = new_spec(memory_mb=64 * 1024)
    with pytest.raises(exception.DriverError, match="Not enough memory") as caught:
        driver.spawn(HOST, too_big)
    assert caught.value.kwargs["error_id"].startswith("OperationFailed,")
    assert server.host(HOST).vms() == []
    # Nothing left: spawning again starts afresh.
    assert driver.spawn(HOST, new_spec()).power_state == PowerState.RUNNING


# Injection ----------------------------------------------------------------------------

HOSTILE_NAMES = [
    "x'; Remove-VM -Name * -Force; '",
    "x\u2019; Remove-VM -Name * -Force; \u2018",  # typographic quotes are quotes too
    "$(Stop-Computer)",
    '"; Get-VMHost; "',
    "`$x; Remove-VM -Name * -Force #",
    "*",
]


def test_hostile_instance_names_stay_literal_names(
    tls_server: WinRMTestServer, tls_files: tuple[str, str], make_driver: DriverFactory
) -> None:
    host = tls_server.host(HOST)
    bystander = host.add_vm("bystander", state=VMState.Running)
    driver = make_driver(
        {HOST: tls_server.url}, transport="basic", ca_file=tls_files[0]
    )  # https, so the wire log is readable
    specs = [new_spec(name) for name in HOSTILE_NAMES]
    for spec in specs:
        assert driver.spawn(HOST, spec).name == spec.name
        driver.power_off(HOST, spec.uuid)

    names = sorted(vm.name for vm in host.vms())
    assert names == sorted([*HOSTILE_NAMES, "bystander"])
    assert bystander.state == VMState.Running
    assert all(vm.state == VMState.Off for vm in host.vms() if vm is not bystander)
    # Only the driver's vocabulary ran, each hostile name once, as a quoted literal.
    sent = scripts_sent(tls_server)
    new_vm_scripts = [s for s in sent if "New-VM" in s]
    assert len(new_vm_scripts) == len(HOSTILE_NAMES)
    for spec, script in zip(specs, new_vm_scripts, strict=True):
        assert f"New-VM -Name {ps.quote(spec.name)} " in script
    commands = set()
    for script in sent:
        # Drop the literals, then every word that starts a pipeline stage is a command.
        bare = re.sub(
            r"'(?:[^'\u2018\u2019\u201a\u201b]|''|[\u2018\u2019\u201a\u201b]{2})*'", "''", script
        )
        commands.update(re.findall(r"(?:^|\|)\s*([A-Za-z]+-[A-Za-z]+)", bare, re.M))
    assert commands <= {
        "Get-VM",
        "New-VM",
        "Set-VM",
        "Start-VM",
        "Stop-VM",
        "Remove-VM",
        "Select-Object",
        "ConvertTo-Json",
        "Get-VMHost",
        "Get-VMNetworkAdapter",
        "Remove-VMNetworkAdapter",
        "Set-VMComPort",
    }


def test_quote_doubles_every_kind_of_single_quote() -> None:
    assert ps.quote("it's") == "'it''s'"
    assert (
        ps.quote("a\u2019b\u2018c\u201ad\u201be")
        == "'a\u2019\u2019b\u2018\u2018c\u201a\u201ad\u201b\u201be'"
    )
    assert ps.quote('$(x) `n "y"') == "'$(x) `n \"y\"'"
    with pytest.raises(ValueError):
        ps.quote("nul\x00")
    with pytest.raises(ValueError):
        ps.get_vm("'; Remove-VM -Name * -Force; '")


# Transport, authentication, timeouts ------------------------------------------------------


def test_ntlm_over_http_seals_every_message(driver: HyperVDriver, server: WinRMTestServer) -> None:
    spec = new_spec("secret-name-xyzzy")
    driver.spawn(HOST, spec)
    authenticated = [r for r in server.wire_log if r.status == 200 and r.body]
    assert authenticated
    assert all(r.content_type.startswith("multipart/encrypted") for r in authenticated)
    assert not any(b"secret-name-xyzzy" in r.body or b"New-VM" in r.body for r in server.wire_log)


def test_scripts_reuse_an_authenticated_session(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    driver.list_instances(HOST)
    challenges = sum(1 for r in server.wire_log if r.status == 401)
    for _ in range(5):
        driver.list_instances(HOST)
    assert sum(1 for r in server.wire_log if r.status == 401) == challenges


def test_a_connection_the_host_closed_is_replaced(
    driver: HyperVDriver, server: WinRMTestServer
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    server.drop_connections()
    assert driver.get_info(HOST, spec.uuid).power_state == PowerState.RUNNING


def test_basic_over_https_with_the_hosts_ca(
    tls_server: WinRMTestServer, tls_files: tuple[str, str], make_driver: DriverFactory
) -> None:
    driver = make_driver({HOST: tls_server.url}, transport="basic", ca_file=tls_files[0])
    spec = new_spec()
    assert driver.spawn(HOST, spec).power_state == PowerState.RUNNING
    assert {r.authorization for r in tls_server.wire_log if r.status == 200} == {"Basic"}
    driver.destroy(HOST, spec.uuid)


def test_ntlm_over_https(
    tls_server: WinRMTestServer, tls_files: tuple[str, str], make_driver: DriverFactory
) -> None:
    driver = make_driver({HOST: tls_server.url}, ca_file=tls_files[0])
    assert driver.list_instances(HOST) == []


def test_an_untrusted_certificate_is_refused_unless_validation_is_off(
    tls_server: WinRMTestServer, make_driver: DriverFactory
) -> None:
    with pytest.raises(exception.DriverError, match="TLS with .* failed:.*certificate verify"):
        make_driver({HOST: tls_server.url}, transport="basic")
    driver = make_driver({HOST: tls_server.url}, transport="basic", server_cert_validation=False)
    assert driver.list_instances(HOST) == []


def test_basic_over_http_is_refused_before_sending_anything(
    server: WinRMTestServer, make_driver: DriverFactory
) -> None:
    with pytest.raises(exception.DriverError, match="would send the password in clear"):
        make_driver({HOST: server.urls[HOST]}, transport="basic")
    assert server.wire_log == []


@pytest.mark.parametrize("bad", ["password", "username"])
def test_refused_credentials_name_the_host_not_the_password(
    server: WinRMTestServer,
    make_driver: DriverFactory,
    caplog: pytest.LogCaptureFixture,
    bad: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(exception.DriverError) as caught:
        make_driver({HOST: server.urls[HOST]}, **{bad: "wrong"})
    message = str(caught.value)
    assert message == (
        f"The hyperv driver failed on host {HOST}: get_host: {server.urls[HOST]} refused "
        "the credentials (HTTP 401); check [hyperv] username and password"
    )
    assert PASSWORD not in message and "wrong" not in message
    assert PASSWORD not in caplog.text


def test_credentials_in_the_url_are_refused(make_driver: DriverFactory) -> None:
    with pytest.raises(exception.DriverError, match="must not carry credentials") as caught:
        make_driver({HOST: f"http://admin:{PASSWORD}@127.0.0.1:5985/wsman"})
    assert PASSWORD not in str(caught.value)


def test_an_unreachable_host_fails_at_once(closed_port: int, make_driver: DriverFactory) -> None:
    url = f"http://127.0.0.1:{closed_port}/wsman"
    started = time.monotonic()
    with pytest.raises(exception.DriverError) as caught:
        make_driver({HOST: url})
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith(
        f"The hyperv driver failed on host {HOST}: get_host: cannot connect to {url}:"
    )
    assert "refused" in str(caught.value)


def test_a_silent_host_fails_within_the_read_timeout(
    silent_port: int, make_driver: DriverFactory
) -> None:
    url = f"http://127.0.0.1:{silent_port}/wsman"
    started = time.monotonic()
    with pytest.raises(exception.DriverError, match="did not answer in time"):
        make_driver({HOST: url}, operation_timeout=1, read_timeout=2)
    assert 1.5 < time.monotonic() - started < 10


def test_the_password_never_reaches_the_logs(
    server: WinRMTestServer,
    tls_server: WinRMTestServer,
    tls_files: tuple[str, str],
    make_driver: DriverFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ntlm = make_driver({HOST: server.urls[HOST]})
    basic = make_driver({HOST: tls_server.url}, transport="basic", ca_file=tls_files[0])
    for driver in (ntlm, basic):
        spec = new_spec()
        driver.spawn(HOST, spec)
        driver.pause(HOST, spec.uuid)
        with pytest.raises(exception.InvalidPowerState):
            driver.suspend(HOST, spec.uuid)
        driver.destroy(HOST, spec.uuid)
    basic_token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert caplog.records  # the driver and the libraries did log
    assert PASSWORD not in caplog.text and basic_token not in caplog.text


# Reading PowerShell's output --------------------------------------------------------------


def test_output_parsing() -> None:
    assert ps.parse_objects(b"") == [] and ps.parse_objects(b"\r\n") == []
    assert ps.parse_objects(b'{"Id":"a"}\r\n') == [{"Id": "a"}]
    assert ps.parse_objects(b'[{"Id":"a"},{"Id":"b"}]') == [{"Id": "a"}, {"Id": "b"}]
    stderr = (
        b"Get-VM : Hyper-V was unable to find a virtual machine with id \r\n"
        b'"00000000-0000-0000-0000-000000000001".\r\n'
        b"At line:2 char:1\r\n"
        b"+ Get-VM -Id '00000000-0000-0000-0000-000000000001' | ConvertTo-Json -C ...\r\n"
        b"+ ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\r\n"
        b"    + CategoryInfo          : InvalidArgument: (00000000-0000-0000-0000-000000 \r\n"
        b"   000001:Guid) [Get-VM], VirtualizationException\r\n"
        b"    + FullyQualifiedErrorId : InvalidParameter,Microsoft.HyperV.PowerShell.Com \r\n"
        b"   mands.GetVM\r\n"
    )
    error = ps.parse_error("get_vm", stderr)
    assert error.message == (
        'Hyper-V was unable to find a virtual machine with id "00000000-0000-0000-0000-000000000001".'
    )
    assert error.error_id == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
    assert error.category == (
        "InvalidArgument: (00000000-0000-0000-0000-000000000001:Guid) [Get-VM], "
        "VirtualizationException"
    )


def test_a_cmdlet_the_host_lacks_is_an_unsupported_operation() -> None:
    from drivers.hyperv import errors

    stderr = (
        b"Restart-VM : A parameter cannot be found that matches parameter name 'Type'.\r\n"
        b"At line:2 char:60\r\n"
        b"+ Get-VM -Id '1b4e28ba-2fa1-11d2-883f-0016d3cca427' | Restart-VM -Force -Type ...\r\n"
        b"+                                                               ~~~~~\r\n"
        b"    + CategoryInfo          : InvalidArgument: (:) [Restart-VM], ParameterBindin \r\n"
        b"   gException\r\n"
        b"    + FullyQualifiedErrorId : NamedParameterNotFound,Microsoft.HyperV.PowerShell \r\n"
        b"   .Commands.RestartVM\r\n"
    )
    error = ps.parse_error("reboot", stderr)
    mapped = errors.translate(error, host=HOST, operation="reboot.soft", uuid="u")
    assert isinstance(mapped, exception.UnsupportedOperation)
    assert mapped.kwargs["error_id"] == (
        "NamedParameterNotFound,Microsoft.HyperV.PowerShell.Commands.RestartVM"
    )
    assert str(mapped) == (
        f"Operation reboot.soft is not supported by the hyperv driver on host {HOST}."
    )


# Instance events: the driver's poll -----------------------------------------------------


def test_the_poll_reports_vms_changed_or_gone_behind_the_drivers_back(
    server: WinRMTestServer, make_driver: DriverFactory
) -> None:
    driver = make_driver(dict(server.urls), instance_poll_interval=0.1)
    changed: queue.Queue[str] = queue.Queue()
    first, second = new_spec("first"), new_spec("second")
    driver.spawn(HOST, first)
    driver.spawn(HOST, second)
    driver.watch_instances(HOST, changed.put)
    host = server.host(HOST)
    vm_of = {
        spec.uuid: vm for spec in (first, second) for vm in host.vms() if spec.uuid in vm.notes
    }

    host.set_state(vm_of[first.uuid], VMState.Off)
    assert changed.get(timeout=30) == first.uuid
    with host.lock:  # one change to the poll: turned off and removed by hand
        host.set_state(vm_of[second.uuid], VMState.Off)
        host.remove(vm_of[second.uuid])
    assert changed.get(timeout=30) == second.uuid
    assert changed.empty()

    driver.cleanup_host(HOST)
    assert not [t for t in threading.enumerate() if t.name == f"hyperv-poll-{HOST}"]


def test_the_poll_is_off_at_zero(server: WinRMTestServer, make_driver: DriverFactory) -> None:
    driver = make_driver(dict(server.urls), instance_poll_interval=0)
    driver.watch_instances(HOST, lambda uuid: None)
    assert not [t for t in threading.enumerate() if t.name.startswith("hyperv-poll-")]
