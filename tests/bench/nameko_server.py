"""A nameko service for the benchmark's peers: ``ping``, ``count`` and a ``work`` event.

``python -m tests.bench.nameko_server --url AMQP_URL``

``ping`` answers the same small dict as :mod:`tests.bench.bare_server`;
``work`` is nameko's fire-and-forget message (an event, dispatched by
``nameko.standalone.events``), counted; ``count`` returns how many were
handled. Runs under eventlet, as ``nameko run`` does. Prints ``ready`` on
stdout once the service consumes, stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import warnings

warnings.simplefilter("ignore")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything else imports socket or threading

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from nameko.events import event_handler  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

#: The service name, and the name the client's events claim to come from
#: (``NAMEKO_SERVICE`` and ``NAMEKO_SOURCE`` in :mod:`tests.bench.peers`).
SERVICE = "computed_bench"
SOURCE = "computed_bench_client"


class BenchService:
    name = SERVICE
    # Green threads switch only on I/O: a plain counter needs no lock.
    handled = 0

    @rpc
    def ping(self) -> dict[str, str]:
        return {"host": "nameko-1", "worker_id": "nameko", "driver": "none", "rpc_version": "1.0"}

    @rpc
    def count(self) -> int:
        return BenchService.handled

    @event_handler(SOURCE, "work")
    def work(self, payload: Any) -> None:
        BenchService.handled += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.nameko_server")
    parser.add_argument("--url", required=True, help="AMQP URI (amqp://user:pw@host:port/vhost)")
    args = parser.parse_args(argv)
    runner = ServiceRunner({"AMQP_URI": args.url})
    runner.add_service(BenchService)

    def _on_signal(_signum: int, _frame: Any) -> None:
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    runner.start()
    print("ready", flush=True)
    runner.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
