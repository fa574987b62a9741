"""The fleet over real workers: the inventory they record, claims under concurrency,
disabled hosts, and one operation on many hosts."""

from __future__ import annotations

import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

from computed import exception
from computed.objects import InstanceSpec
from computed.testing.workers import console_command, write_config

from .conftest import DOWN_TIME, Deployment, wait_until

#: Each fake host's memory: room for four instances of _MEMORY.
_HOST_MEMORY = 2048
_MEMORY = 512


def _spec(memory_mb: int = _MEMORY) -> InstanceSpec:
    return InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=memory_mb)


def _start(deployment: Deployment, hosts: list[str]) -> None:
    deployment.start_worker(
        hosts,
        # Spawns that last long enough to overlap, and threads for all of them.
        fake={"memory_mb": _HOST_MEMORY, "spawn_delay": 0.3},
        listener={"executor_threads": 16},
    )


def _ctl(deployment: Deployment, *args: str) -> None:
    config = write_config(
        str(deployment.workdir / "ctl.conf"),
        {"registry": {"connection": deployment.registry_url, "down_time": DOWN_TIME}},
    )
    done = subprocess.run(
        [*console_command("computedctl"), "--config-file", config, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_parallel_spawns_never_overcommit_a_host(deployment: Deployment) -> None:
    _start(deployment, ["h1", "h2"])
    api = deployment.api()
    wait_until(lambda: len(api.list_hosts()) == 2, 30, "both hosts in the inventory")
    assert [s.host for s in api.list_hosts(memory_mb=_HOST_MEMORY)] == ["h1", "h2"]
    assert api.list_hosts(memory_mb=_HOST_MEMORY + 1) == []

    specs = [_spec() for _ in range(12)]

    def spawn(spec: InstanceSpec) -> exception.ComputedError | None:
        try:
            api.spawn(None, "h1", spec)
        except exception.ComputedError as exc:
            return exc
        return None

    with ThreadPoolExecutor(len(specs)) as pool:
        outcomes = list(pool.map(spawn, specs))
    refused = [e for e in outcomes if e is not None]
    assert len(refused) == len(specs) - _HOST_MEMORY // _MEMORY, refused
    for error in refused:
        assert type(error) is exception.InsufficientResources
        assert (error.host, error.resource, error.requested) == ("h1", "memory_mb", _MEMORY)
        assert error.total == _HOST_MEMORY and error.ratio == 1.0
    assert len(api.list_instances(None, "h1")) == _HOST_MEMORY // _MEMORY
    assert api.get_host_resources(None, "h1").memory_mb_used == _HOST_MEMORY

    # The worker records the full host without waiting for its inventory interval.
    def h1_full() -> bool:
        (h1,) = api.list_hosts(hosts=["h1"])
        return h1.memory_mb_used == _HOST_MEMORY and h1.instances == 4

    wait_until(h1_full, 30, "h1 recorded full")
    assert [s.host for s in api.list_hosts(memory_mb=_MEMORY)] == ["h2"]
    (h1,) = api.list_hosts(hosts=["h1"])
    assert h1.free("memory_mb") == 0 and h1.measured_at is not None

    # Room made by a destroy is taken again.
    api.destroy(None, "h1", specs[outcomes.index(None)].uuid)
    assert api.spawn(None, "h1", _spec()) is not None


def test_a_disabled_host_takes_no_new_instance(deployment: Deployment) -> None:
    _start(deployment, ["h1", "h2"])
    worker = deployment.workers[0]
    api = deployment.api()
    running = api.spawn(None, "h2", _spec())
    assert running is not None

    _ctl(deployment, "host", "disable", "h2", "--reason", "firmware upgrade")
    wait_until(lambda: "Host h2 is disabled" in worker.log(), 30, "the worker reading the flag")
    try:
        api.spawn(None, "h2", _spec())
    except exception.HostDisabled as exc:
        assert (exc.host, exc.reason) == ("h2", "firmware upgrade")
        assert "Host h2 is disabled and takes no new instance: firmware upgrade" in str(exc)
    else:
        raise AssertionError("a disabled host took a new instance")
    # What runs there is still served; the fleet offers the host no more.
    assert api.get_info(None, "h2", running.uuid).uuid == running.uuid
    assert [s.host for s in api.list_hosts()] == ["h1"]
    (h2,) = api.list_hosts(hosts=["h2"], include_disabled=True)
    assert h2.disabled and h2.disabled_reason == "firmware upgrade"

    _ctl(deployment, "host", "enable", "h2")
    wait_until(lambda: "Host h2 is enabled again" in worker.log(), 30, "the worker reading it")
    assert api.spawn(None, "h2", _spec()) is not None


def test_one_operation_on_many_hosts_reports_each(deployment: Deployment) -> None:
    _start(deployment, ["h1", "h2", "h3"])
    api = deployment.api()
    results = api.for_each_host(None, ["h1", "h2", "h3", "nowhere"], "ping", concurrency=2)
    assert {h for h, r in results.items() if r.ok} == {"h1", "h2", "h3"}
    assert results["h2"].value.host == "h2"
    assert type(results["nowhere"].error) is exception.HostUnavailable
    resources = api.for_each_host(None, ["h1", "h2"], "get_host_resources")
    assert {r.value.memory_mb for r in resources.values()} == {_HOST_MEMORY}
