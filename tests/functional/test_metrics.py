"""A worker's /metrics endpoint and the client's metrics, against a real worker."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable

import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_context import context

from computed import exception, rpc, version
from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.testing._procs import LOOPBACK, TCP_LISTEN, free_ports, tcp_sockets
from computed.testing.broker import RabbitMQBroker
from computed.testing.metrics import sample_value, scrape
from rpcapi import ComputeAPI
from tests.functional.conftest import Deployment, wait_until


def _listening_ports(pid: int) -> set[int]:
    return {local for state, local, _ in tcp_sockets(pid) if state == TCP_LISTEN}


def test_a_worker_serves_what_it_ran_and_the_client_counts_what_it_sent(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    host, worker_id = f"metrics-host-{suffix}", f"metrics-worker-{suffix}"
    (port,) = free_ports(1)
    worker = deployment.start_worker([host], worker_id, metrics={"enabled": True, "port": port})
    assert port in _listening_ports(worker.pid)
    api = deployment.api()
    instance = new_uuid()
    for _ in range(3):
        api.ping(None, host)
    api.spawn(None, host, InstanceSpec(uuid=instance, name="vm", vcpus=1, memory_mb=64, disk_gb=1))
    missing = new_uuid()
    with pytest.raises(exception.InstanceNotFound):
        api.get_info(None, host, missing)
    api.destroy(None, host, instance, cast=True)

    latency = "computed_operation_duration_seconds_count"

    def cast_ran() -> bool:
        return sample_value(scrape(port), latency, operation="destroy", outcome="ok") == 1

    wait_until(cast_ran, 30, "the destroy cast's outcome in the worker's metrics")
    samples = scrape(port)
    assert sample_value(samples, latency, operation="ping", outcome="ok") == 3
    assert sample_value(samples, latency, operation="spawn", outcome="ok") == 1
    assert sample_value(samples, latency, operation="get_info", outcome="InstanceNotFound") == 1
    assert sample_value(samples, "computed_operations_in_progress", operation="spawn") == 0
    assert sample_value(samples, "computed_hosts_owned") == 1
    assert (sample_value(samples, "computed_heartbeat_age_seconds") or 0) >= 0
    assert sample_value(samples, "computed_journal_waiting") == 0
    reconnects = "computed_broker_reconnects_total"
    assert sample_value(samples, reconnects, connection="listener") == 0
    assert sample_value(samples, reconnects, connection="replies") == 0
    (info,) = [s for s in samples if s.name == "computed_worker_info"]
    assert info.labels["worker_id"] == worker_id
    assert info.labels["driver"] == "fake"
    assert info.labels["rpc_version"] == version.RPC_API_VERSION
    labels = {value for s in samples for value in s.labels.values()}
    assert not labels & {instance, missing, host}  # no label per instance or host

    client = api.metrics_registry
    messages = "computed_client_messages_total"
    assert client.get_sample_value(messages, _call("ping", "ok")) == 3
    assert client.get_sample_value(messages, _call("spawn", "ok")) == 1
    assert client.get_sample_value(messages, _call("get_info", "InstanceNotFound")) == 1
    assert client.get_sample_value(messages, _cast("destroy", "ok")) == 1
    duration = "computed_client_call_duration_seconds_count"
    assert client.get_sample_value(duration, {"method": "ping"}) == 3
    assert client.get_sample_value(duration, {"method": "destroy"}) is None  # a cast


def _call(method: str, outcome: str) -> dict[str, str]:
    return {"method": method, "kind": "call", "outcome": outcome}


def _cast(method: str, outcome: str) -> dict[str, str]:
    return {"method": method, "kind": "cast", "outcome": outcome}


def test_reconnects_are_counted_by_connection_after_a_broker_restart(
    deployment: Deployment, conf: cfg.ConfigOpts, new_uuid: Callable[[], str]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    host = f"reconnect-{suffix}"
    (port,) = free_ports(1)
    reconnects = "computed_broker_reconnects_total"
    with RabbitMQBroker() as broker:
        deployment.start_worker(
            [host],
            f"reconnect-{suffix}",
            DEFAULT={"transport_url": broker.url},
            metrics={"enabled": True, "port": port},
        )
        transport = rpc.get_transport(conf, url=broker.url)
        api = ComputeAPI(conf, registry=Registry(deployment.registry_url), transport=transport)
        deployment.apis.append(api)
        spec = InstanceSpec(uuid=new_uuid(), name="vm", vcpus=1, memory_mb=64, disk_gb=1)
        api.spawn(None, host, spec)  # its notifications open the publisher's connection
        before = scrape(port)
        assert sample_value(before, reconnects, connection="listener") == 0
        assert sample_value(before, reconnects, connection="notifications") == 0

        broker.restart()

        def back(connection: str) -> Callable[[], bool]:
            return lambda: (sample_value(scrape(port), reconnects, connection=connection) or 0) >= 1

        wait_until(back("listener"), 60, "the listener's reconnect in the metrics")
        wait_until(back("replies"), 60, "the replies' reconnect in the metrics")

        def spawned_again() -> bool:
            try:
                api.spawn(None, host, spec)  # the same UUID: the same instance
            except exception.BrokerUnavailable:
                return False
            return True

        wait_until(spawned_again, 60, "a spawn through the restarted broker", interval=0.5)
        wait_until(back("notifications"), 60, "the publisher's reconnect in the metrics")
        transport.cleanup()


def test_metrics_are_off_by_default(deployment: Deployment) -> None:
    suffix = uuid.uuid4().hex[:6]
    (port,) = free_ports(1)
    # The port is set, metrics are not enabled: nothing listens, on it or on any other.
    worker = deployment.start_worker([f"quiet-{suffix}"], f"quiet-{suffix}", metrics={"port": port})
    assert deployment.api().ping(None, f"quiet-{suffix}").worker_id == f"quiet-{suffix}"
    assert _listening_ports(worker.pid) == set()


def test_a_worker_whose_metrics_port_is_taken_does_not_start(deployment: Deployment) -> None:
    suffix = uuid.uuid4().hex[:6]
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = deployment.start_worker(
            [f"taken-{suffix}"],
            f"taken-{suffix}",
            wait=False,
            metrics={"enabled": True, "port": port},
        )
        assert worker.wait(60) == 2, worker.log()
    log = worker.log()
    assert (
        f"computed: error: Configuration error: the metrics port {LOOPBACK}:{port} is in use" in log
    )
    assert "[metrics] port" in log
    # It stopped before it opened the registry, let alone registered.
    assert not os.path.exists(deployment.registry_url.removeprefix("sqlite:///"))


def test_refused_messages_are_counted_by_the_error_their_sender_was_told(
    deployment: Deployment,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    host = f"refusing-{suffix}"
    (port,) = free_ports(1)
    deployment.start_worker([host], f"refusing-{suffix}", metrics={"enabled": True, "port": port})
    transport = rpc.get_transport(deployment.conf)
    try:
        client = messaging.get_rpc_client(
            transport,
            messaging.Target(topic=rpc.TOPIC, server=host, version="1.0"),
            serializer=rpc.RequestContextSerializer(),
            timeout=20,
        )
        for _ in range(2):
            with pytest.raises(messaging.RemoteError, match="NoSuchMethod"):
                client.call(context.RequestContext(), "format_disk")
    finally:
        transport.cleanup()
    deployment.api().ping(None, host)

    samples = scrape(port)
    assert sample_value(samples, "computed_messages_refused_total", error="NoSuchMethod") == 2
    latency = "computed_operation_duration_seconds_count"
    assert sample_value(samples, latency, operation="ping", outcome="ok") == 1  # refused: never ran
