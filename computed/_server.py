"""The worker's RPC server: every owned host's queue, one listener, effect-once lifecycle.

The worker serves the compute contract for many hosts through one server:
host queues are consumed over a few connections (:mod:`computed._consumer`),
replies go out on a connection of their own (:mod:`computed._replier`), and
operations run on one thread pool. The wire format is oslo.messaging's
(:mod:`computed._wire`), so any oslo.messaging client talks to it.

What arrives is handled in batches, on the thread that read it, in this order:

1. A message larger than ``[listener] max_message_bytes`` is dropped before
   it is decoded. Everything else is decoded and checked completely (the
   envelope, the request context, the version, the method, every argument,
   the driver's support) before anything else happens: a message that fails
   is refused, with an error reply to a call, and nothing runs it, ever.
2. A message this worker has seen (by its ``_unique_id``) is dropped.
3. Each lifecycle message that passed is journaled, keyed by its id, in one
   transaction for the batch; a message whose id is already in the journal
   (a second delivery after a broker restart, or a message another worker
   journaled before it died) is dropped, since whoever journaled it runs it.
4. The whole batch is acknowledged, in one frame, and the operations start.

So a lifecycle operation runs at most once per message, a refused one never
runs, and one acknowledged but not finished when its worker dies is in the
journal for the next owner of its host to settle (see
:func:`computed.manager.reconcile`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from computed import _logcontext, _wire, exception, rpc, version
from computed._consumer import ConsumerPool, Delivery
from computed._journal import Journal, Receipt, hand_receipt, take_receipt
from computed._replier import Replier
from computed.conf import listener as listener_conf
from computed.manager import Operation, operation_of
from computed.objects import ComputedObject

__all__ = ["Server"]

LOG = logging.getLogger(__name__)

_CONTEXT_PREFIX = "_context_"
#: Context fields that name someone or something: short, and plain text.
_ID_LIMIT = 255
#: Recently seen message ids remembered per worker.
_SEEN = 16384
#: Operations waiting for a thread, per thread, before reading pauses.
_BACKLOG = 4


class _Request:
    """A message that passed every check, ready to run."""

    __slots__ = (
        "host",
        "unique_id",
        "msg_id",
        "reply_q",
        "client_timeout",
        "ctxt",
        "endpoint",
        "method",
        "operation",
        "arguments",
        "entry",
        "version",
    )

    def __init__(self, host: str, message: dict[str, Any]) -> None:
        self.host = host
        self.unique_id: str | None = message.get("_unique_id")
        self.msg_id: str | None = message.get("_msg_id")
        self.reply_q: str | None = message.get("_reply_q")
        self.client_timeout: float | None = message.get("_timeout")
        self.ctxt: Any = None
        self.endpoint: Any = None
        self.method = ""
        self.operation: Operation | None = None
        self.arguments: dict[str, Any] = {}
        self.entry: int | None = None
        #: The version the message was sent at (its result is backported to it).
        self.version = version.RPC_API_VERSION

    def instance_uuid(self) -> str | None:
        """The instance the operation acts on; None for a host-wide one or none."""
        if self.operation is None:
            return None
        return self.operation.instance_uuid(self.arguments)


class _Refused(Exception):
    """A message that is not served; ``error`` is what its caller is told."""

    def __init__(self, error: BaseException, expected: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.expected = expected


class Server:
    """Serves the contract on the queues of the hosts it is given."""

    def __init__(self, conf: cfg.ConfigOpts, name: str, url: str | None = None) -> None:
        """
        :param url: the broker's transport URL; ``[DEFAULT] transport_url`` by default.
        """
        self._conf = conf
        listener_conf.register_opts(conf)
        _wire.register_opts(conf)
        url = url or conf.transport_url
        self._options = conf.listener
        #: Where lifecycle messages are journaled on receipt; set once the registry is open.
        self.journal: Journal | None = None
        self._pool = ConsumerPool(conf, url, rpc.TOPIC, self._handle, name, self._busy)
        self._replier = Replier(conf, url, name)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._options.executor_threads, thread_name_prefix="operation"
        )
        self._serializer = rpc.RequestContextSerializer()
        self._endpoints: dict[str, list[object]] = {}
        self._running: collections.Counter[str] = collections.Counter()
        #: Operations received and not finished, over all hosts; past
        #: _BACKLOG times the threads, reading pauses (a flood waits in the broker).
        self._backlog = 0
        self._idle = threading.Condition()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._seen_lock = threading.Lock()
        self._refusals = _RefusalLog()

    @property
    def connections(self) -> int:
        """Broker connections open for consuming (replies have one more)."""
        return self._pool.connections

    @property
    def hosts(self) -> list[str]:
        return self._pool.hosts()

    def broker_connected(self) -> bool:
        """Whether every listener connection that has hosts to consume is open."""
        return self._pool.connected()

    def broker_reconnects(self) -> dict[str, int]:
        """Times the listener's and the replies' connections came back after a failure."""
        return {"listener": self._pool.reconnects, "replies": self._replier.reconnects}

    def refused(self) -> dict[str, int]:
        """Messages refused before any operation ran, by the error their sender was told."""
        return dict(self._refusals.counts)

    def start(self) -> None:
        """Check what is needed and open the reply connection.

        :raises computed.exception.ConfigError: this oslo.messaging is not supported.
        :raises computed.exception.BrokerUnavailable: the broker does not answer in time.
        """
        try:
            _wire.check_supported()
        except _wire.UnsupportedLibrary as exc:
            raise exception.ConfigError(reason=str(exc)) from None
        self._replier.start()

    def serve(self, endpoints: Mapping[str, list[object]], timeout: float = 30.0) -> list[str]:
        """Consume the queues of these hosts, served by these endpoints.

        :returns: the hosts now served (a host whose queue cannot be declared
            is logged and left out).
        """
        self._endpoints.update(endpoints)
        errors = self._pool.add(list(endpoints), timeout)
        for host, reason in errors.items():
            LOG.error("Cannot serve %s: %s", host, reason)
            self._endpoints.pop(host, None)
        return [host for host in endpoints if host not in errors]

    def release(self, hosts: list[str], timeout: float = 30.0) -> None:
        """Stop consuming these hosts' queues; what remains queued waits for their next owner.

        Operations already received keep running: :meth:`wait_idle` waits for them.
        """
        self._pool.remove(hosts, timeout)

    def wait_idle(self, hosts: list[str], timeout: float | None) -> bool:
        """Wait until no operation of these hosts runs; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while any(self._running[h] for h in hosts):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        for host in hosts:
            if host not in self._pool.hosts():
                self._endpoints.pop(host, None)
        return True

    def stop(self, timeout: float) -> bool:
        """Stop consuming, let running operations finish within ``timeout``, close."""
        hosts = self.hosts
        self._pool.remove(hosts, min(timeout, 30.0))
        drained = self.wait_idle(list(self._running), timeout)
        self._executor.shutdown(wait=drained)
        self._pool.stop()
        self._replier.stop()
        return drained

    # On a listener connection's thread ----------------------------------------------

    def _busy(self) -> bool:
        return self._backlog >= _BACKLOG * int(self._options.executor_threads)

    def _handle(self, batch: list[Delivery]) -> None:
        requests: list[_Request] = []
        for delivery in batch:
            request = self._prepare(delivery)
            if request is not None:
                requests.append(request)
        requests = self._journaled(requests)
        for request in requests:
            with self._idle:
                self._running[request.host] += 1
                self._backlog += 1
            self._executor.submit(self._run, request)

    def _prepare(self, delivery: Delivery) -> _Request | None:
        """The request in ``delivery``, or None if it is refused or a duplicate."""
        host = delivery.host
        limit = self._options.max_message_bytes
        if len(delivery.body) > limit:
            error = exception.InvalidRequest(
                operation="message",
                reason=f"{len(delivery.body)} bytes is over the worker's limit of {limit} "
                "([listener] max_message_bytes)",
            )
            self._refusals.log(host, str(error), "InvalidRequest")
            address = _wire.reply_address(delivery.body)
            if address is not None:
                msg_id, reply_q = address
                failure = _wire.failure((type(error), error, None))
                self._replier.send(reply_q, _wire.reply(msg_id, failure=failure))
            return None
        try:
            message = _wire.decode(delivery.body)
        except _wire.MalformedMessage as exc:
            self._refusals.log(host, f"a malformed message: {exc}", "MalformedMessage")
            return None
        fields, problem = _envelope(message)
        request = _Request(host, fields)
        try:
            if problem is not None:
                raise _Refused(exception.InvalidRequest(operation="envelope", reason=problem))
            problem = _wire.problem(message, self._options.max_depth, delivery.body)
            if problem is not None:
                raise _Refused(
                    exception.InvalidRequest(
                        operation=_brief(message.get("method")), reason=problem
                    )
                )
            if request.unique_id is not None and self._seen_before(request.unique_id):
                LOG.info(
                    "Dropped a second delivery of message %s (%s, request %s)",
                    request.unique_id,
                    _brief(message.get("method")),
                    _brief(message.get("_context_request_id")),
                )
                return None
            self._bind(request, message)
        except _Refused as refused:
            self._refuse(request, message, refused)
            return None
        except Exception as exc:  # a check that failed unexpectedly: still a refusal
            LOG.debug("Checking a message failed", exc_info=True)
            error = exception.InvalidRequest(
                operation=_brief(message.get("method")),
                reason=f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}",
            )
            self._refuse(request, message, _Refused(error))
            return None
        return request

    def _bind(self, request: _Request, message: dict[str, Any]) -> None:
        """Find the operation, and check the context and the arguments; or refuse."""
        endpoints = self._endpoints.get(request.host)
        if endpoints is None:
            raise _Refused(exception.HostUnavailable(host=request.host, reason="not served here"))
        method = message.get("method")
        args = message.get("args", {})
        if not isinstance(method, str) or not isinstance(args, dict):
            raise _Refused(
                exception.InvalidRequest(
                    operation=_brief(method), reason="'method' must be a string, 'args' an object"
                )
            )
        request.method = method
        request.endpoint = _endpoint(endpoints, method, message)
        request.version = str(message.get("version", "1.0"))
        request.operation = operation_of(request.endpoint, method)
        try:
            request.ctxt = self._context(message)
            arguments = {
                name: self._serializer.deserialize_entity(request.ctxt, value)
                for name, value in args.items()
            }
            if request.operation is not None:
                arguments = request.operation.validate(
                    request.endpoint, request.ctxt, (), arguments
                )
        except exception.ComputedError as exc:
            raise _Refused(exc, exc.expected) from None
        request.arguments = arguments

    def _context(self, message: dict[str, Any]) -> Any:
        values = {
            key[len(_CONTEXT_PREFIX) :]: value
            for key, value in message.items()
            if key.startswith(_CONTEXT_PREFIX)
        }
        for key, value in values.items():
            if isinstance(value, str) and (
                not value.isprintable() or (key.endswith("_id") and len(value) > _ID_LIMIT)
            ):
                raise exception.InvalidRequest(
                    operation="context",
                    reason=f"request context field {key[:40]!r} must be printable text"
                    + (f" of at most {_ID_LIMIT} characters" if key.endswith("_id") else ""),
                )
        return self._serializer.deserialize_context(values)

    def _journaled(self, requests: list[_Request]) -> list[_Request]:
        """Journal the lifecycle requests; drop those already journaled (delivered before)."""
        lifecycle = [
            r for r in requests if r.operation is not None and r.operation.lifecycle and r.unique_id
        ]
        if self.journal is None or not lifecycle:
            return requests
        receipts = []
        for r in lifecycle:
            assert r.operation is not None and r.unique_id is not None
            uuid = r.instance_uuid() or ""
            receipts.append(
                Receipt(r.host, r.method, uuid, r.ctxt.to_dict(), r.arguments, r.unique_id)
            )
        entries = self.journal.receive(receipts)
        if entries is None:
            return requests  # the journal is unavailable: run them unprotected (logged)
        duplicates = set()
        for request, entry in zip(lifecycle, entries, strict=True):
            if entry is None:
                duplicates.add(id(request))
                LOG.info(
                    "Dropped message %s (%s on %s, request %s): it was journaled before, "
                    "so it is already settled or being settled",
                    request.unique_id,
                    request.method,
                    request.host,
                    getattr(request.ctxt, "request_id", None),
                )
            request.entry = entry
        return [r for r in requests if id(r) not in duplicates]

    def _seen_before(self, unique_id: str) -> bool:
        with self._seen_lock:
            seen = self._seen
            if unique_id in seen:
                return True
            seen[unique_id] = None
            if len(seen) > _SEEN:
                seen.popitem(last=False)
            return False

    def _refuse(self, request: _Request, message: dict[str, Any], refused: _Refused) -> None:
        method = message.get("method")
        self._refusals.log(
            request.host,
            f"{str(method)[:64] if method else 'a message'}: {refused.error}",
            type(refused.error).__name__,
        )
        if request.reply_q and request.msg_id:
            failure = _wire.failure((type(refused.error), refused.error, None))
            self._replier.send(request.reply_q, _wire.reply(request.msg_id, failure=failure))

    # On an operation thread ---------------------------------------------------------------

    def _run(self, request: _Request) -> None:
        try:
            with _logcontext.serving(request.ctxt, request.host, request.instance_uuid()):
                self._serve(request)
        finally:
            with self._idle:
                self._backlog -= 1
                self._running[request.host] -= 1
                if not self._running[request.host]:
                    del self._running[request.host]
                    self._idle.notify_all()

    def _serve(self, request: _Request) -> None:
        watch = None
        if request.reply_q and request.msg_id and request.client_timeout:
            watch = self._replier.watch(request.reply_q, request.msg_id, request.client_timeout)
        try:
            result, failure = self._execute(request)
            if watch is not None:
                self._replier.unwatch(watch)
            if request.reply_q and request.msg_id:
                self._reply(request, result, failure)
        except Exception:
            LOG.exception("Serving %s on %s failed", request.method, request.host)

    def _execute(self, request: _Request) -> tuple[Any, Any]:
        hand_receipt(request.entry, request.unique_id)
        try:
            if request.operation is not None:
                result = request.operation.execute(
                    request.endpoint, request.ctxt, request.arguments
                )
            else:
                result = getattr(request.endpoint, request.method)(
                    request.ctxt, **request.arguments
                )
            return result, None
        except exception.ComputedError as exc:
            if exc.expected:
                LOG.info("%s on %s refused: %s", request.method, request.host, exc)
            else:
                LOG.error("%s on %s failed: %s", request.method, request.host, exc)
            return None, sys.exc_info()
        except Exception:
            LOG.exception("%s on %s failed", request.method, request.host)
            return None, sys.exc_info()
        finally:
            unused = take_receipt()
            if unused is not None and self.journal is not None:
                self.journal.finish(unused.entry)  # it never reached an operation

    def _reply(self, request: _Request, result: Any, failure: Any) -> None:
        assert request.reply_q is not None and request.msg_id is not None
        if failure is not None:
            body = _wire.reply(request.msg_id, failure=_wire.failure(failure))
        else:
            if isinstance(result, ComputedObject) and request.version != version.RPC_API_VERSION:
                # A caller at an older version knows the object only as it was then.
                target = version.object_versions_at(request.version).get(result.obj_name())
                primitive = result.obj_to_primitive(target_version=target)
            else:
                primitive = self._serializer.serialize_entity(request.ctxt, result)
            body = _wire.reply(request.msg_id, result=primitive)
        self._replier.send(request.reply_q, body)


