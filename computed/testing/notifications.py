"""Collecting the worker's outcome notifications, to see what a cast did."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import oslo_messaging as messaging

from computed import rpc
from computed.objects import ComputedObjectSerializer, InstanceActionPayload

__all__ = ["Notification", "NotificationCollector"]


@dataclass(frozen=True)
class Notification:
    event_type: str
    publisher_id: str
    payload: InstanceActionPayload


class _Endpoint:
    def __init__(self, collector: NotificationCollector) -> None:
        self._collector = collector

    def info(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        self._collector._add(publisher_id, event_type, payload, metadata)

    def error(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        self._collector._add(publisher_id, event_type, payload, metadata)


class NotificationCollector:
    """Listens on the notification topic and keeps every operation's outcome
    (``instance.<operation>.start/end/error``, an :class:`InstanceActionPayload`).

    A notification delivered twice by the broker (same message id: after a
    broker restart, say) is kept once, as a consumer keyed by message id
    would; one published twice is kept twice.

    :param transport: a notification transport (``rpc.get_notification_transport``).
    :param topic: the ``[notifications] topic`` the workers publish on.
    :param pool: a listener pool name, so this collector gets its own copy
        of every notification instead of competing with other consumers.
    """

    def __init__(self, transport: messaging.Transport, topic: str, pool: str) -> None:
        self._events: list[Notification] = []
        self._message_ids: set[str] = set()
        self._changed = threading.Condition()
        self._objects = ComputedObjectSerializer()
        self._listener = messaging.get_notification_listener(
            transport,
            [messaging.Target(topic=topic)],
            [_Endpoint(self)],
            pool=pool,
            serializer=rpc.RequestContextSerializer(),
        )

    def start(self) -> NotificationCollector:
        self._listener.start()
        return self

    def stop(self) -> None:
        self._listener.stop()
        self._listener.wait()

    @property
    def events(self) -> list[Notification]:
        with self._changed:
            return list(self._events)

    def wait_for(
        self, predicate: Callable[[Notification], bool], timeout: float = 30.0
    ) -> Notification:
        """The first event matching ``predicate``, waiting up to ``timeout`` seconds.

        :raises TimeoutError: listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self._events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.event_type for e in self._events[-20:]]
                    raise TimeoutError(
                        f"no matching notification in {timeout} s; last seen: {seen}"
                    )
                self._changed.wait(remaining)

    def for_request(self, request_id: str, event_type: str, timeout: float = 30.0) -> Notification:
        return self.wait_for(
            lambda e: e.event_type == event_type and e.payload.request_id == request_id, timeout
        )

    def _add(self, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        if not event_type.startswith("instance."):
            return
        obj = self._objects.deserialize_entity(None, payload)
        if not isinstance(obj, InstanceActionPayload):
            return  # a change nobody asked for: rpcapi.InstanceEventListener hears those
        message_id = (metadata or {}).get("message_id")
        with self._changed:
            if message_id is not None:
                if message_id in self._message_ids:
                    return
                self._message_ids.add(message_id)
            self._events.append(Notification(event_type, publisher_id, obj))
            self._changed.notify_all()
