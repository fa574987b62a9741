"""The device checks against a hypervisor that changes the devices of stopped instances only.

Such a driver refuses a running instance with InvalidPowerState naming
``stopped``: the suite skips the ``*.attach.from_running`` checks, saying
why, and runs the others on stopped instances. The checks call the fake
driver directly here (no broker, no worker), as the worker would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from oslo_config import cfg

from computed import exception, rpc
from computed.conformance._context import SuiteContext
from computed.conformance._devices import DEVICE_CHECKS, NOT_LIVE
from computed.conformance.runner import PASS, SKIP, _run_one
from computed.objects import (
    HostCapabilities,
    InstanceInfo,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from drivers.fake.driver import FakeDriver

HOST = "cold-1"

#: What the checks need without a notification listener or a second host.
_CHECKS = [
    c
    for c in DEVICE_CHECKS
    if c.group in ("volumes", "interfaces") and not c.id.startswith("cast.")
]


class _ColdPlugDriver(FakeDriver):
    """The fake, refusing to change a running instance's devices as a
    hypervisor without hot-plug does."""

    def attach_volume(
        self, host: str, uuid: str, connection_info: VolumeConnection, mountpoint: str | None
    ) -> InstanceInfo:
        self._cold(host, uuid, "attach_volume")
        return super().attach_volume(host, uuid, connection_info, mountpoint)

    def detach_volume(self, host: str, uuid: str, volume_id: str) -> InstanceInfo:
        self._cold(host, uuid, "detach_volume")
        return super().detach_volume(host, uuid, volume_id)

    def extend_volume(self, host: str, uuid: str, volume_id: str, new_size: int) -> InstanceInfo:
        self._cold(host, uuid, "extend_volume")
        return super().extend_volume(host, uuid, volume_id, new_size)

    def attach_interface(self, host: str, uuid: str, vif: NetworkInterface) -> InstanceInfo:
        self._cold(host, uuid, "attach_interface")
        return super().attach_interface(host, uuid, vif)

    def detach_interface(self, host: str, uuid: str, port_id: str) -> InstanceInfo:
        self._cold(host, uuid, "detach_interface")
        return super().detach_interface(host, uuid, port_id)

    def _cold(self, host: str, uuid: str, operation: str) -> None:
        if self.get_info(host, uuid).power_state == PowerState.RUNNING:
            raise exception.InvalidPowerState(
                uuid=uuid, operation=operation, state="running", allowed="stopped"
            )


class _Direct:
    """The client's calls, served by a driver in this process; arguments and
    results pass through the RPC serializer as they would over the bus (the
    checks pass devices positionally)."""

    def __init__(self, driver: FakeDriver) -> None:
        self._driver = driver
        self._serializer = rpc.RequestContextSerializer()

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        method = getattr(self._driver, operation)

        def call(ctxt: object, host: str, *args: Any, **kwargs: Any) -> Any:
            if operation == "attach_volume" and len(args) + len(kwargs) == 2:
                args = (*args, None)  # the client's default mountpoint
            args = tuple(self._wire(a) for a in args)
            for arg in args:
                if isinstance(arg, (VolumeConnection, NetworkInterface)):
                    arg.validate(operation)  # as the worker does
            return self._wire(method(host, *args, **kwargs))

        return call

    def spawn(self, ctxt: object, host: str, spec: InstanceSpec) -> InstanceInfo:
        spec = self._wire(spec)
        spec.validate()  # as the worker does before a driver sees a spec
        return self._wire(self._driver.spawn(host, spec))  # type: ignore[no-any-return]

    def _wire(self, value: Any) -> Any:
        return self._serializer.deserialize_entity(
            None, self._serializer.serialize_entity(None, value)
        )


def _context(driver_class: type[FakeDriver]) -> SuiteContext:
    conf = cfg.ConfigOpts()
    driver_class.register_opts(conf)
    conf([], default_config_files=[])
    driver = driver_class(conf)
    driver.init_host(HOST)
    capabilities = HostCapabilities(
        host=HOST,
        driver=driver.name,
        driver_version=driver.version,
        support_tier=str(driver.support_tier),
        operations=sorted(driver.operations),
        features=sorted(driver.features),
    )
    network = conf.fake.networks[0]
    return SuiteContext(_Direct(driver), [HOST], capabilities, None, 1.0, network=network)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("driver_class", "live"), [(FakeDriver, True), (_ColdPlugDriver, False)], ids=["hot", "cold"]
)
def test_devices_of_running_instances_are_checked_where_the_hypervisor_changes_them(
    driver_class: type[FakeDriver], live: bool
) -> None:
    ctx = _context(driver_class)
    results = {c.id: _run_one(c, ctx) for c in _CHECKS}
    running = {"volume.attach.from_running", "interface.attach.from_running"}
    assert {
        i: r.message for i, r in results.items() if r.outcome != PASS and i not in running
    } == {}
    for check_id in running:
        assert results[check_id].outcome == (PASS if live else SKIP)
        if not live:
            assert results[check_id].message.startswith(f"{NOT_LIVE}: ")
    assert ctx.live_device_changes is (None if live else False)
