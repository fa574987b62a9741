"""Every client operation ends within its bound, whatever the broker does (docs/delivery.md).

Each test has a broker of its own and a real worker on it. The client's
operations are timed while the broker is killed under connected clients,
while it is down before a client is even created, and behind a port that
accepts TCP connections and never speaks AMQP, silent from the start or
falling silent under a connected client. Every call must end within
``call_timeout`` + 2 s (a call in flight when the port falls silent within
:data:`HUNG_BOUNDS`), every cast within ``cast_timeout``, each with a
:mod:`computed.exception` error if it fails (the bounds are what the docs
promise, plus :data:`SLACK` for a loaded machine: a correctness bound, not a
speed test); then the same client objects must work again once the broker
is back. The figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from oslo_config import cfg

from computed import exception
from computed.testing.broker import RabbitMQBroker
from computed.testing.proxy import SilentPort
from rpcapi import ComputeAPI

from .conftest import Deployment, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

CALL_TIMEOUT = 4
CAST_TIMEOUT = 2.0
#: The documented margin of a call over its timeout (rpcapi._link.CALL_MARGIN).
CALL_MARGIN = 2.0
#: Allowance over the documented bounds for a loaded test machine.
SLACK = 1.5
#: How long the broker stays away: longer than every bound, so an unbounded wait shows.
OUTAGE = 10.0
#: How long the clients may take to work again once the broker is back.
RECOVERY_LIMIT = 90.0

BOUNDS = {"call": CALL_TIMEOUT + CALL_MARGIN, "cast": CAST_TIMEOUT}
#: A call in flight when the broker stops answering with its connection open
#: waits for the broker's confirmation, then for its channel to close, each up
#: to its timeout, and a new connection may cost kombu's 5 s connect timeout
#: twice (docs/delivery.md); the calls after it fail at once.
HUNG_BOUNDS = {"call": 2 * CALL_TIMEOUT + 10.0, "cast": CAST_TIMEOUT}


@dataclass
class _Op:
    kind: str
    client: int
    started: float
    seconds: float
    error: str | None


@dataclass
class _Traffic:
    """Calls and casts from client threads, each timed, until told to stop."""

    apis: list[ComputeAPI]
    host: str
    ops: list[_Op] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index, _ in enumerate(self.apis):
            for kind in BOUNDS:
                thread = threading.Thread(target=self._run, args=(index, kind), daemon=True)
                thread.start()
                self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(max(BOUNDS.values()) + 30)
        assert not any(t.is_alive() for t in self.threads), "a client thread never returned"

    def _run(self, index: int, kind: str) -> None:
        api = self.apis[index]
        while not self.stop.is_set():
            started = time.monotonic()
            error = None
            try:
                _one(api, kind, self.host)
            except exception.ComputedError as exc:
                error = type(exc).__name__
            except Exception as exc:  # not a computed.exception type: a failure of the test
                error = type(exc).__name__
                self.unexpected.append(f"{kind} from client {index}: {error}: {exc}")
            self.ops.append(_Op(kind, index, started, time.monotonic() - started, error))
            self.stop.wait(0.05)

    def since(self, moment: float) -> list[_Op]:
        return [op for op in self.ops if op.started >= moment]

    def in_flight(self, start: float, end: float) -> list[_Op]:
        """The operations under way at some moment between ``start`` and ``end``:
        one sent just before ``start`` meets what happened then too."""
        return [op for op in self.ops if op.started < end and op.started + op.seconds > start]


def _one(api: ComputeAPI, kind: str, host: str) -> None:
    if kind == "call":
        api.ping(None, host)
    else:  # destroying a missing instance succeeds: a cheap, repeatable cast
        api.destroy(None, host, str(uuid.uuid4()), cast=True)


def _works(api: ComputeAPI, host: str) -> bool:
    try:
        _one(api, "call", host)
        _one(api, "cast", host)
    except exception.ComputedError:
        return False
    return True


def _check_bounds(ops: list[_Op], what: str, bounds: dict[str, float] = BOUNDS) -> None:
    late = [op for op in ops if op.seconds > bounds[op.kind] + SLACK]
    assert not late, f"{len(late)} operations {what} outlasted their bound: " + ", ".join(
        f"{op.kind} {op.seconds:.1f} s ({op.error})" for op in late[:10]
    )


def _report(title: str, ops: list[_Op], bounds: dict[str, float] = BOUNDS) -> None:
    print(f"\n{title}")
    for kind, bound in bounds.items():
        failed = [op.seconds for op in ops if op.kind == kind and op.error]
        done = [op.seconds for op in ops if op.kind == kind and not op.error]
        errors = sorted({op.error for op in ops if op.kind == kind and op.error})
        print(
            f"  {kind}s (bound {bound:g} s): {len(done)} succeeded, {len(failed)} failed "
            f"{errors}; failing took median {_median(failed)}, max {_max(failed)}; "
            f"the slowest of all took {_max(failed + done)}"
        )


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s" if values else "-"


def _max(values: list[float]) -> str:
    return f"{max(values):.3f} s" if values else "-"


def _send_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("rpcapi-send"))


@contextlib.contextmanager
def _client_options(conf: cfg.ConfigOpts, transport_url: str) -> Iterator[None]:
    """The client's options for these tests, restored afterwards."""
    options = {
        (None, "transport_url"): transport_url,
        (None, "broker_connect_timeout"): 3.0,
        ("client", "call_timeout"): CALL_TIMEOUT,
        ("client", "cast_timeout"): CAST_TIMEOUT,
    }
    saved = {key: getattr(conf[key[0]] if key[0] else conf, key[1]) for key in options}
    for (group, name), value in options.items():
        conf.set_override(name, value, group=group)
    try:
        yield
    finally:
        for (group, name), value in saved.items():
            conf.set_override(name, value, group=group)


