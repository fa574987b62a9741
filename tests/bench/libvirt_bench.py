"""Spawn and destroy through the full stack versus the same libvirt calls made directly.

``python -m tests.bench.libvirt_bench [--rounds 5] [--pairs 50] [--json FILE]``

One run starts a private RabbitMQ, a private session-mode libvirtd (its test
driver, over ``test+unix://`` with an empty ``<node/>``), a ``computed``
libvirt worker process serving one host against it, and a
:class:`rpcapi.ComputeAPI` client in this process. Then, in rounds, it times:

* **full**: ``api.spawn(None, host, spec)`` then ``api.destroy(None, host, uuid)``;
* **direct**: the libvirt calls the driver makes for the same two operations
  (``drivers/libvirt/vmops.py``), made with libvirt-python from this process
  on a connection to the same daemon and the same URI, with the same domain
  XML (built by :func:`drivers.libvirt.config.domain_xml`);
* **ping**: ``api.ping`` on the same host, the bus round trip with no driver
  work, for the overhead breakdown.

Within a round the sides are interleaved pair by pair, and which goes first
alternates, so machine noise lands on both alike. Before the rounds, one
spawn and destroy through an in-process ``LibvirtDriver`` whose connection
records its calls is compared with the direct side's recorded calls: the
report says whether the sequences (names, flags, XML digest, errors) match.

Ratios are full/direct for latencies and direct/full for pairs/s: >1.0 means
the full stack is slower. A benchmark, not a test: nothing fails on speed.

The test driver's domains are in memory and each connection to a node XML
file gets its own set, so the worker's domains and this process's never meet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid as uuidlib
import warnings
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from importlib import metadata
from typing import Any

from tests.bench.stats import median, percentile

HOST = "kvm-1"
OPS = ("spawn", "destroy")
SIDES = ("full", "direct")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.libvirt_bench",
        description="Spawn+destroy through the full computed stack versus the same libvirt "
        "calls made directly, on one private libvirtd. Prints a table; never fails on speed.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument(
        "--pairs", type=int, default=50, help="timed spawn+destroy pairs per side per round (50)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed pairs per side at the start of each round (3)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (worker config and log)"
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def _progress(message: str) -> None:
    print(f"[libvirt-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _spec(name: str, instance_uuid: str | None = None) -> Any:
    from computed.objects import InstanceSpec

    spec = InstanceSpec(
        uuid=instance_uuid or str(uuidlib.uuid4()), name=name, vcpus=1, memory_mb=512, disk_gb=1
    )
    spec.validate()  # sets the defaults, as the worker's manager does before the driver
    return spec


# -- the direct side: the driver's libvirt calls, made here -------------------------


class DirectLibvirt:
    """The libvirt calls of ``VMOps.spawn`` / ``VMOps.destroy``, on a connection of our own.

    The connection is set up as ``drivers.libvirt.connection.HostConnection``
    sets up the worker's (close callback, lifecycle-event callback, keepalive,
    libvirt's default event loop in a thread), and every operation starts with
    ``isAlive()`` as ``HostConnection.get()`` does. ``[libvirt] virt_type`` is
    unset in the worker, so spawn picks the domain type from the capabilities
    each time, as the driver does.
    """

    def __init__(self, uri: str) -> None:
        import libvirt

        from drivers.libvirt import connection, vmops

        self._libvirt = libvirt
        connection.start_event_loop()  # the driver's helper: default impl + thread, once
        self.conn = libvirt.open(uri)
        self.conn.registerCloseCallback(lambda _c, _reason, _o: None, None)
        self._event_id = self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None
        )
        try:
            self.conn.setKeepAlive(connection.KEEPALIVE_INTERVAL, connection.KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass
        self.undefine_flags = vmops._UNDEFINE_FLAGS
        self.undefine_more = vmops._UNDEFINE_MORE
        self.refused = vmops._REFUSED
        self.events = 0

    def _on_event(self, _conn: Any, dom: Any, _event: int, _detail: int, _opaque: Any) -> None:
        # What the driver's callback reads from the domain before logging it.
        dom.UUIDString()
        dom.name()
        self.events += 1

    def close(self) -> None:
        lv = self._libvirt
        for step in (
            lambda: self.conn.domainEventDeregisterAny(self._event_id),
            self.conn.unregisterCloseCallback,
            self.conn.close,
        ):
            try:
                step()
            except lv.libvirtError:
                pass

    def spawn(self, spec: Any, conn: Any = None) -> tuple[str, str]:
        """``VMOps.spawn`` for a UUID not yet defined; returns (uuid, power state code)."""
        from drivers.libvirt import config, constants, hostops

        lv = self._libvirt
        conn = conn if conn is not None else self.conn
        conn.isAlive()
        try:
            dom = conn.lookupByUUIDString(spec.uuid)
        except lv.libvirtError as exc:
            if exc.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise
        else:
            raise RuntimeError(f"{spec.uuid} already defined")
        domain_type = hostops.pick_domain_type(conn.getCapabilities())
        dom = conn.defineXML(config.domain_xml(spec, domain_type))
        dom.create()
        dom.name()  # for the driver's log line
        # VMOps.info(): info(), metadata, UUIDString, then _observe(dom, state).
        state = dom.info()[0]
        config.parse_metadata(
            dom.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, constants.METADATA_NS, 0)
        )
        found_uuid = dom.UUIDString()
        active = bool(dom.isActive())
        if state == lv.VIR_DOMAIN_SHUTOFF:
            dom.hasManagedSaveImage(0)
        return found_uuid, constants.power_state(state, active, False)

    def destroy(self, instance_uuid: str, conn: Any = None) -> None:
        """``VMOps.destroy``: destroy if active, undefine with the driver's flags."""
        lv = self._libvirt
        conn = conn if conn is not None else self.conn
        conn.isAlive()
        try:
            dom = conn.lookupByUUIDString(instance_uuid)
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                return
            raise
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            flags = self.undefine_flags | self.undefine_more
            if ET.fromstring(dom.XMLDesc(0)).find("os/nvram") is not None:
                flags |= lv.VIR_DOMAIN_UNDEFINE_NVRAM
            try:
                dom.undefineFlags(flags)
            except lv.libvirtError as exc:
                if exc.get_error_code() not in self.refused:
                    raise
                dom.undefineFlags(self.undefine_flags)


