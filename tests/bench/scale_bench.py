"""Scale benchmark: many hosts over several fake workers, one broker, a PostgreSQL registry.

``python -m tests.bench.scale_bench [--hosts 10000] [--workers 10] [--candidates 2]``

Starts a private RabbitMQ and a private PostgreSQL, then ``--workers`` fake
workers, each once the one before is up (``--start together``: all at
once, as a fleet's cold start). Each host is declared by ``--candidates`` workers (the
hosts are cut into one slice per worker; slice i is declared by workers i,
i+1, ...), so every host has somewhere to go when a worker dies. It
measures and prints, as JSON:

* ``ready``: seconds from launching the workers until all are up, every
  host is recorded as owned by the worker the hash ring gives it, and every
  host queue has one consumer (previous owners have let go); then a sample
  of hosts is pinged;
* ``broker``: connections, channels, queues and consumers of the private
  broker (``rabbitmqctl``), and its Erlang memory, in steady state;
* ``registry``: PostgreSQL's own counters for the registry database
  (``pg_stat_database``: commits, rows inserted, updated, deleted and
  returned) per second over ``--window`` seconds of steady state, with the
  workers' and the broker's CPU over the same window;
* ``client``: the client's cost of finding a host's route (``ComputeAPI``'s
  route resolution, registry copy held) for random hosts, the cost of
  re-reading the registry copy, and ping round trips to random hosts;
* ``takeover``: one worker SIGKILLed; seconds until the first and the last of
  its hosts are recorded as taken over, and until every one of them answered
  a ping again, beside ``down_time`` and ``heartbeat_interval``.

Every process it starts is stopped before it returns, also on an error or
SIGTERM. It asserts nothing about speed; figures are for one machine and
one run (``tests/functional/test_scale_bench.py`` runs it tiny, so it keeps
working).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import ExitStack
from typing import Any

from computed.testing import wait_until
from tests.bench.measure import process_cpu
from tests.bench.stats import percentile

#: Ping this many random hosts to call a deployment ready.
READY_SAMPLE = 50

#: A worker that exits while the fleet starts is started again, as systemd
#: would; more than this many restarts per worker on average is a failure.
MAX_RESTARTS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.scale_bench",
        description="Many hosts over several fake workers on one private broker and a "
        "private PostgreSQL registry: time to ready, broker and registry load, client "
        "resolve cost, takeover after SIGKILL. Prints JSON; never fails on speed.",
    )
    parser.add_argument("--hosts", type=int, default=10000, help="hosts in all (10000)")
    parser.add_argument("--workers", type=int, default=10, help="fake workers (10)")
    parser.add_argument(
        "--candidates",
        type=int,
        default=2,
        help="workers that declare each host, so that it can move (2; at most --workers)",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=5.0, help="workers' heartbeat_interval, s (5, shipped)"
    )
    parser.add_argument(
        "--down-time", type=float, default=30.0, help="[registry] down_time, s (30, shipped)"
    )
    parser.add_argument(
        "--window", type=float, default=60.0, help="steady-state measuring window, s (60)"
    )
    parser.add_argument(
        "--resolves", type=int, default=2000, help="route resolutions to time (2000)"
    )
    parser.add_argument("--pings", type=int, default=500, help="ping round trips to time (500)")
    parser.add_argument(
        "--queues",
        choices=("quorum", "classic"),
        default="quorum",
        help="queue type: quorum (the recommended configuration) or classic",
    )
    parser.add_argument(
        "--start",
        choices=("in-turn", "together"),
        default="in-turn",
        help="start each worker once the one before is up (in-turn, the default), or all "
        "at once (together: a fleet's cold start; see docs/capacity.md for what it shows)",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=1800.0, help="give up on readiness after s (1800)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (configs, worker logs)"
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.hosts < args.workers:
        parser.error("need at least one worker and at least one host per worker")
    if not 1 <= args.candidates <= args.workers:
        parser.error("--candidates must be between 1 and --workers")
    return args


def _progress(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up


class Layout:
    """Which worker declares which host, and who the hash ring makes owner."""

    def __init__(self, hosts: int, workers: int, candidates: int) -> None:
        self.worker_ids = [f"scale-w{w:02d}" for w in range(workers)]
        self.hosts = [f"scale-{i:05d}" for i in range(hosts)]
        self.declared: dict[str, list[str]] = {w: [] for w in self.worker_ids}
        self.candidates: dict[str, list[str]] = {}
        for i, host in enumerate(self.hosts):
            first = i * workers // hosts
            ids = [self.worker_ids[(first + k) % workers] for k in range(candidates)]
            self.candidates[host] = sorted(ids)
            for worker_id in ids:
                self.declared[worker_id].append(host)

    def owners(self, live: set[str]) -> dict[str, str | None]:
        """The owner of every host with only the ``live`` workers running."""
        from computed import _ownership

        return {
            host: _ownership.owner(host, [w for w in ids if w in live])
            for host, ids in self.candidates.items()
        }


#: File handles RabbitMQ 3.10 reserves for each quorum queue, consumed or not
#: (measured: ``file_handle_cache:info()`` grows by 3 per queue declared).
QUORUM_QUEUE_FILE_HANDLES = 3


def _worker_options(
    args: argparse.Namespace, broker_url: str, registry_url: str, worker_id: str, hosts: list[str]
) -> dict[str, dict[str, Any]]:
    return {
        "DEFAULT": {
            "transport_url": broker_url,
            "driver": "fake",
            "hosts": hosts,
            "worker_id": worker_id,
            "heartbeat_interval": args.heartbeat,
        },
        "registry": {"connection": registry_url, "down_time": args.down_time},
        "conformance": {"required_tier": "untested"},
        "oslo_messaging_rabbit": {"rabbit_quorum_queue": args.queues == "quorum"},
    }


class Scale:
    """One deployment under measurement: its broker, registry, workers and client."""

    def __init__(self, args: argparse.Namespace, workdir: str, cleanup: ExitStack) -> None:
        self.args = args
        self.workdir = workdir
        self.cleanup = cleanup
        self.layout = Layout(args.hosts, args.workers, args.candidates)
        self.workers: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        #: The worker killed on purpose (its exit is no failure).
        self.victim: str | None = None
        #: Workers that exited while the fleet started, and why.
        self.restarts: list[dict[str, Any]] = []

    # -- set-up --------------------------------------------------------------------

    def start_servers(self) -> None:
        from computed.registry import Registry
        from computed.testing.broker import RabbitMQBroker
        from computed.testing.postgres import PostgreSQLServer

        _progress("starting RabbitMQ and PostgreSQL")
        self.broker = RabbitMQBroker()
        self.cleanup.callback(self.broker.stop)
        self.broker.start()
        self._check_file_handles()
        self.postgres = PostgreSQLServer()
        self.cleanup.callback(self.postgres.stop)
        self.postgres.start()
        self.registry_url = self.postgres.create_database("registry")
        self.registry = Registry(self.registry_url)
        self.cleanup.callback(self.registry.close)
        self.registry.migrate()

    def _check_file_handles(self) -> None:
        """Refuse a run the node cannot hold, rather than let its workers time out."""
        if self.args.queues != "quorum":
            return
        limit = self.broker.file_handles().get("total_limit", 0)
        needed = self.args.hosts * QUORUM_QUEUE_FILE_HANDLES
        if needed > limit:
            raise SystemExit(
                f"scale_bench: {self.args.hosts} quorum queues take about {needed} of the "
                f"broker's file handles and it has {limit} (its open-file limit, "
                f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]} here, less a reserve): "
                "new connections would wait for a handle and time out. Raise the open-file "
                "limit (ulimit -n) or run fewer hosts; docs/capacity.md, 'Quorum queues'."
            )

    def start_workers(self) -> None:
        from computed.testing.workers import WorkerProcess

        args, layout = self.args, self.layout
        _progress(
            f"starting {args.workers} workers for {args.hosts} hosts, "
            f"{args.candidates} candidate(s) each, {args.queues} queues"
        )
        started = time.monotonic()
        registered_at: dict[str, float] = {}
        self.cleanup.callback(self._stop_workers)
        for worker_id in layout.worker_ids:
            options = _worker_options(
                args, self.broker.url, self.registry_url, worker_id, layout.declared[worker_id]
            )
            worker = self.workers[worker_id] = WorkerProcess(self.workdir, options, name=worker_id)
            worker.start(wait=False)
            if args.start == "in-turn":
                wait_until(
                    functools.partial(self._up, worker, started),
                    args.ready_timeout - (time.monotonic() - started),
                    f"{worker_id} up",
                    0.2,
                )
                registered_at[worker_id] = time.monotonic() - started
        live = set(layout.worker_ids)
        expected = layout.owners(live)

        def all_up() -> bool:
            self._restart_failed(started)
            for record in self.registry.list_workers():
                if record.state == "up" and record.id not in registered_at:
                    registered_at[record.id] = time.monotonic() - started
            return len(registered_at) == len(live)

        wait_until(all_up, args.ready_timeout, "all workers up", 1.0)
        wait_until(
            lambda: self._owned_as(expected),
            args.ready_timeout - (time.monotonic() - started),
            "every host owned by its expected worker",
            1.0,
        )
        owned_at = time.monotonic() - started
        # A previous owner lets go of a host's queue once it has seen the new one
        # registered: ready when every host queue has one consumer only.
        wait_until(
            self._one_consumer_each,
            args.ready_timeout - (time.monotonic() - started),
            "one consumer on every host queue",
            1.0,
        )
        self._connect_client()
        sample = random.sample(layout.hosts, min(READY_SAMPLE, len(layout.hosts)))
        elsewhere = sum(1 for h in sample if self.api.ping(None, h).worker_id != expected[h])
        self.results["ready"] = {
            "all_registered_s": round(max(registered_at.values()), 1),
            "first_registered_s": round(min(registered_at.values()), 1),
            "all_hosts_owned_s": round(owned_at, 1),
            "ready_s": round(time.monotonic() - started, 1),
            "sample_answered_by_another_worker": elsewhere,
            "restarts": self.restarts,
            "hosts_per_worker": {
                w: sum(1 for o in expected.values() if o == w) for w in layout.worker_ids
            },
        }
        _progress(f"ready in {self.results['ready']['ready_s']} s")

    def _owned_as(self, expected: dict[str, str | None]) -> bool:
        self._check_workers_alive()
        owners = self.registry.list_owners()
        return all(
            host in owners and owners[host].worker_id == owner for host, owner in expected.items()
        )

    def _up(self, worker: Any, started: float) -> bool:
        """Whether ``worker`` is registered up (started again if it exited)."""
        import sqlalchemy as sa

        self._restart_failed(started)
        with self.registry.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, state, pid FROM workers"))
            return any(tuple(row) == (worker.worker_id, "up", worker.pid) for row in rows)

    def _one_consumer_each(self) -> bool:
        consumers = self.broker.consumers()
        return all(consumers.get(f"compute.{host}") == 1 for host in self.layout.hosts)

    def _check_workers_alive(self) -> None:
        for worker in self.workers.values():
            if worker.poll() is not None and worker.name != self.victim:
                raise RuntimeError(
                    f"worker {worker.name} exited with {worker.poll()}:\n{worker.log()[-3000:]}"
                )

    def _restart_failed(self, started: float) -> None:
        """Start again a worker that exited while the fleet starts, as systemd would
        (``Restart=on-failure`` in etc/computed@.service), noting why it exited."""
        for worker in self.workers.values():
            status = worker.poll()
            if status is None:
                continue
            if len(self.restarts) >= MAX_RESTARTS * len(self.workers):
                self._check_workers_alive()
            errors = [line for line in worker.log().splitlines() if "computed: error:" in line]
            self.restarts.append(
                {
                    "worker": worker.name,
                    "at_s": round(time.monotonic() - started, 1),
                    "exit": status,
                    "error": errors[-1].split("computed: error: ", 1)[-1] if errors else None,
                }
            )
            _progress(f"{worker.name} exited with {status}; starting it again")
            worker.start(wait=False)

    def _connect_client(self) -> None:
        from oslo_config import cfg

        from computed import conf as computed_conf
        from computed import rpc
        from computed.registry import Registry
        from rpcapi import ComputeAPI

        conf = computed_conf.CONF
        computed_conf.register_all(conf)
        conf([], project="computed", default_config_files=[], default_config_dirs=[])
        rpc.get_transport(conf, url=self.broker.url).cleanup()  # registers the transport's options
        conf.set_override("transport_url", self.broker.url)
        conf.set_override("down_time", self.args.down_time, group="registry")
        conf.set_override(
            "rabbit_quorum_queue", self.args.queues == "quorum", group="oslo_messaging_rabbit"
        )
        self.conf: cfg.ConfigOpts = conf
        self.client_registry = Registry(self.registry_url)
        self.cleanup.callback(self.client_registry.close)
        self.api = ComputeAPI(conf, registry=self.client_registry, required_tier="untested")
        self.cleanup.callback(self.api.cleanup)

    def _stop_workers(self, timeout: float = 120.0) -> None:
        """SIGTERM every worker at once, wait for them together, SIGKILL what is left."""
        running = [w for w in self.workers.values() if w.poll() is None]
        for worker in running:
            worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in running:
            try:
                worker.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _progress(f"{worker.name} did not stop within {timeout:g} s: SIGKILL")
                worker.kill()

    # -- steady state ----------------------------------------------------------------

    def measure_broker(self) -> None:
        broker = self.broker
        connections = broker.rabbitmqctl("list_connections", "-q", "--formatter", "json", "name")
        channels = broker.rabbitmqctl("list_channels", "-q", "--formatter", "json", "name")
        consumers = broker.consumers()
        memory = broker.rabbitmqctl("eval", "erlang:memory(total).").strip()
        handles = broker.file_handles()
        self.results["broker"] = {
            "connections": len(json.loads(connections or "[]")),
            "channels": len(json.loads(channels or "[]")),
            "queues": len(consumers),
            "consumers": sum(consumers.values()),
            "host_queues": sum(1 for q in consumers if q.startswith("compute.scale-")),
            "memory_mb": round(int(memory) / 2**20) if memory.isdigit() else memory,
            "file_handles_used": handles.get("total_used"),
            "file_handles_limit": handles.get("total_limit"),
        }
        _progress(f"broker: {self.results['broker']}")

    def measure_registry(self) -> None:
        """Commits and row changes per second of the registry database over the window."""
        import sqlalchemy as sa

        window = self.args.window
        beam = self._beam_pid()
        query = sa.text(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "tup_returned, tup_fetched FROM pg_stat_database WHERE datname = 'registry'"
        )

        def snapshot() -> dict[str, int]:
            with self.registry.engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
                row = connection.execute(query).mappings().one()
                return {k: int(v) for k, v in row.items()}

        _progress(f"steady state: measuring for {window:g} s")
        pids = {w: worker.pid for w, worker in self.workers.items()}
        cpu0 = {w: process_cpu(pid) for w, pid in pids.items()}
        beam0 = process_cpu(beam)
        before, started = snapshot(), time.monotonic()
        time.sleep(window)
        after, elapsed = snapshot(), time.monotonic() - started
        cpu1 = {w: process_cpu(pid) for w, pid in pids.items()}
        beam1 = process_cpu(beam)
        rates = {k: round((after[k] - before[k]) / elapsed, 1) for k in before}
        rates["writes_per_s"] = round(
            sum(rates[k] for k in ("tup_inserted", "tup_updated", "tup_deleted")), 1
        )
        worker_cpu = [100 * ((cpu1[w] or 0.0) - (cpu0[w] or 0.0)) / elapsed for w in self.workers]
        self.results["registry"] = {"window_s": round(elapsed, 1), "per_s": rates}
        self.results["steady_cpu_percent"] = {
            "workers_total": round(sum(worker_cpu), 1),
            "worker_max": round(max(worker_cpu), 1),
            "broker": (
                round(100 * (beam1 - beam0) / elapsed, 1)
                if beam0 is not None and beam1 is not None
                else None
            ),
        }
        _progress(f"registry: {rates}; CPU: {self.results['steady_cpu_percent']}")

    def _beam_pid(self) -> int | None:
        out = self.broker.rabbitmqctl("eval", "os:getpid().").strip().strip('"')
        return int(out) if out.isdigit() else None

    # -- the client ------------------------------------------------------------------

    def measure_client(self) -> None:
        api, hosts, args = self.api, self.layout.hosts, self.args
        resolver = api._resolver  # the benchmark times the client's own route resolution
        refreshes = []
        for _ in range(5):
            started = time.perf_counter()
            resolver.refresh()
            refreshes.append((time.perf_counter() - started) * 1000)
        samples = []
        clock = time.perf_counter
        route = api._route
        for host in random.choices(hosts, k=args.resolves):
            started = clock()
            route(host)
            samples.append((clock() - started) * 1e6)
        pings = []
        for host in random.choices(hosts, k=args.pings):
            started = clock()
            api.ping(None, host)
            pings.append((clock() - started) * 1000)
        self.results["client"] = {
            "cache_ttl_s": self.conf.client.cache_ttl,
            "registry_reread_ms": {
                "median": round(statistics.median(refreshes), 1),
                "max": round(max(refreshes), 1),
            },
            "route_us": {
                "mean": round(statistics.fmean(samples), 1),
                "p50": round(percentile(samples, 50), 1),
                "p99": round(percentile(samples, 99), 1),
                "max": round(max(samples), 1),
                "resolutions": len(samples),
            },
            "ping_ms": {
                "p50": round(percentile(pings, 50), 2),
                "p99": round(percentile(pings, 99), 2),
                "pings": len(pings),
            },
        }
        _progress(f"client: {self.results['client']}")

    # -- takeover ----------------------------------------------------------------------

    def measure_takeover(self) -> None:
        layout, args = self.layout, self.args
        self.victim = victim = layout.worker_ids[0]
        moved = sorted(h for h, o in self.registry.list_owners().items() if o.worker_id == victim)
        live = set(layout.worker_ids) - {victim}
        expected = layout.owners(live)
        _progress(f"SIGKILL {victim}, which owns {len(moved)} hosts")
        # One call sent right after the kill waits in its host's queue for the next owner.
        early: dict[str, Any] = {}
        killed = time.monotonic()
        self.workers[victim].kill()
        probe = threading.Thread(
            target=self._early_call, args=(moved[0], killed, early), daemon=True
        )
        probe.start()
        claimed: dict[str, float] = {}

        def all_claimed() -> bool:
            owners = self.registry.list_owners()
            now = time.monotonic() - killed
            for host in moved:
                owner = owners.get(host)
                if host not in claimed and owner is not None and owner.worker_id in live:
                    claimed[host] = now
            return len(claimed) == len(moved)

        wait_until(all_claimed, args.down_time * 4 + args.heartbeat * 4 + 300, "takeover", 0.2)
        wrong = 0
        for host in moved:
            if self.api.ping(None, host).worker_id != expected[host]:
                wrong += 1
        answered = time.monotonic() - killed
        probe.join(args.down_time * 3 + 120)
        self.results["takeover"] = {
            "hosts_moved": len(moved),
            "down_time_s": args.down_time,
            "heartbeat_s": args.heartbeat,
            "first_claimed_s": round(min(claimed.values()), 1),
            "all_claimed_s": round(max(claimed.values()), 1),
            "all_answered_s": round(answered, 1),
            "answered_by_another_worker": wrong,
            "call_sent_at_kill_answered_s": early.get("answered_s"),
            "call_sent_at_kill_error": early.get("error"),
        }
        _progress(f"takeover: {self.results['takeover']}")

    def _early_call(self, host: str, killed: float, out: dict[str, Any]) -> None:
        try:
            self.api.ping(None, host)
            out["answered_s"] = round(time.monotonic() - killed, 1)
        except Exception as exc:  # reported, not raised: a figure, not a test
            out["error"] = f"{type(exc).__name__}: {exc}"


def environment() -> dict[str, Any]:
    from tests.bench.runner import environment as bench_environment

    env = bench_environment()
    env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGTERM, _on_sigterm)
    results: dict[str, Any] = {
        "options": {
            k: getattr(args, k)
            for k in ("hosts", "workers", "candidates", "heartbeat", "down_time", "queues", "start")
        },
        "environment": environment(),
    }
    started = time.monotonic()
    workdir = results["workdir"] = tempfile.mkdtemp(prefix="computed-scale-")
    try:
        with ExitStack() as cleanup:
            scale = Scale(args, workdir, cleanup)
            scale.results = results
            scale.start_servers()
            scale.start_workers()
            scale.measure_broker()
            scale.measure_registry()
            scale.measure_client()
            scale.measure_takeover()
            _progress("stopping")
    finally:
        if args.keep:
            _progress(f"kept {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    results["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["elapsed_s"] = round(time.monotonic() - started)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
