"""Fixtures for tests against a real RabbitMQ and real ``computed`` processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from computed import conf as computed_conf
from computed import rpc
from computed.registry import Registry
from computed.testing import wait_until as wait_until  # the tests import it from here
from computed.testing.broker import RabbitMQBroker
from computed.testing.notifications import NotificationCollector, collecting
from computed.testing.workers import WorkerProcess
from rpcapi import ComputeAPI

#: Short enough that a test sees a dead worker quickly, long enough for a busy machine.
HEARTBEAT_INTERVAL = 0.5
DOWN_TIME = 4.0
#: Long enough for a worker to restart on a busy machine, short enough for a
#: test that expects HostUnavailable from a worker that stopped for good.
HANDOVER_TIMEOUT = 8.0


def missing_instances(api: ComputeAPI, spawned: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The ``(host, uuid)`` pairs of ``spawned`` whose host does not list that instance."""
    wanted = set(spawned)
    hosts = {host for host, _ in wanted}
    listed = {(host, i.uuid) for host in hosts for i in api.list_instances(None, host)}
    return wanted - listed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.functional)


@pytest.fixture(scope="session")
def broker() -> Iterator[RabbitMQBroker]:
    with RabbitMQBroker() as running:
        yield running


@pytest.fixture(scope="session")
def conf(broker: RabbitMQBroker) -> Iterator[cfg.ConfigOpts]:
    """The process-wide config, pointed at the test broker."""
    conf = computed_conf.CONF
    computed_conf.register_all(conf)
    conf([], project="computed", default_config_files=[])
    rpc.get_transport(conf, url=broker.url).cleanup()  # registers transport_url
    conf.set_override("transport_url", broker.url)
    conf.set_override("down_time", DOWN_TIME, group="registry")
    conf.set_override("cache_ttl", 0.2, group="client")
    conf.set_override("call_timeout", 30, group="client")
    conf.set_override("handover_timeout", HANDOVER_TIMEOUT, group="client")
    # These tests exercise the plumbing, not the tier policy (test_tiers.py
    # does): let the client reach drivers with no recorded conformance run.
    conf.set_override("required_tier", "untested", group="conformance")
    yield conf
    conf.reset()


class Deployment:
    """Workers of one test, sharing a registry and a fake hypervisor in the test's own directory.

    The fake driver keeps its instances in ``fake_state_dir`` (``[fake]
    state_dir``), so a worker that takes a host over, or restarts, finds
    the instances the previous one made, as on a real hypervisor.
    """

    def __init__(self, workdir: Path, broker: RabbitMQBroker, conf: cfg.ConfigOpts) -> None:
        self.workdir = workdir
        self.broker = broker
        self.conf = conf
        self.registry_url = f"sqlite:///{workdir}/registry.sqlite"
        self.fake_state_dir = workdir / "fake-state"
        self.workers: list[WorkerProcess] = []
        self.apis: list[ComputeAPI] = []

    def worker_options(
        self, hosts: list[str], worker_id: str, **groups: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        options: dict[str, dict[str, Any]] = {
            "DEFAULT": {
                "transport_url": self.broker.url,
                "driver": "fake",
                "hosts": hosts,
                "worker_id": worker_id,
                "heartbeat_interval": HEARTBEAT_INTERVAL,
                "drain_timeout": 20,
            },
            "registry": {"connection": self.registry_url},
            "fake": {"state_dir": str(self.fake_state_dir)},
        }
        for group, values in groups.items():
            options.setdefault(group, {}).update(values)
        return options

    def start_worker(
        self, hosts: list[str], worker_id: str = "w1", wait: bool = True, **groups: dict[str, Any]
    ) -> WorkerProcess:
        worker = WorkerProcess(
            str(self.workdir), self.worker_options(hosts, worker_id, **groups), name=worker_id
        )
        self.workers.append(worker)
        return worker.start(wait=wait)

    def api(self) -> ComputeAPI:
        api = ComputeAPI(self.conf, registry=Registry(self.registry_url))
        self.apis.append(api)
        return api

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
        for api in self.apis:
            api.cleanup()


@pytest.fixture
def deployment(
    tmp_path: Path, broker: RabbitMQBroker, conf: cfg.ConfigOpts
) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, broker, conf)
    yield deployment
    deployment.close()


@pytest.fixture(scope="session")
def notifications(conf: cfg.ConfigOpts) -> Iterator[NotificationCollector]:
    with collecting(conf) as collector:
        yield collector


@pytest.fixture
def new_uuid() -> Callable[[], str]:
    return lambda: str(uuid.uuid4())
