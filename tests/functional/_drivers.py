"""What the tests of the real drivers (libvirt, xenapi, Hyper-V) share.

Each driver is tested the same way: its class used directly, as the worker
uses it, against a real protocol peer, with the fake driver as the
specification to compare with; then once in a worker process over the bus.
Here are the pieces of that every driver's tests need: the configuration,
started drivers that are cleaned up, specs, what a caller sees of a call,
the power states to compare from, and a worker that may lack the driver.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import pytest
from oslo_config import cfg

from computed import exception
from computed.objects import InstanceInfo, InstanceSpec, PowerState
from drivers import base
from drivers.fake.driver import FakeDriver
from tests import peers

D = TypeVar("D", bound=base.ComputeDriver)

#: How to bring a freshly spawned (running) instance into each power state.
REACH: dict[str, list[str]] = {
    PowerState.RUNNING: [],
    PowerState.STOPPED: ["power_off"],
    PowerState.PAUSED: ["pause"],
    PowerState.SUSPENDED: ["suspend"],
}
#: Every lifecycle operation after spawn, as keys of :data:`drivers.base.TRANSITIONS`.
TRANSITION_KEYS = sorted(base.TRANSITIONS)


def make_conf(driver: type[base.ComputeDriver], group: str, **options: Any) -> cfg.ConfigOpts:
    """A configuration of the driver's own, with ``options`` set in ``group``."""
    conf = cfg.ConfigOpts()
    driver.register_opts(conf)
    conf([])
    for name, value in options.items():
        conf.set_override(name, value, group)
    return conf


@contextlib.contextmanager
def serving() -> Iterator[Callable[[D, Iterable[str]], D]]:
    """``serve(driver, hosts)``: ``init_host`` each host; every host served is
    cleaned up when the block ends."""
    started: list[tuple[base.ComputeDriver, list[str]]] = []

    def serve(driver: D, hosts: Iterable[str]) -> D:
        served: list[str] = []
        started.append((driver, served))
        for host in hosts:
            driver.init_host(host)
            served.append(host)
        return driver

    try:
        yield serve
    finally:
        for driver, served in started:
            for host in served:
                driver.cleanup_host(host)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def fake_driver(host: str) -> FakeDriver:
    """The fake driver serving ``host``: the specification to compare with."""
    driver = FakeDriver(make_conf(FakeDriver, "fake"))
    driver.init_host(host)
    return driver


def new_spec(name: str = "vm", **fields: Any) -> InstanceSpec:
    """A spec with a new UUID (1 vCPU and 256 MB unless ``fields`` say otherwise)."""
    fields = {"vcpus": 1, "memory_mb": 256, **fields}
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name=name, **fields)
    spec.validate()  # as the worker does before the driver sees it
    return spec


def outcome(call: Callable[[], Any]) -> Any:
    """What a caller sees: the instance's visible fields, or the error's type and text."""
    try:
        result = call()
    except exception.ComputedError as exc:
        return (type(exc).__name__, str(exc))
    if isinstance(result, InstanceInfo):
        return {f: getattr(result, f) for f in result.fields}
    return result


def apply(driver: base.ComputeDriver, host: str, uuid: str, operation: str) -> InstanceInfo:
    """Call the lifecycle operation a key of :data:`drivers.base.TRANSITIONS` names."""
    if operation.startswith("reboot."):
        return driver.reboot(host, uuid, operation.split(".", 1)[1])
    if operation == "rescue":
        return driver.rescue(host, uuid, None)  # from the instance's own image
    return getattr(driver, operation)(host, uuid)  # type: ignore[no-any-return]


def reach(driver: base.ComputeDriver, host: str, uuid: str, state: str) -> None:
    """Bring the running instance ``uuid`` into power state ``state``."""
    for step in REACH[state]:
        apply(driver, host, uuid, step)


def start_worker(
    deployment: Any,
    driver: str,
    hosts: list[str],
    /,
    worker: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """A worker serving ``hosts`` with ``driver`` (``options`` in its group, ``worker``
    in ``[DEFAULT]``); the test is skipped if the worker's environment lacks the
    driver's entry point."""
    try:
        return deployment.start_worker(
            hosts, DEFAULT={"driver": driver, **(worker or {})}, **{driver: options}
        )
    except RuntimeError as exc:
        # The worker's environment, not this process's, decides what loads.
        if f"Cannot load driver '{driver}': no such driver" in str(exc):
            pytest.skip(f"the {driver!r} entry point of computed.drivers is not installed")
        raise


@contextlib.contextmanager
def server_process(module: str, *args: str) -> Iterator[str]:
    """``python -m <module> *args`` from the repository, started as the demo
    starts its test servers; yields the line it prints when ready."""
    with contextlib.ExitStack() as stack:
        yield peers._start_server(stack, ["-m", module, *args])
