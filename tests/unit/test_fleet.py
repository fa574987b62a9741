"""The fleet: free resources under allocation ratios, claims, the inventory and its filters."""

from __future__ import annotations

import datetime
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_context import context

from computed import exception
from computed._claims import HostTracker, Ratios
from computed._inventory import InventoryPublisher
from computed.manager import ComputeManager
from computed.notifications import OutcomeNotifier
from computed.objects import HostState, InstanceSpec
from computed.objects.fleet import Request, capacity, shortfall
from computed.registry import Registry, WorkerRecord
from computed.registry.api import HostInventoryRecord, utcnow
from drivers.fake import FakeDriver
from rpcapi._bulk import for_each_host
from rpcapi._fleet import Fleet
from rpcapi._resolver import HostResolver

HOST = "h1"


def _driver(memory_mb: int = 1024, vcpus: int = 4, disk_gb: int = 100) -> FakeDriver:
    conf = cfg.ConfigOpts()
    FakeDriver.register_opts(conf)
    conf([], default_config_files=[])
    for name, value in (("memory_mb", memory_mb), ("vcpus", vcpus), ("disk_gb", disk_gb)):
        conf.set_override(name, value, group="fake")
    conf.set_override("spawn_delay", 0.05, group="fake")
    driver = FakeDriver(conf)
    driver.init_host(HOST)
    return driver


def _manager(driver: FakeDriver, tracker: HostTracker | None = None) -> ComputeManager:
    from computed.conf import notifications

    notifier_conf = cfg.ConfigOpts()
    notifications.register_opts(notifier_conf)
    notifier_conf([], default_config_files=[])
    return ComputeManager(HOST, driver, "w1", OutcomeNotifier(notifier_conf, None), tracker=tracker)


def _spec(vcpus: int = 1, memory_mb: int = 256, disk_gb: int = 0) -> InstanceSpec:
    return InstanceSpec(
        uuid=str(uuid.uuid4()), name="vm", vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb
    )


def _refusal(manager: ComputeManager, spec: InstanceSpec) -> exception.ComputedError | None:
    try:
        manager.spawn(context.RequestContext(), instance=spec)
    except messaging.ExpectedException as caught:
        error = caught.exc_info[1]
        assert isinstance(error, exception.ComputedError)
        return error
    return None


# Arithmetic -------------------------------------------------------------------


def test_capacity_scales_the_total_and_a_zero_total_is_not_limited() -> None:
    assert capacity(16, 4.0) == 64
    assert capacity(3072, 1.0) == 3072
    assert capacity(10, 1.5) == 15
    assert capacity(0, 1.0) is None


def test_shortfall_names_the_first_resource_short_with_its_figures() -> None:
    figures = {
        "vcpus": 4,
        "vcpus_used": 2,
        "memory_mb": 3072,
        "memory_mb_used": 2048,
        "disk_gb": 0,
        "disk_gb_used": 50,
    }
    ratios = {
        "cpu_allocation_ratio": 4.0,
        "ram_allocation_ratio": 1.0,
        "disk_allocation_ratio": 1.0,
    }
    assert shortfall(figures, ratios, Request(vcpus=14, memory_mb=1024, disk_gb=500)) is None
    short = shortfall(figures, ratios, Request(memory_mb=1024), claimed=Request(memory_mb=512))
    assert short is not None
    assert (short.resource, short.requested, short.free, short.total, short.ratio) == (
        "memory_mb",
        1024,
        512,
        3072,
        1.0,
    )
    short = shortfall(figures, ratios, Request(vcpus=15))
    assert short is not None and (short.resource, short.free) == ("vcpus", 14)


def _state(**fields: object) -> HostState:
    values: dict[str, object] = dict(
        host="h1",
        worker_id="w1",
        driver="fake",
        driver_version="1.0",
        support_tier="conformant",
        tier="untested",
        operations=["spawn", "rescue"],
        features=["reboot.hard"],
        hypervisor_type="fake",
        hypervisor_version="1.0",
        vcpus=8,
        vcpus_used=30,
        memory_mb=4096,
        memory_mb_used=1024,
        disk_gb=0,
        disk_gb_used=10,
        instances=3,
        cpu_allocation_ratio=4.0,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=1.0,
        alive=True,
        measured_at=datetime.datetime(2026, 1, 1, 12, 0, 0),
    )
    values.update(fields)
    state = HostState()
    state.assign(**values)
    return state


