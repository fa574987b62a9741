"""Quorum host queues keep casts across a broker restart (docs/ownership.md).

A broker of its own, fresh, so its default vhost has no non-durable
exchange that would make quorum declarations fail. The worker is killed,
casts go into its host's queue, the broker restarts, a worker comes back:
every cast is served. Without ``rabbit_quorum_queue`` the same casts are
gone with the restart, which the second case shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from oslo_config import cfg

from computed import exception, rpc
from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.testing.broker import RabbitMQBroker
from computed.testing.workers import WorkerProcess
from rpcapi import ComputeAPI

from .conftest import DOWN_TIME as SUITE_DOWN_TIME
from .conftest import Deployment, wait_until

pytestmark = pytest.mark.failover

CASTS = 10


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
        wait_until(
            lambda: own_broker.list_queues().get(f"compute.{host}") == CASTS,
            60,
            "casts queued",
            interval=0.2,
        )

        own_broker.restart()
        queue = f"compute.{host}"
        if quorum:  # its messages are back once the queue has elected its leader again
            wait_until(
                lambda: own_broker.list_queues().get(queue) == CASTS,
                60,
                "the queue recovering",
                interval=0.2,
            )
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

        wait_until(all_served, 60, "the queued casts served", interval=0.2)
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
