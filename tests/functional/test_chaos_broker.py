"""A mixed stream of calls and casts through broker faults: restarts, a cluster node lost.

Several client threads call and cast to several hosts served by two
workers, with the configuration docs/delivery.md recommends (quorum
queues), while the broker is restarted twice, or while one node of a
three-node cluster is SIGKILLed. What must hold, counted from what each
client saw and from the outcome notifications (read on the same broker):

- every call and every cast send ended within its documented bound;
- every cast the broker accepted has exactly one outcome, never two, and
  no operation started twice.
"""

from __future__ import annotations

import collections
import functools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_context import context

from computed import exception, rpc
from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.testing.broker import RabbitMQBroker, RabbitMQCluster
from computed.testing.notifications import NotificationCollector
from computed.testing.workers import WorkerProcess
from rpcapi import ComputeAPI

from .conftest import DOWN_TIME, Deployment, wait_until

pytestmark = pytest.mark.chaos

HOSTS = [f"bf-{i}" for i in range(4)]
INSTANCES_PER_HOST = 3
THREADS = 4
CALL_TIMEOUT = 8.0
CAST_TIMEOUT = 4.0
#: The documented margin over a call's timeout (docs/delivery.md).
MARGIN = 2.0


class _Stream:
    """Client threads calling and casting until told to stop; every result recorded."""

    def __init__(self, api: ComputeAPI, instances: dict[str, list[str]]) -> None:
        self._api = api
        self._instances = instances
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.accepted: list[str] = []  # request ids of casts the broker took
        self.refused: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.late: list[str] = []
        self.slowest = {"call": 0.0, "cast": 0.0}
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(THREADS)
        ]

    @property
    def operations(self) -> int:
        with self._lock:
            return len(self.accepted) + sum(self.refused.values()) + sum(self.calls.values())

    @property
    def served(self) -> int:
        """Casts the broker accepted and calls answered."""
        with self._lock:
            return len(self.accepted) + self.calls["ok"]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        while not self._stop.is_set():
            host = rng.choice(HOSTS)
            instance = rng.choice(self._instances[host])
            choice = rng.random()
            if choice < 0.5:
                ctxt = context.RequestContext()
                send = functools.partial(self._api.reboot, ctxt, host, instance, "hard", cast=True)
                self._timed("cast", CAST_TIMEOUT, send, ctxt.request_id)
            elif choice < 0.75:
                self._timed("call", CALL_TIMEOUT, functools.partial(self._api.ping, None, host))
            else:
                call = functools.partial(self._api.get_info, None, host, instance)
                self._timed("call", CALL_TIMEOUT, call)

    def _timed(
        self, kind: str, bound: float, send: Callable[[], Any], rid: str | None = None
    ) -> None:
        started = time.monotonic()
        outcome = "ok"
        try:
            send()
        except exception.ComputedError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # not one of the project's errors: a defect
            outcome = f"foreign {type(exc).__name__}: {exc}"
        took = time.monotonic() - started
        with self._lock:
            self.slowest[kind] = max(self.slowest[kind], took)
            if took > bound + MARGIN:
                self.late.append(f"{kind} took {took:.1f} s ({outcome})")
            if kind == "call":
                self.calls[outcome] += 1
            elif outcome == "ok":
                assert rid is not None
                self.accepted.append(rid)
            else:
                self.refused[outcome] += 1
        if outcome != "ok":
            self._stop.wait(0.05)  # the broker is away: no need to spin


def _outcomes(collector: NotificationCollector) -> dict[str, collections.Counter[str]]:
    seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for event in collector.events:
        if event.payload.request_id:
            seen[event.payload.request_id][event.event_type.rsplit(".", 1)[1]] += 1
    return seen


