"""One libvirt connection per served host, re-opened when it drops.

libvirt delivers domain events, keepalive probes and the news that a
connection closed only through an event loop. The process gets one
(:func:`start_event_loop`): libvirt's default implementation, run by a daemon
thread. It must be registered before the first connection is opened.

A :class:`HostConnection` opens its connection lazily, registers a close
callback and a lifecycle-event callback on it, and hands it out until it
drops (libvirtd restarted, network gone, keepalive timed out): the next
:meth:`HostConnection.get` then opens a fresh one. One told to
:meth:`~HostConnection.keep_open` does so by itself, retrying with a
growing delay, so that events keep coming when no call comes to reopen it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import libvirt

from computed import exception
from drivers.libvirt import constants, errors

__all__ = ["HostConnection", "LifecycleEvent", "redact", "start_event_loop"]

LOG = logging.getLogger(__name__)

#: Seconds between keepalive probes, and how many may go unanswered before
#: libvirt closes a remote connection as dead.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

#: Seconds before the first and between the last attempts to reopen a dropped
#: connection kept open (the delay doubles from one to the other).
REOPEN_FIRST_DELAY = 1.0
REOPEN_MAX_DELAY = 30.0

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


@dataclass(frozen=True)
class LifecycleEvent:
    """A domain lifecycle event, as the driver hands it to its listeners.

    ``power_state`` is the state the event usually leads to, or None when the
    event says nothing about it; it is a hint, ``get_info`` has the truth.
    """

    host: str
    uuid: str
    domain: str
    event: str
    detail: int
    power_state: str | None


EventListener = Callable[[LifecycleEvent], None]


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once)."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        # Without a handler libvirt prints every error on stderr, even those
        # the driver expects and handles (a missing domain on destroy...).
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True)
        _loop_thread.start()


def _ignore_error(_ctx: Any, _error: Any) -> None:
    """The errors reach the caller as exceptions; nothing else to do."""


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # keep delivering events whatever one callback did
            LOG.exception("libvirt event loop iteration failed")


def redact(uri: str) -> str:
    """``uri`` without a password, fit for logs and error messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class HostConnection:
    """The connection to the libvirtd behind one compute host.

    :param host: the compute host name.
    :param uri: the libvirt URI to open.
    :param on_event: called with every lifecycle event of the host's domains,
        in the event loop's thread: it must return quickly.
    """

    def __init__(self, host: str, uri: str, on_event: EventListener) -> None:
        self.host = host
        self.uri = uri
        self._on_event = on_event
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._event_id: int | None = None
        self._generation = 0
        self._dropped = False
        self._on_reopen: Callable[[libvirt.virConnect], None] | None = None
        self._closing = threading.Event()
        self._reopening = threading.Lock()

    def get(self) -> libvirt.virConnect:
        """The open connection, opened (again) if it is missing or dropped.

        :raises computed.exception.DriverError: if libvirtd cannot be reached.
        """
        with self._lock:
            conn = self._conn
            if conn is not None and not self._dropped and conn.isAlive():
                return conn
            if conn is not None:
                LOG.warning(
                    "Connection of host %s to %s dropped; reconnecting", self.host, redact(self.uri)
                )
                self._close_locked()
            return self._open_locked()

    def invalidate(self, conn: libvirt.virConnect) -> None:
        """Forget ``conn`` (a call on it failed as if it were dead): reconnect next time."""
        with self._lock:
            if conn is self._conn:
                self._dropped = True

    def keep_open(self, on_reopen: Callable[[libvirt.virConnect], None]) -> None:
        """Reopen the connection by itself whenever it drops, until :meth:`close`;
        then call ``on_reopen`` with the new connection (what changed meanwhile
        came with no event)."""
        self._on_reopen = on_reopen
        self._closing.clear()

    def close(self) -> None:
        """Close the connection, if open; a later :meth:`get` opens a new one."""
        self._closing.set()
        with self._lock:
            self._close_locked()

    # ------------------------------------------------------------------

    def _open_locked(self) -> libvirt.virConnect:
        start_event_loop()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise exception.DriverError(
                driver=errors.DRIVER,
                host=self.host,
                reason=f"cannot connect to {redact(self.uri)}: {exc.get_error_message()}",
                error_code=errors.code_of(exc),
                detail=exc.get_error_message() or str(exc),
            ) from exc
        self._generation += 1
        generation = self._generation
        self._conn, self._dropped = conn, False
        try:
            conn.registerCloseCallback(
                lambda _conn, reason, _opaque: self._closed(generation, reason), None
            )
        except libvirt.libvirtError as exc:
            # Then a drop shows as a failed call, which reconnects as well.
            LOG.debug("No close callback on %s: %s", redact(self.uri), exc)
        self._event_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
        )
        with contextlib.suppress(libvirt.libvirtError):
            # Remote connections only; a local test:/// one has nothing to probe.
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        LOG.info("Host %s connected to %s", self.host, redact(self.uri))
        return conn

    def _close_locked(self) -> None:
        conn, self._conn = self._conn, None
        event_id, self._event_id = self._event_id, None
        self._generation += 1  # a late close callback of the old one changes nothing
        if conn is None:
            return
        # On a dead connection each of these fails at once; that is fine.
        if event_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(event_id)
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    def _closed(self, generation: int, reason: int) -> None:
        # Runs in the event loop thread, maybe while get() holds the lock
        # closing this very connection: flag it, take no lock.
        if generation == self._generation:
            self._dropped = True
            LOG.warning(
                "Connection of host %s to %s closed (reason %d)",
                self.host,
                redact(self.uri),
                reason,
            )
            if self._on_reopen is not None and self._reopening.acquire(blocking=False):
                threading.Thread(
                    target=self._reopen, name=f"libvirt-reopen-{self.host}", daemon=True
                ).start()

    def _reopen(self) -> None:
        """Open the dropped connection again, retrying until it opens or :meth:`close`."""
        try:
            delay = REOPEN_FIRST_DELAY
            while not self._closing.wait(delay):
                try:
                    conn = self.get()
                except exception.DriverError as exc:
                    LOG.info("Host %s still unreachable: %s", self.host, exc)
                    delay = min(delay * 2, REOPEN_MAX_DELAY)
                    continue
                on_reopen = self._on_reopen
                if on_reopen is not None:
                    on_reopen(conn)
                return
        finally:
            self._reopening.release()

    def _lifecycle(
        self,
        _conn: libvirt.virConnect,
        dom: libvirt.virDomain,
        event: int,
        detail: int,
        _opaque: Any,
    ) -> None:
        record = LifecycleEvent(
            host=self.host,
            uuid=dom.UUIDString(),
            domain=dom.name(),
            event=constants.event_name(event),
            detail=detail,
            power_state=constants.event_power_state(event, detail),
        )
        LOG.info(
            "Host %s: domain %s (%s) %s, detail %d",
            self.host,
            record.domain,
            record.uuid,
            record.event,
            detail,
        )
        self._on_event(record)
