"""The client's link to one broker: its transport, its RPC client, and a circuit breaker.

oslo.messaging's rabbit driver does not bound its own waits: a send retries
its connection for as long as the broker stays away unless told a
``retry``; the reply queue's connection, made at a transport's first call,
always retries forever, holding a lock every later call needs; a cast waits
for the broker's confirmation as long as the AMQP heartbeat timeout (60 s);
and a connection attempt to a port that never speaks AMQP costs kombu's
whole connect timeout (5 s). So:

* a call on a link whose reply queue exists runs in the caller's thread,
  with ``retry=0``: oslo.messaging then bounds it by itself, its
  publication by the call's timeout (the socket timeout while it waits for
  the broker's confirmation) and its answer by the same timeout, and gives
  up on a broken connection at once instead of reconnecting (one connection
  attempt at most, when it needs a new connection). A call that failed at
  once (within :data:`STALE_FAILURE`) is sent once more: a connection the
  broker closed while it sat unused fails before the message leaves, and
  is connected again on its next use. No thread is handed the call: that
  would cost about 150 us of CPU per call on two cores.
* a transport's first call, which sets its reply queue up, and every cast
  run on a thread of a bounded pool, and the caller waits only until its
  bound: a call's timeout plus :data:`CALL_MARGIN`, a cast's ``[client]
  cast_timeout``. Casts carry ``retry=1``: a connection left stale by a
  broker restart reconnects once on its next use.

A send that fails on the broker, or overruns its bound, opens the breaker:
the link is *down*, and every later message fails at once with
BrokerUnavailable, while one probe thread per link tries a fresh connection
at once and then every :data:`PROBE_INTERVAL` seconds. When the broker
answers again the link is up and messages go through the same transport,
whose connections oslo.messaging re-establishes on their next use (or its
heartbeat thread sooner). A send stuck inside oslo.messaging keeps its pool
thread until oslo.messaging lets go of it (at the latest when the broker is
back); since nothing is sent while the link is down, the threads never
outnumber :data:`MAX_IN_FLIGHT`.

The transport is built only once the broker has answered a probe, so a
client created while the broker is down never holds a transport whose
first connection would retry forever.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import amqp.exceptions
import kombu.exceptions
import oslo_messaging as messaging
from oslo_config import cfg

from computed import exception, rpc, version

__all__ = [
    "BrokerLink",
    "CALL_MARGIN",
    "MAX_IN_FLIGHT",
    "Message",
    "PROBE_INTERVAL",
    "CALL_RETRY",
    "CAST_RETRY",
    "SendPool",
    "STALE_FAILURE",
]

LOG = logging.getLogger(__name__)

#: Seconds a call may outlast its timeout before the client gives up on the broker.
CALL_MARGIN = 2.0

#: Seconds between two probes of a broker found unreachable.
PROBE_INTERVAL = 1.0

#: Reconnections oslo.messaging attempts within a call before it fails: none, so a
#: call to a broker that stopped answering ends within its timeout.
CALL_RETRY = 0

#: A call that fails on the broker within this many seconds is sent once more.
STALE_FAILURE = 1.0

#: Reconnections within a cast (bounded by the pool): one, so a pooled
#: connection left stale by a broker restart recovers on its next use.
CAST_RETRY = 1

#: Sends of one client with the broker at once; more wait for a free thread, within their bound.
MAX_IN_FLIGHT = 256

#: What a send raises when the broker, not the host, failed it: oslo.messaging's
#: delivery failure after its retries, and kombu's and py-amqp's connection errors,
#: which oslo.messaging lets through when a new pooled connection cannot be made.
BROKER_ERRORS = (
    messaging.MessageDeliveryFailure,
    kombu.exceptions.KombuError,
    amqp.exceptions.AMQPError,
    OSError,
)

_UNKNOWN, _UP, _DOWN = "unknown", "up", "down"


@dataclasses.dataclass(frozen=True)
class Message:
    """One message: ``method(**kwargs)`` for ``host``, at ``rpc_version``."""

    host: str
    rpc_version: str
    ctxt: Any
    method: str
    kwargs: dict[str, Any]


class SendPool:
    """The threads a client's sends run on: started as needed, at most ``limit``, then reused.

    Unlike :class:`concurrent.futures.ThreadPoolExecutor`, its threads are
    daemons: a send stuck inside oslo.messaging while the broker is down
    must not keep the scheduler's process from exiting.
    """

    def __init__(self, limit: int = MAX_IN_FLIGHT) -> None:
        self._limit = limit
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, job))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._threads < self._limit:
                    self._threads += 1
                    threading.Thread(target=self._work, name="rpcapi-send", daemon=True).start()
        return future

    def shutdown(self) -> None:
        """Let every thread end once it has run the jobs already queued."""
        with self._lock:
            count, self._limit = self._threads, 0
        for _ in range(count):
            self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:
                    future.set_exception(exc)
            self._idle.release()


def _outcome(send: Callable[[], Any]) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)``: a send's outcome, never raised in the pool."""
    try:
        return True, send()
    except BaseException as exc:
        return False, exc


