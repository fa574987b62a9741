"""Text summaries of the pstats files written by ``python -m tests.bench --cprofile DIR``."""

from __future__ import annotations

import os
import pstats

_SKIP = ("threading.py", "<frozen runpy>", "tests/bench/")


def _name(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func  # a builtin
    parts = filename.split(os.sep)
    return f"{func} ({'/'.join(parts[-2:])}:{line})"


def summarize(path: str, title: str, per: int | None = None, top: int = 30) -> str:
    """The ``top`` functions by cumulative CPU time; with ``per``, also microseconds per
    operation (total time divided by ``per``, the operations the profile covers)."""
    stats = pstats.Stats(path)
    rows = []
    for key, (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        name = _name(key)
        if any(s in key[0] for s in _SKIP):
            continue
        rows.append((cumtime, tottime, ncalls, name))
    rows.sort(reverse=True)
    total = stats.total_tt  # type: ignore[attr-defined]
    head = f"{title}: {total:.2f} s of CPU in {os.path.basename(path)}"
    if per:
        head += f" = {total * 1e6 / per:.0f} us per operation over {per}"
    lines = [head]
    if per:
        lines.append(f"{'ncalls':>9} {'cum us/op':>10} {'self us/op':>10} {'us/call':>8}  function")
    else:
        lines.append(f"{'ncalls':>9} {'cum s':>10} {'self s':>10} {'us/call':>8}  function")
    for cumtime, tottime, ncalls, name in rows[:top]:
        scale = 1e6 / per if per else 1.0
        lines.append(
            f"{ncalls:9d} {cumtime * scale:10.1f} {tottime * scale:10.1f} "
            f"{cumtime * 1e6 / max(ncalls, 1):8.1f}  {name}"
        )
    return "\n".join(lines)