def test_host_state_says_what_is_free_under_its_ratios() -> None:
    state = _state()
    assert state.free("vcpus") == 2
    assert state.free("memory_mb") == 6144 - 1024
    assert state.free("disk_gb") is None  # not measured: not limited
    assert state.fits(vcpus=2, memory_mb=5120, disk_gb=1000)
    assert not state.fits(vcpus=3)
    assert not state.fits(memory_mb=5121)
    assert state.supports("rescue") and state.supports("reboot.hard")
    assert not state.supports("snapshot")
    assert state.age(datetime.datetime(2026, 1, 1, 12, 0, 30)) == 30.0
    assert state.to_json()["free_memory_mb"] == 5120
    assert state.to_json()["measured_at"] == "2026-01-01T12:00:00Z"
    assert state.disabled is False and state.disabled_reason is None


# Claims -----------------------------------------------------------------------


def test_a_spawn_that_does_not_fit_is_refused_before_the_driver_runs() -> None:
    driver = _driver(memory_mb=1024)
    manager = _manager(driver)
    error = _refusal(manager, _spec(memory_mb=1025))
    assert isinstance(error, exception.InsufficientResources)
    assert (error.resource, error.requested, error.free, error.total, error.ratio) == (
        "memory_mb",
        1025,
        1024,
        1024,
        1.0,
    )
    assert "memory_mb requested 1025, free 1024 of 1024" in str(error)
    assert driver.list_instances(HOST) == []


def test_concurrent_spawns_never_take_a_host_past_its_capacity() -> None:
    driver = _driver(memory_mb=1024)
    manager = _manager(driver)
    specs = [_spec(memory_mb=256) for _ in range(10)]
    start = threading.Barrier(len(specs))

    def spawn(spec: InstanceSpec) -> exception.ComputedError | None:
        start.wait()
        return _refusal(manager, spec)

    with ThreadPoolExecutor(len(specs)) as pool:
        outcomes = list(pool.map(spawn, specs))
    refused = [e for e in outcomes if e is not None]
    assert len(refused) == 6
    assert all(isinstance(e, exception.InsufficientResources) for e in refused)
    resources = driver.get_host_resources(HOST)
    assert resources.memory_mb_used == 1024 and resources.instances == 4


def test_the_cpu_ratio_lets_vcpus_be_overcommitted() -> None:
    driver = _driver(vcpus=2, memory_mb=65536)
    tracker = HostTracker(HOST, driver, Ratios(cpu_allocation_ratio=2.0))
    manager = _manager(driver, tracker)
    assert _refusal(manager, _spec(vcpus=3)) is None
    error = _refusal(manager, _spec(vcpus=2))
    assert isinstance(error, exception.InsufficientResources)
    assert (error.resource, error.free, error.ratio) == ("vcpus", 1, 2.0)


def test_a_claim_is_released_once_the_host_is_measured_again() -> None:
    driver = _driver(memory_mb=1024)
    tracker = HostTracker(HOST, driver)
    with tracker.claim(memory_mb=1024):
        with pytest.raises(exception.InsufficientResources):
            with tracker.claim(memory_mb=1):
                pass
    assert tracker.claimed() == Request(memory_mb=1024)  # until a measure counts it
    tracker.measure()
    assert tracker.claimed() == Request()
    with tracker.claim(memory_mb=512):
        pass


def test_a_repeated_spawn_of_an_existing_instance_is_not_refused() -> None:
    driver = _driver(memory_mb=512)
    manager = _manager(driver)
    spec = _spec(memory_mb=512)
    assert _refusal(manager, spec) is None
    assert _refusal(manager, spec) is None  # idempotent by UUID, full host or not
    assert isinstance(_refusal(manager, _spec(memory_mb=1)), exception.InsufficientResources)


