"""oslo.messaging's wire format, and the little the worker borrows from its internals.

The worker consumes its hosts' queues with a listener of its own
(:mod:`computed._server`), so it must read and write exactly what
oslo.messaging's rabbit driver puts on the wire: any oslo.messaging client
talks to it, and workers of an older release, which run oslo.messaging's own
RPC servers, share the same queues during a rolling upgrade.

This module is the only place that knows that format, and the only place
that uses oslo.messaging's private modules: the queue arguments (so queues
are declared exactly as oslo.messaging declares them) and the encoding of a
remote exception (so clients rebuild the project's exceptions). The supported
oslo.messaging range is in ``setup.cfg``; :func:`check_supported` fails with a
message naming what is missing on a release that lacks it, and the worker
calls it before it serves anything. It also checks the one py-amqp internal
the listener reads (:func:`holds_unread`): the transport's read buffer.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import ssl
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib import parse

import oslo_messaging as messaging
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from oslo_config import cfg
from oslo_serialization import jsonutils

__all__ = [
    "SUPPORTED",
    "UnsupportedLibrary",
    "check_supported",
    "register_opts",
    "sample_defaults",
    "decode",
    "problem",
    "encode",
    "reply",
    "reply_address",
    "failure",
    "exchange",
    "host_queue",
    "notification",
    "notification_queue",
    "connection",
    "rabbit_options",
    "close_quietly",
    "holds_unread",
    "MalformedMessage",
]

LOG = logging.getLogger(__name__)

#: The oslo.messaging releases whose internals below have been checked.
SUPPORTED = ">=18.0,<19"

#: oslo.messaging's envelope: {VERSION_KEY: "2.0", MESSAGE_KEY: "<json>"}.
ENVELOPE_VERSION = "2.0"
VERSION_KEY = "oslo.version"
MESSAGE_KEY = "oslo.message"

#: Longest wait, in seconds, for the broker's reply to a method, or to write.
_SYNC_TIMEOUT = 30.0

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class UnsupportedLibrary(RuntimeError):
    """The installed oslo.messaging lacks something the worker needs."""


class MalformedMessage(ValueError):
    """A message body that is not an oslo.messaging RPC message."""


def _internals() -> dict[str, Any]:
    from amqp import transport  # noqa: PLC0415
    from oslo_messaging._drivers import common, impl_rabbit  # noqa: PLC0415

    slots = getattr(transport._AbstractTransport, "__slots__", ())
    return {
        "amqp's transport _read_buffer": True if "_read_buffer" in slots else None,
        "serialize_remote_exception": getattr(common, "serialize_remote_exception", None),
        "ConfigOptsProxy": getattr(common, "ConfigOptsProxy", None),
        "_get_queue_arguments": getattr(impl_rabbit, "_get_queue_arguments", None),
        "QuorumMemConfig": getattr(impl_rabbit, "QuorumMemConfig", None),
        "rabbit_opts": getattr(impl_rabbit, "rabbit_opts", None),
        "validate_ssl_version": getattr(impl_rabbit.Connection, "validate_ssl_version", None),
    }


def check_supported() -> None:
    """Fail unless this oslo.messaging has every internal the worker relies on.

    :raises UnsupportedLibrary: naming the release, what is missing and the
        supported range.
    """
    try:
        missing = [name for name, value in _internals().items() if value is None]
    except ImportError as exc:
        missing = [f"module {exc.name}"]
    if missing:
        raise UnsupportedLibrary(
            f"oslo.messaging {_version()} lacks {', '.join(missing)}, which computed's "
            f"listener uses (supported: oslo.messaging{SUPPORTED}); install a supported "
            "release"
        )


def _version() -> str:
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("oslo.messaging")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the oslo.messaging options the listener reads, with the project's defaults."""
    from computed import rpc  # noqa: PLC0415

    rpc.set_defaults(conf)


