"""Versioned payloads: limits, the wire form, and a fingerprint of every object."""

from __future__ import annotations

import uuid

import pytest
from oslo_versionedobjects import fixture

from computed import exception, rpc
from computed.objects import (
    BlockDevice,
    InstanceActionPayload,
    InstanceSpec,
    NetworkInterface,
    VolumeConnection,
)
from computed.objects.base import ComputedObjectRegistry

# Version and a hash of the fields and remotable methods of every object.
# Changing an object changes its hash: bump its VERSION (and handle the old
# version in obj_make_compatible), then record the new "version-hash" here.
_EXPECTED_FINGERPRINTS = {
    "BlockDevice": "1.0-7015ae0e361eca63ddb59a4628252c30",
    "ConsoleConnection": "1.0-3922fdedeb82ca3927ab6fcf79cbd2cc",
    "Flavor": "1.0-b52b224d58e9cc0405218c17ea0aa492",
    "HostCapabilities": "1.0-0f40a2258079d07f500d7e7433d75c55",
    "HostResources": "1.0-b80763915e1eaaf5defa27ee2e117722",
    "HostState": "1.0-11fe8d851991408f3fad58823fcfbbc0",
    "ImageRef": "1.0-a748150097811fbbcf215832bdbe227b",
    "InstanceActionPayload": "1.1-3e62263d463a8460dca3c7ee620018de",
    "InstanceInfo": "1.2-3dff6bca8ea79ef20c2070e9d2fde6cf",
    "InstanceInfoList": "1.2-6cf6fc8bc8ff8f8eeb8b5b3d3db6637f",
    "InstanceSpec": "1.2-5203f9617b281b4cc793973488f92c47",
    "InstanceStatePayload": "1.1-25426b200fa62bca8dc95c4ae04f5b53",
    "Migration": "1.0-d4e4ee71bb1c2531ba574769f3d69fde",
    "NetworkInterface": "1.0-fd5b9723a254ecf40119656757065fa4",
    "PingResult": "1.0-c3f601bc5e211c90bf2e7deab53412ea",
    "VolumeConnection": "1.0-7389ef148ee88ed3e26857a9ce11ecc7",
    "VolumeConnector": "1.0-1d28fbf95ef716b197a9ced965daa41e",
}


def _spec(**changes: object) -> InstanceSpec:
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64)
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


def test_no_object_changed_without_a_version_bump() -> None:
    checker = fixture.ObjectVersionChecker(ComputedObjectRegistry.obj_classes())
    expected, actual = checker.test_hashes(_EXPECTED_FINGERPRINTS)
    assert expected == actual, (
        "A versioned object changed: bump its VERSION and update _EXPECTED_FINGERPRINTS"
    )


def test_valid_spec_gets_defaults() -> None:
    spec = _spec()
    spec.validate()
    assert (spec.disk_gb, spec.image, spec.metadata) == (0, None, {})


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"vcpus": 0}, "vcpus"),
        ({"memory_mb": -1}, "memory_mb"),
        ({"disk_gb": -5}, "disk_gb"),
        ({"metadata": {str(i): "v" for i in range(200)}}, "metadata"),
        ({"metadata": {"k": "v" * 5000}}, "metadata"),
    ],
)
def test_spec_limits(changes: dict[str, object], word: str) -> None:
    with pytest.raises(exception.InvalidRequest, match=word):
        _spec(**changes).validate()


def test_spec_requires_its_fields() -> None:
    with pytest.raises(exception.InvalidRequest, match="vcpus"):
        InstanceSpec(uuid=str(uuid.uuid4()), name="vm", memory_mb=64).validate()


def test_serializer_round_trip() -> None:
    serializer = rpc.RequestContextSerializer()
    spec = _spec()
    primitive = serializer.serialize_entity(None, spec)
    assert primitive["computed_object.name"] == "InstanceSpec"
    assert serializer.deserialize_entity(None, primitive) == spec


@pytest.mark.parametrize(
    "primitive",
    [
        {
            "computed_object.name": "NoSuchThing",
            "computed_object.version": "1.0",
            "computed_object.namespace": "computed",
            "computed_object.data": {},
        },
        {
            "computed_object.name": "InstanceSpec",
            "computed_object.version": "9.0",
            "computed_object.namespace": "computed",
            "computed_object.data": {},
        },
        {
            "computed_object.name": "InstanceSpec",
            "computed_object.version": "1.0",
            "computed_object.namespace": "computed",
            "computed_object.data": {"vcpus": "many"},
        },
    ],
)
def test_malformed_object_is_an_invalid_request(primitive: dict[str, object]) -> None:
    with pytest.raises(exception.InvalidRequest, match="malformed versioned object"):
        rpc.RequestContextSerializer().deserialize_entity(None, primitive)


def test_notification_payload_carries_the_error_context() -> None:
    payload = InstanceActionPayload(
        uuid=str(uuid.uuid4()),
        host="h",
        operation="pause",
        phase="error",
        error_class="InvalidPowerState",
        error_kwargs={"state": "stopped"},
    )
    assert payload.obj_to_primitive()["computed_object.data"]["error_kwargs"] == {
        "state": "stopped"
    }


