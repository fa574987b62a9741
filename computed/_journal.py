"""The per-host journal of lifecycle operations, kept in the registry.

Each lifecycle message that passed validation is journaled when it is
received (``received``), keyed by its message id, before the broker is told
it was delivered (see :mod:`computed._server`); a second delivery of the
same message finds its id taken and is dropped. The operation takes the
entry over when it starts (``running`` for one that must not run twice),
marks it ``done`` when the driver returns (only for those), and
``finished`` once the outcome is published. A finished entry keeps only the
message id, so a late redelivery is still recognised, for
``[listener] duplicate_window`` seconds. A worker that takes a host over
finds the unfinished entries of workers that can no longer be running and
reconciles them (see :func:`computed.manager.reconcile`).

An entry holds what a replay needs and nothing more: the operation, its
checked arguments and the request's identity (request id, user, project),
never its token or roles.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any, NamedTuple

from computed import _sealing
from computed.objects import ComputedObject
from computed.registry import Registry
from computed.registry.api import (
    JOURNAL_RECEIVED,
    JOURNAL_RUNNING,
    JournalRecord,
    NewJournalEntry,
    utcnow,
)

__all__ = [
    "Journal",
    "Receipt",
    "Ticket",
    "REPLAY_CONTEXT_KEYS",
    "encode_arguments",
    "decode_arguments",
    "hand_receipt",
    "replay_context",
    "take_receipt",
]

#: The request-context fields an entry keeps: enough to report the outcome
#: under the request's identity, no credential.
REPLAY_CONTEXT_KEYS = ("request_id", "global_request_id", "user_id", "project_id")

LOG = logging.getLogger(__name__)

_serving = threading.local()


class Ticket(NamedTuple):
    """What a lifecycle operation carries from its message to its outcome."""

    #: Its journal entry; None if it could not be journaled.
    entry: int | None
    #: The id of the message it came in, which names its notifications; None
    #: for one that came in none (then they get fresh ids).
    message_id: str | None


def hand_receipt(entry_id: int | None, message_id: str | None = None) -> None:
    """Make these the receipt of the message this thread is about to serve."""
    _serving.receipt = Ticket(entry_id, message_id)


def take_receipt() -> Ticket | None:
    """The receipt of the message this thread serves, once; None if it has none."""
    ticket: Ticket | None = getattr(_serving, "receipt", None)
    _serving.receipt = None
    return ticket


def replay_context(ctxt: Any) -> dict[str, Any]:
    """What of a request context (object or dict) a journal entry keeps."""
    values = ctxt.to_dict() if hasattr(ctxt, "to_dict") else dict(ctxt or {})
    return {key: values[key] for key in REPLAY_CONTEXT_KEYS if values.get(key) is not None}


class Receipt:
    """A checked lifecycle message about to be journaled on receipt."""

    __slots__ = ("host", "operation", "uuid", "context", "arguments", "message_id")

    def __init__(
        self,
        host: str,
        operation: str,
        uuid: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
        message_id: str,
    ) -> None:
        self.host = host
        self.operation = operation
        self.uuid = uuid
        self.context = context
        self.arguments = arguments
        self.message_id = message_id


class Journal:
    """Writes one worker process's entries.

    A journal that cannot be written does not stop the operation: the
    operation is only less protected against this worker's death, and the
    failure is logged.
    """

    def __init__(
        self,
        registry: Registry,
        worker_id: str,
        pid: int,
        finish_every: float | None = None,
        sealer: _sealing.Sealer | None = None,
    ) -> None:
        """
        :param sealer: seals the secrets in the arguments it journals, and opens
            them for a replay (``[registry] journal_key_file``).
        :param finish_every: finish entries in batches, this many seconds apart, on
            a thread of their own (one commit for many operations); None finishes
            each one at once. A worker killed before a batch is written leaves
            those entries to the next owner, which publishes a recorded outcome
            again or completes a repeatable operation again.
        """
        self.registry = registry
        self.worker_id = worker_id
        self.pid = pid
        self.sealer = sealer
        self._finish_every = finish_every
        self._finished: list[int] = []
        self._finishing = threading.Condition()
        self._flusher: threading.Thread | None = None
        self._closed = False
        #: Entries received on this worker whose operation has not begun.
        self._waiting: set[int] = set()
        self._waiting_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """How many operations journaled on receipt here have not begun yet."""
        return len(self._waiting)

    def receive(self, receipts: list[Receipt]) -> list[int | None] | None:
        """Journal checked lifecycle messages as they arrive, in one transaction.

        :returns: per receipt, its entry id, or None for a message already
            journaled (a second delivery: not to be run); None instead of a
            list when the journal cannot be written (the messages are then
            run unprotected, and the failure is logged).
        """
        entries = [
            NewJournalEntry(
                host=r.host,
                operation=r.operation,
                instance_uuid=r.uuid,
                request_id=str(r.context.get("request_id") or ""),
                context=replay_context(r.context),
                arguments=encode_arguments(r.arguments, self.sealer),
                worker_id=self.worker_id,
                pid=self.pid,
                message_id=r.message_id,
                state=JOURNAL_RECEIVED,
            )
            for r in receipts
        ]
        try:
            ids = list(self.registry.journal_receive(entries))
        except Exception as exc:
            LOG.warning("Could not journal %d received operation(s): %s", len(entries), exc)
            return None
        with self._waiting_lock:
            self._waiting.update(entry for entry in ids if entry is not None)
        return ids

    def begin(
        self,
        host: str,
        operation: str,
        uuid: str,
        context: dict[str, Any],
        arguments: dict[str, Any],
        repeatable: bool = True,
    ) -> Ticket:
        """The ticket of an operation about to reach the driver.

        Its message's receipt entry if it has one, marked running unless the
        operation is ``repeatable`` (running it again after a takeover is
        then harmless whether it had started or not); a new entry otherwise.
        """
        receipt = take_receipt()
        if receipt is not None and receipt.entry is not None:
            self._begun(receipt.entry)
            if not repeatable:
                self._with_finished(self.registry.journal_start, receipt.entry)
            return receipt
        message_id = receipt.message_id if receipt is not None else None
        try:
            entry = self.registry.journal_begin(
                host,
                operation,
                uuid,
                str(context.get("request_id") or ""),
                replay_context(context),
                encode_arguments(arguments, self.sealer),
                self.worker_id,
                self.pid,
                state=JOURNAL_RUNNING,
            )
        except Exception as exc:
            LOG.warning("Could not journal %s of %s on %s: %s", operation, uuid, host, exc)
            entry = None
        return Ticket(entry, message_id)

    def done(self, entry_id: int | None, outcome: dict[str, Any]) -> None:
        """The driver returned with ``outcome``, about to be published."""
        if entry_id is not None:
            self._with_finished(self.registry.journal_done, entry_id, outcome)

    def _with_finished(self, action: Any, entry_id: int, *args: Any) -> None:
        """Write a state change with the finished entries waiting for their batch, in
        one transaction: under a stream of operations, finishing costs no commit
        of its own. If the transaction fails, those entries wait for the next one."""
        with self._finishing:
            batch, self._finished = self._finished, []
        try:
            action(entry_id, *args, finish=batch)
        except Exception as exc:
            LOG.warning("Could not update journal entry %s: %s", entry_id, exc)
            if batch:
                with self._finishing:
                    self._finished[:0] = batch
                    self._finishing.notify()

    def finish(self, entry_id: int | None) -> None:
        """The entry's outcome is published: finish it (now, or with the next batch, or
        with the next state change of another entry, whichever comes first)."""
        if entry_id is None:
            return
        self._begun(entry_id)  # one that never reached its operation
        if self._finish_every is None:
            self._quietly(self.registry.journal_finish, entry_id)
            return
        with self._finishing:
            self._finished.append(entry_id)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush, name="journal", daemon=True)
                self._flusher.start()
            self._finishing.notify()

    def close(self) -> None:
        """Write the entries still waiting to be finished."""
        with self._finishing:
            self._closed = True
            self._finishing.notify()
            flusher = self._flusher
        if flusher is not None:
            flusher.join(30)

    def _flush(self) -> None:
        assert self._finish_every is not None
        while True:
            with self._finishing:
                while not self._finished and not self._closed:
                    self._finishing.wait()
                if not self._finished:
                    return
            if not self._closed:
                time.sleep(self._finish_every)  # let the batch grow
            with self._finishing:
                batch, self._finished = self._finished, []
            if not batch:
                continue  # finished meanwhile with another entry's state change
            try:
                self.registry.journal_finish(batch)
            except Exception as exc:
                LOG.warning("Could not finish %d journal entries: %s", len(batch), exc)

    def purge(self, window: float) -> int:
        """Forget finished entries older than ``window`` seconds; how many went."""
        before = utcnow() - datetime.timedelta(seconds=window)
        try:
            return int(self.registry.journal_purge(before))
        except Exception as exc:
            LOG.warning("Could not purge the journal: %s", exc)
            return 0

    def adopt(self, entry: JournalRecord) -> bool:
        return self.registry.journal_adopt(entry, self.worker_id, self.pid)

    def _begun(self, entry_id: int) -> None:
        with self._waiting_lock:
            self._waiting.discard(entry_id)

    @staticmethod
    def _quietly(action: Any, entry_id: int | None) -> None:
        if entry_id is None:
            return
        try:
            action(entry_id)
        except Exception as exc:
            LOG.warning("Could not update journal entry %s: %s", entry_id, exc)


def encode_arguments(
    arguments: dict[str, Any], sealer: _sealing.Sealer | None = None
) -> dict[str, Any]:
    """Checked arguments as JSON values: each versioned object as its primitive,
    and with a ``sealer``, each secret in them sealed (:mod:`computed._sealing`)."""
    encoded = {
        name: value.obj_to_primitive() if isinstance(value, ComputedObject) else value
        for name, value in arguments.items()
    }
    sealed: dict[str, Any] = _sealing.seal(encoded, sealer)
    return sealed


def decode_arguments(
    arguments: dict[str, Any], sealer: _sealing.Sealer | None = None
) -> dict[str, Any]:
    """The arguments :func:`encode_arguments` encoded, with their secrets opened and
    their objects rebuilt.

    :raises computed.exception.ConfigError: for a sealed secret this worker
        cannot open.
    """
    return {
        name: ComputedObject.obj_from_primitive(value) if _is_object(value) else value
        for name, value in _sealing.unseal(arguments, sealer).items()
    }


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and f"{ComputedObject.OBJ_SERIAL_NAMESPACE}.name" in value
