"""The two stacks under test, each a server subprocess plus an in-process client.

* :class:`BareStack`: ``tests.bench.bare_server`` and a plain RPCClient.
* :class:`FullStack`: a real ``computed`` worker with the fake driver and
  ``rpcapi.ComputeAPI``; cast completion is observed through the worker's
  ``instance.reboot.end`` notifications, counted by
  :mod:`tests.bench.outcome_listener` in a process of its own.

Both expose the same small interface to :mod:`tests.bench.runner`: ``start``,
``call`` (one ``ping`` round trip), ``casts(n)``, ``server_pid`` and ``stop``.
"""

from __future__ import annotations

import dataclasses
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

#: The repository root (the directory holding ``tests/``): the servers import the same tree.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Upper bound on waiting for a batch of casts to be processed; a guard against
#: hanging forever, never a judgement on speed (the batch is reported incomplete).
CAST_BATCH_GUARD = 300.0

#: How often the bare client polls the server's counter while casts drain
#: (each poll is a call the server also serves: not too often).
BARE_POLL_INTERVAL = 0.01


@dataclasses.dataclass
class CastResult:
    sent: int
    completed: int
    errors: int
    send_seconds: float
    total_seconds: float  # first send until the last one is known processed

    @property
    def complete(self) -> bool:
        return self.completed >= self.sent


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + path if path else "")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _launcher(module: str, profile_dir: str | None, name: str) -> list[str]:
    """``python -m module``, or the same under :mod:`tests.bench.cprofiled`."""
    if profile_dir is None:
        return [sys.executable, "-m", module]
    out = os.path.join(profile_dir, f"server-{name}.pstats")
    return [sys.executable, "-m", "tests.bench.cprofiled", "--out", out, module]


def terminate(proc: subprocess.Popen[Any] | None, timeout: float = 30.0) -> int | None:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        except ProcessLookupError:
            pass
    return proc.wait()


def start_ready_server(
    command: list[str], log_path: str, what: str, timeout: float
) -> subprocess.Popen[bytes]:
    """Start a server that prints ``ready`` on stdout once it consumes, and wait for it.

    :raises RuntimeError: with the end of its log, once the process is gone, if
        it did not say ``ready`` within ``timeout`` seconds.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT, env=child_env()
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if (proc.stdout.readline() if ready else b"").strip() != b"ready":
        stop_server(proc)
        raise RuntimeError(f"{what} did not start:\n{tail(log_path)}")
    return proc


def stop_server(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a server :func:`start_ready_server` started."""
    terminate(proc)
    if proc is not None and proc.stdout is not None:
        proc.stdout.close()


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


class BareStack:
    name = "bare"

    def __init__(
        self,
        url: str,
        workdir: str,
        topic: str = "bench_bare",
        server: str = "bare-1",
        profile_dir: str | None = None,
        quorum: bool = False,
    ):
        self.url = url
        self.quorum = quorum
        self.profile_dir = profile_dir
        self.topic = topic
        self.server = server
        self.log_path = os.path.join(workdir, "bare_server.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._transport: messaging.Transport | None = None
        self._cctxt: Any = None

    @property
    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 60.0) -> BareStack:
        self._proc = start_ready_server(
            [
                *_launcher("tests.bench.bare_server", self.profile_dir, self.name),
                *("--url", self.url, "--topic", self.topic, "--server", self.server),
                *(["--quorum"] if self.quorum else []),
            ],
            self.log_path,
            "the bare server",
            timeout,
        )
        self._transport = messaging.get_rpc_transport(cfg.CONF, url=self.url)
        client = messaging.get_rpc_client(self._transport, messaging.Target(topic=self.topic))
        self._cctxt = client.prepare(server=self.server, timeout=60)
        return self

    def call(self) -> Any:
        return self._cctxt.call({}, "ping")

    def casts(self, n: int) -> CastResult:
        cctxt = self._cctxt
        base = cctxt.call({}, "count")
        start = time.perf_counter()
        for i in range(n):
            cctxt.cast({}, "work", n=i)
        sent = time.perf_counter()
        done = count_until(lambda: cctxt.call({}, "count"), base, n, sent)
        end = time.perf_counter()
        return CastResult(n, done, 0, sent - start, end - start)

    def stop(self) -> None:
        transport, self._transport = self._transport, None
        try:
            if transport is not None:
                transport.cleanup()
        finally:
            stop_server(self._proc)


def count_until(count: Callable[[], int], base: int, n: int, sent: float) -> int:
    """Poll a server's ``count`` of casts processed until it reaches ``base + n``, or
    :data:`CAST_BATCH_GUARD` seconds after ``sent`` pass; how many it processed."""
    done = base
    while time.perf_counter() - sent < CAST_BATCH_GUARD:
        done = count()
        if done >= base + n:
            break
        time.sleep(BARE_POLL_INTERVAL)
    return done - base