def test_current_rpc_version_carries_every_object_at_its_version() -> None:
    """computed.version.OBJECT_VERSIONS must follow each object bump."""
    from computed import version

    current = version.object_versions_at(version.RPC_API_VERSION)
    actual = {
        name: cls[0].VERSION
        for name, cls in ComputedObjectRegistry.obj_classes().items()
        if cls[0].carried_by_rpc
    }
    assert current == actual, (
        "An object's VERSION changed without a new RPC version: bump RPC_API_VERSION and "
        "record the object versions it carries in computed.version.OBJECT_VERSIONS"
    )


def test_spec_backports_to_1_0_without_its_description() -> None:
    spec = _spec(description="web tier")
    primitive = spec.obj_to_primitive(target_version="1.0")
    assert primitive["computed_object.version"] == "1.0"
    assert "description" not in primitive["computed_object.data"]


def _connection(volume_id: str = "vol-1", **data: object) -> VolumeConnection:
    return VolumeConnection(volume_id=volume_id, driver_volume_type="iscsi", data=data)


def _nic(port: str = "p-1", mac: str = "fa:16:3e:00:00:01") -> NetworkInterface:
    return NetworkInterface(port_id=port, mac_address=mac, network="br-int", mtu=1500)


def test_a_spec_with_devices_takes_its_root_disk_into_image_and_disk_gb() -> None:
    spec = _spec(
        block_devices=[
            BlockDevice(kind="image", boot_index=0, image="cirros", size_gb=2),
            BlockDevice(kind="blank", size_gb=1),
            BlockDevice(kind="volume", connection_info=_connection(target_lun=1)),
        ],
        network_interfaces=[_nic()],
    )
    spec.validate()
    assert (spec.image, spec.disk_gb) == ("cirros", 2)
    assert spec.block_devices[2].volume_id == "vol-1"
    assert [d.kind for d in spec.extra_devices()] == ["blank", "volume"]
    wire = rpc.RequestContextSerializer()
    back = wire.deserialize_entity(None, wire.serialize_entity(None, spec))
    assert back.block_devices[2].connection_info.data == {"target_lun": 1}
    assert back.network_interfaces[0].mac_address == "fa:16:3e:00:00:01"


@pytest.mark.parametrize(
    ("devices", "nics", "word"),
    [
        ([BlockDevice(kind="blank")], [], "size_gb"),
        ([BlockDevice(kind="image", boot_index=0, size_gb=1)], [], "needs an image"),
        ([BlockDevice(kind="volume")], [], "connection_info"),
        ([BlockDevice(kind="blank", size_gb=1, boot_index=0)], [], "boot device"),
        ([BlockDevice(kind="image", image="x", size_gb=1, boot_index=1)], [], "boot device"),
        (
            [BlockDevice(kind="blank", size_gb=1, device_name="vdb")] * 2,
            [],
            "appears twice",
        ),
        (
            [BlockDevice(kind="volume", connection_info=_connection(), volume_id="other")],
            [],
            "differs",
        ),
        ([BlockDevice(kind="blank", size_gb=1, device_name="../../etc")], [], "device name"),
        ([BlockDevice(kind="volume", connection_info=_connection(x=1 / 3 * 1e300))], [], ""),
        ([], [_nic(), _nic(port="p-2")], "mac_address"),
        ([], [_nic(mac="01:00:5e:00:00:01")], "multicast"),
        (
            [],
            [NetworkInterface(port_id="p", mac_address="fa:16:3e:00:00:01", network="n", mtu=9)],
            "mtu",
        ),
        ([], [_nic()] * 17, "at most 16"),
    ],
)
def test_device_limits(devices: list[BlockDevice], nics: list[NetworkInterface], word: str) -> None:
    spec = _spec(block_devices=devices, network_interfaces=nics)
    if not word:  # a valid one, for contrast
        spec.validate()
        return
    with pytest.raises(exception.InvalidRequest, match=word):
        spec.validate()


def test_connection_data_must_be_json() -> None:
    with pytest.raises(ValueError, match="JSON"):
        VolumeConnection(volume_id="v", driver_volume_type="rbd", data={"x": object()})
    with pytest.raises(exception.InvalidRequest, match="exceeds"):
        _connection(blob="x" * 20_000).validate("attach_volume")
    with pytest.raises(exception.InvalidRequest, match="driver_volume_type"):
        VolumeConnection(volume_id="v", driver_volume_type="iSCSI;rm").validate("attach_volume")


def test_an_instance_reported_by_an_older_host_lists_no_devices() -> None:
    old = {
        "computed_object.name": "InstanceInfo",
        "computed_object.namespace": "computed",
        "computed_object.version": "1.0",
        "computed_object.data": {
            "uuid": str(uuid.uuid4()),
            "name": "vm",
            "host": "h",
            "power_state": "running",
            "vcpus": 1,
            "memory_mb": 64,
            "disk_gb": 1,
        },
    }
    info = rpc.RequestContextSerializer().deserialize_entity(None, old)
    assert info.block_devices == [] and info.network_interfaces == []
    assert info.volume("v") is None and info.interface("p") is None
