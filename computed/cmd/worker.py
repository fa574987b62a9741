"""``computed``: serve one driver's hosts over the compute RPC contract.

Exit status: 0 after a clean stop (SIGTERM or SIGINT), 2 for a
configuration or driver problem, 3 when the broker cannot be reached, 4
when the registry cannot be used, 1 for anything else. A failure at start
prints one line saying why.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from types import FrameType

from oslo_config import cfg
from oslo_log import log as logging

from computed import conf as computed_conf
from computed import exception
from computed.conf import worker as worker_conf
from computed.service import Worker

__all__ = ["OPERATION_LINE", "main"]

LOG = logging.getLogger(__name__)

#: The default format of a line written while an operation runs: its request
#: id and host, then oslo.log's ``[instance: UUID]`` (computed._logcontext).
#: Other lines keep ``logging_default_format_string`` (``[-]`` in that place).
OPERATION_LINE = (
    "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s "
    "[%(request_id)s %(host)s] %(instance)s%(message)s"
)

_EXIT_CODES: tuple[tuple[type[exception.ComputedError], int], ...] = (
    (exception.ConfigError, 2),
    (exception.DriverLoadError, 2),
    (exception.BrokerUnavailable, 3),
    (exception.RegistryError, 4),
)


def main(argv: list[str] | None = None) -> int:
    conf = computed_conf.CONF
    worker_conf.register_cli_opts(conf)
    computed_conf.register_all(conf)
    logging.register_options(conf)
    # spnego logs NTLM handshake messages at DEBUG; a response derived from a
    # hypervisor password does not belong in the worker's logs.
    logging.set_defaults(
        logging_context_format_string=OPERATION_LINE,
        default_log_levels=logging.get_default_log_levels() + ["spnego=INFO", "winrm=INFO"],
    )
    try:
        conf(sys.argv[1:] if argv is None else argv, project="computed")
    except cfg.Error as exc:
        return _fail(f"configuration error: {exc}", 2)
    logging.setup(conf, "computed")

    stop_requested = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("Received %s; stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    worker = Worker(conf)
    try:
        worker.start()
    except exception.ComputedError as exc:
        if worker.started_anything:
            worker.stop()
        code = next((c for kind, c in _EXIT_CODES if isinstance(exc, kind)), 1)
        return _fail(str(exc), code)
    # Start-up leaves a large heap (SQLAlchemy, alembic, oslo) that never dies;
    # keeping it out of the collector's generations removes its pauses.
    gc.collect()
    gc.freeze()
    while not stop_requested.wait(1.0):
        pass
    if not worker.stop():
        # Threads still busy in the driver would keep the interpreter alive.
        logging_shutdown()
        os._exit(0)
    return 0


def logging_shutdown() -> None:
    import logging as std_logging

    std_logging.shutdown()


def _fail(message: str, code: int) -> int:
    print(f"computed: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
