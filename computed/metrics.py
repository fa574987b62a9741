"""The worker's Prometheus metrics, in a registry of its own.

The latency buckets and the outcome label are shared with the client's
metrics (:mod:`rpcapi._metrics`), so both sides of a call read alike.

Operations are measured where every one of them runs,
:meth:`computed.manager.Operation.execute`, whether it came by a call or a
cast: latency by operation and outcome, and how many run now. What the
worker's parts already know (hosts owned, the last heartbeat, journal
entries waiting, broker reconnects) is read when the endpoint is scraped,
so those parts keep no metric objects and pay nothing between scrapes.

Labels are bounded by the code, never by traffic: an operation name, an
outcome (``ok``, or the class name of one of the project's errors) or a
connection's role; never an instance UUID, a host or a request id.
docs/operations.md describes each metric.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector, CollectorRegistry

from computed import exception

__all__ = [
    "LATENCY_BUCKETS",
    "LabelSets",
    "NOT_MEASURED",
    "OperationMetrics",
    "WorkerMetrics",
    "WorkerReadings",
    "outcome_of",
]

LOG = logging.getLogger(__name__)

#: Seconds: a ping or get_info takes milliseconds, a spawn or a snapshot of
#: a large disk many minutes (a call waiting for a host changing hands, on
#: the client's side, up to [client] handover_timeout).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
)

#: The outcome label of an exception that is not one of the project's errors.
UNEXPECTED = "unexpected"


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` label of an operation that raised ``error`` (None: it returned)."""
    if error is None:
        return "ok"
    if isinstance(error, exception.ComputedError):
        return type(error).__name__
    return UNEXPECTED


_M = TypeVar("_M", bound=MetricWrapperBase)


