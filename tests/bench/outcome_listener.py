"""Counts the worker's lifecycle outcome notifications, in a process of its own.

``python -m tests.bench.outcome_listener --config-file FILE [--event OPERATION]``

Listens on the worker's notification topic (``[notifications] topic`` of the
configuration) for ``instance.<OPERATION>.end`` and ``.error`` and counts them
per ``request_id`` of the payload. Commands on stdin, one per line:

* ``expect REQUEST_ID N``: answer ``done REQUEST_ID ENDS ERRORS`` on stdout as
  soon as ENDS + ERRORS reaches N (at once if it already has).

Prints ``ready`` once it consumes. Running apart from the benchmark's client
keeps the cost of consuming notifications out of the client's measurements.
Stops at end of input, SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import warnings
from typing import Any


class Tracker:
    def __init__(self, operation: str) -> None:
        import oslo_messaging as messaging

        self.filter_rule = messaging.NotificationFilter(
            event_type=rf"^instance\.{re.escape(operation)}\.(end|error)$"
        )
        self._lock = threading.Lock()
        self._ends: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._expected: dict[str, int] = {}

    def info(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        self._record(self._ends, payload)

    def error(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> None:
        self._record(self._errors, payload)

    def expect(self, request_id: str, n: int) -> None:
        with self._lock:
            self._expected[request_id] = n
            self._check(request_id)

    def _record(self, counts: dict[str, int], payload: Any) -> None:
        data = payload.get("computed_object.data", payload) if isinstance(payload, dict) else {}
        request_id = data.get("request_id")
        if request_id is None:
            return
        with self._lock:
            counts[request_id] = counts.get(request_id, 0) + 1
            self._check(request_id)

    def _check(self, request_id: str) -> None:
        expected = self._expected.get(request_id)
        ends, errors = self._ends.get(request_id, 0), self._errors.get(request_id, 0)
        if expected is not None and ends + errors >= expected:
            del self._expected[request_id]
            print(f"done {request_id} {ends} {errors}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.outcome_listener")
    parser.add_argument("--config-file", required=True, help="the worker's configuration file")
    parser.add_argument("--event", default="reboot", help="the operation to count (reboot)")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    import oslo_messaging as messaging
    from oslo_config import cfg

    from computed.conf import notifications as notifications_conf

    conf = cfg.CONF
    notifications_conf.register_opts(conf)
    conf(
        ["--config-file", args.config_file],
        project="computed",
        default_config_files=[],
        default_config_dirs=[],
    )
    transport = messaging.get_notification_transport(conf)
    tracker = Tracker(args.event)
    listener = messaging.get_notification_listener(
        transport, [messaging.Target(topic=conf.notifications.topic)], [tracker]
    )

    def _on_signal(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)  # leaves the read loop below

    signal.signal(signal.SIGTERM, _on_signal)
    listener.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "expect":
                tracker.expect(parts[1], int(parts[2]))
    except (SystemExit, KeyboardInterrupt, ValueError):
        pass
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
