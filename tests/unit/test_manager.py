"""The endpoint's boundary checks, exercised by calling it as the dispatcher does."""

from __future__ import annotations

import uuid

import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_context import context

from computed import exception, version
from computed.manager import ComputeManager
from computed.notifications import OutcomeNotifier
from computed.objects import (
    BlockDevice,
    InstanceInfoList,
    InstanceSpec,
    NetworkInterface,
    VolumeConnection,
)
from drivers.fake import FakeDriver

HOST = "h1"


class _Lean(FakeDriver):
    """A driver that declares less than the whole contract."""

    name = "lean"
    operations = FakeDriver.operations - {"suspend", "resume"}
    features = frozenset({"reboot.hard"})


def _manager(driver_class: type[FakeDriver] = FakeDriver) -> ComputeManager:
    conf = cfg.ConfigOpts()
    driver_class.register_opts(conf)
    conf([], default_config_files=[])
    driver = driver_class(conf)
    driver.init_host(HOST)
    notifier_conf = cfg.ConfigOpts()
    from computed.conf import notifications

    notifications.register_opts(notifier_conf)
    notifier_conf([], default_config_files=[])
    return ComputeManager(HOST, driver, "w1", OutcomeNotifier(notifier_conf, None))


def _refused(call, *args, **kwargs) -> exception.ComputedError:  # type: ignore[no-untyped-def]
    """Call the endpoint and return the project error it carried out."""
    with pytest.raises(messaging.ExpectedException) as caught:
        call(context.RequestContext(), *args, **kwargs)
    error = caught.value.exc_info[1]
    assert isinstance(error, exception.ComputedError)
    return error


def _spec() -> InstanceSpec:
    return InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64)


def test_target_speaks_the_shared_version() -> None:
    assert ComputeManager.target.version == version.RPC_API_VERSION


def test_lifecycle_through_the_endpoint() -> None:
    manager = _manager()
    ctxt = context.RequestContext()
    spec = _spec()
    assert manager.spawn(ctxt, instance=spec).power_state == "running"
    assert manager.reboot(ctxt, uuid=spec.uuid, reboot_type="hard").power_state == "running"
    assert manager.power_off(ctxt, uuid=spec.uuid).power_state == "stopped"
    listed = manager.list_instances(ctxt)
    assert isinstance(listed, InstanceInfoList) and [i.uuid for i in listed.objects] == [spec.uuid]
    assert manager.destroy(ctxt, uuid=spec.uuid) is None
    assert manager.ping(ctxt).worker_id == "w1"


def test_unknown_argument_is_an_invalid_request() -> None:
    error = _refused(_manager().get_info, uuid=str(uuid.uuid4()), colour="red")
    assert isinstance(error, exception.InvalidRequest)
    assert "colour" in str(error)


def test_missing_argument_is_an_invalid_request() -> None:
    error = _refused(_manager().power_on)
    assert isinstance(error, exception.InvalidRequest)
    assert "uuid" in str(error)


@pytest.mark.parametrize("bad", [123, None, "not-a-uuid", ["x"], "x" * 100_000])
def test_uuid_must_be_a_uuid(bad: object) -> None:
    error = _refused(_manager().get_info, uuid=bad)
    assert isinstance(error, exception.InvalidRequest)
    assert len(str(error)) < 300


def test_spawn_wants_an_instance_spec() -> None:
    error = _refused(_manager().spawn, instance={"uuid": str(uuid.uuid4())})
    assert isinstance(error, exception.InvalidRequest)
    assert "InstanceSpec" in str(error)


def test_spawn_checks_the_spec_limits() -> None:
    spec = _spec()
    spec.name = "n" * 10_000
    error = _refused(_manager().spawn, instance=spec)
    assert isinstance(error, exception.InvalidRequest)
    assert "name" in str(error)


def test_reboot_type_is_checked() -> None:
    manager = _manager()
    spec = _spec()
    manager.spawn(context.RequestContext(), instance=spec)
    error = _refused(manager.reboot, uuid=spec.uuid, reboot_type="sideways")
    assert isinstance(error, exception.InvalidRequest)


