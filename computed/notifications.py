"""Versioned notifications reporting the outcome of lifecycle operations.

Event types are ``instance.<operation>.start``, ``.end`` and ``.error``;
payloads are :class:`~computed.objects.InstanceActionPayload` primitives, the
same shape as every other versioned object on the bus.

The worker publishes them itself, in oslo.messaging's notification format
(any oslo.messaging notification listener reads them), on one connection
with publisher confirms: an outcome counts as published once the broker has
confirmed it; a start is written without waiting, and confirmed before its
outcome is. oslo.messaging's notifier costs about 2 ms of CPU per
notification on the benchmark machine, most of it in its driver plumbing;
a lifecycle operation publishes two.
"""

from __future__ import annotations

import logging
import threading
import uuid as uuid_module
from typing import Any

import amqp
from oslo_config import cfg

from computed import _wire, exception, rpc
from computed.objects import ImageRef, InstanceActionPayload, InstanceInfo, InstanceStatePayload

__all__ = [
    "NotificationPublisher",
    "action_payload",
    "OutcomeNotifier",
    "event_type",
    "notification_id",
    "outcome",
]

_BACKOFF = (0.5, 1.0, 2.0, 4.0)

LOG = logging.getLogger(__name__)


def event_type(operation: str, phase: str) -> str:
    return f"instance.{operation}.{phase}"


