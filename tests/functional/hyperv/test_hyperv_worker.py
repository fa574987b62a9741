"""Over the bus: a ``computed`` worker with the hyperv driver, a real broker, a WinRM server.

The WinRM test server runs as a process of its own (``python -m tests.winrmserver``),
as a Hyper-V host would be a machine of its own; the worker reaches it over
NTLM-sealed WinRM and the test drives it through ``rpcapi.ComputeAPI``.
Skipped where the ``hyperv`` entry point of ``computed.drivers`` is not installed.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import winrm
from oslo_config import cfg

from computed import exception
from computed.objects import (
    BlockDevice,
    InstanceSpec,
    InstanceStatePayload,
    NetworkInterface,
    VolumeConnection,
)
from rpcapi import InstanceEvent, InstanceEventListener
from tests.functional import _drivers

from .conftest import PASSWORD, USER

pytestmark = [pytest.mark.hyperv, pytest.mark.functional]

#: A volume every emulated host has.
VOLUME = "D:\\volumes\\vol-1.vhdx"


@pytest.fixture
def winrm_server() -> Iterator[str]:
    """``python -m tests.winrmserver`` serving host HV01; yields its URL."""
    args = ["--user", USER, "--password", PASSWORD, "--host", "HV01", "--vhd", VOLUME]
    with _drivers.server_process("tests.winrmserver", *args) as line:
        if not line.startswith("http"):
            raise RuntimeError(f"the WinRM test server did not start: {line!r}")
        yield line.split()[0]


def test_worker_serves_a_hyperv_host(deployment: Any, winrm_server: str) -> None:
    _drivers.start_worker(
        deployment,
        "hyperv",
        ["HV01"],
        host_urls={"HV01": winrm_server},
        username=USER,
        password=PASSWORD,
    )
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uuid, name="over the bus", vcpus=2, memory_mb=256, disk_gb=4)

    started = time.monotonic()
    assert api.spawn(None, "HV01", spec).power_state == "running"
    info = api.get_info(None, "HV01", uuid)
    assert (info.name, info.vcpus, info.memory_mb, info.disk_gb) == ("over the bus", 2, 256, 4)
    assert api.power_off(None, "HV01", uuid).power_state == "stopped"
    with pytest.raises(exception.InvalidPowerState) as caught:
        api.pause(None, "HV01", uuid)
    assert caught.value.kwargs["state"] == "stopped"
    capabilities = api.get_capabilities(None, "HV01")
    assert (capabilities.driver, capabilities.support_tier) == ("hyperv", "partial")
    assert api.get_host_resources(None, "HV01").hypervisor_type == "hyperv"
    api.destroy(None, "HV01", uuid)
    api.destroy(None, "HV01", uuid)
    with pytest.raises(exception.InstanceNotFound) as missing:
        api.get_info(None, "HV01", uuid)
    assert missing.value.kwargs == {"uuid": uuid, "host": "HV01"}
    assert time.monotonic() - started < 60
    assert PASSWORD not in deployment.workers[0].log()


def test_worker_attaches_devices_over_the_bus(deployment: Any, winrm_server: str) -> None:
    _drivers.start_worker(
        deployment,
        "hyperv",
        ["HV01"],
        host_urls={"HV01": winrm_server},
        username=USER,
        password=PASSWORD,
    )
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    port = NetworkInterface(
        port_id="port-1", mac_address="02:00:00:00:00:01", network="Default Switch"
    )
    spec = InstanceSpec(
        uuid=uuid,
        name="devices",
        vcpus=1,
        memory_mb=256,
        block_devices=[BlockDevice(kind="blank", size_gb=1, device_name="vdb")],
        network_interfaces=[port],
    )
    info = api.spawn(None, "HV01", spec)
    assert [(d.kind, d.device_name) for d in info.block_devices] == [("blank", "vdb")]
    assert [i.port_id for i in info.network_interfaces] == ["port-1"]

    connector = api.get_volume_connector(None, "HV01")
    assert connector.initiator == "iqn.1991-05.com.microsoft:hv01"
    connection = VolumeConnection(
        volume_id="vol-1", driver_volume_type="file", data={"device_path": VOLUME}
    )
    info = api.attach_volume(None, "HV01", uuid, connection, "vdc")
    assert info.volume("vol-1").device_name == "vdc"
    assert api.extend_volume(None, "HV01", uuid, "vol-1", 2).volume("vol-1").size_gb == 2
    with pytest.raises(exception.DeviceNotFound):
        api.extend_volume(None, "HV01", uuid, "vol-9", 2)
    iscsi = VolumeConnection(volume_id="vol-2", driver_volume_type="iscsi", data={})
    with pytest.raises(exception.UnsupportedOperation):
        api.attach_volume(None, "HV01", uuid, iscsi)
    assert api.detach_volume(None, "HV01", uuid, "vol-1").volume("vol-1") is None
    second = NetworkInterface(
        port_id="port-2", mac_address="02:00:00:00:00:02", network="Default Switch"
    )
    assert len(api.attach_interface(None, "HV01", uuid, second).network_interfaces) == 2
    assert api.detach_interface(None, "HV01", uuid, "port-1").interface("port-1") is None
    api.destroy(None, "HV01", uuid)
    assert PASSWORD not in deployment.workers[0].log()


class _Events:
    """The instance state events a scheduler hears, waited for as they arrive."""

    def __init__(self) -> None:
        self._arrived = threading.Condition()
        self.events: list[tuple[str, str, str | None, str | None, str]] = []

    def __call__(self, event: InstanceEvent) -> None:
        if isinstance(event.payload, InstanceStatePayload):
            p = event.payload
            with self._arrived:
                self.events.append((p.uuid, event.event_type, p.old_state, p.new_state, p.source))
                self._arrived.notify_all()

    def about(self, uuid: str) -> list[tuple[str, str | None, str | None, str]]:
        with self._arrived:
            return [e[1:] for e in self.events if e[0] == uuid]

    def wait(self, until: Callable[[], bool], what: str, timeout: float = 60) -> None:
        with self._arrived:
            if not self._arrived.wait_for(until, timeout):
                raise AssertionError(f"{what} not heard within {timeout} s: {self.events}")


@pytest.fixture
def events(conf: cfg.ConfigOpts) -> Iterator[_Events]:
    heard = _Events()
    listener = InstanceEventListener(conf, heard, pool=f"hv-{uuidlib.uuid4().hex[:6]}").start()
    yield heard
    listener.stop()


def test_changes_behind_the_drivers_back_reach_the_scheduler(
    deployment: Any, winrm_server: str, events: _Events
) -> None:
    # The worker's own look is off: only the driver's poll can notice.
    deployment.start_worker(
        ["HV01"],
        "hv-events",
        DEFAULT={"driver": "hyperv"},
        hyperv={
            "host_urls": {"HV01": winrm_server},
            "username": USER,
            "password": PASSWORD,
            "instance_poll_interval": 0.2,
        },
        notifications={"instance_sync_interval": 0},
    )
    api = deployment.api()
    ours, theirs, gone = (
        api.spawn(
            None, "HV01", InstanceSpec(uuid=str(uuidlib.uuid4()), name=n, vcpus=1, memory_mb=64)
        )
        for n in ("ours", "theirs", "gone")
    )
    assert ours is not None and theirs is not None and gone is not None
    api.power_off(None, "HV01", ours.uuid)  # an operation: its outcome says so, no event
    operator = winrm.Session(winrm_server, auth=(USER, PASSWORD), transport="ntlm")

    # The guest shuts itself down; an administrator deletes a VM by hand.
    assert operator.run_ps("Get-VM -Name 'theirs' | Stop-VM -Force").status_code == 0
    events.wait(lambda: bool(events.about(theirs.uuid)), "the shutdown")
    assert events.about(theirs.uuid) == [
        ("instance.power_state.update", "running", "stopped", "hypervisor")
    ]
    removed = operator.run_ps(
        "Get-VM -Name 'gone' | Stop-VM -TurnOff -Force -Passthru | Remove-VM -Force"
    )
    assert removed.status_code == 0, removed.std_err
    events.wait(
        lambda: any(e[0] == "instance.delete" for e in events.about(gone.uuid)), "the deletion"
    )
    assert {e[3] for e in events.about(gone.uuid)} == {"hypervisor"}
    assert events.about(gone.uuid)[-1][0] == "instance.delete"

    # Started again by hand: heard once more; the worker's own operations never are.
    assert operator.run_ps("Start-VM -Name 'theirs'").status_code == 0
    events.wait(lambda: len(events.about(theirs.uuid)) == 2, "the start")
    assert events.about(theirs.uuid)[1] == (
        "instance.power_state.update",
        "stopped",
        "running",
        "hypervisor",
    )
    assert events.about(ours.uuid) == []
