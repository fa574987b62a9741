"""One logged-in ``XenAPI.Session`` per pool, shared by the hosts it serves.

The ``XenAPI`` client logs in again by itself when xapi answers
``SESSION_INVALID`` (an expired session, or a restarted pool master), and
``xmlrpc.client`` reconnects a keep-alive connection the server closed. What
this wrapper adds:

* bounded waits: a transport whose sockets time out after ``connect_timeout``
  (TCP connect and TLS handshake) and ``call_timeout`` (each reply), so an
  unreachable pool fails an operation instead of hanging a worker thread;
* a lock: an ``xmlrpc.client`` proxy holds one connection and is not
  thread-safe, so each request holds the pool's lock; long VM operations run
  as xapi tasks (:meth:`PoolSession.run_task`) and release it while polling;
* transport errors become :class:`~drivers.xenapi.errors.PoolUnavailable`
  naming the pool and its URL; the connection is dropped so the next call
  starts afresh, and the password appears in no message and no log line.
"""

from __future__ import annotations

import functools
import http.client
import logging
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xml.parsers.expat import ExpatError

import XenAPI

from drivers.xenapi import errors
from drivers.xenapi.conf import PoolConfig, display_url

__all__ = ["PoolSession"]

LOG = logging.getLogger(__name__)

#: Sent with the login, as the API version and the originator xapi records.
_API_VERSION = "2.0"
_ORIGINATOR = "computed"

#: Seconds between two looks at a running task: short at first, then longer.
_POLL_FIRST = 0.02
_POLL_MAX = 0.5

# What a broken connection, a timeout or a reply that is not xapi's raise out of
# the client. (The client hits a TypeError on a reply lacking 'Status'.)
_TRANSPORT_ERRORS = (
    OSError,
    http.client.HTTPException,
    xmlrpc.client.ProtocolError,
    xmlrpc.client.Fault,
    ExpatError,
    TypeError,
)


class _Timeouts:
    """Connect (and handshake) within one timeout, then wait for replies with another."""

    connect_timeout: float
    call_timeout: float
    timeout: float | None
    sock: Any

    def connect(self) -> None:
        self.timeout = self.connect_timeout
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.call_timeout)


class _HTTPConnection(_Timeouts, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Timeouts, http.client.HTTPSConnection):
    pass


class _Transport(xmlrpc.client.Transport):
    """xmlrpc.client's keep-alive transport, http or https, with socket timeouts."""

    def __init__(
        self, connect_timeout: float, call_timeout: float, context: ssl.SSLContext | None
    ) -> None:
        super().__init__()
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._context = context

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        cached = self._connection[1]
        if cached is not None and host == self._connection[0]:
            return cached
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        conn: _HTTPConnection | _HTTPSConnection
        if self._context is None:
            conn = _HTTPConnection(chost)
        else:
            conn = _HTTPSConnection(chost, context=self._context)
        conn.connect_timeout = self._connect_timeout
        conn.call_timeout = self._call_timeout
        self._connection = host, conn
        return conn

    def interrupt(self) -> None:
        """Cut the connection under a request in progress, from another thread."""
        conn = self._connection[1]
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already


def _ssl_context(config: PoolConfig) -> ssl.SSLContext | None:
    if not config.url.lower().startswith("https:"):
        return None
    if config.ignore_ssl:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=config.ca_file)


