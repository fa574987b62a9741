"""``computed`` workers as separate processes, for functional tests and demos.

::

    worker = WorkerProcess(workdir, {
        "DEFAULT": {"transport_url": broker.url, "driver": "fake", "hosts": ["h1", "h2"]},
        "registry": {"connection": "sqlite:///" + workdir + "/registry.sqlite"},
    }).start()
    ...
    worker.terminate()     # SIGTERM: drain, deregister, exit 0
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from computed.registry import Registry

__all__ = ["WorkerProcess", "write_config", "computed_command", "console_command"]

Options = Mapping[str, Mapping[str, Any]]


#: The project's console scripts and the modules behind them.
_SCRIPTS = {
    "computed": "computed.cmd.worker",
    "computedctl": "computed.cmd.ctl",
    "computed-conformance": "computed.cmd.conformance",
}


def console_command(name: str) -> list[str]:
    """The command line of one of the project's console scripts in this environment.

    The script next to this interpreter comes first (a virtualenv's), then
    one on PATH, then ``python -m`` of its module.
    """
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(script, os.X_OK):
        return [script]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", _SCRIPTS[name]]


def computed_command() -> list[str]:
    """The ``computed`` console script of this environment."""
    return console_command("computed")


def write_config(path: str, options: Options) -> str:
    """Write an oslo.config INI file; lists become comma-separated values."""
    lines: list[str] = []
    for group, values in options.items():
        lines.append(f"[{group}]")
        for key, value in values.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, dict):
                value = ",".join(f"{k}:{v}" for k, v in value.items())
            lines.append(f"{key} = {value}")
        lines.append("")
    # Private: it may hold broker and hypervisor passwords.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


class WorkerProcess:
    """One ``computed`` process with its own config file and log file.

    :param command: the ``computed`` command to run, by default this
        environment's; another environment's (an older release, say) works too.
    :param env: variables added to the process's environment.
    """

    def __init__(
        self,
        workdir: str,
        options: Options,
        name: str = "worker",
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.command = command
        self.env = env
        self.options = options
        self.name = name
        self.config_path = os.path.join(workdir, f"{name}.conf")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def worker_id(self) -> str:
        return str(self.options["DEFAULT"].get("worker_id", ""))

    def start(self, wait: bool = True, timeout: float = 60.0) -> WorkerProcess:
        """Start the process; with ``wait``, return once its hosts are registered.

        :raises RuntimeError: if the process exits or is not ready in time,
            with the end of its log.
        """
        write_config(self.config_path, self.options)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*(self.command or computed_command()), "--config-file", self.config_path],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
            )
        if wait:
            self.wait_registered(timeout)
        return self

    def wait_registered(self, timeout: float = 60.0) -> None:
        registry = Registry(self.options["registry"]["connection"])
        worker_id = self.worker_id
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.poll() is not None:
                    raise RuntimeError(
                        f"worker {self.name} exited with {self.poll()}:\n{self.log()}"
                    )
                try:
                    # Plain SQL on columns every schema revision has: the worker
                    # may be an older release that created an older schema.
                    with registry.engine.connect() as connection:
                        rows = connection.execute(sa.text("SELECT id, state, pid FROM workers"))
                        if any(tuple(row) == (worker_id, "up", self.pid) for row in rows):
                            return
                except Exception:  # the schema may not exist yet
                    pass
                time.sleep(0.1)
        finally:
            registry.close()
        raise RuntimeError(f"worker {self.name} not registered after {timeout} s:\n{self.log()}")

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL after ``timeout``)."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> int:
        return self._signal_and_wait(signal.SIGKILL, 10.0)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.poll() is None:
            self.terminate()

    def _signal_and_wait(self, sig: int, timeout: float) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10.0)
