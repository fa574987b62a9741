"""The three-node RabbitMQ cluster of :mod:`computed.testing.broker`.

A quorum queue declared through kombu keeps accepting and delivering
messages when the node holding its leader is killed: the two others elect
a new leader and the client fails over to the next host of the cluster's
URL. The cluster is stopped, every node and its epmd, even when its start
fails half way.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from computed.testing import _procs
from computed.testing import broker as broker_mod
from computed.testing.broker import RabbitMQCluster

kombu = pytest.importorskip("kombu")

pytestmark = [pytest.mark.functional, pytest.mark.cluster]

MESSAGES = 20
#: How long a publish may take to be confirmed after a node is killed.
PATIENCE = 60.0


@pytest.fixture(autouse=True)
def _need_rabbitmq() -> None:
    try:
        broker_mod._find_bin_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _processes_in(directory: str) -> list[int]:
    """Processes working in ``directory`` or naming it in their environment:
    the nodes, their Erlang helpers and epmd."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                named = directory.encode() in fh.read()
            inside = os.readlink(f"/proc/{entry}/cwd").startswith(directory)
        except OSError:
            continue
        if (named or inside) and _procs.pid_alive(int(entry)):
            found.append(int(entry))
    return found


def _publisher(conn: Any, queue: Any, retried: list[BaseException]) -> Callable[[int], None]:
    """Publish ``{"n": n}`` persistently and wait for the broker's confirm.

    A publish the broker did not confirm (its connection lost, or nacked while
    the queue elects a new leader) is sent again on a new connection, the
    next host of the URL, for up to :data:`PATIENCE` seconds; ``retried``
    collects the errors that made it try again.
    """
    deadline = 0.0

    def errback(exc: BaseException, interval: float) -> None:
        retried.append(exc)
        if time.monotonic() > deadline:
            raise exc

    producer = conn.Producer()
    publish = conn.ensure(
        producer,
        producer.publish,
        errback=errback,
        max_retries=None,
        interval_start=0.1,
        interval_step=0.2,
        interval_max=1,
    )

    def send(n: int) -> None:
        nonlocal deadline
        deadline = time.monotonic() + PATIENCE
        publish(
            {"n": n},
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            delivery_mode=2,
        )

    return send


def _drain(conn: Any, queue: Any) -> list[int]:
    """Get and acknowledge every message in ``queue``."""
    got = []
    bound = queue(conn.default_channel)
    while (message := bound.get()) is not None:
        got.append(message.payload["n"])
        message.ack()
    return got


def _leader(cluster: RabbitMQCluster, name: str) -> tuple[str, list[str]]:
    """The node leading quorum queue ``name``, and the members online."""
    rows = cluster.rabbitmqctl(
        "list_queues", "-q", "--formatter", "json", "name", "leader", "online"
    )
    for row in json.loads(rows):
        if row["name"] == name:
            return row["leader"], sorted(row["online"])
    raise AssertionError(f"queue {name} not listed: {rows}")


def test_a_quorum_queue_serves_on_when_the_node_leading_it_is_killed() -> None:
    begin = time.monotonic()
    with RabbitMQCluster(size=3) as cluster:
        print(f"\nthree-node cluster formed in {time.monotonic() - begin:.1f} s")
        names = sorted(node.node for node in cluster.nodes)
        directory = cluster.directory
        assert sorted(cluster.cluster_status()["running_nodes"]) == names
        assert len({n.port for n in cluster.nodes} | {n.dist_port for n in cluster.nodes}) == 6
        assert {n.epmd_port for n in cluster.nodes} == {cluster.epmd_port}
        assert cluster.url.count("@127.0.0.1:") == 3

        name = f"cluster-{uuid.uuid4().hex[:8]}"
        exchange = kombu.Exchange(name, type="direct", durable=True)
        queue = kombu.Queue(
            name,
            exchange,
            routing_key=name,
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )
        with kombu.Connection(
            cluster.amqp_url, transport_options={"confirm_publish": True}
        ) as conn:
            retried: list[BaseException] = []
            send = _publisher(conn, queue, retried)
            for n in range(MESSAGES):
                send(n)
            leader, online = _leader(cluster, name)
            assert online == names

            victim = next(node for node in cluster.nodes if node.node == leader)
            victim.kill()
            assert not victim.running
            lost = time.monotonic()
            send(MESSAGES)  # fails over to the next host; waits for the new leader
            print(
                f"first confirmed publish after the kill took {time.monotonic() - lost:.1f} s "
                f"({len(retried)} retries: {sorted({type(e).__name__ for e in retried})})"
            )
            for n in range(MESSAGES + 1, 2 * MESSAGES):
                send(n)

            new_leader, online = _leader(cluster, name)
            assert new_leader != leader and online == sorted(set(names) - {leader})
            assert _drain(conn, queue) == list(range(2 * MESSAGES))

        victim.start_node()  # rejoins by itself
        assert sorted(cluster.cluster_status()["running_nodes"]) == names
        stopping = time.monotonic()
    print(f"cluster stopped in {time.monotonic() - stopping:.1f} s")
    assert not os.path.exists(directory)
    assert _processes_in(directory) == []


def test_a_cluster_that_fails_to_form_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _procs.free_ports
    epmd: list[int] = []
    nodes = itertools.count()

    def third_node_on_the_epmd_port(count: int, host: str = _procs.LOOPBACK) -> list[int]:
        ports = real(count, host)
        if count == 1:  # the cluster's epmd
            epmd.extend(ports)
        elif next(nodes) == 2:  # amqp and dist ports of a node
            ports[1] = epmd[0]
        return ports

    monkeypatch.setattr(_procs, "free_ports", third_node_on_the_epmd_port)
    cluster = RabbitMQCluster(size=3)
    made = os.path.join(tempfile.gettempdir(), f"rabbitmq-cluster-{cluster.name}-")
    with pytest.raises(RuntimeError) as info:
        cluster.start()
    assert "dist_port_already_used" in str(info.value)  # the node's own words, from its log
    assert cluster.nodes == []
    assert glob.glob(f"{made}*") == []
    assert _processes_in(made) == []
    assert _procs.port_bindable(epmd[0])
    cluster.stop()  # idempotent
