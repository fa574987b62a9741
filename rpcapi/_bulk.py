"""One operation on many hosts at once, with bounded concurrency and a result per host."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["HostResult", "for_each_host"]


@dataclasses.dataclass(frozen=True)
class HostResult:
    """What one host answered: its ``value``, or the ``error`` it raised (then value is None)."""

    host: str
    value: Any = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def for_each_host(
    call: Callable[[str], Any], hosts: Iterable[str], concurrency: int
) -> dict[str, HostResult]:
    """``call(host)`` for each host, at most ``concurrency`` at a time.

    An error is that host's result: it never stops the others.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    names = list(dict.fromkeys(hosts))
    if not names:
        return {}

    def one(host: str) -> HostResult:
        try:
            return HostResult(host, call(host))
        except Exception as exc:
            return HostResult(host, error=exc)

    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(names)), thread_name_prefix="for-each-host"
    ) as pool:
        return {result.host: result for result in pool.map(one, names)}