class BrokerLink:
    """One broker (a transport URL): its transport, its RPC client, and whether it answers.

    :param url: the transport URL; None for ``[DEFAULT] transport_url``.
    :param transport: a transport to use instead of building one; the link
        starts up, and ``url`` (or ``[DEFAULT] transport_url``) is what a
        probe checks after a failure.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        url: str | None,
        pool: SendPool,
        transport: messaging.Transport | None = None,
    ) -> None:
        self._conf = conf
        self._url = url
        self._pool = pool
        self._transport = transport
        self._client: messaging.RPCClient | None = None
        self._contexts: dict[tuple[str, str, int | None, int | None], Any] = {}
        self._cond = threading.Condition()
        self._state = _UNKNOWN if transport is None else _UP
        self._reason = ""
        self._down_at = 0.0
        self._probing = False
        self._closed = threading.Event()
        #: Whether the transport's reply queue exists: calls may then run inline.
        self._warm = False

    @property
    def safe_url(self) -> str:
        return rpc.safe_url(self._url or self._conf.transport_url)

    def call(self, message: Message, timeout: int, monitor: int | None = None) -> Any:
        """Send ``message`` as a call, its answer within ``timeout`` + :data:`CALL_MARGIN` seconds.

        :param monitor: the call monitor's timeout (seconds without a
            heartbeat from the worker), for long calls.
        :raises oslo_messaging.MessagingTimeout: from oslo.messaging, past ``timeout``.
        :raises computed.exception.BrokerUnavailable: if the broker is down,
            failed the call, or kept it past its bound.
        """
        if self._warm and self._state is _UP:
            try:
                return self._call(message, timeout, monitor)
            except BROKER_ERRORS as exc:
                raise self._failed(exc) from exc

        def send() -> Any:
            try:
                result = self._call(message, timeout, monitor)
            except BROKER_ERRORS:
                raise
            except Exception:  # an answer, or its timeout: the reply queue exists
                self._warm = True
                raise
            self._warm = True
            return result

        return self._run(send, timeout + CALL_MARGIN)

    def cast(self, message: Message, bound: float) -> None:
        """Hand ``message`` to the broker as a cast within ``bound`` seconds.

        :raises computed.exception.BrokerUnavailable: if the broker is down,
            refused the message, or did not confirm it within ``bound``.
        """

        def send() -> None:
            cctxt = self._context(message.host, message.rpc_version, None, None)
            cctxt.cast(message.ctxt, message.method, **message.kwargs)

        self._run(send, bound)

    def cleanup(self) -> None:
        """Stop probing and close the transport's connections."""
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._transport is not None:
            self._transport.cleanup()

    # --------------------------------------------------------------------------

    def _call(self, message: Message, timeout: int, monitor: int | None) -> Any:
        """The call through oslo.messaging, sent once more if the broker failed it at once.

        A connection the broker closed while it sat unused in oslo.messaging's
        pool (a broker restart) fails before the message leaves; on its next
        use oslo.messaging connects it again (once: retry=0).
        """
        cctxt = self._context(message.host, message.rpc_version, timeout, monitor)
        started = time.monotonic()
        try:
            return cctxt.call(message.ctxt, message.method, **message.kwargs)
        except BROKER_ERRORS:
            if time.monotonic() - started > STALE_FAILURE:
                raise
        return cctxt.call(message.ctxt, message.method, **message.kwargs)

    def _run(self, send: Callable[[], Any], bound: float) -> Any:
        deadline = time.monotonic() + bound
        if self._state is not _UP:
            self._wait_up(deadline, bound)
        future = self._pool.submit(functools.partial(_outcome, send))
        try:
            ok, result = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            if future.cancel():  # never started: every thread is busy with other sends
                raise self._unavailable(
                    f"{MAX_IN_FLIGHT} operations of this client were already with the broker "
                    f"for the {bound:g} s this one could wait"
                ) from None
            reason = f"no answer from the broker within {bound:g} s"
            self._trip(reason)
            raise self._unavailable(reason) from None
        if ok:
            return result
        if isinstance(result, BROKER_ERRORS):
            raise self._failed(result) from result
        raise result

    def _failed(self, error: BaseException) -> exception.BrokerUnavailable:
        """Mark the link down after ``error`` from the broker; the error to raise."""
        reason = str(error) or type(error).__name__
        self._trip(reason)
        return self._unavailable(reason)

    def _wait_up(self, deadline: float, bound: float) -> None:
        """Return once the link is up; raise at once while it is down.

        :raises computed.exception.BrokerUnavailable: if the broker is
            known to be down, or the first probe is not done by ``deadline``.
        """
        with self._cond:
            if self._state is _UNKNOWN:
                self._start_probe()
            while self._state is _UNKNOWN and not self._closed.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._unavailable(f"no answer from the broker within {bound:g} s")
                self._cond.wait(remaining)
            if self._state is _DOWN:
                since = time.monotonic() - self._down_at
                raise self._unavailable(
                    f"{self._reason} ({since:.0f} s ago; checked again every {PROBE_INTERVAL:g} s)"
                )
            if self._closed.is_set():
                raise self._unavailable("the client was cleaned up")

    def _trip(self, reason: str) -> None:
        """Mark the link down after a failed send, and start probing."""
        with self._cond:
            if self._state is not _UP:
                return
            self._state, self._reason, self._down_at = _DOWN, reason, time.monotonic()
            self._start_probe()
        LOG.warning(
            "Message broker %s failed a send (%s): sends fail at once until it answers again",
            self.safe_url,
            reason,
        )

    def _start_probe(self) -> None:
        """Start the probe thread unless it runs (called with the lock held)."""
        if self._probing or self._closed.is_set():
            return
        self._probing = True
        threading.Thread(target=self._probe, name="rpcapi-broker-probe", daemon=True).start()

    def _probe(self) -> None:
        """Check the broker until it answers, then build the transport if needed and go up."""
        conf = self._conf
        while not self._closed.is_set():
            try:
                rpc.check_broker(conf, self._url or conf.transport_url, conf.broker_connect_timeout)
                if self._transport is None:
                    self._transport = rpc.get_transport(conf, url=self._url)
            except Exception as exc:  # BrokerUnavailable, or a transport URL oslo refuses
                reason = exc.kwargs["reason"] if isinstance(exc, exception.ComputedError) else exc
                with self._cond:
                    if self._state is not _DOWN:
                        self._state, self._down_at = _DOWN, time.monotonic()
                    self._reason = str(reason)
                    self._cond.notify_all()
                self._closed.wait(PROBE_INTERVAL)
                continue
            with self._cond:
                recovered = self._state is _DOWN
                self._state, self._probing = _UP, False
                self._cond.notify_all()
            if recovered:
                LOG.info("Message broker %s answers again", self.safe_url)
            return
        with self._cond:
            self._probing = False

    def _context(
        self, host: str, rpc_version: str, timeout: int | None, monitor: int | None
    ) -> Any:
        """The prepared call context for ``host`` at ``rpc_version`` (kept for reuse)."""
        key = (host, rpc_version, timeout, monitor)
        prepared = self._contexts.get(key)
        if prepared is None:
            if self._client is None:
                self._client = messaging.get_rpc_client(
                    self._transport,
                    messaging.Target(topic=rpc.TOPIC, version=version.RPC_API_VERSION),
                    serializer=rpc.RequestContextSerializer(),
                )
            options: dict[str, Any] = {"server": host, "version": rpc_version}
            if timeout is None:
                options["retry"] = CAST_RETRY
            else:
                options["retry"] = CALL_RETRY
                options["timeout"] = timeout
            if monitor is not None:
                options["call_monitor_timeout"] = monitor
            prepared = self._contexts[key] = self._client.prepare(**options)
        return prepared

    def _unavailable(self, reason: str) -> exception.BrokerUnavailable:
        return exception.BrokerUnavailable(url=self.safe_url, reason=reason)
