"""oslo.messaging plumbing shared by the worker and the client.

Transports, clients, servers and notifiers are built here through
oslo.messaging's factories, with the project's serializer (versioned objects
plus request contexts) and the allow-list of remote exception modules.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu
import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_messaging import opts as messaging_opts

from computed import exception
from computed.objects import ComputedObjectSerializer

__all__ = [
    "TOPIC",
    "ALLOWED_EXMODS",
    "RequestContextSerializer",
    "get_transport",
    "set_defaults",
    "get_notification_transport",
    "check_broker",
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
        if not isinstance(ctxt, dict):
            ctxt = {}
        try:
            return oslo_context.RequestContext.from_dict(ctxt)
        except Exception:  # a malformed context must not stop the operation
            LOG.warning("Ignoring a malformed request context: %.200r", ctxt)
            return oslo_context.RequestContext()


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
    no pause between them, while ``timeout`` lasts.

    :raises computed.exception.BrokerUnavailable: naming the broker and the cause.
    """
    parsed = messaging.TransportURL.parse(conf, url)
    if parsed.transport not in ("rabbit", "amqp", "kombu"):
        return
    kombu_urls = [
        f"amqp://{h.username or 'guest'}:{h.password or 'guest'}@{h.hostname}:{h.port or 5672}/"
        f"{parsed.virtual_host or ''}"
        for h in parsed.hosts
    ] or ["amqp://guest:guest@localhost:5672/"]
    urls = ";".join(kombu_urls)
    connection = kombu.Connection(urls, connect_timeout=timeout)  # type: ignore[attr-defined]
    try:
        connection.ensure_connection(max_retries=len(kombu_urls) - 1, timeout=timeout)
    except Exception as exc:
        raise exception.BrokerUnavailable(
            url=safe_url(url), reason=str(exc) or type(exc).__name__
        ) from exc
    finally:
        connection.release()
