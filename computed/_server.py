"""The RPC server of one host: oslo.messaging's, with lifecycle casts journaled on receipt.

oslo.messaging's rabbit driver acknowledges a message the moment it arrives,
on the listener's thread, and only later hands it to a worker thread. A
worker killed in between loses the message: the broker has forgotten it,
and the operation journal is written only when the operation starts. With
many messages queued behind a slow one that window is not small.

So the server puts a journal entry for each lifecycle cast (state
``received``) before the message is acknowledged, and hands the entry to
the operation when it starts (:func:`computed._journal.take_receipt`); a new owner reconciles
an entry left ``received`` by running the operation, which never started.
An entry whose message was refused, or never reached an operation, is
removed once the server is done with the message. Calls are not journaled
on receipt: their caller sees the failure and decides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import oslo_messaging as messaging
from oslo_messaging.rpc import dispatcher as rpc_dispatcher
from oslo_messaging.rpc import server as rpc_server

from computed import rpc
from computed._journal import Journal, hand_receipt, take_receipt
from drivers.base import LIFECYCLE_OPERATIONS

__all__ = ["HostServer"]

LOG = logging.getLogger(__name__)

_CONTEXT_PREFIX = "_context_"


class HostServer(rpc_server.RPCServer):  # type: ignore[misc]
    """The RPC server of ``host`` on ``Target(topic='compute', server=host)``."""

    def __init__(
        self,
        transport: messaging.Transport,
        host: str,
        endpoints: list[object],
        journal: Journal | None,
    ) -> None:
        dispatcher = rpc_dispatcher.RPCDispatcher(endpoints, rpc.RequestContextSerializer(), None)
        super().__init__(transport, messaging.Target(topic=rpc.TOPIC, server=host), dispatcher)
        self._host = host
        self._journal = journal
        self._receipts: dict[str, int] = {}
        self._receipts_lock = threading.Lock()

    def _create_listener(self) -> Any:
        listener = super()._create_listener()
        if self._journal is not None:
            _, subscribed = rpc.listener_internals(listener)
            consumers = _with_callbacks(subscribed)
            if consumers is None:
                LOG.warning(
                    "Cannot journal casts to %s on receipt with this oslo.messaging; a "
                    "worker killed with casts queued in it loses them",
                    self._host,
                )
            for consumer in consumers or ():
                consumer.callback = self._journaling(consumer.callback)
        return listener

    def _journaling(self, deliver: Callable[[Any], None]) -> Callable[[Any], None]:
        def receive(message: Any) -> None:
            self._receive(message)
            deliver(message)  # acknowledges it, then queues it for a worker thread

        return receive

    def _receive(self, message: dict[str, Any]) -> None:
        """Journal a lifecycle cast before oslo.messaging acknowledges it."""
        assert self._journal is not None
        operation = message.get("method")
        unique_id = message.get("_unique_id")
        if "_msg_id" in message or operation not in LIFECYCLE_OPERATIONS or not unique_id:
            return
        arguments = message.get("args")
        uuid = _instance_uuid(operation, arguments)
        if uuid is None or not isinstance(arguments, dict):
            return  # malformed: it will be refused, and there is nothing to redo
        context = {
            key[len(_CONTEXT_PREFIX) :]: value
            for key, value in message.items()
            if key.startswith(_CONTEXT_PREFIX)
        }
        entry = self._journal.receive(self._host, operation, uuid, context, arguments)
        if entry is not None:
            with self._receipts_lock:
                self._receipts[unique_id] = entry

    def _process_incoming(self, incoming: list[Any]) -> None:
        with self._receipts_lock:
            receipt = self._receipts.pop(str(getattr(incoming[0], "unique_id", "")), None)
        hand_receipt(receipt)
        try:
            super()._process_incoming(incoming)
        finally:
            unused = take_receipt()
            if unused is not None and self._journal is not None:
                self._journal.finish(unused)  # refused, or never reached an operation


def _with_callbacks(consumers: dict[Any, str] | None) -> list[Any] | None:
    """The consumers, if each has the ``callback`` the journaling wraps; else None."""
    if consumers is None or not all(hasattr(c, "callback") for c in consumers):
        return None
    return list(consumers)


def _instance_uuid(operation: str, arguments: Any) -> str | None:
    if not isinstance(arguments, dict):
        return None
    if operation == "spawn":
        instance = arguments.get("instance")
        data = instance.get("computed_object.data") if isinstance(instance, dict) else None
        uuid = data.get("uuid") if isinstance(data, dict) else None
    else:
        uuid = arguments.get("uuid")
    return uuid if isinstance(uuid, str) else None