class NotificationPublisher:
    """Publishes notifications on a connection of its own, each confirmed by the broker.

    A publication waits for the broker: while it is away, the thread retries
    (0.5 to 4 s apart) until it is back or the publisher is closed, as
    oslo.messaging's notifier does with its default ``retry``.

    A publication made with ``wait=False`` returns once its message is
    written. Its confirmation is awaited by the next publication that waits,
    which waits for every message published before it, or by :meth:`close`.
    Until the broker confirms it the message is kept, and published again
    if the connection fails first.
    """

    def __init__(self, conf: cfg.ConfigOpts, name: str, url: str | None = None) -> None:
        _wire.register_opts(conf)
        self._conf = conf
        self._url = url or conf.oslo_messaging_notifications.transport_url or conf.transport_url
        self._name = f"{name}:notifications"
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._conn: Any = None
        self._channel: Any = None
        self._declared: set[str] = set()
        self._queues: dict[str, Any] = {}
        #: The channel's last delivery tag: confirms count from 1 on each channel.
        self._tag = 0
        #: Messages written on this channel and not confirmed yet, by delivery tag.
        self._unconfirmed: dict[int, _Outgoing] = {}
        #: Messages a failed connection left unconfirmed, to publish again.
        self._backlog: list[_Outgoing] = []
        #: Messages the broker refused since the last look.
        self._refused: list[_Outgoing] = []
        #: Times a publication went through after the connection failed.
        self.reconnects = 0

    def publish(
        self,
        context: dict[str, Any],
        publisher_id: str,
        event_type: str,
        priority: str,
        payload: Any,
        message_id: str | None = None,
        wait: bool = True,
    ) -> None:
        """Publish one notification; returns once the broker confirmed it.

        :param wait: False returns once the message is written (see the class).
        :raises computed.exception.BrokerUnavailable: the publisher was closed
            while the broker was away.
        """
        queue = self._queue(priority)
        body = _wire.notification(context, publisher_id, event_type, priority, payload, message_id)
        message = amqp.Message(body, content_type="application/json", content_encoding="utf-8")
        outgoing = _Outgoing(event_type, queue, message)
        failures = 0
        with self._lock:
            while True:
                try:
                    self._connect()
                    if outgoing.tag is None:  # else written again from the backlog
                        self._send(outgoing)
                    if wait:
                        self._await(outgoing)
                    if failures:
                        self.reconnects += 1
                    return
                except Exception as exc:
                    self._close()
                    failures += 1
                    if failures in (1, 10):
                        LOG.warning(
                            "Publishing %s failed (%d), retrying: %s", event_type, failures, exc
                        )
                    if self._closed.wait(_BACKOFF[min(failures, len(_BACKOFF)) - 1]):
                        raise exception.BrokerUnavailable(
                            url=rpc.safe_url(self._url), reason=f"closed while away: {exc}"
                        ) from exc

    def _send(self, outgoing: _Outgoing) -> None:
        """Write one message, declaring its queue the first time."""
        queue = outgoing.queue
        if queue.name not in self._declared:
            queue(self._channel).declare()
            self._declared.add(queue.name)
        self._channel.basic_publish(
            outgoing.message, exchange=queue.exchange.name, routing_key=queue.routing_key
        )
        self._tag += 1
        outgoing.tag = self._tag
        self._unconfirmed[self._tag] = outgoing

    def _await(self, outgoing: _Outgoing) -> None:
        """Read the broker's confirms until it confirmed ``outgoing`` and all before it.

        :raises amqp.exceptions.MessageNacked: the broker refused ``outgoing``.
        """
        tag = outgoing.tag
        assert tag is not None
        while any(pending <= tag for pending in self._unconfirmed):
            self._conn.drain_events()
        refused, self._refused = self._refused, []
        for each in refused:
            each.tag = None
            if each is not outgoing:
                LOG.warning("The broker refused %s, published without waiting", each.event_type)
        if outgoing.tag is None:
            raise amqp.exceptions.MessageNacked()

    def _confirmed(self, delivery_tag: int, multiple: bool) -> None:
        """The broker's ``basic.ack`` (a channel event callback)."""
        for tag in self._settled(delivery_tag, multiple):
            del self._unconfirmed[tag]

    def _nacked(self, delivery_tag: int, multiple: bool) -> None:
        """The broker's ``basic.nack``: the message is lost (a channel event callback)."""
        for tag in self._settled(delivery_tag, multiple):
            self._refused.append(self._unconfirmed.pop(tag))

    def _settled(self, delivery_tag: int, multiple: bool) -> list[int]:
        if multiple:
            return [tag for tag in self._unconfirmed if tag <= delivery_tag]
        return [delivery_tag] if delivery_tag in self._unconfirmed else []

    def _queue(self, priority: str) -> Any:
        """The queue of ``priority``, built once: building one costs more than publishing."""
        queue = self._queues.get(priority)
        if queue is None:
            topic = self._conf.notifications.topic
            queue = self._queues[priority] = _wire.notification_queue(self._conf, topic, priority)
        return queue

    def close(self) -> None:
        """Wait for what is unconfirmed (unless the broker is away), then disconnect."""
        self._closed.set()
        with self._lock:
            if self._unconfirmed:
                try:
                    self._await(self._unconfirmed[max(self._unconfirmed)])
                except Exception as exc:
                    LOG.warning("Notifications not confirmed before closing: %s", exc)
            self._close()
            if self._backlog:
                LOG.warning(
                    "%d notification(s) not published: the broker was away", len(self._backlog)
                )

    def _connect(self) -> None:
        if self._channel is not None:
            return
        conn = _wire.connection(self._conf, self._url, self._name)
        try:
            conn.connect()
            channel = conn.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._confirmed)
            channel.events["basic_nack"].add(self._nacked)
        except Exception:
            conn.close()
            raise
        self._conn, self._channel, self._declared = conn, channel, set()
        while self._backlog:
            self._send(self._backlog[0])
            del self._backlog[0]

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        _wire.close_quietly(conn, "the notification connection")
        # A new channel counts its confirms from 1, and what this one left
        # unconfirmed goes out again on it, first.
        left = sorted(self._unconfirmed.items())
        for _tag, outgoing in left:
            outgoing.tag = None
        self._backlog[:0] = [outgoing for _tag, outgoing in left]
        self._unconfirmed, self._tag, self._refused = {}, 0, []


class _Outgoing:
    """A message being published; ``tag`` is its delivery tag once written."""

    __slots__ = ("event_type", "queue", "message", "tag")

    def __init__(self, event_type: str, queue: Any, message: amqp.Message) -> None:
        self.event_type = event_type
        self.queue = queue
        self.message = message
        self.tag: int | None = None


