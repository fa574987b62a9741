"""The per-host journal of lifecycle operations in flight, kept in the registry.

An entry is written before the driver runs (``running``), marked ``done``
when the driver returns, and deleted once the outcome is published. A worker
that takes a host over finds the entries of workers that can no longer be
running and reconciles them (see :meth:`ComputeManager.reconcile`).
"""

from __future__ import annotations

import logging
from typing import Any

from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.registry.api import JournalRecord

__all__ = ["Journal", "encode_arguments", "decode_arguments"]

LOG = logging.getLogger(__name__)


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

    def begin(
        self,
        host: str,
        operation: str,
        uuid: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
    ) -> int | None:
        try:
            return self.registry.journal_begin(
                host,
                operation,
                uuid,
                str(context.get("request_id") or ""),
                context,
                encode_arguments(arguments),
                self.worker_id,
                self.pid,
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
