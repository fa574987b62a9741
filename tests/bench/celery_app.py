"""A Celery app for the benchmark's peers: ``ping``, ``count`` and a ``work`` task.

The worker runs as ``python -m celery -A tests.bench.celery_app worker
--pool threads`` with the broker URL in ``COMPUTED_BENCH_CELERY_BROKER``;
each client thread sends the same tasks by name through an app of its own
(:func:`client`). Results go back
through the ``rpc://`` backend (a reply queue per client, like an
oslo.messaging call); ``work`` ignores its result, so sending it is a cast.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery

#: The queue of the benchmark's tasks (not Celery's default, on a shared broker).
QUEUE = "computed_bench_celery"

_CONFIG = {
    "result_backend": "rpc://",
    "task_default_queue": QUEUE,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
}

app = Celery("computed_bench")
app.conf.update(_CONFIG, broker_url=os.environ.get("COMPUTED_BENCH_CELERY_BROKER", "amqp://"))

_lock = threading.Lock()
_handled = 0


@app.task(name="bench.ping")
def ping() -> dict[str, str]:
    return {"host": "celery-1", "worker_id": "celery", "driver": "none", "rpc_version": "1.0"}


@app.task(name="bench.work", ignore_result=True)
def work(n: int) -> None:
    global _handled
    with _lock:
        _handled += 1


@app.task(name="bench.count")
def count() -> int:
    with _lock:
        return _handled


def client(url: str) -> Any:
    """A client's app on the broker at ``url``, sending the tasks above by name.

    One per client thread: the ``rpc://`` backend's replies come back on one
    queue per app, and threads sharing it lose each other's replies.
    """
    own = Celery("computed_bench_client")
    own.conf.update(_CONFIG, broker_url=url)
    return own