class OutcomeNotifier:
    """Publishes start/end/error notifications for one worker.

    :param publisher: where they go; None publishes nothing.
    """

    def __init__(self, conf: cfg.ConfigOpts, publisher: NotificationPublisher | None) -> None:
        enabled = conf.notifications.enabled and publisher is not None
        self._phases = frozenset(conf.notifications.phases)
        self._publisher = publisher if enabled else None
        self._serializer = rpc.RequestContextSerializer()
        self._last_context = threading.local()

    def emit(
        self,
        ctxt: Any,
        host: str,
        operation: str,
        phase: str,
        uuid: str,
        info: InstanceInfo | None = None,
        error: BaseException | None = None,
        message_id: str | None = None,
    ) -> None:
        self.emit_outcome(ctxt, host, operation, uuid, outcome(phase, info, error), message_id)

    def emit_progress(self, ctxt: Any, host: str, operation: str, uuid: str, percent: int) -> None:
        """Publish ``instance.<operation>.progress``: a long operation is ``percent`` done.

        Each has an id of its own: a consumer keeping one notification per id
        keeps them all (a repeat after a takeover reports its progress again).
        """
        self.emit_outcome(ctxt, host, operation, uuid, {"phase": "progress", "progress": percent})

    def emit_state(
        self, host: str, uuid: str, old_state: str | None, new_state: str | None, source: str
    ) -> None:
        """Publish a change on the hypervisor that no operation made."""
        if self._publisher is None:
            return
        payload = InstanceStatePayload(
            uuid=uuid, host=host, old_state=old_state, new_state=new_state, source=source
        )
        try:
            self._publisher.publish(
                {},
                f"computed.{host}",
                state_event_type(new_state),
                "info",
                payload.obj_to_primitive(),
                str(uuid_module.uuid4()),
            )
        except Exception:
            LOG.exception("Could not publish %s for %s", state_event_type(new_state), uuid)

    def emit_outcome(
        self,
        ctxt: Any,
        host: str,
        operation: str,
        uuid: str,
        recorded: dict[str, Any],
        message_id: str | None = None,
    ) -> None:
        """Publish an outcome as :func:`outcome` recorded it (a new owner replays it).

        :param message_id: the id of the message the operation came in: its
            notifications get ids derived from it (:func:`notification_id`),
            the same whoever publishes them, so a consumer that keeps one
            notification per id sees each once.
        """
        phase = str(recorded.get("phase"))
        if self._publisher is None or phase not in self._phases:
            return
        try:
            self._send(ctxt, host, operation, uuid, recorded, message_id)
        except Exception:  # the operation's result matters more than its report
            LOG.exception("Could not publish %s for %s", event_type(operation, phase), uuid)

    def _context(self, ctxt: Any) -> dict[str, Any]:
        """The request context as a notification carries it (no token), serialized
        once per operation: its start and its outcome go from the same thread."""
        last = getattr(self._last_context, "pair", None)
        if last is not None and last[0] is ctxt:
            return dict(last[1])
        redacted = ctxt.redacted_copy() if hasattr(ctxt, "redacted_copy") else ctxt
        serialized = self._serializer.serialize_context(redacted)
        self._last_context.pair = (ctxt, serialized)
        return dict(serialized)

    def _send(
        self,
        ctxt: Any,
        host: str,
        operation: str,
        uuid: str,
        recorded: dict[str, Any],
        message_id: str | None,
    ) -> None:
        assert self._publisher is not None
        phase = str(recorded["phase"])
        request_id = getattr(ctxt, "request_id", None)
        self._publisher.publish(
            self._context(ctxt),
            f"computed.{host}",
            event_type(operation, phase),
            "error" if phase == "error" else "info",
            action_payload(uuid, host, operation, request_id, recorded),
            notification_id(message_id, phase),
            wait=phase not in _UNDER_WAY,
        )


