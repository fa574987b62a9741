"""Run a program's ``main()`` under cProfile in every thread, then write the merged stats.

``python -m tests.bench.cprofiled --out FILE.pstats MODULE [ARGS...]`` imports
MODULE, calls its ``main(ARGS)`` and, once it returns, writes one pstats file
covering all threads (oslo.messaging dispatches on executor threads, which a
plain ``python -m cProfile`` would miss). Times are CPU time per thread
(``time.thread_time_ns``), so threads blocked on the network cost nothing.
Only the benchmark uses this, for ``python -m tests.bench --cprofile DIR``.
"""

from __future__ import annotations

import cProfile
import importlib
import pstats
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_guard = threading.Lock()


def new_profile() -> cProfile.Profile:
    return cProfile.Profile(time.thread_time_ns, 1e-9)


def _install() -> None:
    original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def bootstrap_inner(self: threading.Thread) -> None:
        profile = new_profile()
        with _guard:
            _profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]


def dump(path: str) -> None:
    with _guard:
        profiles = list(_profiles)
    stats = None
    for profile in profiles:
        profile.create_stats()
        if not profile.stats:
            continue
        if stats is None:
            stats = pstats.Stats(profile)
        else:
            stats.add(profile)
    if stats is not None:
        stats.dump_stats(path)


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--out":
        print(__doc__, file=sys.stderr)
        return 2
    out, module_name, rest = args[1], args[2], args[3:]
    _install()
    main_profile = new_profile()
    _profiles.append(main_profile)
    module = importlib.import_module(module_name)
    sys.argv = [module_name, *rest]
    main_profile.enable()
    try:
        code = module.main(rest)
    finally:
        main_profile.disable()
        dump(out)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