def sample_defaults() -> None:
    """oslo-config-generator's hook (``oslo.config.opts.defaults``): the sample
    config shows the project's defaults for oslo.messaging's options."""
    from oslo_messaging._drivers import impl_rabbit  # noqa: PLC0415

    cfg.set_defaults(impl_rabbit.rabbit_opts, rabbit_quorum_queue=True)


# Messages ----------------------------------------------------------------------


def decode(body: bytes | str) -> dict[str, Any]:
    """The RPC message in ``body``, out of its envelope; see :func:`problem` next.

    :raises MalformedMessage: it is not a JSON object, saying what is wrong, briefly.
    """
    try:
        outer = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"not JSON: {_brief(exc)}") from None
    if not isinstance(outer, dict):
        raise MalformedMessage(f"not a JSON object but {type(outer).__name__}")
    if VERSION_KEY in outer and MESSAGE_KEY in outer:
        if str(outer[VERSION_KEY]).split(".")[0] != ENVELOPE_VERSION.split(".")[0]:
            raise MalformedMessage(f"unsupported envelope version {_brief(outer[VERSION_KEY])}")
        inner = outer[MESSAGE_KEY]
        if not isinstance(inner, str):
            raise MalformedMessage("the envelope's message is not a string")
        try:
            outer = json.loads(inner)
        except (ValueError, RecursionError) as exc:
            raise MalformedMessage(f"the envelope's message is not JSON: {_brief(exc)}") from None
        if not isinstance(outer, dict):
            raise MalformedMessage("the envelope's message is not a JSON object")
    return outer


#: The JSON escape of a UTF-16 surrogate; a body without one decodes to text
#: without lone surrogates.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def problem(message: dict[str, Any], max_depth: int, body: bytes | str | None = None) -> str | None:
    """Why ``message`` cannot be served (too deep, or a string that is not text), or None.

    :param body: the body ``message`` was decoded from. Every level of nesting
        opens a bracket, and a lone surrogate can only come from an escape,
        so a body with few brackets and no such escape is passed without
        walking the message.
    """
    if body is not None and _plainly_fine(body, max_depth):
        return None
    stack: list[tuple[Any, int]] = [(message, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate (not valid Unicode text)"
        elif isinstance(value, dict):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            for key, item in value.items():
                stack.append((key, depth))
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            stack.extend((item, depth + 1) for item in value)
    return None


def _plainly_fine(body: bytes | str, max_depth: int) -> bool:
    try:
        raw = body.encode("utf-8") if isinstance(body, str) else body
    except UnicodeEncodeError:  # holds a lone surrogate itself
        return False
    return raw.count(b"{") + raw.count(b"[") <= max_depth and not _SURROGATE_ESCAPE.search(raw)


_ADDRESS = {
    key: re.compile(rb'\\?"' + key.encode() + rb'\\?":\s*\\?"([A-Za-z0-9_.:-]{1,255})\\?"')
    for key in ("_msg_id", "_reply_q")
}


def reply_address(body: bytes | str) -> tuple[str, str] | None:
    """The message id and reply queue of a call, found without decoding ``body``.

    For a message too large to decode: its caller still gets an error reply.
    """
    raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
    found = [pattern.search(raw) for pattern in _ADDRESS.values()]
    if not all(found):
        return None
    msg_id, reply_q = (m.group(1).decode("ascii") for m in found if m is not None)
    return msg_id, reply_q


def encode(message: Mapping[str, Any]) -> str:
    """The body oslo.messaging would send for ``message``, in its envelope."""
    return jsonutils.dumps({VERSION_KEY: ENVELOPE_VERSION, MESSAGE_KEY: jsonutils.dumps(message)})


def reply(msg_id: str, result: Any = None, failure: str | None = None, ending: bool = True) -> str:
    """The body of a reply (or, with ``ending=False``, a call-monitor heartbeat)."""
    return encode(
        {
            "result": result,
            "failure": failure,
            "ending": ending,
            "_msg_id": msg_id,
            "_unique_id": uuid.uuid4().hex,
        }
    )


def notification(
    context: Mapping[str, Any],
    publisher_id: str,
    event_type: str,
    priority: str,
    payload: Any,
    message_id: str | None = None,
) -> str:
    """A notification as oslo.messaging's ``messaging`` (2.0) driver publishes it."""
    message: dict[str, Any] = {
        "message_id": message_id or str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": priority.upper(),
        "payload": payload,
        "timestamp": str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)),
        "_unique_id": uuid.uuid4().hex,
    }
    message.update((f"_context_{key}", value) for key, value in context.items())
    return encode(message)


