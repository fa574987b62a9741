"""Metrics of the client and of the worker's parts (no broker; the endpoint on loopback)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from computed import exception
from computed._journal import Journal, Receipt, hand_receipt
from computed.metrics import OperationMetrics, WorkerMetrics, WorkerReadings, outcome_of
from computed.registry import Registry, WorkerRecord
from computed.testing.metrics import exposition
from rpcapi import ComputeAPI
from rpcapi._metrics import ClientMetrics
from tests.unit.test_client import _closed_port, _conf

UUID = "5c0f3a4e-9d1b-4c53-8a51-1f0e2b6d7a90"


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# The client ---------------------------------------------------------------------------


def test_calls_are_counted_by_method_and_outcome_and_timed() -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    for _ in range(2):
        with metrics.call("ping"):
            pass
    with pytest.raises(exception.HostTimeout), metrics.call("ping"):
        raise exception.HostTimeout(host="h1", operation="ping", timeout=1)
    messages = "computed_client_messages_total"
    assert _value(registry, messages, method="ping", kind="call", outcome="ok") == 2
    assert _value(registry, messages, method="ping", kind="call", outcome="HostTimeout") == 1
    assert _value(registry, "computed_client_call_duration_seconds_count", method="ping") == 3


def test_casts_are_counted_but_not_timed() -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    with metrics.cast("reboot"):
        pass
    with pytest.raises(RuntimeError), metrics.cast("reboot"):
        raise RuntimeError("not one of the project's errors")
    messages = "computed_client_messages_total"
    assert _value(registry, messages, method="reboot", kind="cast", outcome="ok") == 1
    assert _value(registry, messages, method="reboot", kind="cast", outcome="unexpected") == 1
    assert _value(registry, "computed_client_call_duration_seconds_count", method="reboot") is None


def test_backported_and_refused_messages_are_counted_by_method() -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    metrics.fitted("spawn", backported=True)
    metrics.fitted("spawn", backported=False)
    metrics.refused("snapshot")
    backported = "computed_client_messages_backported_total"
    assert _value(registry, backported, method="spawn") == 1
    assert _value(registry, "computed_client_messages_refused_total", method="snapshot") == 1


def _client_conf(port: int) -> cfg.ConfigOpts:
    conf = _conf()
    conf.set_override("transport_url", f"rabbit://guest:guest@127.0.0.1:{port}/")
    return conf


@pytest.fixture
def old_host(tmp_path: Path) -> Iterator[Registry]:
    """Host h1, served by a worker that speaks 1.0."""
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    registry.register(
        WorkerRecord(
            id="w1",
            driver="fake",
            hosts=("h1",),
            rpc_version="1.0",
            rpc_min_version="1.0",
            support_tier="conformant",
        )
    )
    registry.claim_host("h1", "w1", "initial")
    yield registry
    registry.close()


def test_the_client_counts_in_the_registry_it_is_given(old_host: Registry) -> None:
    given = CollectorRegistry()
    api = ComputeAPI(
        _client_conf(_closed_port()),
        registry=old_host,
        required_tier="untested",
        metrics_registry=given,
    )
    try:
        assert api.metrics_registry is given
        with pytest.raises(exception.UnsupportedVersion):
            api.get_console_output(None, "h1", UUID)  # 1.1: refused, never sent
        with pytest.raises(exception.BrokerUnavailable):
            api.destroy(None, "h1", UUID, cast=True)
        with pytest.raises(exception.HostUnavailable):
            api.ping(None, "nowhere")
    finally:
        api.cleanup()
    messages = "computed_client_messages_total"
    assert _value(given, "computed_client_messages_refused_total", method="get_console_output")
    assert (
        _value(
            given, messages, method="get_console_output", kind="call", outcome="UnsupportedVersion"
        )
        == 1
    )
    assert _value(given, messages, method="destroy", kind="cast", outcome="BrokerUnavailable") == 1
    assert _value(given, messages, method="ping", kind="call", outcome="HostUnavailable") == 1


def test_each_client_has_a_registry_of_its_own_by_default(old_host: Registry) -> None:
    conf = _client_conf(_closed_port())
    first = ComputeAPI(conf, registry=old_host, required_tier="untested")
    second = ComputeAPI(conf, registry=old_host, required_tier="untested")
    try:
        with pytest.raises(exception.UnsupportedVersion):
            first.get_console_output(None, "h1", UUID)
        refused = "computed_client_messages_refused_total"
        assert _value(first.metrics_registry, refused, method="get_console_output") == 1
        assert _value(second.metrics_registry, refused, method="get_console_output") is None
    finally:
        first.cleanup()
        second.cleanup()


# The worker ---------------------------------------------------------------------------


def test_outcomes_name_the_projects_errors_only() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(exception.InstanceNotFound(uuid=UUID, host="h1")) == "InstanceNotFound"
    assert outcome_of(KeyError(UUID)) == "unexpected"


def test_an_operation_is_in_progress_while_it_runs_then_timed_by_outcome() -> None:
    registry = CollectorRegistry()
    metrics = OperationMetrics(registry)
    in_progress = "computed_operations_in_progress"
    with metrics.measure("spawn"):
        assert _value(registry, in_progress, operation="spawn") == 1
    with pytest.raises(exception.DriverError), metrics.measure("spawn"):
        raise exception.DriverError(driver="fake", host="h1", reason="boom")
    assert _value(registry, in_progress, operation="spawn") == 0
    latency = "computed_operation_duration_seconds_count"
    assert _value(registry, latency, operation="spawn", outcome="ok") == 1
    assert _value(registry, latency, operation="spawn", outcome="DriverError") == 1


def test_the_workers_state_is_read_at_each_scrape() -> None:
    metrics = WorkerMetrics()
    values: dict[str, object] = {"hosts": 2, "age": None, "waiting": 0}
    metrics.observe(
        WorkerReadings(
            hosts_owned=lambda: values["hosts"],  # type: ignore[arg-type, return-value]
            heartbeat_age=lambda: values["age"],  # type: ignore[arg-type, return-value]
            journal_waiting=lambda: values["waiting"],  # type: ignore[arg-type, return-value]
            broker_reconnects=lambda: {"listener": 1, "replies": 0},
        )
    )
    registry = metrics.registry
    assert _value(registry, "computed_hosts_owned") == 2
    assert _value(registry, "computed_heartbeat_age_seconds") is None  # no heartbeat yet
    values.update(hosts=3, age=1.5, waiting=4)
    assert _value(registry, "computed_hosts_owned") == 3
    assert _value(registry, "computed_heartbeat_age_seconds") == 1.5
    assert _value(registry, "computed_journal_waiting") == 4
    reconnects = "computed_broker_reconnects_total"
    assert _value(registry, reconnects, connection="listener") == 1
    assert _value(registry, reconnects, connection="replies") == 0


def test_the_endpoint_serves_the_workers_registry_only() -> None:
    metrics = WorkerMetrics()
    metrics.describe_worker(worker_id="w1", driver="fake", rpc_version="1.3")
    port = _closed_port()
    metrics.serve("127.0.0.1", port)
    try:
        text = exposition(port)
    finally:
        metrics.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (info,) = families["computed_worker_info"].samples
    assert info.labels == {"worker_id": "w1", "driver": "fake", "rpc_version": "1.3"}
    assert "computed_operation_duration_seconds" in families
    assert "process_cpu_seconds_total" not in text  # not the global default registry


def test_a_taken_port_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(exception.ConfigError) as caught:
            WorkerMetrics().serve("127.0.0.1", port)
    message = str(caught.value)
    assert f"127.0.0.1:{port} is in use" in message
    assert "[metrics] port" in message


def test_journal_entries_wait_until_their_operation_begins(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    journal = Journal(registry, "w1", 1)
    try:
        receipts = [
            Receipt("h1", "reboot", UUID, {"request_id": f"req-{n}"}, {"uuid": UUID}, f"m{n}")
            for n in range(3)
        ]
        first, second, third = journal.receive(receipts) or []
        assert journal.receive(receipts[:1]) == [None]  # a second delivery does not wait
        assert journal.waiting == 3
        hand_receipt(first, "m0")
        journal.begin("h1", "reboot", UUID, {}, {"uuid": UUID}, repeatable=False)
        assert journal.waiting == 2
        journal.finish(second)  # refused before it reached its operation
        assert journal.waiting == 1
    finally:
        journal.close()
        registry.close()


def test_the_example_dashboard_uses_only_metrics_that_exist() -> None:
    dashboard = json.loads(
        (Path(__file__).parents[2] / "etc" / "grafana-computed.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bcomputed_\w+", expr)}
    worker = WorkerMetrics()
    worker.observe(
        WorkerReadings(
            lambda: 0,
            lambda: 0.0,
            lambda: 0,
            lambda: {"listener": 0},
            refused=lambda: {"NoSuchMethod": 1},
            replays=lambda: {("spawn", "completed"): 1},
        )
    )
    worker.describe_worker(driver="fake")
    client = ClientMetrics(CollectorRegistry())
    for method in ("ping", "reboot"):
        client.fitted(method, backported=True)
        client.refused(method)
        with client.call(method), worker.operations.measure(method):
            pass
    exposed = {
        sample.name
        for registry in (worker.registry, client.registry)
        for family in registry.collect()
        for sample in family.samples
    }
    assert used and used <= exposed, used - exposed