# -- checking that the direct side makes the driver's calls ------------------------


class _Recorder:
    """Wraps a virConnect or virDomain and logs every method call made on it."""

    def __init__(self, target: Any, log: list[str], kind: str) -> None:
        self._target = target
        self._log = log
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        import libvirt

        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            shown = ",".join(_show(a) for a in args)
            try:
                result = attr(*args, **kwargs)
            except libvirt.libvirtError as exc:
                self._log.append(f"{self._kind}.{name}({shown}) -> error {exc.get_error_code()}")
                raise
            self._log.append(f"{self._kind}.{name}({shown})")
            if isinstance(result, libvirt.virDomain):
                return _Recorder(result, self._log, "dom")
            return result

        return call


def _show(arg: Any) -> str:
    if isinstance(arg, str) and len(arg) > 40:
        return "sha1:" + hashlib.sha1(arg.encode()).hexdigest()[:10]
    if isinstance(arg, str):
        return "<str>" if "-" in arg and len(arg) == 36 else repr(arg)  # a UUID varies
    return repr(arg)


def check_call_sequences(uri: str, direct: DirectLibvirt) -> dict[str, Any]:
    """Record the driver's calls (in-process LibvirtDriver) and the direct side's, compare."""
    import libvirt
    from oslo_config import cfg

    from drivers.libvirt.driver import LibvirtDriver

    conf = cfg.ConfigOpts()
    LibvirtDriver.register_opts(conf)
    conf([], project="computed", default_config_files=[], default_config_dirs=[])
    conf.set_override("host_uris", {"recorded": uri}, group="libvirt")
    driver = LibvirtDriver(conf)
    driver.init_host("recorded")
    spec = _spec("sequence-check")
    result: dict[str, Any] = {}
    try:
        driver_log: list[str] = []
        host_connection = driver._hosts["recorded"]
        host_connection._conn = _Recorder(host_connection.get(), driver_log, "conn")
        driver.spawn("recorded", spec)
        driver_spawn = list(driver_log)
        driver_log.clear()
        driver.destroy("recorded", spec.uuid)
        driver_destroy = list(driver_log)
        host_connection._conn = host_connection._conn._target
    finally:
        driver.cleanup_host("recorded")

    # The same spec on our own connection: a connection to a node file has its own domains.
    direct_log: list[str] = []
    recorded = _Recorder(direct.conn, direct_log, "conn")
    direct.spawn(spec, conn=recorded)
    direct_spawn = list(direct_log)
    direct_log.clear()
    direct.destroy(spec.uuid, conn=recorded)
    direct_destroy = list(direct_log)
    del libvirt
    for op, ours, theirs in (
        ("spawn", direct_spawn, driver_spawn),
        ("destroy", direct_destroy, driver_destroy),
    ):
        result[op] = {"match": ours == theirs, "driver": theirs, "direct": ours}
    return result