def notification_queue(conf: cfg.ConfigOpts, topic: str, priority: str) -> Queue:
    """The queue a notification of ``priority`` on ``topic`` goes to, declared as
    oslo.messaging's notifier declares it (so nothing is lost before a consumer comes)."""
    rabbit = conf.oslo_messaging_rabbit
    name = f"{topic}.{priority.lower()}"
    return Queue(
        name,
        exchange=exchange(conf),
        routing_key=name,
        durable=_durable(conf),
        auto_delete=rabbit.amqp_auto_delete,
        queue_arguments=_queue_arguments(conf),
    )


def failure(exc_info: _ExcInfo) -> str:
    """An exception as oslo.messaging encodes it, so its client rebuilds it."""
    encode_failure = _internals()["serialize_remote_exception"]
    return str(encode_failure(exc_info))


# Broker entities ---------------------------------------------------------------


def _durable(conf: cfg.ConfigOpts) -> bool:
    rabbit = conf.oslo_messaging_rabbit
    return bool(rabbit.amqp_durable_queues or rabbit.rabbit_quorum_queue)


def exchange(conf: cfg.ConfigOpts) -> Exchange:
    """The topic exchange RPC messages are published to (``control_exchange``)."""
    return Exchange(
        conf.control_exchange,
        type="topic",
        durable=_durable(conf),
        auto_delete=conf.oslo_messaging_rabbit.amqp_auto_delete,
    )


def host_queue(conf: cfg.ConfigOpts, topic: str, host: str) -> Queue:
    """A host's queue, declared exactly as oslo.messaging's RPC server declares it."""
    name = f"{topic}.{host}"
    return Queue(
        name,
        exchange=exchange(conf),
        routing_key=name,
        durable=_durable(conf),
        auto_delete=conf.oslo_messaging_rabbit.amqp_auto_delete,
        queue_arguments=_queue_arguments(conf),
    )


def _queue_arguments(conf: cfg.ConfigOpts) -> dict[str, Any]:
    rabbit = conf.oslo_messaging_rabbit
    internals = _internals()
    quorum = internals["QuorumMemConfig"](
        rabbit.rabbit_quorum_delivery_limit,
        rabbit.rabbit_quorum_max_memory_length,
        rabbit.rabbit_quorum_max_memory_bytes,
    )
    arguments = internals["_get_queue_arguments"](
        rabbit.rabbit_ha_queues, 0, rabbit.rabbit_quorum_queue, quorum, False
    )
    return dict(arguments)


