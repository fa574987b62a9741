"""The driver reads Hyper-V's failures the same way whatever language its host speaks.

The WinRM test server can word every error message in another language (its
error ids and categories unchanged, as on a Windows host installed in
German), or send no stderr at all. A missing instance must still be
InstanceNotFound, a missing network or volume file InvalidRequest where an
error record says so, and nothing may depend on the English text.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator

import pytest

from computed import exception
from computed.objects import BlockDevice, NetworkInterface, PowerState, VolumeConnection
from drivers.hyperv.driver import HyperVDriver
from drivers.hyperv.powershell import parse_error
from tests.functional._drivers import new_spec
from tests.winrmserver import GiB, HyperVHost, WinRMTestServer

from .conftest import HOST, PASSWORD, USER, DriverFactory, spawn_then_remove_behind_its_back

pytestmark = pytest.mark.hyperv

IMAGE = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks\\_base\\cirros.vhdx"


@pytest.fixture(params=["de-DE", "none"])
def foreign(request: pytest.FixtureRequest) -> Iterator[WinRMTestServer]:
    """A host whose errors are worded in German, or that sends no stderr."""
    with WinRMTestServer(
        users={USER: PASSWORD}, hosts=[HyperVHost(HOST)], error_messages=request.param
    ) as running:
        yield running


@pytest.fixture
def driver(foreign: WinRMTestServer, make_driver: DriverFactory) -> HyperVDriver:
    return make_driver(dict(foreign.urls))


def test_the_server_really_words_its_errors_otherwise(foreign: WinRMTestServer) -> None:
    import winrm

    session = winrm.Session(foreign.url, auth=(USER, PASSWORD), transport="ntlm")
    done = session.run_ps(f"$ErrorActionPreference = 'Stop'\nGet-VM -Id '{uuidlib.uuid4()}'")
    assert done.status_code == 1
    assert b"unable to find" not in done.std_err
    if foreign.options.error_messages == "none":
        assert done.std_err == b""
    else:
        error = parse_error("get_vm", done.std_err)
        assert error.message.startswith("Der Vorgang")
        assert error.error_id == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"


@pytest.mark.parametrize(
    "operation", ["get_info", "power_on", "power_off", "pause", "unpause", "suspend", "resume"]
)
def test_a_missing_instance_is_not_found(driver: HyperVDriver, operation: str) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(exception.InstanceNotFound) as caught:
        getattr(driver, operation)(HOST, missing)
    assert caught.value.kwargs == {"uuid": missing, "host": HOST}
    driver.destroy(HOST, missing)


def test_a_vm_removed_behind_the_drivers_back_is_not_found(
    driver: HyperVDriver, foreign: WinRMTestServer
) -> None:
    uuid = spawn_then_remove_behind_its_back(driver, foreign)
    for operation in ("get_info", "power_off", "reboot"):
        args = ("hard",) if operation == "reboot" else ()
        with pytest.raises(exception.InstanceNotFound):
            getattr(driver, operation)(HOST, uuid, *args)
    driver.destroy(HOST, uuid)


def test_a_missing_network_is_the_callers_mistake_where_the_host_says_so(
    driver: HyperVDriver, foreign: WinRMTestServer
) -> None:
    info = driver.spawn(HOST, new_spec())
    driver.power_off(HOST, info.uuid)  # a generation 1 VM takes adapters only when stopped
    vif = NetworkInterface(
        port_id="port-1", mac_address="02:00:00:00:00:01", network="no-such-switch"
    )
    expected = (
        exception.InvalidRequest
        if foreign.options.error_messages == "de-DE"
        else exception.DriverError  # no error record: nothing says whose mistake it was
    )
    with pytest.raises(expected):
        driver.attach_interface(HOST, info.uuid, vif)
    assert driver.get_info(HOST, info.uuid).power_state == PowerState.STOPPED


def test_a_missing_volume_file_is_the_callers_mistake_where_the_host_says_so(
    driver: HyperVDriver, foreign: WinRMTestServer
) -> None:
    foreign.host(HOST).add_vhd(IMAGE, GiB)
    info = driver.spawn(
        HOST,
        new_spec(
            block_devices=[BlockDevice(kind="image", image="cirros", size_gb=2, boot_index=0)]
        ),
    )
    volume = VolumeConnection(
        volume_id="vol-9", driver_volume_type="file", data={"device_path": "D:\\nowhere.vhdx"}
    )
    expected = (
        exception.InvalidRequest
        if foreign.options.error_messages == "de-DE"
        else exception.DriverError
    )
    with pytest.raises(expected):
        driver.attach_volume(HOST, info.uuid, volume, None)
