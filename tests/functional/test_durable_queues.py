"""Quorum host queues keep casts across a broker restart (docs/ownership.md).

A broker of its own, fresh, so its default vhost has no non-durable
exchange that would make quorum declarations fail. The worker is killed,
casts go into its host's queue, the broker restarts, a worker comes back:
every cast is served. Without ``rabbit_quorum_queue`` the same casts are
gone with the restart, which the second case shows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from oslo_config import cfg

from computed import exception, rpc
from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.testing.broker import RabbitMQBroker
from computed.testing.workers import WorkerProcess
from rpcapi import ComputeAPI

from .conftest import DOWN_TIME as SUITE_DOWN_TIME
from .conftest import Deployment

pytestmark = pytest.mark.failover

CASTS = 10


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def own_broker() -> Iterator[RabbitMQBroker]:
    with RabbitMQBroker() as running:
        yield running


@pytest.mark.parametrize("quorum", [True, False], ids=["quorum", "classic"])
def test_casts_to_a_dead_worker_survive_a_broker_restart_only_in_quorum_queues(
    deployment: Deployment, conf: cfg.ConfigOpts, own_broker: RabbitMQBroker, quorum: bool
) -> None:
    host = f"dq-{uuid.uuid4().hex[:6]}"
    options = deployment.worker_options([host], "dq-1")
    options["DEFAULT"]["transport_url"] = own_broker.url
    options["registry"]["down_time"] = 120  # the client keeps sending to the dead worker
    options["oslo_messaging_rabbit"] = {"rabbit_quorum_queue": quorum}
    worker = WorkerProcess(str(deployment.workdir), options, name="dq-1")
    deployment.workers.append(worker)
    worker.start()
    assert worker.kill() != 0

    conf.set_override("rabbit_quorum_queue", quorum, group="oslo_messaging_rabbit")
    conf.set_override("down_time", 120, group="registry")
    conf.set_override("call_timeout", 5, group="client")
    transport = rpc.get_transport(conf, url=own_broker.url)
    api = ComputeAPI(conf, registry=Registry(deployment.registry_url), transport=transport)
    try:
        specs = [
            InstanceSpec(uuid=str(uuid.uuid4()), name=f"d{i}", vcpus=1, memory_mb=64)
            for i in range(CASTS)
        ]
        for spec in specs:
            api.spawn(None, host, spec, cast=True)
        _wait(lambda: own_broker.list_queues().get(f"compute.{host}") == CASTS, "casts queued")

        own_broker.restart()
        queue = f"compute.{host}"
        if quorum:  # its messages are back once the queue has elected its leader again
            _wait(lambda: own_broker.list_queues().get(queue) == CASTS, "the queue recovering")
        waiting = own_broker.list_queues().get(queue, 0)
        worker.start()
        served: set[str] = set()

        def all_served() -> bool:
            nonlocal served
            try:  # the client reconnects to the restarted broker on its own
                served = {i.uuid for i in api.list_instances(None, host)}
            except (exception.RPCError, exception.HostTimeout):
                return False
            return len(served) >= waiting

        _wait(all_served, "the queued casts served")
    finally:
        api.cleanup()
        conf.clear_override("rabbit_quorum_queue", group="oslo_messaging_rabbit")
        conf.set_override("down_time", SUITE_DOWN_TIME, group="registry")
        conf.set_override("call_timeout", 30, group="client")

    if quorum:
        assert waiting == CASTS
        assert served == {s.uuid for s in specs}
    else:
        assert waiting == 0 and served == set(), "classic queues do not outlive the broker"