class LabelSets(Generic[_M]):
    """A labelled metric whose child for each label set is looked up once and kept.

    ``metric.labels(...)`` takes the metric's lock and builds its key on
    every use; a metric updated for every message asks once per label set.
    """

    def __init__(self, metric: _M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            # Two threads may both get here: labels() gives both the same child.
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class OperationMetrics:
    """Latency and concurrency of the contract's operations."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = LabelSets(
            prometheus_client.Histogram(
                "computed_operation_duration_seconds",
                "Seconds an operation took on the worker, from the moment it started "
                "(its arguments checked) to its result or error, by operation and outcome.",
                ["operation", "outcome"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.in_progress = LabelSets(
            prometheus_client.Gauge(
                "computed_operations_in_progress",
                "Operations running on the worker now, by operation.",
                ["operation"],
                registry=registry,
            )
        )

    def measure(self, operation: str) -> _Measured:
        """A context manager around one run of ``operation``."""
        return _Measured(self, operation)


#: The metrics of a manager built outside a worker (tests, tools): kept in a
#: registry nobody serves.
NOT_MEASURED = OperationMetrics(CollectorRegistry(auto_describe=True))


class _Measured:
    __slots__ = ("_metrics", "_operation", "_started")

    def __init__(self, metrics: OperationMetrics, operation: str) -> None:
        self._metrics = metrics
        self._operation = operation
        self._started = 0.0

    def __enter__(self) -> None:
        self._metrics.in_progress(self._operation).inc()
        self._started = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        metrics = self._metrics
        elapsed = time.monotonic() - self._started
        metrics.in_progress(self._operation).dec()
        metrics.latency(self._operation, outcome_of(exc)).observe(elapsed)


class WorkerReadings:
    """What the worker's parts know, read at each scrape.

    Each argument is a function of no arguments; they run on the endpoint's
    thread and must not block.

    :param hosts_owned: how many hosts' queues the worker consumes.
    :param heartbeat_age: seconds since the last heartbeat the registry took,
        None before the first.
    :param journal_waiting: journal entries received and not started yet.
    :param broker_reconnects: per connection role, times its connection came
        back after it was lost.
    :param refused: messages refused before any operation ran, by the class of
        the error their sender was told.
    :param replays: journal entries of other workers this one settled, by
        operation and outcome (``finished``, ``completed``, ``failed``,
        ``adopted-elsewhere``).
    """

    def __init__(
        self,
        hosts_owned: Callable[[], int],
        heartbeat_age: Callable[[], float | None],
        journal_waiting: Callable[[], int],
        broker_reconnects: Callable[[], dict[str, int]],
        refused: Callable[[], dict[str, int]] = dict,
        replays: Callable[[], dict[tuple[str, str], int]] = dict,
    ) -> None:
        self.hosts_owned = hosts_owned
        self.heartbeat_age = heartbeat_age
        self.journal_waiting = journal_waiting
        self.broker_reconnects = broker_reconnects
        self.refused = refused
        self.replays = replays


class _StateCollector(Collector):
    def __init__(self, state: WorkerReadings) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state
        yield GaugeMetricFamily(
            "computed_hosts_owned",
            "Hosts whose queues the worker consumes now.",
            value=state.hosts_owned(),
        )
        age = state.heartbeat_age()
        if age is not None:
            yield GaugeMetricFamily(
                "computed_heartbeat_age_seconds",
                "Seconds since the registry last took this worker's heartbeat; "
                "other workers take its hosts over once it passes [registry] down_time.",
                value=age,
            )
        yield GaugeMetricFamily(
            "computed_journal_waiting",
            "Lifecycle operations journaled on receipt that have not started yet "
            "(waiting for an operation thread, or for another operation on the same instance).",
            value=state.journal_waiting(),
        )
        yield _counters(
            "computed_broker_reconnects",
            "Times a broker connection of the worker came back after it was lost, "
            "by connection: listener (consuming host queues), replies, notifications.",
            ["connection"],
            [((connection,), n) for connection, n in state.broker_reconnects().items()],
        )
        yield _counters(
            "computed_messages_refused",
            "Messages refused before any operation ran (malformed, too large, an unknown "
            "method or version, a bad context or argument, a host not served here), by the "
            "error class their sender was told.",
            ["error"],
            [((error,), n) for error, n in state.refused().items()],
        )
        yield _counters(
            "computed_journal_replays",
            "Journal entries another worker left that this one settled after taking their "
            "host, by operation and outcome: finished (outcome published again), completed "
            "(run again), failed (not safe to run twice, or could not be run), "
            "adopted-elsewhere.",
            ["operation", "outcome"],
            state.replays().items(),
        )

    def describe(self) -> Iterator[Metric]:
        # Nothing to read when registered: the worker is not started yet.
        return iter(())


def _counters(
    name: str, documentation: str, labels: list[str], counts: Iterable[tuple[tuple[str, ...], int]]
) -> CounterMetricFamily:
    """A counter family with one sample per label values, in a stable order."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in sorted(counts):
        family.add_metric(list(values), count)
    return family


class WorkerMetrics:
    """One worker's metrics and, when enabled, the HTTP endpoint serving them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.operations = OperationMetrics(self.registry)
        self._info = prometheus_client.Info(
            "computed_worker",
            "The worker: its id, driver, driver version, computed version and "
            "the RPC versions it serves.",
            registry=self.registry,
        )
        self._server: WSGIServer | None = None

    def describe_worker(self, **labels: str) -> None:
        """Set the labels of ``computed_worker_info``."""
        self._info.info(labels)

    def observe(self, state: WorkerReadings) -> None:
        """Read ``state`` at every scrape."""
        self.registry.register(_StateCollector(state))

    def serve(self, address: str, port: int) -> None:
        """Serve the metrics at ``http://address:port/metrics`` on a thread of their own.

        :raises computed.exception.ConfigError: the port is taken, or the
            address cannot be listened on.
        """
        try:
            self._server, _ = prometheus_client.start_http_server(
                port, addr=address, registry=self.registry
            )
        except OSError as exc:
            where = _where(address, port)
            if exc.errno == errno.EADDRINUSE:
                reason = (
                    f"the metrics port {where} is in use by another process; give this "
                    "worker a port of its own with [metrics] port"
                )
            else:
                reason = (
                    f"cannot serve metrics on {where} ([metrics] listen_address, port): "
                    f"{exc.strerror or exc}"
                )
            raise exception.ConfigError(reason=reason) from exc
        LOG.info("Serving metrics at http://%s/metrics", _where(address, port))

    def close(self) -> None:
        """Stop the endpoint, if it was started."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def _where(address: str, port: int) -> str:
    """``address:port``, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
