"""nameko and Celery measured like the other stacks, on the same broker and in the same rounds.

Each peer is a server process plus an in-process client with the interface
of :mod:`tests.bench.stacks`: ``call`` is its nearest equivalent of an
oslo.messaging ``ping`` call (an RPC answered with the same small dict), and
``casts(n)`` sends ``n`` fire-and-forget messages, done when the server's
``count`` call says it handled them all.

* :class:`NamekoStack`: a nameko service under eventlet
  (:mod:`tests.bench.nameko_server`); calls through
  ``nameko.standalone.rpc.ClusterRpcProxy`` (one per client thread: a proxy
  is not thread-safe), casts as nameko events (persistent, with publisher
  confirms: nameko's defaults).
* :class:`CeleryStack`: a Celery worker with the threads pool
  (:mod:`tests.bench.celery_app`), results through ``rpc://``; a call is
  ``send_task(...).get()`` (an app per client thread: threads sharing one
  lose each other's replies), a cast a task that ignores its result.

Both live in the optional ``bench`` extra (``pip install -e '.[bench]'``);
:func:`available` says which are installed, and why not the others.
Their queues are their own frameworks' (classic, durable), whatever
``--queues`` chooses for the other two stacks.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from importlib import metadata
from typing import Any

from tests.bench.stacks import (
    REPO_ROOT,
    CastResult,
    child_env,
    count_until,
    start_ready_server,
    stop_server,
    tail,
    terminate,
)

#: The nameko service's name, and the service its ``work`` events claim to come
#: from (as in :mod:`tests.bench.nameko_server`, which this process must not
#: import: it monkey-patches the standard library for eventlet).
NAMEKO_SERVICE = "computed_bench"
NAMEKO_SOURCE = "computed_bench_client"

#: Peer name: (distribution, what to install).
PEERS = {
    "nameko": ("nameko", "pip install -e '.[bench]'"),
    "celery": ("celery", "pip install -e '.[bench]'"),
}


def available() -> tuple[dict[str, str], dict[str, str]]:
    """``({peer: version}, {peer: why it is skipped})``."""
    found, missing = {}, {}
    for name, (dist, install) in PEERS.items():
        if importlib.util.find_spec(name) is None:
            missing[name] = f"not installed ({install})"
            continue
        found[name] = metadata.version(dist)
    return found, missing


class NamekoStack:
    name = "nameko"

    def __init__(self, amqp_url: str, workdir: str) -> None:
        self.config = {"AMQP_URI": amqp_url}
        self.log_path = os.path.join(workdir, "nameko_server.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._local = threading.local()
        self._proxies: list[Any] = []
        self._proxies_lock = threading.Lock()
        self._dispatch: Any = None

    @property
    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 60.0) -> NamekoStack:
        from nameko.standalone.events import event_dispatcher

        self._proc = start_ready_server(
            [sys.executable, "-m", "tests.bench.nameko_server", "--url", self.config["AMQP_URI"]],
            self.log_path,
            "the nameko service",
            timeout,
        )
        self._dispatch = event_dispatcher(self.config)
        return self

    def _service(self) -> Any:
        """This thread's proxy to the service."""
        service = getattr(self._local, "service", None)
        if service is None:
            from nameko.standalone.rpc import ClusterRpcProxy

            proxy = ClusterRpcProxy(self.config, timeout=60)
            with self._proxies_lock:
                self._proxies.append(proxy)
            service = self._local.service = proxy.start()[NAMEKO_SERVICE]
        return service

    def call(self) -> Any:
        return self._service().ping()

    def casts(self, n: int) -> CastResult:
        service, dispatch = self._service(), self._dispatch
        base = service.count()
        start = time.perf_counter()
        for i in range(n):
            dispatch(NAMEKO_SOURCE, "work", {"n": i})
        sent = time.perf_counter()
        done = count_until(service.count, base, n, sent)
        return CastResult(n, done, 0, sent - start, time.perf_counter() - start)

    def stop(self) -> None:
        try:
            for proxy in self._proxies:
                try:
                    proxy.stop()
                except Exception:  # noqa: BLE001 - the broker may be gone already
                    pass
        finally:
            stop_server(self._proc)


class CeleryStack:
    name = "celery"

    def __init__(self, amqp_url: str, workdir: str, threads: int = 8) -> None:
        self.url = amqp_url
        self.threads = threads
        self.log_path = os.path.join(workdir, "celery_worker.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._local = threading.local()
        self._apps: list[Any] = []
        self._apps_lock = threading.Lock()

    @property
    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 60.0) -> CeleryStack:
        env = child_env()
        env["COMPUTED_BENCH_CELERY_BROKER"] = self.url
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tests.bench.celery_app",
                    "worker",
                    "--pool",
                    "threads",
                    "--concurrency",
                    str(self.threads),
                    "--loglevel",
                    "WARNING",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the celery worker exited with {self._proc.returncode}:\n{tail(self.log_path)}"
                )
            try:
                self._task("bench.ping", timeout=2)
                return self
            except Exception:  # noqa: BLE001 - not consuming yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the celery worker did not answer within {timeout:.0f} s:\n"
                        f"{tail(self.log_path)}"
                    ) from None

    def _app(self) -> Any:
        """This thread's Celery app (see :func:`tests.bench.celery_app.client`)."""
        app = getattr(self._local, "app", None)
        if app is None:
            from tests.bench import celery_app

            app = self._local.app = celery_app.client(self.url)
            with self._apps_lock:
                self._apps.append(app)
        return app

    def _task(self, name: str, timeout: float = 60, **kwargs: Any) -> Any:
        return self._app().send_task(name, kwargs=kwargs).get(timeout=timeout)

    def call(self) -> Any:
        return self._task("bench.ping")

    def casts(self, n: int) -> CastResult:
        send = self._app().send_task
        base = self._task("bench.count")
        start = time.perf_counter()
        for i in range(n):
            send("bench.work", kwargs={"n": i}, ignore_result=True)
        sent = time.perf_counter()
        done = count_until(lambda: self._task("bench.count"), base, n, sent)
        return CastResult(n, done, 0, sent - start, time.perf_counter() - start)

    def stop(self) -> None:
        try:
            for app in self._apps:
                app.close()
        finally:
            terminate(self._proc)


#: The peers, by name, as the runner starts them: ``STACKS[name](amqp_url, workdir)``.
STACKS: dict[str, type[NamekoStack] | type[CeleryStack]] = {
    "nameko": NamekoStack,
    "celery": CeleryStack,
}
