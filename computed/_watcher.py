"""Finding changes on the hypervisor that no operation made, for every host a worker owns.

One thread per worker. It looks at every owned host each ``[notifications]
instance_sync_interval`` seconds, and at one instance at once when the
driver reports a hypervisor event for it (``ComputeDriver.watch_instances``);
each host's manager compares what it sees with what its operations left and
publishes the difference (``ComputeManager.sync_instances``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from computed.manager import ComputeManager, sync_instances, watching

__all__ = ["InstanceWatcher"]

LOG = logging.getLogger(__name__)

#: Hypervisor events kept while the thread is busy; more are merged into a full look.
_MAX_PENDING = 10_000


class InstanceWatcher:
    """The worker's thread that publishes changes nobody asked for.

    :param managers: the managers of the hosts the worker owns now.
    :param interval: seconds between full looks; 0 for events only.
    """

    def __init__(self, managers: Callable[[], dict[str, ComputeManager]], interval: float) -> None:
        self._managers = managers
        self._interval = interval
        self._pending: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._overflowed = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="instance-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)

    def hosts_changed(self) -> None:
        """The worker took hosts: learn their instances now."""
        self._wake.set()

    def changed(self, host: str, uuid: str) -> None:
        """The driver's hypervisor reported a change of ``uuid`` on ``host``."""
        with self._lock:
            if len(self._pending) < _MAX_PENDING:
                self._pending[(host, uuid)] = None
            else:
                self._overflowed = True
        self._wake.set()

    def _run(self) -> None:
        next_look = time.monotonic() + self._interval if self._interval else float("inf")
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(next_look - time.monotonic(), 3600.0)))
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                pending, self._pending = list(self._pending), collections.OrderedDict()
                overflowed, self._overflowed = self._overflowed, False
            managers = self._managers()
            for host, manager in sorted(managers.items()):
                if not watching(manager):  # new to this worker: learn its instances
                    self._look(manager, host, None)
            for host, uuid in pending:
                found = managers.get(host)
                if found is not None:
                    self._look(found, host, uuid)
            if overflowed or time.monotonic() >= next_look:
                for host, manager in sorted(managers.items()):
                    if self._stop.is_set():
                        return
                    self._look(manager, host, None)
                if self._interval:
                    next_look = time.monotonic() + self._interval

    @staticmethod
    def _look(manager: ComputeManager, host: str, uuid: str | None) -> None:
        try:
            if uuid is None:
                sync_instances(manager)
            else:
                sync_instances(manager, only=uuid, source="hypervisor")
        except Exception as exc:  # the hypervisor may be away; the next look retries
            LOG.warning("Looking at the instances of %s failed: %s", host, exc)