class PoolSession:
    """The driver's session with one pool; every method is thread-safe.

    Nothing is sent until the first call, which logs in.
    """

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.url = display_url(config.url)
        self._lock = threading.Lock()
        self._client: Any = None
        self._transport: _Transport | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def call(self, method: str, *args: Any) -> Any:
        """Send the xapi message ``method`` (e.g. ``"VM.get_record"``); return its value.

        :raises XenAPI.Failure: what xapi answered, if not success.
        :raises drivers.xenapi.errors.PoolUnavailable: if the pool could not be
            reached, timed out, or answered something that is not xapi.
        """
        with self._lock:
            client = self._client or self._login()
            LOG.debug("pool %s: %s", self.name, method)
            try:
                return functools.reduce(getattr, method.split("."), client.xenapi)(*args)
            except XenAPI.Failure:
                raise
            except _TRANSPORT_ERRORS as exc:
                self._drop_connection()
                raise self._unavailable(method, exc) from exc

    def run_task(
        self,
        method: str,
        *args: Any,
        progress: Callable[[float], None] | None = None,
        started: Callable[[str], None] | None = None,
    ) -> Any:
        """Run ``method`` as an xapi task (``Async.<method>``) and return its result.

        The pool's lock is held only for each request, not while the task runs.
        A task still running after ``[xenapi] task_timeout`` is cancelled.

        :param progress: called with the task's ``progress`` (0.0 to 1.0) each
            time it is seen to advance.
        :param started: called with the task's ref once xapi made it (so that
            another thread can ``task.cancel`` it).
        :raises XenAPI.Failure: the task's error, as if the call had failed.
        """
        task = self.call(f"Async.{method}", *args)
        try:
            if started is not None:
                started(str(task))
            return self._wait(method, task, progress)
        finally:
            try:
                self.call("task.destroy", task)
            except (XenAPI.Failure, errors.PoolUnavailable) as exc:
                LOG.debug("pool %s: could not destroy task of %s: %s", self.name, method, exc)

    @property
    def ref(self) -> str:
        """The session's own reference (logging in first if need be): a secret, as
        good as the password while the session lives."""
        with self._lock:
            client = self._client or self._login()
            return str(client._session)

    def interrupt(self) -> None:
        """Cut the connection under a request in progress (:meth:`call` in another
        thread then raises PoolUnavailable); the next request reconnects."""
        transport = self._transport
        if transport is not None:
            transport.interrupt()

    def close(self) -> None:
        """Log out (best effort) and close the connection."""
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                try:
                    client.logout()
                except (XenAPI.Failure, *_TRANSPORT_ERRORS) as exc:
                    LOG.debug("pool %s: logout failed: %s", self.name, exc)
            self._drop_connection()

    # ----------------------------------------------------------------------

    def _login(self) -> Any:
        """A new client, logged in. Called with the lock held."""
        config = self.config
        transport = _Transport(config.connect_timeout, config.call_timeout, _ssl_context(config))
        client = XenAPI.Session(config.url, transport=transport)
        LOG.debug("pool %s: logging in to %s as %s", self.name, self.url, config.username)
        try:
            client.login_with_password(config.username, config.password, _API_VERSION, _ORIGINATOR)
        except XenAPI.Failure:
            transport.close()
            raise
        except _TRANSPORT_ERRORS as exc:
            transport.close()
            raise self._unavailable("login", exc) from exc
        LOG.info("Logged in to pool %s at %s as %s", self.name, self.url, config.username)
        self._client, self._transport = client, transport
        return client

    def _drop_connection(self) -> None:
        # The client and its xapi session stay: the next request reconnects,
        # and the client logs in again if the pool forgot the session.
        if self._transport is not None:
            self._transport.close()

    def _wait(self, method: str, task: str, progress: Callable[[float], None] | None) -> Any:
        deadline = time.monotonic() + self.config.task_timeout
        delay = _POLL_FIRST
        done = 0.0
        while True:
            record = self.call("task.get_record", task)
            status = record["status"]
            if progress is not None and float(record["progress"]) > done:
                done = float(record["progress"])
                progress(done)
            if status == "success":
                return _decode_result(record["result"])
            if status in ("failure", "cancelled"):
                raise XenAPI.Failure(record["error_info"] or ["TASK_CANCELLED", task])
            if time.monotonic() >= deadline:
                self._cancel(method, task)
                raise errors.PoolUnavailable(
                    f"pool {self.name}: {method} did not finish within "
                    f"{self.config.task_timeout:g} s; task cancelled",
                    code="TASK_TIMEOUT",
                )
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def _cancel(self, method: str, task: str) -> None:
        try:
            self.call("task.cancel", task)
        except (XenAPI.Failure, errors.PoolUnavailable) as exc:
            LOG.warning("pool %s: could not cancel the task of %s: %s", self.name, method, exc)

    def _unavailable(self, method: str, exc: BaseException) -> errors.PoolUnavailable:
        if isinstance(exc, TimeoutError):
            reason = (
                f"pool {self.name} at {self.url} did not answer {method} within "
                f"{self.config.call_timeout:g} s (connect {self.config.connect_timeout:g} s)"
            )
            code = "POOL_TIMEOUT"
        else:
            reason = f"cannot reach pool {self.name} at {self.url} ({method}): {_describe(exc)}"
            code = "POOL_UNREACHABLE"
        return errors.PoolUnavailable(self._scrub(reason), code=code)

    def _scrub(self, text: str) -> str:
        password = self.config.password
        return text.replace(password, "***") if password else text


def _describe(exc: BaseException) -> str:
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return f"HTTP {exc.errcode} {exc.errmsg}"
    if isinstance(exc, xmlrpc.client.Fault):
        return f"XML-RPC fault {exc.faultCode}: {exc.faultString}"
    if isinstance(exc, (ExpatError, TypeError)):
        return "the reply is not an xapi reply"
    return f"{type(exc).__name__}: {exc}"


def _decode_result(result: str) -> Any:
    """A task's ``result``: the XML-RPC ``<value>`` of what the call returned."""
    if not result or not result.strip():
        return ""
    body = f"<methodResponse><params><param>{result}</param></params></methodResponse>"
    return xmlrpc.client.loads(body)[0][0]