def _run_stream(
    deployment: Deployment,
    conf: cfg.ConfigOpts,
    url: str,
    faults: Callable[[_Stream], None],
    least: int,
) -> str:
    """Two workers, a stream through ``faults``; returns the figures, asserts the rest."""
    options: dict[str, Any] = {
        "oslo_messaging_rabbit": {"rabbit_quorum_queue": True},
        "registry": {"down_time": DOWN_TIME},
    }
    workers = []
    for name in ("bf-w1", "bf-w2"):
        worker_options = deployment.worker_options(HOSTS, name, **options)
        worker_options["DEFAULT"]["transport_url"] = url
        worker = WorkerProcess(str(deployment.workdir), worker_options, name=name)
        deployment.workers.append(worker)
        workers.append(worker.start())
    transport = rpc.get_transport(conf, url=url)
    notification_transport = messaging.get_notification_transport(conf, url=url)
    collector = NotificationCollector(
        notification_transport, conf.notifications.topic, pool=f"chaos-{uuid.uuid4().hex[:6]}"
    ).start()
    api = ComputeAPI(conf, registry=Registry(deployment.registry_url), transport=transport)
    try:
        instances: dict[str, list[str]] = {}
        for host in HOSTS:
            instances[host] = []
            for i in range(INSTANCES_PER_HOST):
                spec = InstanceSpec(
                    uuid=str(uuid.uuid4()), name=f"{host}-{i}", vcpus=1, memory_mb=64
                )
                api.spawn(None, host, spec)
                instances[host].append(spec.uuid)
        stream = _Stream(api, instances)
        started = time.monotonic()
        stream.start()
        faults(stream)
        wait_until(lambda: stream.served >= least, 600, f"{least} operations served", interval=0.5)
        stream.stop()
        elapsed = time.monotonic() - started

        def settled() -> bool:
            seen = _outcomes(collector)
            return all(seen[rid]["end"] + seen[rid]["error"] for rid in stream.accepted)

        wait_until(settled, 120, "an outcome for every accepted cast", interval=0.5)
        time.sleep(1.0)  # a second outcome would arrive within this
        seen = _outcomes(collector)
        lost = [rid for rid in stream.accepted if not seen[rid]["end"] + seen[rid]["error"]]
        duplicated = [
            rid
            for rid in stream.accepted
            if seen[rid]["end"] + seen[rid]["error"] > 1 or seen[rid]["start"] > 1
        ]
        figures = (
            f"{stream.operations} operations ({stream.served} served) in {elapsed:.0f} s by "
            f"{THREADS} threads on "
            f"{len(HOSTS)} hosts and 2 workers: {len(stream.accepted)} casts accepted, "
            f"refused {dict(stream.refused)}; calls {dict(stream.calls)}; slowest call "
            f"{stream.slowest['call']:.1f} s (bound {CALL_TIMEOUT + MARGIN:.0f} s), slowest cast "
            f"send {stream.slowest['cast']:.1f} s (bound {CAST_TIMEOUT + MARGIN:.0f} s); "
            f"{len(lost)} accepted casts without an outcome, {len(duplicated)} with two; "
            f"{len(stream.late)} past their bound"
        )
        print("\n" + figures)
        assert stream.late == []
        assert lost == [], lost[:10]
        assert duplicated == [], {rid: dict(seen[rid]) for rid in duplicated[:10]}
        assert not any(k.startswith("foreign") for k in [*stream.calls, *stream.refused])
        assert stream.calls["ok"] > 0 and stream.accepted
        return figures
    finally:
        api.cleanup()
        collector.stop()
        notification_transport.cleanup()


@pytest.fixture
def quorum(conf: cfg.ConfigOpts) -> Iterator[None]:
    """The client as docs/delivery.md recommends, with short bounds."""
    conf.set_override("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")
    conf.set_override("call_timeout", CALL_TIMEOUT, group="client")
    conf.set_override("cast_timeout", CAST_TIMEOUT, group="client")
    try:
        yield
    finally:
        conf.clear_override("rabbit_quorum_queue", group="oslo_messaging_rabbit")
        conf.set_override("call_timeout", 30, group="client")
        conf.clear_override("cast_timeout", group="client")


def test_mixed_stream_through_two_broker_restarts_loses_and_repeats_nothing(
    deployment: Deployment, conf: cfg.ConfigOpts, quorum: None
) -> None:
    with RabbitMQBroker() as broker:

        def restart_twice(stream: _Stream) -> None:
            for _ in range(2):
                wait_until(
                    lambda n=stream.operations: stream.operations > n + 600,
                    300,
                    "operations before the restart",
                    interval=0.2,
                )
                broker.restart()

        _run_stream(deployment, conf, broker.url, restart_twice, least=3000)


@pytest.mark.cluster
def test_mixed_stream_through_a_lost_cluster_node_loses_and_repeats_nothing(
    deployment: Deployment, conf: cfg.ConfigOpts, quorum: None
) -> None:
    with RabbitMQCluster() as cluster:

        def kill_a_node(stream: _Stream) -> None:
            wait_until(
                lambda: stream.operations > 600, 300, "operations before the kill", interval=0.2
            )
            cluster.nodes[0].kill()

        _run_stream(deployment, conf, cluster.url, kill_a_node, least=2000)