class FullStack:
    name = "full"

    def __init__(
        self,
        conf_file: str,
        workdir: str,
        host: str,
        instances: int = 4,
        profile_dir: str | None = None,
    ):
        self.conf_file = conf_file
        self.profile_dir = profile_dir
        self.host = host
        self.log_path = os.path.join(workdir, "worker.log")
        self.n_instances = instances
        self.uuids: list[str] = []
        self.listener_log_path = os.path.join(workdir, "outcome_listener.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._listener: subprocess.Popen[bytes] | None = None
        self._api: Any = None
        self._ctxt: Any = None

    @property
    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def worker_command(self) -> list[str]:
        """The ``computed`` console script of this interpreter's environment."""
        if self.profile_dir is not None:
            return _launcher("computed.cmd.worker", self.profile_dir, self.name)
        script = os.path.join(os.path.dirname(sys.executable), "computed")
        if os.path.exists(script):
            return [script]
        found = shutil.which("computed")
        return [found] if found else [sys.executable, "-m", "computed.cmd.worker"]

    def start(self, timeout: float = 60.0) -> FullStack:
        from oslo_context import context as oslo_context

        from computed import exception
        from computed.objects import InstanceSpec
        from rpcapi import ComputeAPI

        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [*self.worker_command(), "--config-file", self.conf_file],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=child_env(),
            )
        self._api = ComputeAPI()
        self._ctxt = oslo_context.RequestContext()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"computed exited with {self._proc.returncode}:\n{tail(self.log_path)}"
                )
            try:
                self._api.ping(self._ctxt, self.host)
                break
            except (exception.HostUnavailable, exception.HostTimeout, exception.RegistryError):
                # not registered yet (the worker creates the registry schema at start)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"computed did not serve {self.host} within {timeout:.0f} s:\n"
                        f"{tail(self.log_path)}"
                    ) from None
                time.sleep(0.2)
        # Listen for outcomes before the first cast, so none is missed.
        with open(self.listener_log_path, "ab") as log:
            self._listener = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.outcome_listener",
                    "--config-file",
                    self.conf_file,
                    "--event",
                    "reboot",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                env=child_env(),
            )
        if self._read_listener(timeout) != ["ready"]:
            raise RuntimeError(
                f"the outcome listener did not start:\n{tail(self.listener_log_path)}"
            )
        for i in range(self.n_instances):
            spec = InstanceSpec(uuid=str(uuid.uuid4()), name=f"bench-{i}", vcpus=1, memory_mb=128)
            self._api.spawn(self._ctxt, self.host, spec)
            self.uuids.append(spec.uuid)
        return self

    def call(self) -> Any:
        return self._api.ping(self._ctxt, self.host)

    def casts(self, n: int) -> CastResult:
        from oslo_context import context as oslo_context

        ctxt = oslo_context.RequestContext()  # its request_id marks this batch's outcomes
        assert self._listener is not None and self._listener.stdin is not None
        self._listener.stdin.write(f"expect {ctxt.request_id} {n}\n".encode())
        self._listener.stdin.flush()
        api, host, uuids = self._api, self.host, self.uuids
        start = time.perf_counter()
        for i in range(n):
            api.reboot(ctxt, host, uuids[i % len(uuids)], cast=True)
        sent = time.perf_counter()
        ends = errors = 0
        while time.perf_counter() - sent < CAST_BATCH_GUARD:
            words = self._read_listener(CAST_BATCH_GUARD - (time.perf_counter() - sent))
            if words[:2] == ["done", ctxt.request_id]:
                ends, errors = int(words[2]), int(words[3])
                break
            if not words:
                break
        end = time.perf_counter()
        return CastResult(n, ends + errors, errors, sent - start, end - start)

    def _read_listener(self, timeout: float) -> list[str]:
        """The listener's next line, split; [] on timeout or end of output."""
        assert self._listener is not None and self._listener.stdout is not None
        ready, _, _ = select.select([self._listener.stdout], [], [], max(timeout, 0))
        return self._listener.stdout.readline().decode().split() if ready else []

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        try:
            if listener is not None:
                if listener.stdin is not None:
                    try:
                        listener.stdin.close()  # end of input: it stops by itself
                    except OSError:
                        pass
                try:
                    listener.wait(15)
                except subprocess.TimeoutExpired:
                    terminate(listener)
                if listener.stdout is not None:
                    listener.stdout.close()
        finally:
            try:
                if self._api is not None:
                    self._api.cleanup()
            finally:
                terminate(self._proc, timeout=60.0)
