"""Version pins, backports and refusals, the too-old worker check, and the previous-major proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from computed import exception, version
from computed.conf import registry as registry_conf
from computed.conf import upgrade_levels, worker
from computed.objects import (
    BlockDevice,
    InstanceInfo,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from computed.registry import Registry, WorkerRecord
from computed.registry.api import STATE_DRAINING, STATE_STOPPED
from computed.service import _check_not_too_old
from rpcapi import ComputeAPI, _pins


def _record(worker_id: str, hosts: tuple[str, ...], rpc: str, rpc_min: str = "1.0") -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        driver="fake",
        hosts=hosts,
        rpc_version=rpc,
        rpc_min_version=rpc_min,
        support_tier="conformant",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    registry.register(_record("old", ("h-old",), "1.0"))
    registry.register(_record("new", ("h-new",), version.RPC_API_VERSION))
    yield registry
    registry.close()


def _conf(**upgrade: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    for module in (upgrade_levels, registry_conf, worker):
        module.register_opts(conf)
    # oslo.config keeps overrides in the option group shared by every
    # ConfigOpts, so each test sets every option it relies on.
    upgrade = {"compute": "auto", "minimum_worker_version": None, **upgrade}
    conf.set_override("counters_interval", 0, group="upgrade_levels")
    for key, value in upgrade.items():
        conf.set_override(key, value, group="upgrade_levels")
    return conf


@pytest.fixture
def api(registry: Registry) -> Iterator[ComputeAPI]:
    # Nothing may be sent in these tests: the transport would fail if used.
    client = ComputeAPI(_conf(), registry=registry, transport=object(), required_tier="untested")  # type: ignore[arg-type]
    yield client


def _spec(**fields: Any) -> InstanceSpec:
    return InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64, **fields)


def test_auto_gives_each_host_its_own_cap(api: ComputeAPI) -> None:
    assert api.version_cap("h-old") == "1.0"
    assert api.version_cap("h-new") == version.RPC_API_VERSION
    assert not api.can_send_console_output("h-old")
    assert api.can_send_console_output("h-new")


@pytest.mark.parametrize(("pin", "cap"), [("auto-min", "1.0"), ("alpha", "1.0"), ("1.0", "1.0")])
def test_deployment_wide_pins(registry: Registry, pin: str, cap: str) -> None:
    api = ComputeAPI(
        _conf(compute=pin), registry=registry, transport=object(), required_tier="untested"
    )  # type: ignore[arg-type]
    assert api.version_cap("h-new") == cap


def test_a_pin_is_a_ceiling_not_a_promise(registry: Registry) -> None:
    api = ComputeAPI(
        _conf(compute="beta"), registry=registry, transport=object(), required_tier="untested"
    )  # type: ignore[arg-type]
    assert api.version_cap("h-old") == "1.0"


def test_a_bad_pin_is_a_configuration_error(registry: Registry) -> None:
    with pytest.raises(exception.ConfigError, match="omega.*alpha, beta, gamma, delta"):
        ComputeAPI(_conf(compute="omega"), registry=registry, required_tier="untested")


def test_a_new_operation_to_an_old_host_is_refused_without_sending(api: ComputeAPI) -> None:
    with pytest.raises(exception.UnsupportedVersion) as caught:
        api.get_console_output(None, "h-old", str(uuid.uuid4()))
    error = caught.value
    assert (error.host, error.operation, error.version) == ("h-old", "get_console_output", "1.1")
    assert "worker old speaks 1.0" in str(error)
    assert api.call_counts() == {("h-old", "1.0"): (0, 0, 1)}


def test_a_draining_or_disabled_old_worker_still_holds_the_cap(registry: Registry) -> None:
    registry.register(_record("new-2", ("h-old",), version.RPC_API_VERSION))
    api = ComputeAPI(_conf(), registry=registry, transport=object(), required_tier="untested")  # type: ignore[arg-type]
    registry.set_disabled("old", True)
    api._resolver.refresh()
    assert api.version_cap("h-old") == "1.0"
    registry.set_state("old", STATE_DRAINING)
    api._resolver.refresh()
    assert api.version_cap("h-old") == "1.0"
    registry.set_state("old", STATE_STOPPED)
    api._resolver.refresh()
    assert api.version_cap("h-old") == version.RPC_API_VERSION


def test_objects_are_backported_for_an_old_host() -> None:
    cap = _pins.Cap("1.0", "test")
    spec = _spec(description="web tier")
    sent, kwargs, changed = _pins.fit_message("h", "spawn", cap, {"instance": spec})
    assert (sent, changed) == ("1.0", True)
    primitive = kwargs["instance"].obj_to_primitive()
    assert primitive["computed_object.version"] == "1.0"
    assert "description" not in primitive["computed_object.data"]
    assert spec.description == "web tier"  # the caller's object is left alone


def _volume(volume_id: str = "vol-1") -> BlockDevice:
    connection = VolumeConnection(
        volume_id=volume_id, driver_volume_type="iscsi", data={"target_lun": 1}
    )
    return BlockDevice(kind="volume", connection_info=connection)


def test_a_spec_with_only_a_root_disk_is_backported_with_the_disk_in_the_old_fields() -> None:
    root = BlockDevice(kind="image", boot_index=0, image="cirros", size_gb=3)
    spec = _spec(block_devices=[root])
    sent, kwargs, changed = _pins.fit_message(
        "h", "spawn", _pins.Cap("1.1", "test"), {"instance": spec}
    )
    data = kwargs["instance"].obj_to_primitive()["computed_object.data"]
    assert (sent, changed) == ("1.1", True)
    assert (data["image"], data["disk_gb"]) == ("cirros", 3)
    assert "block_devices" not in data and "network_interfaces" not in data


@pytest.mark.parametrize(
    ("devices", "interfaces", "lost"),
    [
        ([_volume()], [], "1 block device"),
        ([BlockDevice(kind="blank", size_gb=1)], [], "1 block device"),
        (
            [],
            [NetworkInterface(port_id="p-1", mac_address="fa:16:3e:00:00:01", network="br0")],
            "1 network interface",
        ),
    ],
)
def test_a_spec_whose_devices_an_old_host_would_not_build_is_refused(
    devices: list[BlockDevice], interfaces: list[NetworkInterface], lost: str
) -> None:
    spec = _spec(block_devices=devices, network_interfaces=interfaces)
    with pytest.raises(exception.UnsupportedVersion, match=lost) as caught:
        _pins.fit_message("h", "spawn", _pins.Cap("1.1", "test"), {"instance": spec})
    assert caught.value.version == "1.2"
    sent, kwargs, changed = _pins.fit_message(
        "h", "spawn", _pins.Cap("1.2", "test"), {"instance": spec}
    )
    assert (sent, changed) == ("1.2", False) and kwargs["instance"] is spec


def test_device_operations_are_refused_for_an_old_host(api: ComputeAPI) -> None:
    assert not api.can_send_devices("h-old") and api.can_send_devices("h-new")
    with pytest.raises(exception.UnsupportedVersion) as caught:
        api.attach_volume(None, "h-old", str(uuid.uuid4()), _volume().connection_info)
    assert (caught.value.operation, caught.value.version) == ("attach_volume", "1.2")


@pytest.mark.parametrize(
    ("probe", "operation", "arguments"),
    [
        ("can_send_images", "snapshot", {"image_name": "nightly"}),
        ("can_send_rescue", "rescue", {}),
        ("can_send_rescue", "unrescue", {}),
        ("can_send_consoles", "get_serial_console", {}),
        ("can_send_consoles", "get_graphical_console", {}),
    ],
)
def test_operations_of_1_3_are_refused_for_a_1_2_host(
    registry: Registry, probe: str, operation: str, arguments: dict[str, Any]
) -> None:
    registry.register(_record("gamma", ("h-gamma",), "1.2"))
    api = ComputeAPI(_conf(), registry=registry, transport=object(), required_tier="untested")  # type: ignore[arg-type]
    assert not getattr(api, probe)("h-gamma") and getattr(api, probe)("h-new")
    with pytest.raises(exception.UnsupportedVersion) as caught:
        getattr(api, operation)(None, "h-gamma", str(uuid.uuid4()), **arguments)
    assert (caught.value.operation, caught.value.version) == (operation, "1.3")
    with pytest.raises(exception.UnsupportedVersion):
        api.delete_image(None, "h-gamma", "image-1")


def test_a_rescued_instance_is_running_to_an_older_caller() -> None:
    info = InstanceInfo(
        uuid=str(uuid.uuid4()),
        name="vm",
        host="h",
        power_state=PowerState.RESCUED,
        vcpus=1,
        memory_mb=64,
        disk_gb=1,
    )
    old = info.obj_to_primitive(target_version="1.1")["computed_object.data"]
    assert old["power_state"] == PowerState.RUNNING
    assert info.obj_to_primitive()["computed_object.data"]["power_state"] == PowerState.RESCUED


def test_new_arguments_are_dropped_only_when_declared_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(version.ARGUMENT_VERSIONS, "reboot", {"reason": "1.1"})
    cap = _pins.Cap("1.0", "test")
    with pytest.raises(exception.UnsupportedVersion, match=r"reboot\(reason=...\).*1\.1"):
        _pins.fit_message("h", "reboot", cap, {"uuid": "u", "reason": "kernel update"})
    monkeypatch.setitem(version.DROPPABLE_ARGUMENTS, "reboot", frozenset({"reason"}))
    _, kwargs, changed = _pins.fit_message("h", "reboot", cap, {"uuid": "u", "reason": "x"})
    assert kwargs == {"uuid": "u"} and changed


def test_a_host_newer_than_the_client_serves_what_the_client_speaks() -> None:
    newest = _record("w", ("h",), "2.3", rpc_min="1.0")
    assert _pins.host_cap("auto", [newest], [newest]).version == version.RPC_API_VERSION
    dropped = _record("w", ("h",), "3.0", rpc_min="2.0")
    cap = _pins.host_cap("auto", [dropped], [dropped])
    with pytest.raises(exception.UnsupportedVersion, match="upgrade the client"):
        _pins.fit_message("h", "ping", cap, {})


def test_a_worker_older_than_the_deployment_refuses_to_start(registry: Registry) -> None:
    conf = _conf()
    conf.set_override("driver", "fake")
    _check_not_too_old(conf, registry)  # 1.0 workers serve from 1.0: fine
    registry.register(_record("future", ("h-future",), "3.0", rpc_min="2.0"))
    with pytest.raises(exception.ConfigError) as caught:
        _check_not_too_old(conf, registry)
    message = str(caught.value)
    assert "older than 2.0" in message and "worker future" in message
    assert "upgrade computed and the 'fake' driver" in message


def test_minimum_worker_version_option(registry: Registry) -> None:
    conf = _conf(minimum_worker_version="9.0")
    conf.set_override("driver", "fake")
    with pytest.raises(exception.ConfigError, match=r"minimum_worker_version"):
        _check_not_too_old(conf, registry)


def test_counters_reach_the_registry(api: ComputeAPI, registry: Registry) -> None:
    with pytest.raises(exception.UnsupportedVersion):
        api.get_console_output(None, "h-old", str(uuid.uuid4()))
    (count,) = registry.list_call_counts()
    assert (count.host, count.rpc_version, count.sent, count.refused) == ("h-old", "1.0", 0, 1)


# The previous-major pattern, exercised with a pretend 2.0 ------------------------


class _ManagerV2:
    """A 2.0 endpoint whose ``greet`` lost the ``shout`` argument 1.x had."""

    target = messaging.Target(version="2.0")

    def greet(self, ctxt: Any, name: str) -> str:
        return f"hello {name}"


class _ProxyV1:
    """Serves 1.x for one release, forwarding to the 2.0 manager."""

    target = messaging.Target(version="1.4")

    def __init__(self, manager: _ManagerV2) -> None:
        self._manager = manager

    def greet(self, ctxt: Any, name: str, shout: bool = False) -> str:
        text = self._manager.greet(ctxt, name=name)
        return text.upper() if shout else text


def test_a_proxy_keeps_serving_the_previous_major() -> None:
    # oslo.messaging registers some of its groups only on the global config.
    transport = messaging.get_rpc_transport(cfg.CONF, url="fake://")
    target = messaging.Target(topic="compute-proxy-test", server="h")
    manager = _ManagerV2()
    server = messaging.get_rpc_server(transport, target, [manager, _ProxyV1(manager)])
    server.start()
    try:
        client = messaging.get_rpc_client(transport, messaging.Target(topic=target.topic))
        old = client.prepare(server="h", version="1.3")
        new = client.prepare(server="h", version="2.0")
        assert old.call({}, "greet", name="a", shout=True) == "HELLO A"
        assert new.call({}, "greet", name="b") == "hello b"
        with pytest.raises(Exception, match="does not support RPC version 1.5"):
            client.prepare(server="h", version="1.5").call({}, "greet", name="c")
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