def _envelope(message: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The envelope fields of ``message`` (None where malformed), and what is malformed."""
    fields: dict[str, Any] = {}
    problem = None
    for key in ("_unique_id", "_msg_id", "_reply_q"):
        value = message.get(key)
        if value is None or (
            isinstance(value, str)
            and 0 < len(value) <= _ID_LIMIT
            and value.isascii()
            and value.isprintable()
        ):
            fields[key] = value
        else:
            fields[key] = None
            problem = problem or f"{key} must be 1 to {_ID_LIMIT} printable ASCII characters"
    timeout = message.get("_timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        timeout = None
        problem = problem or "_timeout must be a positive number"
    fields["_timeout"] = timeout
    return fields, problem


def _endpoint(endpoints: list[object], method: str, message: dict[str, Any]) -> object:
    """The endpoint serving ``method`` at the message's version, as oslo.messaging picks it."""
    wanted = message.get("version", "1.0")
    namespace = message.get("namespace")
    try:
        major, minor = version.parse(str(wanted))
    except ValueError:
        raise _Refused(messaging.UnsupportedVersion(str(wanted)[:16], method=method)) from None
    compatible = False
    for endpoint in endpoints:
        target = getattr(endpoint, "target", None) or messaging.Target()
        if namespace not in target.accepted_namespaces:
            continue
        have_major, have_minor = version.parse(target.version or "1.0")
        if have_major != major or have_minor < minor:
            continue
        compatible = True
        if (
            not method.startswith("_")
            and method != "target"
            and callable(getattr(endpoint, method, None))
        ):
            return endpoint
    error: Exception = (
        messaging.NoSuchMethod(method)
        if compatible
        else messaging.UnsupportedVersion(wanted, method=method)
    )
    raise _Refused(error)


def _brief(value: Any) -> str:
    return str(value)[:64] if isinstance(value, str) else "message"


class _RefusalLog:
    """One log line per refused message, at most ten every ten seconds, then a count;
    and how many were refused, by the error their sender was told."""

    _WINDOW = 10.0
    _LINES = 10

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = 0.0
        self._lines = 0
        self._quiet = 0
        #: Messages refused since the worker started, by error class.
        self.counts: collections.Counter[str] = collections.Counter()

    def log(self, host: str, what: str, error: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[error] += 1
            if now - self._start > self._WINDOW:
                if self._quiet:
                    LOG.warning(
                        "... and %d more message(s) refused without a log line", self._quiet
                    )
                self._start, self._lines, self._quiet = now, 0, 0
            if self._lines >= self._LINES:
                self._quiet += 1
                return
            self._lines += 1
        LOG.warning("Refused on %s: %.300s", host, what)
