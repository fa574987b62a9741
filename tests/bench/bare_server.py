"""A plain oslo.messaging RPC server: the baseline the full stack is compared with.

``python -m tests.bench.bare_server --url URL --topic TOPIC --server NAME``

One endpoint with ``ping`` (a call answering a small dict, like the worker's
PingResult), ``work`` (a cast handler that only counts) and ``count`` (a call
returning how many ``work`` casts were handled). Default (threading) executor,
no serializer. Prints ``ready`` on stdout once it consumes, stops on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from typing import Any


class BareEndpoint:
    def __init__(self, server: str) -> None:
        self._server = server
        self._lock = threading.Lock()
        self._count = 0

    def ping(self, ctxt: Any) -> dict[str, str]:
        return {"host": self._server, "worker_id": "bare", "driver": "none", "rpc_version": "1.0"}

    def work(self, ctxt: Any, n: int) -> None:
        with self._lock:
            self._count += 1

    def count(self, ctxt: Any) -> int:
        with self._lock:
            return self._count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bare_server")
    parser.add_argument("--url", required=True, help="oslo.messaging transport URL")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--quorum", action="store_true", help="quorum queues")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    import oslo_messaging as messaging
    from oslo_config import cfg

    cfg.CONF([], project="bench-bare", default_config_files=[], default_config_dirs=[])
    transport = messaging.get_rpc_transport(cfg.CONF, url=args.url)
    cfg.CONF.set_override("rabbit_quorum_queue", args.quorum, group="oslo_messaging_rabbit")
    server = messaging.get_rpc_server(
        transport,
        messaging.Target(topic=args.topic, server=args.server),
        [BareEndpoint(args.server)],
    )
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    print("ready", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