def test_undeclared_operation_is_unsupported_before_the_driver_runs() -> None:
    manager = _manager(_Lean)
    spec = _spec()
    manager.spawn(context.RequestContext(), instance=spec)
    error = _refused(manager.suspend, uuid=spec.uuid)
    assert isinstance(error, exception.UnsupportedOperation)
    assert error.kwargs == {"operation": "suspend", "driver": "lean", "host": HOST}
    error = _refused(manager.reboot, uuid=spec.uuid, reboot_type="soft")
    assert isinstance(error, exception.UnsupportedOperation)
    assert manager.get_info(context.RequestContext(), uuid=spec.uuid).power_state == "running"


def test_an_unexpected_driver_failure_becomes_a_driver_error() -> None:
    class _Broken(FakeDriver):
        def get_host_resources(self, host: str):  # type: ignore[no-untyped-def]
            raise OSError("disk on fire")

    manager = _manager(_Broken)
    with pytest.raises(exception.DriverError) as caught:
        manager.get_host_resources(context.RequestContext())
    assert "OSError: disk on fire" in str(caught.value)
    assert caught.value.kwargs["host"] == HOST


def _volume(volume_id: str = "vol-1") -> VolumeConnection:
    return VolumeConnection(
        volume_id=volume_id, driver_volume_type="file", data={"device_path": "/tmp/v"}
    )


@pytest.mark.parametrize(
    ("operation", "arguments", "words"),
    [
        ("attach_volume", {"connection_info": {"volume_id": "v"}}, "VolumeConnection object"),
        ("attach_volume", {"connection_info": _volume(), "mountpoint": "sda;1"}, "device name"),
        ("attach_volume", {"connection_info": _volume(" v")}, "volume_id"),
        ("detach_volume", {"volume_id": ""}, "volume_id"),
        ("extend_volume", {"volume_id": "v", "new_size": 0}, "new_size"),
        ("extend_volume", {"volume_id": "v", "new_size": True}, "new_size"),
        ("attach_interface", {"vif": "eth0"}, "NetworkInterface object"),
        (
            "attach_interface",
            {"vif": NetworkInterface(port_id="p", mac_address="01:00:5e:00:00:01", network="n")},
            "multicast",
        ),
        ("detach_interface", {"port_id": "x" * 300}, "port_id"),
    ],
)
def test_device_arguments_are_checked_before_the_driver(
    operation: str, arguments: dict[str, object], words: str
) -> None:
    manager = _manager()
    error = _refused(getattr(manager, operation), uuid=str(uuid.uuid4()), **arguments)
    assert isinstance(error, exception.InvalidRequest)
    assert words in str(error) and operation in str(error)


def test_a_spawn_needing_a_feature_the_driver_lacks_is_unsupported() -> None:
    spec = _spec()
    spec.block_devices = [BlockDevice(kind="volume", connection_info=_volume())]
    error = _refused(_manager(_Lean).spawn, instance=spec)
    assert isinstance(error, exception.UnsupportedOperation)
    assert error.kwargs["operation"] == "spawn.volumes"
    spec = _spec()
    spec.network_interfaces = [
        NetworkInterface(port_id="p-1", mac_address="fa:16:3e:00:00:01", network="br-int")
    ]
    error = _refused(_manager(_Lean).spawn, instance=spec)
    assert error.kwargs["operation"] == "spawn.network_interfaces"
    # A root disk from an image is what 1.0 already built: no feature needed.
    spec = _spec()
    spec.block_devices = [BlockDevice(kind="image", boot_index=0, image="cirros", size_gb=1)]
    info = _manager(_Lean).spawn(context.RequestContext(), instance=spec)
    assert info.disk_gb == 1


def test_ping_and_capabilities_are_served_whatever_operations_says() -> None:
    class _Silent(FakeDriver):
        name = "silent"
        operations = frozenset({"spawn", "destroy", "get_info", "list_instances"})

    manager = _manager(_Silent)
    ctxt = context.RequestContext()
    assert manager.ping(ctxt).driver == "silent"
    capabilities = manager.get_capabilities(ctxt)
    assert capabilities.operations == [
        "destroy",
        "get_capabilities",
        "get_info",
        "list_instances",
        "ping",
        "spawn",
    ]
    assert isinstance(_refused(manager.get_host_resources), exception.UnsupportedOperation)
