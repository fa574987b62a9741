"""The per-host journal of lifecycle operations in flight, kept in the registry.

An entry is written before the driver runs (``running``), marked ``done``
when the driver returns, and deleted once the outcome is published. A cast
gets its entry earlier, when it is received (``received``, see
:mod:`computed._server`), and the operation takes that entry over when it
starts. A worker that takes a host over finds the entries of workers that
can no longer be running and reconciles them (see :func:`computed.manager.reconcile`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.registry.api import JOURNAL_RECEIVED, JOURNAL_RUNNING, JournalRecord

__all__ = ["Journal", "encode_arguments", "decode_arguments", "hand_receipt", "take_receipt"]

LOG = logging.getLogger(__name__)

_serving = threading.local()


def hand_receipt(entry_id: int | None) -> None:
    """Make ``entry_id`` the receipt of the message this thread is about to serve."""
    _serving.receipt = entry_id


def take_receipt() -> int | None:
    """The receipt entry of the message this thread serves, once; None if it has none."""
    entry_id: int | None = getattr(_serving, "receipt", None)
    _serving.receipt = None
    return entry_id


class Journal:
    """Writes one worker process's entries.

    A journal that cannot be written does not stop the operation: the
    operation is only less protected against this worker's death, and the
    failure is logged.
    """

    def __init__(self, registry: Registry, worker_id: str, pid: int) -> None:
        self.registry = registry
        self.worker_id = worker_id
        self.pid = pid

    def receive(
        self,
        host: str,
        operation: str,
        uuid: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
    ) -> int | None:
        """Journal a cast as it arrives; ``arguments`` are its primitives, as sent."""
        return self._insert(host, operation, uuid, context, arguments, JOURNAL_RECEIVED)

    def begin(
        self,
        host: str,
        operation: str,
        uuid: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
        repeatable: bool = True,
    ) -> int | None:
        """The entry of an operation about to reach the driver.

        The cast's receipt entry if it has one, marked running unless the
        operation is ``repeatable`` (running it again after a takeover is
        then harmless whether it had started or not); a new entry otherwise.
        """
        receipt = take_receipt()
        if receipt is not None:
            if not repeatable:
                self._quietly(self.registry.journal_start, receipt)
            return receipt
        return self._insert(
            host, operation, uuid, context, encode_arguments(arguments), JOURNAL_RUNNING
        )

    def _insert(
        self,
        host: str,
        operation: str,
        uuid: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
        state: str,
    ) -> int | None:
        try:
            return self.registry.journal_begin(
                host,
                operation,
                uuid,
                str(context.get("request_id") or ""),
                context,
                arguments,
                self.worker_id,
                self.pid,
                state=state,
            )
        except Exception as exc:
            LOG.warning("Could not journal %s of %s on %s: %s", operation, uuid, host, exc)
            return None

    def done(self, entry_id: int | None) -> None:
        self._quietly(self.registry.journal_done, entry_id)

    def finish(self, entry_id: int | None) -> None:
        self._quietly(self.registry.journal_finish, entry_id)

    def adopt(self, entry: JournalRecord) -> bool:
        return self.registry.journal_adopt(entry, self.worker_id, self.pid)

    @staticmethod
    def _quietly(action: Any, entry_id: int | None) -> None:
        if entry_id is None:
            return
        try:
            action(entry_id)
        except Exception as exc:
            LOG.warning("Could not update journal entry %s: %s", entry_id, exc)


def encode_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.obj_to_primitive() if isinstance(value, InstanceSpec) else value
        for name, value in arguments.items()
    }


def decode_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        name: InstanceSpec.obj_from_primitive(value) if name == "instance" else value
        for name, value in arguments.items()
    }
