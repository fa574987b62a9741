"""xapi's VM events, for the worker's ``watch_instances``.

One :class:`VMWatcher` per compute host: a thread of its own with a session
of its own (``event.from`` holds its connection for up to
:data:`EVENT_TIMEOUT` seconds, which the shared session cannot spare). It
asks ``event.from(["vm"], token, timeout)`` in a loop and calls
``changed(uuid)`` for an instance of the host whose state (power state, or
rescued) changed, whose VM was deleted, or that it sees for the first time.
The first answer, from the empty token, is every VM: it teaches the watcher
what is there without reporting it. After a failure (the pool unreachable, a new master that does not know
the token) it starts again from the empty token and reports what differs
from what it knew, VMs that vanished meanwhile included.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import XenAPI

from drivers.xenapi import constants, errors
from drivers.xenapi.conf import PoolConfig
from drivers.xenapi.session import PoolSession

__all__ = ["EVENT_TIMEOUT", "VMWatcher"]

LOG = logging.getLogger(__name__)

#: Seconds one ``event.from`` waits for a change before answering empty.
EVENT_TIMEOUT = 30.0
#: Seconds between two attempts while the pool fails: short at first, then longer.
_RETRY_FIRST = 0.5
_RETRY_MAX = 30.0
#: Seconds the watcher is given to end once told to stop, and between two
#: cuts of its connection meanwhile (a cut may land before it starts waiting).
_STOP_WAIT = 10.0
_INTERRUPT_EVERY = 0.1


class VMWatcher:
    """Reports the changes of compute host ``host``'s instances, from its own thread.

    :param config: the pool's; the watcher logs in with it, waiting longer
        for each reply than an ``event.from`` may take.
    :param changed: called with an instance's uuid, from the watcher's thread.
    """

    def __init__(self, config: PoolConfig, host: str, changed: Callable[[str], None]) -> None:
        timeout = config.call_timeout + EVENT_TIMEOUT
        self._session = PoolSession(dataclasses.replace(config, call_timeout=timeout))
        self._host = host
        self._changed = changed
        self._stop = threading.Event()
        self._left = threading.Event()  # the thread waits in event.from no more
        #: What the watcher knows: VM ref -> (instance uuid, its state).
        self._known: dict[str, tuple[str, str]] = {}
        self._token = ""
        self._thread = threading.Thread(target=self._run, name=f"xapi-events-{host}", daemon=True)

    def start(self) -> None:
        """Learn the host's VMs now, so that every change from here on is reported,
        then follow them on the thread (which learns them itself if the pool fails now)."""
        try:
            reply = self._session.call("event.from", ["vm"], "", 0.0)
        except (XenAPI.Failure, errors.PoolUnavailable) as exc:
            LOG.warning("Host %s: xapi events failed, trying again: %s", self._host, exc)
        else:
            self._take(reply["events"], full=True)
            self._token = str(reply["token"])
        self._thread.start()

    def stop(self) -> None:
        """End the thread, cutting the ``event.from`` it waits in; it logs out."""
        self._stop.set()
        deadline = time.monotonic() + _STOP_WAIT
        while self._thread.is_alive():
            self._session.interrupt()
            if self._left.wait(_INTERRUPT_EVERY):
                break
            if time.monotonic() > deadline:
                LOG.warning("Host %s: the xapi event thread does not end", self._host)
                return
        self._thread.join(max(0.0, deadline - time.monotonic()))

    # ----------------------------------------------------------------------

    def _run(self) -> None:
        token, retry = self._token, _RETRY_FIRST
        try:
            while not self._stop.is_set():
                try:
                    reply = self._session.call("event.from", ["vm"], token, EVENT_TIMEOUT)
                except (XenAPI.Failure, errors.PoolUnavailable) as exc:
                    if self._stop.is_set():
                        return
                    LOG.warning(
                        "Host %s: xapi events failed, trying again in %g s: %s",
                        self._host,
                        retry,
                        exc,
                    )
                    token = ""
                    self._stop.wait(retry)
                    retry = min(retry * 2, _RETRY_MAX)
                    continue
                self._take(reply["events"], full=token == "")
                token, retry = str(reply["token"]), _RETRY_FIRST
        finally:
            self._left.set()
            self._session.close()

    def _take(self, events: list[dict[str, Any]], *, full: bool) -> None:
        """Learn from ``events``; report what changed. ``full``: they list every VM."""
        first = full and not self._known
        seen: set[str] = set()
        for event in events:
            ref = str(event["ref"])
            if event["operation"] == "del":
                self._forget(ref)
                continue
            record = event.get("snapshot")
            instance = self._instance_of(record) if record else None
            if instance is None:
                continue
            seen.add(ref)
            old = self._known.get(ref)
            self._known[ref] = instance
            # An instance first seen now may have changed since whoever made it
            # looked (its start and a pause can arrive as one event).
            if (old is None or old[1] != instance[1]) and not first:
                self._report(instance[0])
        if full and not first:
            for ref in set(self._known) - seen:  # deleted while the watcher was away
                self._forget(ref)

    def _forget(self, ref: str) -> None:
        gone = self._known.pop(ref, None)
        if gone is not None:
            self._report(gone[0])

    def _report(self, uuid: str) -> None:
        try:
            self._changed(uuid)
        except Exception:  # the worker's business; the watcher must go on
            LOG.exception("Host %s: reporting a change of %s failed", self._host, uuid)

    def _instance_of(self, record: dict[str, Any]) -> tuple[str, str] | None:
        """The instance of this host a VM record stands for, and its state."""
        other = record.get("other_config", {})
        uuid = other.get(constants.OTHER_CONFIG_UUID)
        if (
            uuid is None
            or other.get(constants.OTHER_CONFIG_HOST) != self._host
            or record.get("is_a_template")
            or record.get("is_a_snapshot")
        ):
            return None
        return str(uuid), constants.instance_state(record)
