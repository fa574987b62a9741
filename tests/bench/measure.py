"""One benchmark round against one stack: warm-up, sequential calls, concurrent calls, casts.

Besides wall-clock figures, each round records CPU time per operation: the
client's (this whole process, from getrusage) and the server's (from
``/proc/<pid>/stat``). CPU time is much less disturbed than latency by other
load on the machine, so it shows a stack's own cost more steadily.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.bench.stats import percentile

_TICKS = os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _per_op_us(before: float | None, after: float | None, n: int) -> float | None:
    if before is None or after is None:
        return None
    return (after - before) * 1e6 / n


def sequential(call: Callable[[], Any], n: int) -> tuple[list[float], float]:
    """``n`` calls one after the other: (latencies in ms, elapsed seconds)."""
    latencies = []
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        t0 = clock()
        call()
        latencies.append((clock() - t0) * 1000.0)
    return latencies, clock() - start


def concurrent(call: Callable[[], Any], n: int, threads: int) -> float:
    """``n`` calls shared by ``threads`` client threads: elapsed seconds."""
    shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    def run(count: int) -> None:
        barrier.wait()
        try:
            for _ in range(count):
                call()
        except BaseException as exc:  # reported after the join
            failures.append(exc)

    workers = [threading.Thread(target=run, args=(c,), daemon=True) for c in shares]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise failures[0]
    return elapsed


def run_round(
    stack: Any, calls: int, casts: int, threads: int, warmup: int, client_profile: Any = None
) -> dict[str, Any]:
    """Measure ``stack`` once; ``calls`` 0 times casts only. ``client_profile`` (a
    cProfile.Profile) is enabled around the sequential calls only, in this thread."""
    for _ in range(warmup):
        stack.call()

    calls_measured = _calls(stack, calls, threads, client_profile) if calls else {}

    cast_server0 = process_cpu(stack.server_pid)
    cast = stack.casts(casts)
    cast_server1 = process_cpu(stack.server_pid)
    return {
        **dict.fromkeys(CALL_METRICS),
        **calls_measured,
        "casts_per_s": cast.completed / cast.total_seconds if cast.complete else None,
        "cast_send_per_s": cast.sent / cast.send_seconds if cast.send_seconds > 0 else None,
        "server_cpu_us_per_cast": _per_op_us(cast_server0, cast_server1, casts),
        "casts_completed": cast.completed,
        "casts_errors": cast.errors,
    }


#: What :func:`run_round` reports of calls (None when it times none).
CALL_METRICS = (
    "call_p50_ms",
    "call_p99_ms",
    "call_mean_ms",
    "calls_per_s",
    "client_cpu_us_per_call",
    "server_cpu_us_per_call",
    "concurrent_calls_per_s",
)


def _calls(stack: Any, calls: int, threads: int, client_profile: Any) -> dict[str, Any]:
    """Sequential then concurrent calls; ``client_profile`` covers the sequential ones."""
    client0, server0 = self_cpu(), process_cpu(stack.server_pid)
    if client_profile is not None:
        client_profile.enable()
    try:
        latencies, elapsed = sequential(stack.call, calls)
    finally:
        if client_profile is not None:
            client_profile.disable()
    client1, server1 = self_cpu(), process_cpu(stack.server_pid)
    conc_elapsed = concurrent(stack.call, calls, threads)
    return {
        "call_p50_ms": percentile(latencies, 50),
        "call_p99_ms": percentile(latencies, 99),
        "call_mean_ms": sum(latencies) / len(latencies),
        "calls_per_s": calls / elapsed,
        "client_cpu_us_per_call": _per_op_us(client0, client1, calls),
        "server_cpu_us_per_call": _per_op_us(server0, server1, calls),
        "concurrent_calls_per_s": calls / conc_elapsed,
    }
