"""Hyper-V's instance events, made by looking: Hyper-V sends none a WinRM client can receive.

One thread per served host runs one cheap ``Get-VM`` (Id, State, Notes)
every ``[hyperv] instance_poll_interval`` seconds, compares each instance's
power state with the previous look, and reports the instances that changed,
appeared or vanished to the worker (``ComputeDriver.watch_instances``), which
then looks at them in depth and publishes what no operation of its own did.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from computed import exception

__all__ = ["InstancePoller"]

LOG = logging.getLogger(__name__)

#: Each instance UUID of a host with the contract's power state of its VM.
Look = Callable[[], dict[str, str]]


class InstancePoller:
    """Calls ``changed(uuid)`` for each instance whose power state differs between two looks.

    :param look: one look at the host's instances; may raise ComputedError
        (the host is away), in which case the next look compares with the
        last one that succeeded.
    :param interval: seconds between two looks.
    """

    def __init__(
        self, host: str, look: Look, changed: Callable[[str], None], interval: float
    ) -> None:
        self._host = host
        self._look = look
        self._changed = changed
        self._interval = interval
        self._stop = threading.Event()
        #: The last successful look, and whether the looks fail now.
        self._known: dict[str, str] | None = None
        self._failing = False
        self._thread = threading.Thread(target=self._run, name=f"hyperv-poll-{host}", daemon=True)

    def start(self) -> None:
        """Take the first look now, so that every change from here on is reported, then poll."""
        self._known = self._take_look()
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop looking; wait up to ``timeout`` seconds for a look under way to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = self._take_look()
            if now is None:
                continue
            if self._known is not None:
                for uuid in sorted(self._known.keys() | now.keys()):
                    if self._known.get(uuid) != now.get(uuid) and not self._stop.is_set():
                        self._changed(uuid)
            self._known = now

    def _take_look(self) -> dict[str, str] | None:
        """The host's instances, or None (logged once while it lasts) if the host is away."""
        try:
            now = self._look()
        except exception.ComputedError as exc:
            if not self._failing:
                LOG.warning("Host %s: looking at its VMs failed: %s", self._host, exc)
            self._failing = True
            return None
        if self._failing:
            LOG.info("Host %s: its VMs can be looked at again", self._host)
        self._failing = False
        return now
