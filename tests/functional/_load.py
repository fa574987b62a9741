"""A scheduler stand-in for tests that change workers under load."""

from __future__ import annotations

import threading
from typing import Any


class HostLoad:
    """One thread per host running :meth:`_run` until :meth:`finish`.

    Subclasses record what they send under :attr:`lock`.
    """

    def __init__(self, api: Any, hosts: list[str], join_timeout: float) -> None:
        self.api = api
        self.hosts = hosts
        self.join_timeout = join_timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(h,), daemon=True) for h in hosts]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.join_timeout)
        assert not any(t.is_alive() for t in self.threads), "a scheduler thread hangs"

    def _run(self, host: str) -> None:
        raise NotImplementedError
