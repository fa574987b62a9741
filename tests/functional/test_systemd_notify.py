"""The worker speaks systemd's notify protocol (Type=notify units), on a socket of the test's own."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from computed.testing.broker import RabbitMQBroker
from computed.testing.workers import WorkerProcess
from tests.functional.conftest import Deployment, wait_until


class _NotifySocket:
    """What systemd listens on: a datagram socket; each datagram is KEY=value lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[str] = []

    def wait_for(self, line: str, timeout: float = 60.0) -> list[str]:
        """Every line received until ``line``, which must come within ``timeout``."""
        deadline = time.monotonic() + timeout
        while line not in self.received:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {line!r} within {timeout} s; got {self.received}"
            self.sock.settimeout(remaining)
            try:
                datagram = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.extend(datagram.decode().splitlines())
        return list(self.received)

    def close(self) -> None:
        self.sock.close()


def test_ready_watchdog_and_stopping(deployment: Deployment, tmp_path: Path) -> None:
    notify = _NotifySocket(tmp_path / "notify.sock")
    host = f"sd-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(
        str(deployment.workdir),
        deployment.worker_options([host], f"sd-{host}"),
        name="sd",
        env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"},
    )
    deployment.workers.append(worker)
    try:
        worker.start(wait=False)
        lines = notify.wait_for("READY=1")
        assert "STATUS=serving 1 of 1 host(s)" in lines
        # Serving by the time it says so.
        assert deployment.api().ping(None, host).worker_id == f"sd-{host}"
        notify.received.clear()
        notify.wait_for("WATCHDOG=1")  # fed while the registry and broker answer
        notify.received.clear()
        worker.process.send_signal(15)  # type: ignore[union-attr]
        notify.wait_for("STOPPING=1")
        assert worker.wait(60) == 0
    finally:
        notify.close()


@pytest.mark.chaos
def test_no_watchdog_pings_while_the_broker_is_away(deployment: Deployment, tmp_path: Path) -> None:
    """A worker cut off from its broker stops feeding the watchdog, so systemd restarts it
    if the broker stays away past WatchdogSec; fed again once it is back."""
    notify = _NotifySocket(tmp_path / "notify.sock")
    host = f"sd-{uuid.uuid4().hex[:6]}"
    with RabbitMQBroker() as broker:
        options = deployment.worker_options([host], f"sd2-{host}")
        options["DEFAULT"]["transport_url"] = broker.url
        worker = WorkerProcess(
            str(deployment.workdir),
            options,
            name="sd2",
            env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"},
        )
        deployment.workers.append(worker)
        try:
            worker.start(wait=False)
            notify.wait_for("READY=1")
            notify.wait_for("WATCHDOG=1")
            broker.stop_node()
            # Once the worker has seen its listener connection drop, no ping
            # comes for several heartbeats (0.5 s each).
            wait_until(lambda: "lost" in worker.log(), 60, "the worker noticing the broker gone")
            notify.received.clear()
            with pytest.raises(AssertionError, match="no 'never'"):
                notify.wait_for("never", timeout=3.0)  # six heartbeats' worth of datagrams
            # One ping may have been on its way as the connection dropped; a
            # worker that went on feeding the watchdog would have sent six.
            assert notify.received.count("WATCHDOG=1") <= 1, notify.received
            broker.start_node()
            notify.wait_for("WATCHDOG=1", timeout=120)
        finally:
            notify.close()
