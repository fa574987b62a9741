"""Bare oslo.messaging against the full computed stack, in alternating rounds on one broker.

Everything runs on one private RabbitMQ (``computed.testing.RabbitMQBroker``)
started and stopped here. All servers stay up for the whole run; the rounds
rotate which stack goes first, so machine noise lands on all alike, and
the report gives the median over rounds. When the ``bench`` extra is
installed, nameko and Celery (:mod:`tests.bench.peers`) run in the same
rounds on the same broker, and their ratios to bare oslo.messaging are
printed beside the full stack's. Nothing here passes or fails on speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from importlib import metadata
from typing import Any

from tests.bench.stats import median

METRICS = (
    # key, label, kind ("lower" or "higher" is better)
    ("call_p50_ms", "call p50 (ms)", "lower"),
    ("call_p99_ms", "call p99 (ms)", "lower"),
    ("call_mean_ms", "call mean (ms)", "lower"),
    ("calls_per_s", "sequential calls/s", "higher"),
    ("client_cpu_us_per_call", "client CPU us/call", "lower"),
    ("server_cpu_us_per_call", "server CPU us/call", "lower"),
    ("concurrent_calls_per_s", "concurrent calls/s ({threads} thr)", "higher"),
    ("casts_per_s", "casts/s processed", "higher"),
    ("cast_send_per_s", "casts/s sent (client only)", "higher"),
    ("server_cpu_us_per_cast", "server CPU us/cast", "lower"),
)

GOAL = 1.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Compare a full-stack computed call with bare oslo.messaging "
        "on one private RabbitMQ broker. Prints a table; never fails on speed.",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=1000,
        help="calls per round, for the sequential and the concurrent run (1000)",
    )
    parser.add_argument("--casts", type=int, default=1000, help="casts per round (1000)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds per stack, alternating which goes first (4)"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="client threads for the concurrent run (8)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="untimed calls at the start of each round (200)"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=4,
        help="fake instances the full-stack casts reboot in turn (4)",
    )
    parser.add_argument(
        "--queues",
        choices=("quorum", "classic"),
        default="quorum",
        help="queue type for both stacks: quorum (the default, docs/delivery.md) or classic",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="leave out nameko and Celery even when the bench extra is installed",
    )
    parser.add_argument(
        "--casts-only",
        action="store_true",
        help="measure casts only: no timed calls (the warm-up calls still run); "
        "the quick way to compare a cast's cost with bare oslo.messaging's",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument(
        "--cprofile",
        metavar="DIR",
        help="run both servers under cProfile (all threads, CPU time) and "
        "profile the client's sequential calls; pstats files and a summary "
        "go to DIR. Profiling slows everything: its timings are not comparable "
        "with a normal run",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (configuration, server logs)",
    )
    args = parser.parse_args(argv)
    for name in ("calls", "casts", "rounds", "threads", "instances"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "oslo.messaging": _version("oslo.messaging"),
        "kombu": _version("kombu"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def _write_conf(workdir: str, url: str, host: str, quorum: bool) -> str:
    path = os.path.join(workdir, "computed.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(
            "[DEFAULT]\n"
            f"transport_url = {url}\n"
            "driver = fake\n"
            f"hosts = {host}\n"
            "worker_id = bench-worker\n"
            "[registry]\n"
            f"connection = sqlite:///{workdir}/registry.sqlite\n"
            # a fresh registry has no recorded conformance run for the fake driver
            "[conformance]\n"
            "required_tier = untested\n"
            "[oslo_messaging_rabbit]\n"
            f"rabbit_quorum_queue = {str(quorum).lower()}\n"
        )
    return path


def _fmt(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for key, _label, kind in METRICS:
        entry: dict[str, Any] = {"kind": kind}
        for stack, rounds in results.items():
            values = [r[key] for r in rounds if r.get(key) is not None]
            entry[stack] = {
                "median": median(values) if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
            }
        bare = entry["bare"]["median"]
        entry["ratio"] = {
            stack: _ratio(bare, entry[stack]["median"], kind)
            for stack in results
            if stack != "bare"
        }
        entry["slowdown"] = entry["ratio"].get("full")
        summary[key] = entry
    return summary


def _ratio(bare: float | None, other: float | None, kind: str) -> float | None:
    """How much slower ``other`` is than bare: >1 is slower, whichever way the metric goes."""
    if not bare or not other or bare != bare or other != other:  # missing or NaN
        return None
    return other / bare if kind == "lower" else bare / other


def render(
    args: argparse.Namespace,
    env: dict[str, Any],
    summary: dict[str, dict[str, Any]],
    results: dict[str, list[dict[str, Any]]],
) -> str:
    timed_calls = (
        "no timed calls"
        if args.casts_only
        else f"{args.calls} sequential + {args.calls} concurrent ping calls"
    )
    lines = [
        f"computed bench: {args.rounds} alternating rounds per stack; each round {args.warmup} "
        f"warm-up + {timed_calls}, {args.casts} casts; {args.queues} queues for both stacks",
        f"python {env['python']}, oslo.messaging {env['oslo.messaging']}, kombu {env['kombu']}, "
        f"{env['cpus']} CPUs; figures are medians over rounds [min-max]",
        "slowdown = full/bare for latencies and CPU costs, bare/full for throughputs: "
        f">1.00 means the full stack is slower (goal: call slowdown <= {GOAL:.2f})",
        "bare casts: 'work' casts, done when the server's 'count' call reaches N; "
        "full casts: reboot casts, done when N instance.reboot.end/.error notifications "
        "with the batch's request_id reached a listener process; CPU: client = this whole process, "
        "server = the server process, during the sequential calls / the casts",
        "",
    ]
    if args.cprofile:
        lines[1:1] = [
            "*** running under cProfile: timings are distorted, compare only "
            "with another --cprofile run ***"
        ]
    header = f"{'metric':<32} {'bare':>22} {'full':>22} {'slowdown':>9}"
    lines += [header, "-" * len(header)]
    for key, label, _kind in METRICS:
        entry = summary[key]
        cells = []
        for stack in ("bare", "full"):
            s = entry[stack]
            cells.append(f"{_fmt(s['median'])} [{_fmt(s['min'])}-{_fmt(s['max'])}]")
        slowdown = entry["slowdown"]
        ratio = f"{slowdown:.2f}x" if slowdown else "-"
        lines.append(
            f"{label.format(threads=args.threads):<32} {cells[0]:>22} {cells[1]:>22} {ratio:>9}"
        )
    problems = []
    for stack, rounds in results.items():
        for i, r in enumerate(rounds, 1):
            if r["casts_completed"] < args.casts:
                problems.append(
                    f"{stack} round {i}: only {r['casts_completed']} of {args.casts} "
                    "casts seen processed"
                )
            if r["casts_errors"]:
                problems.append(f"{stack} round {i}: {r['casts_errors']} casts ended in error")
    lines += render_peers(args, env, summary, results)
    if problems:
        lines += ["", "notes:"] + [f"  {p}" for p in problems]
    return "\n".join(lines)


def render_peers(
    args: argparse.Namespace,
    env: dict[str, Any],
    summary: dict[str, dict[str, Any]],
    results: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """The peers' medians and their ratios to bare oslo.messaging, beside the full stack's."""
    stacks = ["full", *(s for s in results if s not in ("bare", "full"))]
    lines = [""]
    if len(stacks) > 1:
        lines.append(
            "peers, same broker, same rounds: median (ratio to bare oslo.messaging, "
            ">1.00x = slower than bare); their queues are classic, whatever --queues says"
        )
        names = {"full": "computed (full)"}
        names.update({p: f"{p} {v}" for p, v in env["peers"].items()})
        header = f"{'metric':<32}" + "".join(f" {names[s]:>22}" for s in stacks)
        lines += [header, "-" * len(header)]
        for key, label, _kind in METRICS:
            entry = summary[key]
            cells = []
            for stack in stacks:
                ratio = entry["ratio"].get(stack)
                value = _fmt(entry[stack]["median"])
                cells.append(f"{value} ({ratio:.2f}x)" if ratio else value)
            lines.append(
                f"{label.format(threads=args.threads):<32}" + "".join(f" {c:>22}" for c in cells)
            )
        lines.append(
            "nameko casts: events (persistent, publisher confirms); celery: threads pool, "
            "rpc:// results, casts are tasks that ignore their result"
        )
    for peer, why in env["peers_skipped"].items():
        lines.append(f"{peer}: {why}: skipped")
    return lines if len(lines) > 1 else []


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)

    from oslo_config import cfg

    from computed.testing.broker import RabbitMQBroker
    from tests.bench import measure, peers
    from tests.bench.stacks import BareStack, FullStack

    env = environment()
    if args.no_peers:
        env["peers"], env["peers_skipped"] = {}, {p: "left out (--no-peers)" for p in peers.STACKS}
    else:
        env["peers"], env["peers_skipped"] = peers.available()
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "full": []}
    profile_text = ""
    profile_dir = os.path.abspath(args.cprofile) if args.cprofile else None
    client_profiles: dict[str, Any] = {}
    if profile_dir:
        from tests.bench.cprofiled import new_profile

        os.makedirs(profile_dir, exist_ok=True)
        client_profiles = {"bare": new_profile(), "full": new_profile()}
    workdir = tempfile.mkdtemp(prefix="computed-bench-")
    host = "bench-host-1"
    started = time.monotonic()
    try:
        with ExitStack() as cleanup:
            _progress("starting RabbitMQ")
            broker = RabbitMQBroker()
            cleanup.callback(broker.stop)
            broker.start()
            quorum = args.queues == "quorum"
            conf_file = _write_conf(workdir, broker.url, host, quorum)
            cfg.CONF(
                ["--config-file", conf_file],
                project="computed",
                default_config_files=[],
                default_config_dirs=[],
            )

            _progress("starting the bare server and the computed worker")
            bare = BareStack(broker.url, workdir, profile_dir=profile_dir, quorum=quorum)
            cleanup.callback(bare.stop)
            bare.start()
            full = FullStack(
                conf_file, workdir, host, instances=args.instances, profile_dir=profile_dir
            )
            cleanup.callback(full.stop)
            full.start()
            stacks: dict[str, Any] = {"bare": bare, "full": full}
            for name in env["peers"]:
                _progress(f"starting the {name} peer")
                peer = peers.STACKS[name](broker.amqp_url, workdir)
                cleanup.callback(peer.stop)
                stacks[name] = peer.start()
                results[name] = []

            names = list(stacks)
            for r in range(args.rounds):
                # Each stack goes first in turn; with two, that alternates them.
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    res = measure.run_round(
                        stacks[name],
                        0 if args.casts_only else args.calls,
                        args.casts,
                        args.threads,
                        args.warmup,
                        client_profiles.get(name),
                    )
                    results[name].append(res)
                    _progress(
                        f"round {r + 1}/{args.rounds} {name}: "
                        f"p50 {_fmt(res['call_p50_ms'])} ms, "
                        f"{_fmt(res['calls_per_s'])} calls/s, "
                        f"{_fmt(res['concurrent_calls_per_s'])} concurrent calls/s, "
                        f"{_fmt(res['casts_per_s'])} casts/s, CPU us/call client "
                        f"{_fmt(res['client_cpu_us_per_call'])} server "
                        f"{_fmt(res['server_cpu_us_per_call'])}, server us/cast "
                        f"{_fmt(res['server_cpu_us_per_cast'])}"
                    )
    finally:
        if args.keep:
            _progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if profile_dir:
        profile_text = report_profiles(args, profile_dir, client_profiles)
    summary = summarize(results)
    print(render(args, env, summary, results))
    if profile_text:
        print()
        print(profile_text)
    _progress(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "environment": env,
                    "options": {
                        k: getattr(args, k)
                        for k in (
                            "calls",
                            "casts",
                            "rounds",
                            "threads",
                            "warmup",
                            "instances",
                            "casts_only",
                        )
                    },
                    "convention": "slowdown = full/bare for latencies, bare/full for throughputs; "
                    ">1.0 means the full stack is slower",
                    "goal_call_slowdown": GOAL,
                    "summary": summary,
                    "rounds": results,
                },
                fh,
                indent=2,
            )
            fh.write("\n")
    return 0


def report_profiles(
    args: argparse.Namespace, profile_dir: str, client_profiles: dict[str, Any]
) -> str:
    """Write the client profiles and summarize all of them (servers have stopped by now)."""
    from tests.bench import profiles

    texts = [f"cProfile (CPU time) in {profile_dir}"]
    calls = args.calls * args.rounds
    for name in () if args.casts_only else ("bare", "full"):
        path = os.path.join(profile_dir, f"client-{name}.pstats")
        client_profiles[name].dump_stats(path)
        texts += [
            "",
            profiles.summarize(
                path, f"client {name}, calling thread, sequential calls only", per=calls
            ),
        ]
    for name in ("bare", "full"):
        path = os.path.join(profile_dir, f"server-{name}.pstats")
        if os.path.exists(path):
            texts += [
                "",
                profiles.summarize(
                    path,
                    f"server {name}, all threads, whole run (warm-up, calls, casts)",
                    # with casts only, the warm-up calls are a small part of it
                    per=args.casts * args.rounds if args.casts_only else None,
                ),
            ]
        else:
            texts += ["", f"server {name}: no profile written ({path})"]
    text = "\n".join(texts)
    with open(os.path.join(profile_dir, "summary.txt"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return text
