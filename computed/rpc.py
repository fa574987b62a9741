"""oslo.messaging plumbing shared by the worker and the client.

Transports, clients, servers and notifiers are built here through
oslo.messaging's factories, with the project's serializer (versioned objects
plus request contexts) and the allow-list of remote exception modules.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_messaging import opts as messaging_opts

from computed import _logcontext, _wire, exception
from computed.objects import ComputedObjectSerializer

__all__ = [
    "TOPIC",
    "ALLOWED_EXMODS",
    "RequestContextSerializer",
    "get_transport",
    "set_defaults",
    "get_notification_transport",
    "check_broker",
    "broker_unavailable",
    "safe_url",
]

LOG = logging.getLogger(__name__)

#: The RPC topic; each host is a server name on it.
TOPIC = "compute"

#: Remote exceptions from these modules are rebuilt as their own classes.
ALLOWED_EXMODS = [exception.__name__]


class RequestContextSerializer(messaging.Serializer):  # type: ignore[misc]
    """Carries oslo.context request contexts and the project's versioned objects.

    A payload that claims to be a versioned object but cannot be rebuilt
    (unknown class, corrupt data, too new a version) becomes InvalidRequest,
    so the sender learns what was wrong with its message.
    """

    def __init__(self) -> None:
        self._objects = ComputedObjectSerializer()

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return self._objects.serialize_entity(ctxt, entity)

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        try:
            return self._objects.deserialize_entity(ctxt, entity)
        except Exception as exc:
            raise exception.InvalidRequest(
                operation="deserialize", reason=f"malformed versioned object: {exc}"
            ) from exc

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        if isinstance(ctxt, oslo_context.RequestContext):
            return _trimmed(ctxt.to_dict())
        return dict(ctxt or {})

    def deserialize_context(self, ctxt: Any) -> oslo_context.RequestContext:
        """The request context of a message; the thread's current context stays as it was
        (the lines of the thread that reads messages belong to no request)."""
        if not isinstance(ctxt, dict):
            ctxt = {}
        try:
            return _logcontext.detached(ctxt)
        except Exception:  # a malformed context must not stop the operation
            LOG.warning("Ignoring a malformed request context: %.200r", ctxt)
            return _logcontext.detached({})


#: Values RequestContext.from_dict assumes for a missing key; user_identity is derived.
_CONTEXT_DEFAULTS = {
    "is_admin": False,
    "read_only": False,
    "show_deleted": False,
    "is_admin_project": True,
    "roles": [],
}


def _trimmed(values: dict[str, Any]) -> dict[str, Any]:
    """The context without the keys from_dict would restore anyway (smaller messages)."""
    return {
        k: v
        for k, v in values.items()
        if v is not None and k != "user_identity" and _CONTEXT_DEFAULTS.get(k, None) != v
    }


def set_defaults(conf: cfg.ConfigOpts) -> None:
    """Register oslo.messaging's options with the project's defaults.

    Quorum queues by default (``[oslo_messaging_rabbit] rabbit_quorum_queue``):
    casts queued for a host survive a broker restart and the loss of a cluster
    node (docs/delivery.md). Every worker and client of a vhost must agree on
    it; a deployment that keeps classic queues says so explicitly.
    """
    for group, options in messaging_opts.list_opts():
        if group in (None, "oslo_messaging_rabbit", "oslo_messaging_notifications"):
            conf.register_opts(options, group=group)
    conf.set_default("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")


def get_transport(conf: cfg.ConfigOpts, url: str | None = None) -> messaging.Transport:
    set_defaults(conf)
    return messaging.get_rpc_transport(conf, url=url, allowed_remote_exmods=ALLOWED_EXMODS)


def get_notification_transport(conf: cfg.ConfigOpts) -> messaging.Transport:
    set_defaults(conf)
    return messaging.get_notification_transport(conf)


def safe_url(url: str | None) -> str:
    """The transport URL with passwords replaced, fit for logs and errors."""
    if not url:
        return "<transport_url unset>"
    try:
        parsed = messaging.TransportURL.parse(cfg.CONF, url)
    except Exception:
        return "<unparseable transport_url>"
    hosts = ",".join(
        f"{h.username + '@' if h.username else ''}{h.hostname}:{h.port or 5672}"
        for h in parsed.hosts
    )
    return f"{parsed.transport}://{hosts}/{parsed.virtual_host or ''}"


def check_broker(conf: cfg.ConfigOpts, url: str | None, timeout: float) -> None:
    """Connect to the broker once, giving up after ``timeout`` seconds.

    oslo.messaging retries its first connection for far longer than any
    caller wants to wait; this check turns an unreachable broker into a
    prompt, clear error. Each host of the URL is tried once, in turn, with
    no pause between them, while ``timeout`` lasts. The connection is made
    as the worker's own are (:func:`computed._wire.connection`): with TLS
    when ``[oslo_messaging_rabbit] ssl`` or the URL's ``?ssl=1`` asks for it.

    :raises computed.exception.BrokerUnavailable: naming the broker and the cause.
    """
    parsed = messaging.TransportURL.parse(conf, url)
    if parsed.transport not in ("rabbit", "amqp", "kombu"):
        return
    connection = None
    try:
        connection = _wire.connection(conf, url, "broker-check", connect_timeout=timeout)
        connection.ensure_connection(max_retries=max(len(parsed.hosts), 1) - 1, timeout=timeout)
    except Exception as exc:
        raise broker_unavailable(conf, url, exc) from exc
    finally:
        if connection is not None:
            connection.release()


def broker_unavailable(
    conf: cfg.ConfigOpts, url: str | None, error: BaseException
) -> exception.BrokerUnavailable:
    """The error for a connection to the broker of ``url`` that failed with ``error``.

    kombu wraps what failed (as OperationalError); the reason names the
    failure underneath: a broker certificate that failed verification says
    so and which CA file it was checked against, and a plain connection the
    broker closed before the AMQP handshake says that the port may expect TLS.
    """
    return exception.BrokerUnavailable(url=safe_url(url), reason=_failure_reason(conf, url, error))


def _failure_reason(conf: cfg.ConfigOpts, url: str | None, error: BaseException) -> str:
    reason = str(error) or type(error).__name__
    cause = _root_cause(error)
    try:
        rabbit = _wire.rabbit_options(conf, url)
    except Exception:  # the URL itself is what failed
        return reason
    if isinstance(cause, ssl.SSLCertVerificationError):
        trusted = (
            f"the CA in {rabbit.ssl_ca_file}"
            if rabbit.ssl_ca_file
            else "the system's CAs, [oslo_messaging_rabbit] ssl_ca_file being unset"
        )
        detail = getattr(cause, "verify_message", None) or cause.strerror or str(cause)
        return f"TLS: certificate verify failed: {detail} (checked against {trusted})"
    if isinstance(cause, ssl.SSLError):
        return f"TLS: {cause}"
    # py-amqp reports a connection closed without a reset as a bare OSError
    closed = isinstance(cause, (ConnectionResetError, ConnectionAbortedError)) or (
        type(cause) is OSError and cause.errno is None
    )
    if closed and not rabbit.ssl:
        return (
            f"{reason}: the broker closed the connection before the AMQP handshake was "
            "done; if that port expects TLS, set [oslo_messaging_rabbit] ssl = true"
        )
    return reason


def _root_cause(error: BaseException) -> BaseException:
    """The first exception ``error`` was raised from (kombu re-raises py-amqp's as its own)."""
    seen = {id(error)}
    while (inner := error.__cause__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error