#: Phases reporting an operation under way: published without waiting for the
#: broker's confirmation, which the outcome's publication awaits. A worker
#: killed meanwhile may lose one; an outcome is never lost.
_UNDER_WAY = frozenset(("start", "progress"))

#: What :class:`~computed.objects.InstanceActionPayload` carries beside its
#: identity, in the order of its fields.
_OUTCOME_FIELDS = ("error_class", "error_message", "error_kwargs", "progress")


def action_payload(
    uuid: str, host: str, operation: str, request_id: str | None, recorded: dict[str, Any]
) -> dict[str, Any]:
    """The primitive of the :class:`~computed.objects.InstanceActionPayload` reporting
    ``recorded`` (an :func:`outcome`).

    Built directly, the same dictionary ``obj_to_primitive()`` returns: building
    the versioned object and dehydrating it cost a third of a cast's outcome
    notification on the worker. A snapshot's outcome, which carries an image
    (a nested object), goes through the object.
    """
    if recorded.get("image") is not None:
        return _payload_object(uuid, host, operation, request_id, recorded).obj_to_primitive()
    data: dict[str, Any] = {
        "uuid": str(uuid),
        "host": host,
        "operation": operation,
        "phase": str(recorded["phase"]),
        "request_id": request_id,
        "power_state": recorded.get("power_state"),
    }
    for field in _OUTCOME_FIELDS:
        if field in recorded:
            data[field] = recorded[field]
    ns = InstanceActionPayload.OBJ_SERIAL_NAMESPACE
    return {
        f"{ns}.name": "InstanceActionPayload",
        f"{ns}.namespace": InstanceActionPayload.OBJ_PROJECT_NAMESPACE,
        f"{ns}.version": InstanceActionPayload.VERSION,
        f"{ns}.data": data,
        f"{ns}.changes": sorted(data),
    }


def _payload_object(
    uuid: str, host: str, operation: str, request_id: str | None, recorded: dict[str, Any]
) -> InstanceActionPayload:
    payload = InstanceActionPayload(
        uuid=uuid,
        host=host,
        operation=operation,
        phase=str(recorded["phase"]),
        request_id=request_id,
        power_state=recorded.get("power_state"),
    )
    for field in _OUTCOME_FIELDS:
        if field in recorded:
            setattr(payload, field, recorded[field])
    if recorded.get("image") is not None:
        payload.assign(image=ImageRef.obj_from_primitive(recorded["image"]))
    return payload


def state_event_type(new_state: str | None) -> str:
    """``instance.delete`` for an instance that vanished, else ``instance.power_state.update``."""
    return "instance.delete" if new_state is None else "instance.power_state.update"


#: Names the notifications of a message: uuid5 of its id and the phase.
_NAMESPACE = uuid_module.UUID("5b0c2c9e-8f1e-4a53-9d0b-6a1f3c3e7d21")


def notification_id(message_id: str | None, phase: str) -> str | None:
    """The id of the ``phase`` notification of the operation that came in ``message_id``.

    Its outcome (``end`` or ``error``) has one id whichever it is: a new owner
    that completes an operation again publishes its outcome under the same
    id as the first one did.
    """
    if not message_id:
        return None
    kind = "start" if phase == "start" else "outcome"
    return str(uuid_module.uuid5(_NAMESPACE, f"{message_id}.{kind}"))


def outcome(
    phase: str,
    info: InstanceInfo | None = None,
    error: BaseException | None = None,
    image: ImageRef | None = None,
) -> dict[str, Any]:
    """What a notification of ``phase`` reports, as plain data a journal can keep."""
    recorded: dict[str, Any] = {"phase": phase}
    if info is not None:
        recorded["power_state"] = info.power_state
    if image is not None:
        recorded["image"] = image.obj_to_primitive()
    if error is not None:
        kwargs = error.kwargs if isinstance(error, exception.ComputedError) else {}
        recorded["error_class"] = type(error).__name__
        recorded["error_message"] = str(error)
        recorded["error_kwargs"] = {k: None if v is None else str(v) for k, v in kwargs.items()}
    return recorded