def test_a_disabled_host_refuses_spawns_and_says_why() -> None:
    driver = _driver()
    manager = _manager(driver)
    from computed.manager import tracker_of

    assert tracker_of(manager).set_disabled("rack 4 maintenance")
    error = _refusal(manager, _spec())
    assert isinstance(error, exception.HostDisabled)
    assert str(error) == f"Host {HOST} is disabled and takes no new instance: rack 4 maintenance"
    assert driver.list_instances(HOST) == []
    assert tracker_of(manager).set_disabled(None)
    assert _refusal(manager, _spec()) is None


# The registry's inventory -------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    yield registry
    registry.close()


def _register(registry: Registry, worker_id: str, hosts: tuple[str, ...]) -> None:
    registry.register(
        WorkerRecord(
            id=worker_id,
            driver="fake",
            hosts=hosts,
            rpc_version="1.3",
            rpc_min_version="1.0",
            support_tier="conformant",
            driver_version="1.0",
        )
    )


def _publisher(registry: Registry, trackers: dict[str, HostTracker]) -> InventoryPublisher:
    identity = HostInventoryRecord(
        host="",
        worker_id="w1",
        driver="fake",
        driver_version="1.0",
        support_tier="conformant",
        capabilities={"operations": ["spawn", "destroy"], "features": []},
    )
    return InventoryPublisher(registry, lambda: trackers, identity, 1.0, 60.0)


def test_the_inventory_is_written_only_when_it_changes(registry: Registry) -> None:
    _register(registry, "w1", ("h1",))
    driver = _driver(memory_mb=2048)
    trackers = {HOST: HostTracker(HOST, driver)}
    publisher = _publisher(registry, trackers)
    assert publisher.publish(everything=True) == 1
    (first,) = registry.list_inventory()
    assert (first.memory_mb, first.memory_mb_used, first.instances) == (2048, 0, 0)
    assert first.ram_allocation_ratio == 1.0 and first.capabilities["operations"]
    assert publisher.publish(everything=True) == 0  # unchanged: its measure time only
    (again,) = registry.list_inventory()
    assert again.measured_at is not None and first.measured_at is not None
    assert again.measured_at >= first.measured_at
    driver.spawn(HOST, _spec(memory_mb=512))
    publisher.changed(HOST)
    assert publisher.publish(everything=False) == 1
    (after,) = registry.list_inventory()
    assert (after.memory_mb_used, after.instances) == (512, 1)


def test_the_disabled_flag_survives_measures_and_reaches_the_tracker(registry: Registry) -> None:
    _register(registry, "w1", ("h1",))
    with pytest.raises(exception.RegistryError, match="no worker declares host 'nowhere'"):
        registry.set_host_disabled("nowhere", True, "typo")
    registry.set_host_disabled(HOST, True, "firmware upgrade")
    trackers = {HOST: HostTracker(HOST, _driver())}
    publisher = _publisher(registry, trackers)
    publisher.publish(everything=True)
    publisher.read_flags()
    with pytest.raises(exception.HostDisabled, match="firmware upgrade"):
        trackers[HOST].check_enabled()
    (record,) = registry.list_inventory()
    assert record.disabled and record.disabled_reason == "firmware upgrade"
    registry.set_host_disabled(HOST, False)
    publisher.read_flags()
    trackers[HOST].check_enabled()


def _fleet(registry: Registry) -> Fleet:
    return Fleet(registry, HostResolver(registry, ttl=0.0, down_time=3600.0))


