"""Replies to calls, on a connection of their own, without holding a thread to retry.

oslo.messaging's server retries a reply whose reply queue does not exist for
60 seconds on the thread that ran the call, waiting for a publisher
confirmation each time: a burst of calls naming reply queues that do not
exist holds its whole thread pool, and valid calls time out behind them.

Here the thread that ran a call publishes its reply (``mandatory``, so the
broker returns a reply it cannot route) and goes back to work. A returned
reply is kept, not a thread: a maintenance thread publishes it again every
half second until ``[listener] reply_retry_timeout`` (the caller may be
reconnecting after a broker restart, and declares its reply queue again),
and drops it after that. The same thread sends the call-monitor heartbeats
of long calls (oslo.messaging starts a thread per call for them), keeps the
connection's own heartbeat, and reconnects when the broker comes back;
replies sent while it is away wait with the returned ones.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from typing import Any

import amqp
from oslo_config import cfg

from computed import _wire, rpc

__all__ = ["Replier"]

LOG = logging.getLogger(__name__)

_TICK = 0.2
_RETRY_EVERY = 0.5


class _Pending:
    __slots__ = ("reply_q", "body", "deadline", "due")

    def __init__(self, reply_q: str, body: str, deadline: float) -> None:
        self.reply_q = reply_q
        self.body = body
        self.deadline = deadline
        self.due = time.monotonic() + _RETRY_EVERY


class Replier:
    """Publishes replies and call-monitor heartbeats for one worker."""

    def __init__(self, conf: cfg.ConfigOpts, url: str | None, name: str) -> None:
        self._conf = conf
        self._url = url
        self._name = f"{name}:replies"
        self._lock = threading.Lock()
        self._conn: Any = None
        self._channel: Any = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._deadlines: dict[tuple[str, str], float] = {}
        self._watches: list[tuple[float, int, str, str, float]] = []
        self._watching: set[int] = set()
        self._ids = itertools.count()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replies", daemon=True)
        self.dropped = 0
        #: Times the connection opened again after it was lost.
        self.reconnects = 0

    def start(self) -> None:
        """Connect, within ``broker_connect_timeout``.

        :raises computed.exception.BrokerUnavailable: naming the broker and the cause.
        """
        try:
            self._connect()
        except Exception as exc:
            raise rpc.broker_unavailable(self._conf, self._url, exc) from exc
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            self._close()

    def send(self, reply_q: str, body: str) -> None:
        """Publish a reply now, or keep it for a retry if the broker is away."""
        with self._lock:
            if self._channel is not None:
                try:
                    self._publish(reply_q, body)
                    return
                except Exception as exc:
                    LOG.warning("Sending a reply failed, will retry: %s", exc)
                    self._close()
            self._keep(reply_q, body)

    def watch(self, reply_q: str, msg_id: str, client_timeout: float) -> int:
        """Send call-monitor heartbeats for a running call until :meth:`unwatch`."""
        interval = max(1.0, client_timeout / 2)
        token = next(self._ids)
        with self._lock:
            self._watching.add(token)
            heapq.heappush(
                self._watches, (time.monotonic() + interval, token, reply_q, msg_id, interval)
            )
        return token

    def unwatch(self, token: int) -> None:
        with self._lock:
            self._watching.discard(token)

    # The maintenance thread -------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.wait(_TICK):
            try:
                with self._lock:
                    if self._channel is None:
                        self._connect()
                        self.reconnects += 1
                        if failures:
                            LOG.info("Reply connection is back")
                        failures = 0
                    self._read()
                    self._heartbeats()
                    self._retry()
                    self._conn.heartbeat_check()
            except Exception as exc:
                failures += 1
                if failures in (1, 10):
                    LOG.warning("Reply connection to the broker failed (%d): %s", failures, exc)
                with self._lock:
                    self._close()
                self._stopping.wait(min(4.0, 0.5 * failures))

    def _read(self) -> None:
        """Read what the broker sent: returned replies, its heartbeats."""
        while True:
            try:
                self._conn.drain_events(timeout=0.0002)
            except TimeoutError:
                return

    def _heartbeats(self) -> None:
        now = time.monotonic()
        while self._watches and self._watches[0][0] <= now:
            _, token, reply_q, msg_id, interval = heapq.heappop(self._watches)
            if token not in self._watching:
                continue
            self._publish(reply_q, _wire.reply(msg_id, ending=False))
            heapq.heappush(self._watches, (now + interval, token, reply_q, msg_id, interval))

    def _retry(self) -> None:
        now = time.monotonic()
        expired = 0
        for _ in range(len(self._pending)):
            pending = self._pending.popleft()
            if pending.deadline <= now:
                expired += 1
                self._deadlines.pop((pending.reply_q, pending.body), None)
            elif pending.due > now:
                self._pending.append(pending)
            else:
                self._publish(pending.reply_q, pending.body)
        for key, deadline in list(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[key]
        if expired:
            self.dropped += expired
            LOG.warning(
                "Dropped %d repl%s whose reply queue did not appear within %s s",
                expired,
                "y" if expired == 1 else "ies",
                self._conf.listener.reply_retry_timeout,
            )

    # With the lock held ---------------------------------------------------------------

    def _connect(self) -> None:
        conn = _wire.connection(self._conf, self._url, self._name)
        try:
            conn.connect()
            channel = conn.channel()
            channel.events["basic_return"].add(self._returned)
        except Exception:
            conn.close()
            raise
        self._conn, self._channel = conn, channel

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        _wire.close_quietly(conn, "the reply connection")

    def _publish(self, reply_q: str, body: str) -> None:
        message = amqp.Message(body, content_type="application/json", content_encoding="utf-8")
        self._channel.basic_publish(message, exchange="", routing_key=reply_q, mandatory=True)

    def _returned(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        body = message.body
        self._keep(routing_key, body.decode("utf-8") if isinstance(body, bytes) else body)

    def _keep(self, reply_q: str, body: str) -> None:
        now = time.monotonic()
        key = (reply_q, body)
        deadline = self._deadlines.setdefault(key, now + self._conf.listener.reply_retry_timeout)
        if deadline <= now:
            self._deadlines.pop(key, None)
            self.dropped += 1
            LOG.info("Dropped a reply: reply queue %.80s did not appear in time", reply_q)
            return
        if len(self._pending) >= self._conf.listener.max_pending_replies:
            oldest = self._pending.popleft()
            self._deadlines.pop((oldest.reply_q, oldest.body), None)
            self.dropped += 1
        self._pending.append(_Pending(reply_q, body, deadline))