# -- the full stack ------------------------------------------------------------------


def _client_conf(url: str) -> Any:
    """The client configuration, as tools/demo.py builds it."""
    from computed import conf as computed_conf
    from computed import rpc

    conf = computed_conf.CONF
    computed_conf.register_all(conf)
    conf([], project="computed", default_config_files=[], default_config_dirs=[])
    rpc.get_transport(conf, url=url).cleanup()
    conf.set_override("transport_url", url)
    conf.set_override("down_time", 10, group="registry")
    return conf


# -- measuring -----------------------------------------------------------------------


class Side:
    """Per-round samples of one side: seconds per operation and per pair."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {op: [] for op in OPS}
        self.pair_times: list[float] = []


def _pair(side: str, api: Any, direct: DirectLibvirt, name: str, into: Side | None) -> None:
    spec = _spec(name)
    clock = time.perf_counter
    if side == "full":
        t0 = clock()
        api.spawn(None, HOST, spec)
        t1 = clock()
        api.destroy(None, HOST, spec.uuid)
        t2 = clock()
    else:
        t0 = clock()
        direct.spawn(spec)
        t1 = clock()
        direct.destroy(spec.uuid)
        t2 = clock()
    if into is not None:
        into.times["spawn"].append(t1 - t0)
        into.times["destroy"].append(t2 - t1)
        into.pair_times.append(t2 - t0)


def run_round(
    index: int, args: argparse.Namespace, api: Any, direct: DirectLibvirt
) -> dict[str, Any]:
    for w in range(args.warmup):
        for side in SIDES:
            _pair(side, api, direct, f"warmup-{index}-{w}", None)
        api.ping(None, HOST)
    sides = {side: Side() for side in SIDES}
    pings: list[float] = []
    for i in range(args.pairs):
        # One ping, then one pair of each side; who goes first alternates pair by
        # pair, and the pattern is shifted every round.
        t0 = time.perf_counter()
        api.ping(None, HOST)
        pings.append(time.perf_counter() - t0)
        order = SIDES if (index + i) % 2 == 0 else SIDES[::-1]
        for side in order:
            _pair(side, api, direct, f"bench-{index}-{i}", sides[side])
    result: dict[str, Any] = {"ping_ms": [1000 * p for p in pings]}
    for side, samples in sides.items():
        result[side] = {
            **{f"{op}_ms": [1000 * t for t in samples.times[op]] for op in OPS},
            "pairs_per_s": len(samples.pair_times) / sum(samples.pair_times),
        }
    return result


def _round_figures(rnd: dict[str, Any]) -> dict[str, float]:
    figures = {
        "ping_p50_ms": percentile(rnd["ping_ms"], 50),
        "ping_p99_ms": percentile(rnd["ping_ms"], 99),
    }
    for side in SIDES:
        for op in OPS:
            figures[f"{side}_{op}_p50_ms"] = percentile(rnd[side][f"{op}_ms"], 50)
            figures[f"{side}_{op}_p99_ms"] = percentile(rnd[side][f"{op}_ms"], 99)
        figures[f"{side}_pairs_per_s"] = rnd[side]["pairs_per_s"]
    return figures


ROWS = (
    # metric key suffix, label, kind
    ("spawn_p50_ms", "spawn p50 (ms)", "lower"),
    ("spawn_p99_ms", "spawn p99 (ms)", "lower"),
    ("destroy_p50_ms", "destroy p50 (ms)", "lower"),
    ("destroy_p99_ms", "destroy p99 (ms)", "lower"),
    ("pairs_per_s", "spawn+destroy pairs/s", "higher"),
)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_round = [_round_figures(r) for r in rounds]

    def spread(key: str) -> dict[str, float]:
        values = [f[key] for f in per_round]
        return {"median": median(values), "min": min(values), "max": max(values)}

    summary: dict[str, Any] = {"rows": {}, "per_round": per_round}
    for key, _label, kind in ROWS:
        full, direct = spread(f"full_{key}"), spread(f"direct_{key}")
        if kind == "lower":
            ratio = full["median"] / direct["median"]
        else:
            ratio = direct["median"] / full["median"]
        summary["rows"][key] = {"kind": kind, "full": full, "direct": direct, "ratio": ratio}
    summary["ping_p50_ms"] = spread("ping_p50_ms")
    summary["ping_p99_ms"] = spread("ping_p99_ms")
    pooled: dict[str, Any] = {
        "ping": {
            "p50_ms": percentile([x for r in rounds for x in r["ping_ms"]], 50),
            "p99_ms": percentile([x for r in rounds for x in r["ping_ms"]], 99),
            "samples": sum(len(r["ping_ms"]) for r in rounds),
        }
    }
    for side in SIDES:
        for op in OPS:
            values = [x for r in rounds for x in r[side][f"{op}_ms"]]
            pooled[f"{side}_{op}"] = {
                "p50_ms": percentile(values, 50),
                "p99_ms": percentile(values, 99),
                "samples": len(values),
            }
    summary["pooled"] = pooled
    breakdown = {}
    ping = summary["ping_p50_ms"]["median"]
    for op in OPS:
        full = summary["rows"][f"{op}_p50_ms"]["full"]["median"]
        direct = summary["rows"][f"{op}_p50_ms"]["direct"]["median"]
        overhead = full - direct
        breakdown[op] = {
            "full_p50_ms": full,
            "libvirt_p50_ms": direct,
            "stack_overhead_ms": overhead,
            "bus_round_trip_ms": ping,
            "rest_of_stack_ms": overhead - ping,
        }
    summary["breakdown"] = breakdown
    return summary


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def render(
    args: argparse.Namespace,
    env: dict[str, Any],
    summary: dict[str, Any],
    check: dict[str, Any],
    leftovers: dict[str, int],
    events: int,
) -> str:
    lines = [
        f"libvirt bench: {args.rounds} rounds x {args.pairs} timed spawn+destroy pairs per side "
        f"(+{args.warmup} warm-up pairs), sides interleaved pair by pair, first side alternating",
        f"python {env['python']}, libvirt-python {env['libvirt-python']}, libvirtd "
        f"{env['libvirtd']} (test driver via test+unix://, <node/>), oslo.messaging "
        f"{env['oslo.messaging']}, {env['cpus']} CPUs",
        "full = ComputeAPI.spawn/destroy calls -> RabbitMQ -> computed libvirt worker -> libvirtd; "
        "direct = the driver's libvirt calls from this process to the same libvirtd",
        "figures: per-round percentiles, median over rounds [min-max]; "
        "ratio = full/direct (latency), direct/full (pairs/s): >1.00 means the full stack is slower",
        "",
    ]
    header = f"{'metric':<24} {'full':>24} {'direct libvirt':>24} {'ratio':>8}"
    lines += [header, "-" * len(header)]
    for key, label, _kind in ROWS:
        row = summary["rows"][key]
        cells = [
            f"{_fmt(row[s]['median'])} [{_fmt(row[s]['min'])}-{_fmt(row[s]['max'])}]" for s in SIDES
        ]
        lines.append(f"{label:<24} {cells[0]:>24} {cells[1]:>24} {row['ratio']:>7.2f}x")
    p50, p99 = summary["ping_p50_ms"], summary["ping_p99_ms"]
    lines.append(
        f"{'ping p50 / p99 (ms)':<24} "
        f"{_fmt(p50['median']) + ' / ' + _fmt(p99['median']):>24} {'-':>24} {'':>8}"
    )
    pooled = summary["pooled"]
    lines += ["", "all samples pooled (p50 / p99 ms):"]
    for op in OPS:
        f, d = pooled[f"full_{op}"], pooled[f"direct_{op}"]
        lines.append(
            f"  {op:<8} full {_fmt(f['p50_ms'])} / {_fmt(f['p99_ms'])}   "
            f"direct {_fmt(d['p50_ms'])} / {_fmt(d['p99_ms'])}   (n={f['samples']} each)"
        )
    lines.append(
        f"  ping     {_fmt(pooled['ping']['p50_ms'])} / {_fmt(pooled['ping']['p99_ms'])}"
        f"   (n={pooled['ping']['samples']})"
    )
    lines += ["", "where a full-stack operation's time goes (p50, ms):"]
    for op in OPS:
        b = summary["breakdown"][op]
        share = b["bus_round_trip_ms"] / b["full_p50_ms"] if b["full_p50_ms"] else float("nan")
        lines.append(
            f"  {op:<8} {_fmt(b['full_p50_ms'])} = libvirt {_fmt(b['libvirt_p50_ms'])} "
            f"+ bus round trip (ping p50) {_fmt(b['bus_round_trip_ms'])} "
            f"+ rest {_fmt(b['rest_of_stack_ms'])}   (bus = {100 * share:.0f}% of the call)"
        )
    lines.append(
        "  rest = what a ping does not pay: InstanceSpec/InstanceInfo (de)serialization and "
        "validation, the per-UUID lock, two instance.<op>.start/.end notifications"
    )
    lines += ["", "direct side makes the driver's libvirt calls (recorded, compared in-process):"]
    for op in OPS:
        c = check[op]
        verdict = "identical" if c["match"] else "DIFFERENT"
        lines.append(f"  {op:<8} {verdict}: {' '.join(_short(x) for x in c['driver'])}")
        if not c["match"]:
            lines.append(f"  {'':<8} direct:    {' '.join(_short(x) for x in c['direct'])}")
    lines.append(
        f"  lifecycle events received on the direct connection: {events}; "
        f"domains left after the run: full {leftovers.get('full', '?')}, "
        f"direct {leftovers.get('direct', '?')}"
    )
    return "\n".join(lines)


def _short(call: str) -> str:
    return call.replace("conn.", "").replace("dom.", "d.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)

    import libvirt

    from computed.registry import Registry
    from computed.testing.broker import RabbitMQBroker
    from computed.testing.libvirtd import Libvirtd
    from computed.testing.workers import WorkerProcess
    from rpcapi import ComputeAPI

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "libvirt-python": _version("libvirt-python"),
        "oslo.messaging": _version("oslo.messaging"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    workdir = tempfile.mkdtemp(prefix="computed-libvirt-bench-")
    registry_url = f"sqlite:///{workdir}/registry.sqlite"
    started = time.monotonic()
    rounds: list[dict[str, Any]] = []
    leftovers: dict[str, int] = {}
    try:
        with ExitStack() as cleanup:
            _progress("starting RabbitMQ")
            broker = RabbitMQBroker()
            cleanup.callback(broker.stop)
            broker.start()

            _progress("starting libvirtd (test driver)")
            daemon = Libvirtd()
            cleanup.callback(daemon.stop)
            daemon.start()
            uri = daemon.uri_for(daemon.write_node_xml("<node/>"))

            _progress("starting the computed libvirt worker")
            worker = WorkerProcess(
                workdir,
                {
                    "DEFAULT": {
                        "transport_url": broker.url,
                        "driver": "libvirt",
                        "hosts": [HOST],
                        "worker_id": "libvirt-bench-worker",
                    },
                    "registry": {"connection": registry_url, "down_time": 10},
                    "libvirt": {"host_uris": {HOST: uri}},
                },
                name="libvirt-worker",
            )
            cleanup.callback(_stop_worker, worker)
            worker.start()

            api = ComputeAPI(
                _client_conf(broker.url), registry=Registry(registry_url), required_tier="untested"
            )
            cleanup.callback(api.cleanup)
            direct = DirectLibvirt(uri)
            cleanup.callback(direct.close)
            env["libvirtd"] = _format_version(direct.conn.getLibVersion())

            _progress("comparing the direct side's libvirt calls with the driver's")
            check = check_call_sequences(uri, direct)
            for op in OPS:
                if not check[op]["match"]:
                    _progress(f"WARNING: direct {op} does not make the driver's calls")

            for r in range(args.rounds):
                res = run_round(r, args, api, direct)
                rounds.append(res)
                fig = _round_figures(res)
                _progress(
                    f"round {r + 1}/{args.rounds}: spawn p50 full {fig['full_spawn_p50_ms']:.2f} "
                    f"direct {fig['direct_spawn_p50_ms']:.2f} ms; destroy p50 full "
                    f"{fig['full_destroy_p50_ms']:.2f} direct {fig['direct_destroy_p50_ms']:.2f} "
                    f"ms; ping p50 {fig['ping_p50_ms']:.2f} ms"
                )
            leftovers["full"] = len(api.list_instances(None, HOST))
            leftovers["direct"] = len(direct.conn.listAllDomains(0))
            events = direct.events
            _progress("stopping the worker, libvirtd and RabbitMQ")
    finally:
        if args.keep:
            _progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    del libvirt

    summary = summarize(rounds)
    print(render(args, env, summary, check, leftovers, events))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "args": {k: v for k, v in vars(args).items() if k != "json"},
                    "environment": env,
                    "summary": summary,
                    "call_sequences": check,
                    "leftovers": leftovers,
                    "rounds": rounds,
                },
                fh,
                indent=2,
            )
        _progress(f"results written to {args.json}")
    _progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


def _format_version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1_000 % 1_000}.{number % 1_000}"


def _stop_worker(worker: Any) -> None:
    if worker.poll() is None:
        worker.terminate()


if __name__ == "__main__":
    sys.exit(main())
