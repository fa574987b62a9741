"""A worker declares its hosts' queues in one go: a queue the broker refuses costs only its host.

The queues are declared without waiting for each answer; a refusal is found
by the answer that follows them, and only then are they declared one at a
time. A host whose queue exists with other settings is not served (the
log says why); the others are.
"""

from __future__ import annotations

import kombu
from oslo_config import cfg

from computed import _wire
from computed.registry import Registry

from .conftest import Deployment, wait_until


def test_a_refused_queue_leaves_the_other_hosts_served(
    deployment: Deployment, conf: cfg.ConfigOpts
) -> None:
    refused = _wire.host_queue(conf, "compute", "decl-bad")
    other = kombu.Queue(
        refused.name,
        exchange=refused.exchange,
        routing_key=refused.routing_key,
        durable=refused.durable,
        auto_delete=refused.auto_delete,
        queue_arguments={**(refused.queue_arguments or {}), "x-max-length": 7},
    )
    connection = _wire.connection(conf, deployment.broker.url, "decl-test")
    try:
        other(connection.default_channel).declare()
    finally:
        connection.release()
    hosts = ["decl-1", "decl-bad", "decl-2"]
    worker = deployment.start_worker(hosts, "decl")
    registry = Registry(deployment.registry_url)

    def owned() -> set[str]:
        return {h for h, r in registry.list_owners().items() if r.worker_id == "decl"}

    wait_until(lambda: owned() == {"decl-1", "decl-2"}, 30, "the other hosts claimed")
    api = deployment.api()
    assert api.ping(None, "decl-1").worker_id == "decl"
    assert api.ping(None, "decl-2").worker_id == "decl"
    assert "Cannot serve decl-bad" in worker.log()
    assert "other settings" in worker.log()
    registry.close()