def connection(
    conf: cfg.ConfigOpts, url: str | None, name: str, connect_timeout: float | None = None
) -> Connection:
    """A kombu connection to the broker(s) of ``url``, set up as oslo.messaging sets its own.

    Same hosts (failing over in turn), credentials, virtual host, TLS
    options and heartbeat as oslo.messaging's connections get from the
    ``[oslo_messaging_rabbit]`` options, and from the URL's query, which
    overrides them (``?ssl=1``).

    :param connect_timeout: seconds for each host's TCP connection, TLS
        handshake and AMQP handshake (default ``broker_connect_timeout``).
    """
    parsed = messaging.TransportURL.parse(conf, url)
    rabbit = _rabbit_options(conf, parsed)
    scheme = "amqp"
    urls = [
        f"{scheme}://{parse.quote(h.username or 'guest')}:{parse.quote(h.password or 'guest')}"
        f"@{h.hostname or 'localhost'}:{h.port or 5672}/{parse.quote(parsed.virtual_host or '')}"
        for h in parsed.hosts
    ] or [f"{scheme}://guest:guest@localhost:5672/"]
    return Connection(
        ";".join(urls),
        ssl=_ssl_options(rabbit, parsed) if rabbit.ssl else False,
        login_method=rabbit.rabbit_login_method,
        heartbeat=rabbit.heartbeat_timeout_threshold,
        failover_strategy=rabbit.kombu_failover_strategy,
        connect_timeout=conf.broker_connect_timeout if connect_timeout is None else connect_timeout,
        transport_options={
            # A broker that stops answering must not hold a thread for ever
            # in a method that waits for its reply (a declaration, say).
            "read_timeout": _SYNC_TIMEOUT,
            "write_timeout": _SYNC_TIMEOUT,
            "client_properties": {
                "capabilities": {
                    "authentication_failure_close": True,
                    "connection.blocked": True,
                    "consumer_cancel_notify": True,
                },
                "connection_name": name,
            },
        },
    )


def holds_unread(conn: Connection) -> bool:
    """Whether ``conn`` holds bytes read from its socket and not yet handled.

    A ``select`` on the socket does not show them: the start of a frame that
    py-amqp read before a timeout cut it (its transport's read buffer), or
    TLS records already decrypted. A reader that waits on the socket must
    first handle these.
    """
    transport = conn.connection.transport
    if transport._read_buffer:
        return True
    sock = transport.sock
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def close_quietly(conn: Any, what: str = "a broker connection") -> None:
    """Close a connection or channel that may already be broken; failures are logged."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception as exc:
        LOG.debug("Closing %s failed: %s", what, exc)


def rabbit_options(conf: cfg.ConfigOpts, url: str | None) -> Any:
    """The ``[oslo_messaging_rabbit]`` options :func:`connection` uses for ``url``:
    the group's, overridden by the URL's query."""
    return _rabbit_options(conf, messaging.TransportURL.parse(conf, url))


def _rabbit_options(conf: cfg.ConfigOpts, parsed: messaging.TransportURL) -> Any:
    """``[oslo_messaging_rabbit]`` with the URL's query laid over it, as the rabbit driver reads it.

    :raises oslo_config.cfg.NoSuchOptError: the query names an option that
        does not exist (oslo.messaging refuses such a URL too).
    """
    proxy = _internals()["ConfigOptsProxy"](conf, parsed, "oslo_messaging_rabbit")
    return proxy.oslo_messaging_rabbit


def _ssl_options(rabbit: Any, parsed: messaging.TransportURL) -> dict[str, Any] | bool:
    """py-amqp's TLS settings, as oslo.messaging's ``_fetch_ssl_params`` makes them.

    ``True`` alone (no file named) verifies the broker's certificate
    against the system's CAs, without checking its name. With
    ``ssl_ca_file`` the certificate must be signed by that CA and name the
    host connected to: the URL's one host, or with several, the host kombu
    connects to first (it keeps that name when it fails over).
    """
    options: dict[str, Any] = {}
    if rabbit.ssl_version:
        options["ssl_version"] = _internals()["validate_ssl_version"](rabbit.ssl_version)
    if rabbit.ssl_key_file:
        options["keyfile"] = rabbit.ssl_key_file
    if rabbit.ssl_cert_file:
        options["certfile"] = rabbit.ssl_cert_file
    if rabbit.ssl_ca_file:
        options["ca_certs"] = rabbit.ssl_ca_file
        options["cert_reqs"] = ssl.CERT_REQUIRED
        # None: kombu fills in the host it connects to
        options["server_hostname"] = parsed.hosts[0].hostname if len(parsed.hosts) == 1 else None
    return options or True


def _brief(value: Any, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
