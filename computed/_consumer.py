"""Many host queues consumed over a few broker connections.

A worker may own a thousand hosts. Each host has its queue (``compute.<host>``,
as oslo.messaging names it); the worker consumes them over one connection per
``[listener] hosts_per_connection`` hosts, one consumer per queue, and adds or
cancels a host's consumer when its ownership moves, without touching the
others.

Each connection is read by one thread (kombu is not thread safe), which also
runs whatever other threads ask of the connection (:meth:`_Shard.call`). It
sleeps until the broker sends something or another thread asks it for
something (a byte on its wake-up socket), so an idle worker costs next to
no CPU, and a host taken over or released is consumed or cancelled at once. The
thread reads what has arrived, hands the batch to the server's handler on
its own thread, and only then acknowledges it, in one frame: the handler
journals what must survive this worker's death before the broker forgets the
message. A lost connection is opened again with a growing delay, and every
consumer is declared again; what was delivered and not acknowledged is
delivered again by the broker.
"""

from __future__ import annotations

import concurrent.futures
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from kombu.connection import Connection
from oslo_config import cfg

from computed import _wire

__all__ = ["ConsumerPool", "Delivery", "DeclareError"]

LOG = logging.getLogger(__name__)

#: Most deliveries handled together (one journal transaction, one acknowledgement).
BATCH = 64
#: Longest sleep of an idle connection's thread (it is woken for any work).
_IDLE = 5.0
#: Longest wait for the rest of a frame once the socket has data.
_POLL = 0.5
#: Read timeout for data the socket already holds (a frame may be split).
_MORE = 0.01
_BACKOFF = (0.5, 1.0, 2.0, 4.0)
#: How long reading pauses while the server is busy.
_PAUSE = 0.01


class DeclareError(RuntimeError):
    """A host's queue could not be declared or consumed."""


class Delivery:
    """One message as the broker delivered it, not yet decoded."""

    __slots__ = ("host", "body", "tag", "redelivered")

    def __init__(self, host: str, body: bytes | str, tag: int, redelivered: bool) -> None:
        self.host = host
        self.body = body
        self.tag = tag
        self.redelivered = redelivered


Handler = Callable[[list[Delivery]], None]
#: True while the server has more work queued than it wants: reading pauses.
Busy = Callable[[], bool]


