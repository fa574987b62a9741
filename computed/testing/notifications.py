"""Collecting the worker's outcome notifications, to see what a cast did."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import oslo_messaging as messaging
from oslo_config import cfg

from computed import rpc
from computed.objects import ComputedObjectSerializer, InstanceActionPayload, InstanceStatePayload

__all__ = ["Notification", "NotificationCollector", "StateChange", "collecting"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Notification:
    event_type: str
    publisher_id: str
    payload: InstanceActionPayload


@dataclass(frozen=True)
class StateChange:
    """``instance.power_state.update`` or ``instance.delete``: a change no operation made."""

    event_type: str
    publisher_id: str
    payload: InstanceStatePayload


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
    (``instance.<operation>.start/end/error``, an :class:`InstanceActionPayload`)
    and, apart, every change no operation made (:class:`StateChange`).

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
        self._changes: list[StateChange] = []
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

        def missing(events: list[Notification]) -> str:
            seen = [e.event_type for e in events[-20:]]
            return f"no matching notification in {timeout} s; last seen: {seen}"

        return self._first(self._events, predicate, timeout, missing)

    def change_of(self, uuid: str, event_type: str, timeout: float = 30.0) -> StateChange:
        """The first ``event_type`` change of instance ``uuid``, waiting up to ``timeout`` seconds.

        :raises TimeoutError: listing the changes that did arrive for it.
        """

        def missing(changes: list[StateChange]) -> str:
            seen = [c.event_type for c in changes if c.payload.uuid == uuid]
            return f"no {event_type} of {uuid} in {timeout} s; seen: {seen}"

        return self._first(
            self._changes,
            lambda c: c.event_type == event_type and c.payload.uuid == uuid,
            timeout,
            missing,
        )

    def _first(
        self,
        kept: list[_T],
        predicate: Callable[[_T], bool],
        timeout: float,
        missing: Callable[[list[_T]], str],
    ) -> _T:
        """The first of ``kept`` (a list the listener appends to) matching ``predicate``,
        waiting up to ``timeout`` seconds; else TimeoutError saying what is ``missing``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for item in kept:
                    if predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(missing(kept))
                self._changed.wait(remaining)

    def for_request(self, request_id: str, event_type: str, timeout: float = 30.0) -> Notification:
        return self.wait_for(
            lambda e: e.event_type == event_type and e.payload.request_id == request_id, timeout
        )

    def _add(self, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        if not event_type.startswith("instance."):
            return
        obj = self._objects.deserialize_entity(None, payload)
        message_id = (metadata or {}).get("message_id")
        with self._changed:
            if message_id is not None:
                if message_id in self._message_ids:
                    return
                self._message_ids.add(message_id)
            if isinstance(obj, InstanceActionPayload):
                self._events.append(Notification(event_type, publisher_id, obj))
            elif isinstance(obj, InstanceStatePayload):
                self._changes.append(StateChange(event_type, publisher_id, obj))
            self._changed.notify_all()


@contextlib.contextmanager
def collecting(conf: cfg.ConfigOpts, prefix: str = "tests") -> Iterator[NotificationCollector]:
    """A started collector of the notifications on ``conf``'s notification
    transport and topic, in a listener pool of its own (``prefix`` and a
    random suffix); stopped, and its transport closed, on leaving."""
    transport = rpc.get_notification_transport(conf)
    collector = NotificationCollector(
        transport, conf.notifications.topic, pool=f"{prefix}-{uuid.uuid4().hex[:8]}"
    )
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
        transport.cleanup()
