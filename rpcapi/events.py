"""What happens to instances, as a scheduler hears it: the workers' notifications.

Workers publish an operation's outcome (``instance.<operation>.start``,
``.end``, ``.error``, with the request id of the call or cast) and, for
drivers that watch their hypervisor, changes nobody asked for. A scheduler
subscribes with :class:`InstanceEventListener`, which listens on every
broker the client sends to (``[DEFAULT] transport_url``, or
``[oslo_messaging_notifications] transport_url`` where set, and each
``[client] driver_transport_url``), and hands each event to one callback::

    def on_event(event: rpcapi.InstanceEvent) -> None:
        if event.event_type == "instance.power_state.update":
            ...

    listener = rpcapi.InstanceEventListener(conf, on_event, pool="scheduler")
    listener.start()
    ...
    listener.stop()

Every scheduler process of one service uses the same ``pool``: the events
are shared out among them, once each. Another service (an audit log, say)
uses a pool of its own and gets its own copy of every event. A notification
the broker delivers twice (after a broker restart), or that a worker
published again after a takeover, carries the same message id and reaches
the callback once (within the last ``remember`` ids).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from computed import rpc
from computed.conf import client as client_conf
from computed.conf import notifications as notifications_conf
from computed.objects import ComputedObject, ComputedObjectSerializer

__all__ = ["InstanceEvent", "InstanceEventListener"]

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InstanceEvent:
    """One notification about an instance."""

    #: ``instance.<operation>.<phase>``, ``instance.power_state.update``, ...
    event_type: str
    #: ``info`` or ``error``.
    priority: str
    #: ``compute.<host>`` of the worker that published it.
    publisher_id: str
    #: The payload: an object of :mod:`computed.objects` (an
    #: ``InstanceActionPayload`` for an operation's outcome), or its primitive
    #: dictionary when this client does not know the payload's version.
    payload: Any
    #: The notification's id; the same for a notification delivered or published twice.
    message_id: str | None
    #: When the worker published it (ISO 8601, UTC), as the notification says.
    timestamp: str | None

    @property
    def host(self) -> str:
        """The compute host the event is about."""
        host = getattr(self.payload, "host", None)
        if isinstance(host, str):
            return host
        return self.publisher_id.partition(".")[2]


class InstanceEventListener:
    """Hands every instance event from the workers' brokers to ``callback``.

    :param conf: the scheduler's configuration (the client's options).
    :param callback: called once per event, on a listener thread; an
        exception it raises is logged and the event is dropped.
    :param pool: the listener pool: one name per consuming service.
    :param event_types: only events whose type starts with one of these.
    :param remember: how many message ids to remember against duplicates.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        callback: Callable[[InstanceEvent], None],
        pool: str,
        event_types: tuple[str, ...] = ("instance.",),
        remember: int = 100_000,
    ) -> None:
        client_conf.register_opts(conf)
        notifications_conf.register_opts(conf)
        self._callback = callback
        self._event_types = event_types
        self._objects = ComputedObjectSerializer()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()
        self._transports: list[messaging.Transport] = []
        self._listeners: list[Any] = []
        rpc.set_defaults(conf)  # the queue arguments the workers declare with
        target = messaging.Target(topic=conf.notifications.topic)
        default = conf.oslo_messaging_notifications.transport_url or conf.transport_url
        urls = dict.fromkeys([default, *client_conf.driver_transport_urls(conf).values()])
        for url in urls:
            transport = messaging.get_notification_transport(conf, url=url)
            self._transports.append(transport)
            self._listeners.append(
                messaging.get_notification_listener(
                    transport,
                    [target],
                    [_Endpoint(self)],
                    executor="threading",
                    pool=pool,
                )
            )

    def start(self) -> InstanceEventListener:
        """Start listening (on every broker); returns self."""
        for listener in self._listeners:
            listener.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the connections."""
        for listener in self._listeners:
            listener.stop()
        for listener in self._listeners:
            listener.wait()
        for transport in self._transports:
            transport.cleanup()

    def _deliver(
        self, priority: str, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        if not event_type.startswith(self._event_types):
            return
        metadata = metadata if isinstance(metadata, dict) else {}
        message_id = metadata.get("message_id")
        if message_id is not None and self._seen_before(str(message_id)):
            return
        event = InstanceEvent(
            event_type=event_type,
            priority=priority,
            publisher_id=str(publisher_id),
            payload=self._payload(event_type, payload),
            message_id=message_id,
            timestamp=metadata.get("timestamp"),
        )
        try:
            self._callback(event)
        except Exception:
            LOG.exception("The instance event callback failed on %s", event_type)

    def _seen_before(self, message_id: str) -> bool:
        with self._lock:
            if message_id in self._seen:
                return True
            self._seen[message_id] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            return False

    def _payload(self, event_type: str, payload: Any) -> Any:
        if isinstance(payload, ComputedObject):
            return payload
        try:
            return self._objects.deserialize_entity(None, payload)
        except Exception as exc:  # a payload version this client does not know
            LOG.debug("Passing the payload of %s as it came: %s", event_type, exc)
            return payload


class _Endpoint:
    def __init__(self, listener: InstanceEventListener) -> None:
        self._listener = listener

    def info(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        self._listener._deliver("info", publisher_id, event_type, payload, metadata)

    def error(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        self._listener._deliver("error", publisher_id, event_type, payload, metadata)