class ConsumerPool:
    """The host queues one worker consumes, spread over a few connections."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        url: str | None,
        topic: str,
        handler: Handler,
        name: str,
        busy: Busy = lambda: False,
    ) -> None:
        self._conf = conf
        self._url = url
        self._topic = topic
        self._handler = handler
        self._busy = busy
        self._name = name
        self._shards: list[_Shard] = []
        self._where: dict[str, _Shard] = {}
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        return len(self._shards)

    def hosts(self) -> list[str]:
        with self._lock:
            return sorted(self._where)

    @property
    def reconnects(self) -> int:
        """Times a connection opened after it was lost or could not be opened."""
        return sum(shard.reconnects for shard in list(self._shards))

    def connected(self) -> bool:
        """Whether every connection that has hosts to consume is open."""
        with self._lock:
            shards = set(self._where.values())
        return all(shard.connected for shard in shards)

    def add(self, hosts: list[str], timeout: float) -> dict[str, str]:
        """Consume these hosts' queues; returns, per host that failed, why.

        A host whose connection is down now is consumed once it is back.
        """
        per_shard: dict[_Shard, list[str]] = {}
        with self._lock:
            for host in hosts:
                if host in self._where:
                    continue
                shard = self._emptiest()
                self._where[host] = shard
                per_shard.setdefault(shard, []).append(host)
        errors: dict[str, str] = {}
        for future in [shard.call(_adder(shard, batch)) for shard, batch in per_shard.items()]:
            try:
                errors.update(future.result(timeout))
            except concurrent.futures.TimeoutError:
                LOG.warning("Consuming new host queues took longer than %s s", timeout)
            except Exception as exc:  # the connection dropped: consumed once it is back
                LOG.warning("Consuming new host queues was interrupted: %s", exc)
        with self._lock:
            for host in errors:
                self._where.pop(host, None)
        return errors

    def remove(self, hosts: list[str], timeout: float) -> None:
        """Cancel these hosts' consumers; what they delivered meanwhile is handled first.

        When this returns, the broker delivers nothing more from these queues
        to this worker, and every message it did deliver has been handed to
        the handler (so a caller may then wait for it to finish).
        """
        per_shard: dict[_Shard, list[str]] = {}
        with self._lock:
            for host in hosts:
                shard = self._where.pop(host, None)
                if shard is not None:
                    per_shard.setdefault(shard, []).append(host)
        for future in [shard.call(_remover(shard, batch)) for shard, batch in per_shard.items()]:
            try:
                future.result(timeout)
            except concurrent.futures.TimeoutError:
                LOG.warning("Cancelling host consumers took longer than %s s", timeout)
            except Exception as exc:  # the connection dropped, and its consumers with it
                LOG.debug("Cancelling host consumers was interrupted: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        self.remove(self.hosts(), timeout)
        for shard in self._shards:
            shard.stop()
        for shard in self._shards:
            shard.join(timeout)

    def _emptiest(self) -> _Shard:
        per_connection = self._conf.listener.hosts_per_connection
        load = {shard: 0 for shard in self._shards}
        for shard in self._where.values():
            load[shard] += 1
        open_shards = [s for s in self._shards if load[s] < per_connection]
        if open_shards:
            return min(open_shards, key=lambda s: load[s])
        shard = _Shard(self, len(self._shards))
        self._shards.append(shard)
        shard.start()
        return shard


class _Shard(threading.Thread):
    """One connection, its consumers, and the thread that reads it."""

    def __init__(self, pool: ConsumerPool, index: int) -> None:
        super().__init__(name=f"listener-{index}", daemon=True)
        self._pool = pool
        self._conf = pool._conf
        self._index = index
        self._wanted: set[str] = set()
        self._consuming: set[str] = set()
        self._tasks: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        self._tasks_lock = threading.Lock()
        self._received: list[Delivery] = []
        self._stopping = threading.Event()
        self._conn: Connection | None = None
        self._channel: Any = None
        self._declarer: Any = None
        self._failures = 0
        #: Times the connection opened after it was lost or could not be opened.
        self.reconnects = 0
        # A socket pair rather than a pipe: once closed, a write fails rather
        # than reach whatever file reused the descriptor.
        self._waker, self._wake_end = socket.socketpair()
        for end in (self._waker, self._wake_end):
            end.setblocking(False)

    # Called from other threads -------------------------------------------------

    def call(self, task: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``task`` on this connection's thread; its future holds the result."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._tasks_lock:
            self._tasks.append((task, future))
        self._wake()
        return future

    def stop(self) -> None:
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_end.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (stopped)
            pass

    @property
    def connected(self) -> bool:
        return self._conn is not None

    # The connection's thread ------------------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            if self._conn is None and not self._connect():
                self._run_tasks()
                self._stopping.wait(_BACKOFF[min(self._failures, len(_BACKOFF)) - 1])
                continue
            try:
                self._run_tasks()
                if self._pool._busy():
                    # What is queued stays with the broker (or in the socket)
                    # until the operations already received have started.
                    self._stopping.wait(_PAUSE)
                else:
                    self._drain()
                self._flush()
                assert self._conn is not None
                self._conn.heartbeat_check()
            except Exception as exc:
                self._lost(exc)
        self._run_tasks()
        self._close()
        self._waker.close()
        self._wake_end.close()

    def add(self, hosts: list[str]) -> dict[str, str]:
        self._wanted.update(hosts)
        if self._conn is None:
            return {}
        errors = self._consume_all(hosts)
        self._wanted.difference_update(errors)
        return errors

    def remove(self, hosts: list[str]) -> None:
        self._wanted.difference_update(hosts)
        for host in hosts:
            if host in self._consuming and self._channel is not None:
                # Deliveries that arrive before the broker confirms are read
                # while waiting, and handled below with the rest.
                self._channel.basic_cancel(host)
            self._consuming.discard(host)
        self._flush()

    def _connect(self) -> bool:
        """Open the connection and consume every wanted host; False if the broker is away."""
        name = f"{self._pool._name}:listener-{self._index}"
        conn = _wire.connection(self._conf, self._pool._url, name)
        try:
            conn.connect()
            channel = conn.channel()
            # Per consumer, so per host: quorum queues have no per-channel limit.
            channel.basic_qos(0, self._conf.listener.prefetch_per_host, False)
            self._conn, self._channel = conn, channel
            self._consuming.clear()
            for host, problem in sorted(self._consume_all(sorted(self._wanted)).items()):
                LOG.error("Cannot consume the queue of %s: %s", host, problem)
        except Exception as exc:
            self._failures += 1
            level = logging.WARNING if self._failures in (1, 10) else logging.DEBUG
            LOG.log(
                level,
                "Listener connection %s cannot reach the broker (attempt %d): %s",
                self._index,
                self._failures,
                exc,
            )
            self._close()
            _wire.close_quietly(conn)
            return False
        if self._failures:
            LOG.info(
                "Listener connection %s is back after %d attempt(s)", self._index, self._failures
            )
            self.reconnects += 1
        self._failures = 0
        return True

    def _consume_all(self, hosts: list[str]) -> dict[str, str]:
        """Declare these hosts' queues and consume them; ``{host: problem}`` of those refused.

        The declarations go out without waiting for each answer, then one
        that waits: the broker answers a channel's methods in order, so a
        refusal (which closes the channel) arrives before that answer, and
        every queue exists before any is consumed. Only after a refusal are
        the hosts declared one at a time, to tell which were refused.
        """
        if not hosts:
            return {}
        queues = {host: _wire.host_queue(self._conf, self._pool._topic, host) for host in hosts}
        try:
            declarer = self._declarer_channel()
            # What Queue.declare does for each queue, but the exchange, which
            # all of them share, declared once.
            queues[hosts[0]].exchange(declarer).declare(nowait=True)
            for queue in queues.values():
                bound = queue(declarer)
                bound.queue_declare(nowait=True)
                bound.queue_bind(nowait=True)
            queues[hosts[-1]](declarer).queue_declare(passive=True)
        except self._declare_errors():
            self._drop_declarer()
            errors = {}
            for host, queue in queues.items():
                try:
                    self._declare(queue)
                except DeclareError as exc:
                    errors[host] = str(exc)
        else:
            errors = {}
        for host, queue in queues.items():
            if host not in errors:
                self._consume(host, queue)
        return errors

    def _declare_errors(self) -> tuple[type[Exception], ...]:
        assert self._conn is not None
        return tuple(self._conn.channel_errors)

    def _declarer_channel(self) -> Any:
        assert self._conn is not None
        if self._declarer is None:
            # A channel apart: a failed declaration closes its channel, and
            # must not take the consumers of the other hosts with it.
            self._declarer = self._conn.channel()
        return self._declarer

    def _drop_declarer(self) -> None:
        _wire.close_quietly(self._declarer)
        self._declarer = None

    def _declare(self, queue: Any) -> None:
        """Declare one queue and wait for the broker's answer.

        :raises DeclareError: the broker refused it.
        """
        try:
            queue(self._declarer_channel()).declare()
        except self._declare_errors() as exc:
            self._drop_declarer()
            raise DeclareError(_declare_problem(queue.name, exc)) from exc

    def _consume(self, host: str, queue: Any) -> None:
        """Consume a declared queue."""
        assert self._conn is not None

        def deliver(message: Any) -> None:
            info = message.delivery_info
            self._received.append(
                Delivery(host, message.body, info["delivery_tag"], bool(info.get("redelivered")))
            )

        # No wait for the broker's consume-ok: a quorum queue that is still
        # electing its leader after a broker restart holds it back, and
        # messages flow once it has one. A refusal closes the channel, and the
        # connection is opened again.
        self._channel.basic_consume(
            queue=queue.name,
            consumer_tag=host,
            callback=deliver,
            no_ack=False,
            nowait=True,
            on_cancel=lambda tag: self._cancelled_by_broker(host),
        )
        self._consuming.add(host)

    def _cancelled_by_broker(self, host: str) -> None:
        """The broker dropped a consumer (its queue was deleted, or moved): consume it again."""
        self._consuming.discard(host)
        if host in self._wanted:
            LOG.warning("The broker cancelled the consumer of %s; consuming it again", host)
            self.call(lambda: self.add([host]) if host in self._wanted else None)

    def _drain(self) -> None:
        """Wait for a delivery, then take what else has already arrived, up to a batch.

        With nothing to do, the thread sleeps until the socket has data or
        another thread wakes it (up to :data:`_IDLE`, then the heartbeat is
        checked).
        """
        assert self._conn is not None
        sock = self._conn.connection.sock
        if not self._tasks and not _wire.holds_unread(self._conn):
            readable, _, _ = select.select([sock, self._waker], [], [], self._idle_wait())
            if self._waker in readable:
                self._clear_wake()
            if sock not in readable:
                return
        try:
            self._conn.drain_events(timeout=0.01 if self._tasks else _POLL)
        except TimeoutError:
            return
        while len(self._received) < BATCH and select.select([sock], [], [], 0)[0]:
            try:
                self._conn.drain_events(timeout=_MORE)
            except TimeoutError:
                return

    def _idle_wait(self) -> float:
        assert self._conn is not None
        # heartbeat_check must run several times per heartbeat interval.
        heartbeat = self._conn.connection.heartbeat or 0
        return min(_IDLE, heartbeat / 4) if heartbeat > 0 else _IDLE

    def _clear_wake(self) -> None:
        try:
            while self._waker.recv(4096):
                pass
        except OSError:  # nothing more to read
            pass

    def _flush(self) -> None:
        """Hand what arrived to the handler, then acknowledge all of it at once."""
        if not self._received:
            return
        batch, self._received = self._received, []
        try:
            self._pool._handler(batch)
        except Exception:
            LOG.exception("Handling %d message(s) failed", len(batch))
        if self._channel is not None:
            self._channel.basic_ack(max(d.tag for d in batch), multiple=True)

    def _run_tasks(self) -> None:
        with self._tasks_lock:
            tasks, self._tasks = self._tasks, []
        for task, future in tasks:
            try:
                result = task()
            except Exception as exc:
                future.set_exception(exc)
                if self._conn is not None and _is_connection_error(self._conn, exc):
                    raise  # the connection is gone: open it again
            else:
                future.set_result(result)

    def _lost(self, exc: Exception) -> None:
        LOG.warning("Listener connection %s lost: %s", self._index, exc)
        # Delivered but not handled: the broker delivers them again.
        self._received = []
        self._close()
        self._failures = 1

    def _close(self) -> None:
        conn, self._conn, self._channel, self._declarer = self._conn, None, None, None
        self._consuming.clear()
        _wire.close_quietly(conn)


def _adder(shard: _Shard, hosts: list[str]) -> Callable[[], dict[str, str]]:
    return lambda: shard.add(hosts)


def _remover(shard: _Shard, hosts: list[str]) -> Callable[[], None]:
    return lambda: shard.remove(hosts)


def _is_connection_error(conn: Connection, exc: Exception) -> bool:
    return isinstance(exc, conn.connection_errors + conn.channel_errors + (OSError,))


def _declare_problem(queue: str, exc: Exception) -> str:
    text = str(exc)
    if "inequivalent arg" in text:
        return (
            f"queue {queue} or its exchange exists with other settings ({text}); every "
            "worker and client of a broker must agree on [oslo_messaging_rabbit] "
            "rabbit_quorum_queue, amqp_durable_queues and amqp_auto_delete"
        )
    return f"queue {queue}: {text}"