@pytest.fixture
def own_broker() -> Iterator[RabbitMQBroker]:
    with RabbitMQBroker() as running:
        yield running


def _start_worker(deployment: Deployment, broker: RabbitMQBroker, host: str) -> None:
    deployment.start_worker([host], f"w-{host}", DEFAULT={"transport_url": broker.url})


def test_broker_killed_under_connected_clients(
    own_broker: RabbitMQBroker, deployment: Deployment, conf: cfg.ConfigOpts
) -> None:
    host = f"cb-{uuid.uuid4().hex[:6]}"
    _start_worker(deployment, own_broker, host)
    with _client_options(conf, own_broker.url):
        apis = [deployment.api(), deployment.api()]
        for api in apis:
            assert _works(api, host)
        traffic = _Traffic(apis, host)
        traffic.start()
        time.sleep(1.0)
        own_broker.kill()
        killed = time.monotonic()
        time.sleep(2.0)
        threads_early = _send_threads()
        time.sleep(OUTAGE - 2.0)
        threads_late = _send_threads()
        own_broker.restart()
        back = time.monotonic()
        recovered = _wait_each_works(apis, host)
        traffic.finish()

    during = [op for op in traffic.since(killed) if op.started < back]
    _report(f"Broker SIGKILLed for {back - killed:.1f} s under two connected clients", during)
    print(f"  send threads 2 s into the outage: {threads_early}, at its end: {threads_late}")
    print(f"  each client worked again {_seconds(recovered)} after the broker was back")
    assert not traffic.unexpected, traffic.unexpected
    _check_bounds(traffic.ops, "around the outage")
    assert {op.error for op in during if op.error} >= {"BrokerUnavailable"}
    assert threads_late <= threads_early, "send threads grew while the broker was down"


def test_client_created_while_the_broker_is_down(
    own_broker: RabbitMQBroker, deployment: Deployment, conf: cfg.ConfigOpts
) -> None:
    host = f"cb-{uuid.uuid4().hex[:6]}"
    _start_worker(deployment, own_broker, host)
    # Stopped, not killed: a single RabbitMQ 3.10 node SIGKILLed with a quorum
    # queue on it refuses consumers on that queue after it restarts
    # (docs/delivery.md), and this test is about the client, not that.
    own_broker.stop_node()
    with _client_options(conf, own_broker.url):
        api = deployment.api()
        ops = []
        for kind in ("call", "cast", "call", "cast"):
            started = time.monotonic()
            with pytest.raises(exception.BrokerUnavailable) as caught:
                _one(api, kind, host)
            ops.append(_Op(kind, 0, started, time.monotonic() - started, "BrokerUnavailable"))
        assert "guest:guest" not in str(caught.value)
        own_broker.start_node()
        recovered = _wait_each_works([api], host)

    _report("Client created while its broker is down", ops)
    print(f"  the same client worked {_seconds(recovered)} after the broker was back")
    _check_bounds(ops, "while the broker was down")


def test_a_port_that_never_speaks_amqp(
    own_broker: RabbitMQBroker, deployment: Deployment, conf: cfg.ConfigOpts
) -> None:
    host = f"cb-{uuid.uuid4().hex[:6]}"
    _start_worker(deployment, own_broker, host)
    port = SilentPort(own_broker.port)
    try:
        with _client_options(conf, port.url):
            api = deployment.api()
            # Silent from the start: the first connection gets no AMQP greeting.
            first = _timed_failures(api, host, 6)
            port.forward()
            recovered = _wait_each_works([api], host)
            # Silent under a connected client, as a hung broker would be.
            traffic = _Traffic([api], host)
            traffic.start()
            time.sleep(1.0)
            port.silence()
            silenced = time.monotonic()
            time.sleep(OUTAGE)
            port.forward()
            back = time.monotonic()
            recovered_again = _wait_each_works([api], host)
            traffic.finish()
    finally:
        port.close()

    _report("A port that accepts TCP and never speaks AMQP, from the start", first)
    print(f"  the same client worked {_seconds(recovered)} after the port forwarded to a broker")
    hung = traffic.in_flight(silenced, back)
    title = f"The same port silent for {back - silenced:.1f} s under a connected client"
    _report(title, hung, HUNG_BOUNDS)
    print(f"  the client worked again {_seconds(recovered_again)} after it forwarded again")
    assert not traffic.unexpected, traffic.unexpected
    _check_bounds(first, "against a silent port")
    _check_bounds(hung, "while the port was silent", HUNG_BOUNDS)
    _check_bounds([op for op in traffic.ops if op not in hung], "around the silence")
    assert {op.error for op in hung if op.error} >= {"BrokerUnavailable"}


def _timed_failures(api: ComputeAPI, host: str, count: int) -> list[_Op]:
    ops = []
    for i in range(count):
        kind = ("call", "cast")[i % 2]
        started = time.monotonic()
        with pytest.raises(exception.BrokerUnavailable):
            _one(api, kind, host)
        ops.append(_Op(kind, 0, started, time.monotonic() - started, "BrokerUnavailable"))
    return ops


def _wait_each_works(apis: list[ComputeAPI], host: str) -> list[float]:
    """Seconds until each client did a call and a cast again, trying every 0.2 s."""
    started = time.monotonic()
    took: list[float] = []
    for api in apis:
        wait_until(partial(_works, api, host), RECOVERY_LIMIT, "the client working again", 0.2)
        took.append(time.monotonic() - started)
    return took


def _seconds(values: list[Any]) -> str:
    return ", ".join(f"{v:.1f} s" for v in values)
