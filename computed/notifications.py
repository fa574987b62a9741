"""Versioned notifications reporting the outcome of lifecycle operations.

Event types are ``instance.<operation>.start``, ``.end`` and ``.error``;
payloads are :class:`~computed.objects.InstanceActionPayload` primitives, the
same shape as every other versioned object on the bus.
"""

from __future__ import annotations

import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from computed import exception, rpc
from computed.objects import InstanceActionPayload, InstanceInfo

__all__ = ["OutcomeNotifier", "event_type", "outcome"]

LOG = logging.getLogger(__name__)


def event_type(operation: str, phase: str) -> str:
    return f"instance.{operation}.{phase}"


class OutcomeNotifier:
    """Publishes start/end/error notifications for one worker."""

    def __init__(self, conf: cfg.ConfigOpts, transport: messaging.Transport | None) -> None:
        enabled = conf.notifications.enabled and transport is not None
        self._phases = frozenset(conf.notifications.phases)
        self._notifier = (
            messaging.Notifier(
                transport,
                publisher_id="computed",
                driver="messaging",
                topics=[conf.notifications.topic],
                serializer=rpc.RequestContextSerializer(),
            )
            if enabled
            else None
        )

    def emit(
        self,
        ctxt: Any,
        host: str,
        operation: str,
        phase: str,
        uuid: str,
        info: InstanceInfo | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.emit_outcome(ctxt, host, operation, uuid, outcome(phase, info, error))

    def emit_outcome(
        self, ctxt: Any, host: str, operation: str, uuid: str, recorded: dict[str, Any]
    ) -> None:
        """Publish an outcome as :func:`outcome` recorded it (a new owner replays it)."""
        phase = str(recorded.get("phase"))
        if self._notifier is None or phase not in self._phases:
            return
        try:
            self._send(ctxt, host, operation, uuid, recorded)
        except Exception:  # the operation's result matters more than its report
            LOG.exception("Could not publish %s for %s", event_type(operation, phase), uuid)

    def _send(
        self, ctxt: Any, host: str, operation: str, uuid: str, recorded: dict[str, Any]
    ) -> None:
        assert self._notifier is not None
        phase = str(recorded["phase"])
        payload = InstanceActionPayload(
            uuid=uuid,
            host=host,
            operation=operation,
            phase=phase,
            request_id=getattr(ctxt, "request_id", None),
            power_state=recorded.get("power_state"),
        )
        for field in ("error_class", "error_message", "error_kwargs"):
            if field in recorded:
                setattr(payload, field, recorded[field])
        notifier = self._notifier.prepare(publisher_id=f"computed.{host}")
        send = notifier.error if phase == "error" else notifier.info
        send(ctxt, event_type(operation, phase), payload.obj_to_primitive())


def outcome(
    phase: str, info: InstanceInfo | None = None, error: BaseException | None = None
) -> dict[str, Any]:
    """What a notification of ``phase`` reports, as plain data a journal can keep."""
    recorded: dict[str, Any] = {"phase": phase}
    if info is not None:
        recorded["power_state"] = info.power_state
    if error is not None:
        kwargs = error.kwargs if isinstance(error, exception.ComputedError) else {}
        recorded["error_class"] = type(error).__name__
        recorded["error_message"] = str(error)
        recorded["error_kwargs"] = {k: None if v is None else str(v) for k, v in kwargs.items()}
    return recorded
