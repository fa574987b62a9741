"""The worker checks what a driver returns against each operation's declared type."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from oslo_context import context

from computed import exception, objects
from computed._returns import check_return, describe
from computed.objects import ImageRef, InstanceInfo, InstanceSpec
from drivers.fake import FakeDriver

from .test_manager import HOST, _manager


class InstanceInfo19(InstanceInfo):
    """An InstanceInfo of a version no RPC version of the contract carries."""

    VERSION = "1.9"

    @classmethod
    def obj_name(cls) -> str:
        return "InstanceInfo"


class _Careless(FakeDriver):
    """Each operation does its work, then returns the wrong thing."""

    name = "careless"

    def power_off(self, host: str, uuid: str) -> Any:
        super().power_off(host, uuid)
        return None

    def pause(self, host: str, uuid: str) -> Any:
        return super().get_host_resources(host)

    def reboot(self, host: str, uuid: str, reboot_type: str) -> Any:
        info = super().reboot(host, uuid, reboot_type)
        return InstanceInfo19(**{f: getattr(info, f) for f in info.obj_what_changed()})

    def get_console_output(self, host: str, uuid: str, tail_lines: int | None) -> Any:
        return super().get_console_output(host, uuid, tail_lines).encode()

    def snapshot(self, host: str, uuid: str, image_name: str, progress: Any) -> Any:
        return {"image_id": "x"}

    def get_serial_console(self, host: str, uuid: str) -> Any:
        return None

    def destroy(self, host: str, uuid: str) -> Any:
        super().destroy(host, uuid)
        return "gone"


def _spawned() -> tuple[Any, InstanceSpec]:
    manager = _manager(_Careless)
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64, image="cirros")
    manager.spawn(context.RequestContext(), instance=spec)
    return manager, spec


@pytest.mark.parametrize(
    ("operation", "arguments", "returned", "declared"),
    [
        ("power_off", {}, "a NoneType", "InstanceInfo"),
        ("pause", {}, "a HostResources object", "InstanceInfo"),
        (
            "reboot",
            {"reboot_type": "hard"},
            "InstanceInfo 1.9, a version the contract does not carry",
            "InstanceInfo",
        ),
        ("get_console_output", {}, "a bytes", "str"),
        ("snapshot", {"image_name": "img"}, "a dict", "ImageRef"),
        ("get_serial_console", {}, "a NoneType", "ConsoleConnection"),
    ],
)
def test_a_wrong_return_is_a_driver_error_naming_driver_and_operation(
    operation: str, arguments: dict[str, Any], returned: str, declared: str
) -> None:
    manager, spec = _spawned()
    with pytest.raises(exception.DriverError) as caught:
        getattr(manager, operation)(context.RequestContext(), uuid=spec.uuid, **arguments)
    assert caught.value.kwargs == {
        "driver": "careless",
        "host": HOST,
        "reason": f"{operation} returned {returned}, not {declared}",
    }
    # The worker goes on serving the instance.
    assert manager.get_info(context.RequestContext(), uuid=spec.uuid).uuid == spec.uuid


def test_a_value_where_none_is_declared_is_a_driver_error() -> None:
    # The manager's destroy returns None whatever the driver says: only what
    # crosses the bus is checked, so a chatty destroy is harmless.
    manager, spec = _spawned()
    assert manager.destroy(context.RequestContext(), uuid=spec.uuid) is None
    with pytest.raises(exception.DriverError, match=r"op returned a str, not None"):
        check_return("d", HOST, "op", "gone", None)


@pytest.mark.parametrize(
    ("value", "declared", "accepted"),
    [
        (None, ImageRef | None, True),
        (ImageRef(image_id="i", name="n"), ImageRef | None, True),
        ("x", ImageRef | None, False),
        ([], list[InstanceInfo], True),
        ([objects.HostResources()], list[InstanceInfo], False),
        (True, int, False),
        (3, int, True),
        (object(), Any, True),
    ],
)
def test_declared_types_beyond_todays_operations(value: Any, declared: Any, accepted: bool) -> None:
    """Unions, lists and plain types, for operations the contract may add."""
    try:
        check_return("d", HOST, "op", value, declared)
    except exception.DriverError as exc:
        assert not accepted, exc
        assert describe(declared) in str(exc)
    else:
        assert accepted