def test_list_hosts_filters_by_driver_capability_free_resources_and_flags(
    registry: Registry,
) -> None:
    _register(registry, "w1", ("a", "b", "c"))
    now = utcnow()
    base = dict(
        worker_id="w1",
        driver="fake",
        driver_version="1.0",
        support_tier="conformant",
        hypervisor_type="fake",
        hypervisor_version="1.0",
        vcpus=8,
        vcpus_used=0,
        disk_gb=100,
        disk_gb_used=0,
        instances=0,
        cpu_allocation_ratio=4.0,
        ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0,
        measured_at=now,
    )
    registry.record_inventory(
        [
            HostInventoryRecord(
                host="a",
                memory_mb=4096,
                memory_mb_used=0,
                capabilities={"operations": ["spawn"], "features": []},
                **base,  # type: ignore[arg-type]
            ),
            HostInventoryRecord(
                host="b",
                memory_mb=4096,
                memory_mb_used=3072,
                capabilities={"operations": ["spawn", "rescue"], "features": []},
                **base,  # type: ignore[arg-type]
            ),
            HostInventoryRecord(
                host="c",
                memory_mb=8192,
                memory_mb_used=0,
                capabilities={"operations": ["spawn", "rescue"], "features": []},
                **dict(base, driver="other"),  # type: ignore[arg-type]
            ),
        ]
    )
    fleet = _fleet(registry)
    assert [s.host for s in fleet.list_hosts()] == ["a", "b", "c"]
    assert [s.host for s in fleet.list_hosts(memory_mb=2048)] == ["a", "c"]
    assert [s.host for s in fleet.list_hosts(supports=["rescue"])] == ["b", "c"]
    assert [s.host for s in fleet.list_hosts(driver="fake", vcpus=32)] == ["a", "b"]
    assert fleet.list_hosts(vcpus=33) == []
    assert fleet.list_hosts(tier="partial") == []  # no conformance run recorded
    registry.set_host_disabled("a", True, "maintenance")
    assert [s.host for s in fleet.list_hosts(memory_mb=2048)] == ["c"]
    (disabled,) = fleet.list_hosts(hosts=["a"], include_disabled=True)
    assert disabled.disabled and disabled.disabled_reason == "maintenance"
    assert disabled.measured_at == now.replace(microsecond=now.microsecond)
    assert all(s.alive for s in fleet.list_hosts())
    assert fleet.list_hosts(alive=False) == []
    registry.set_state("w1", "stopped")
    assert [s.host for s in fleet.list_hosts(alive=False)] == ["b", "c"]


def test_for_each_host_keeps_every_host_result_and_error() -> None:
    def call(host: str) -> str:
        if host.startswith("bad"):
            raise exception.HostUnavailable(host=host, reason="no worker has registered it")
        return host.upper()

    results = for_each_host(call, ["a", "bad-1", "b", "bad-2"], concurrency=2)
    assert {h: r.value for h, r in results.items() if r.ok} == {"a": "A", "b": "B"}
    assert {h for h, r in results.items() if isinstance(r.error, exception.HostUnavailable)} == {
        "bad-1",
        "bad-2",
    }
    with pytest.raises(ValueError):
        for_each_host(call, ["a"], concurrency=0)


def test_computedctl_disables_enables_and_lists_hosts(registry: Registry, tmp_path: Path) -> None:
    import json
    import subprocess

    from computed.testing.workers import console_command, write_config

    _register(registry, "w1", ("h1", "h2"))
    trackers = {HOST: HostTracker(HOST, _driver(memory_mb=2048))}
    _publisher(registry, trackers).publish(everything=True)
    config = write_config(
        str(tmp_path / "ctl.conf"), {"registry": {"connection": registry.url, "down_time": 3600}}
    )

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*console_command("computedctl"), "--config-file", config, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    done = ctl("host", "disable", "h2", "--reason", "disk swap")
    assert done.returncode == 0, done.stderr
    assert "Host h2 disabled" in done.stdout
    assert ctl("host", "disable", "h9").returncode == 1
    listed = {row["host"]: row for row in json.loads(ctl("host", "list", "--json").stdout)}
    assert listed["h1"]["free_memory_mb"] == 2048 and listed["h1"]["alive"] is True
    assert listed["h1"]["status"] == "up"
    assert listed["h2"]["status"] == "disabled" and listed["h2"]["disabled_reason"] == "disk swap"
    assert listed["h2"]["measured_at"] is None
    table = ctl("host", "list").stdout
    assert "2048 free of 2048" in table and "disabled (disk swap)" in table
    assert ctl("host", "enable", "h2").returncode == 0
    listed = {row["host"]: row for row in json.loads(ctl("host", "list", "--json").stdout)}
    assert listed["h2"]["disabled"] is False and listed["h2"]["status"] == "unmeasured"
