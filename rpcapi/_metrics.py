"""The client's Prometheus metrics: what a scheduler sent, how it ended, how long calls took.

They are kept in a ``prometheus_client`` registry the scheduler exposes
as it likes (``ComputeAPI.metrics_registry``; docs/operations.md). Each
message costs two clock reads and a counter increment (and, for a call, a
histogram observation): the metric of each label set is looked up once and
kept, not looked up again for every message.

Labels are the method, whether it was a call or a cast, and the outcome
(``ok`` or the class name of the project's error the caller got), so their
number is bounded by the contract, never by hosts or instances.
"""

from __future__ import annotations

import time
from types import TracebackType

import prometheus_client
from prometheus_client.registry import CollectorRegistry

from computed.metrics import LATENCY_BUCKETS, LabelSets, outcome_of

__all__ = ["ClientMetrics"]

CALL = "call"
CAST = "cast"


class ClientMetrics:
    """The metrics of one :class:`rpcapi.ComputeAPI`, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._sent = LabelSets(
            prometheus_client.Counter(
                "computed_client_messages",
                "Calls and casts this client sent (or tried to), by method, kind (call, "
                "cast) and outcome: ok, or the class of the error the caller got.",
                ["method", "kind", "outcome"],
                registry=registry,
            )
        )
        self._latency = LabelSets(
            prometheus_client.Histogram(
                "computed_client_call_duration_seconds",
                "Seconds from a call's start to its result or error, as the caller "
                "saw it (a host changing hands included), by method.",
                ["method"],
                # A ping takes milliseconds; a call to a host changing hands may wait
                # [client] handover_timeout, a long call [client] long_call_timeout.
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self._backported = LabelSets(
            prometheus_client.Counter(
                "computed_client_messages_backported",
                "Messages sent at an older version than this client's, with their "
                "objects or arguments fitted to it, by method.",
                ["method"],
                registry=registry,
            )
        )
        self._refused = LabelSets(
            prometheus_client.Counter(
                "computed_client_messages_refused",
                "Messages not sent because the host was too old for them "
                "(UnsupportedVersion), by method.",
                ["method"],
                registry=registry,
            )
        )

    def call(self, method: str) -> _Sending:
        """A context manager around one call of ``method``."""
        return _Sending(self, method, CALL)

    def cast(self, method: str) -> _Sending:
        """A context manager around one cast of ``method``."""
        return _Sending(self, method, CAST)

    def fitted(self, method: str, backported: bool) -> None:
        """A message of ``method`` was fitted to its host's version."""
        if backported:
            self._backported(method).inc()

    def refused(self, method: str) -> None:
        """A message of ``method`` was refused: the host is too old for it."""
        self._refused(method).inc()

    def _sent_one(
        self, method: str, kind: str, error: BaseException | None, started: float
    ) -> None:
        if kind == CALL:
            self._latency(method).observe(time.monotonic() - started)
        self._sent(method, kind, outcome_of(error)).inc()


class _Sending:
    __slots__ = ("_metrics", "_method", "_kind", "_started")

    def __init__(self, metrics: ClientMetrics, method: str, kind: str) -> None:
        self._metrics = metrics
        self._method = method
        self._kind = kind
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._metrics._sent_one(self._method, self._kind, exc, self._started)
