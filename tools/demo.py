"""The scheduler walkthrough behind ``tools/demo.sh``.

Starts a private RabbitMQ on 127.0.0.1, one ``computed`` worker per driver
type available here (each a separate process), drives instances on several
hosts through ``rpcapi.ComputeAPI`` the way a scheduler would, prints what
happens at each step, and stops everything it started.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test peers live in tests/

from oslo_config import cfg  # noqa: E402
from oslo_context import context  # noqa: E402

from computed import conf as computed_conf  # noqa: E402
from computed import exception, rpc  # noqa: E402
from computed.conf.conformance import DEFAULT_IMAGE, DEFAULT_NETWORK  # noqa: E402
from computed.conformance._context import new_volume  # noqa: E402
from computed.objects import (  # noqa: E402
    Flavor,
    InstanceSpec,
    NetworkInterface,
)
from computed.registry import Registry  # noqa: E402
from computed.testing.broker import RabbitMQBroker  # noqa: E402
from computed.testing.notifications import Notification, NotificationCollector  # noqa: E402
from computed.testing.workers import WorkerProcess, console_command, write_config  # noqa: E402
from rpcapi import ComputeAPI, InstanceEvent, InstanceEventListener  # noqa: E402
from tests.peers import PEERS, Unavailable  # noqa: E402
from tools.demo_fleet import fleet as fleet_steps  # noqa: E402


def _heard_of(heard: list[InstanceEvent], uuid_: str) -> bool:
    return any(e.payload.uuid == uuid_ for e in heard)


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(text: str) -> None:
    print(f"    {text}", flush=True)


@contextmanager
def timed(text: str) -> Iterator[None]:
    print(f"\n==> {text} ...", end="", flush=True)
    started = time.monotonic()
    yield
    print(f" done ({time.monotonic() - started:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="computed-demo-")
    try:
        with ExitStack() as stack:
            run(stack, workdir)
    finally:
        if args.keep:
            print(f"\nWork directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nEverything the demo started has been stopped.")
    return 0


def run(stack: ExitStack, workdir: str) -> None:
    registry_url = f"sqlite:///{workdir}/registry.sqlite"
    with timed("Starting a private RabbitMQ on 127.0.0.1"):
        broker = stack.enter_context(RabbitMQBroker())
    show(f"transport_url = rabbit://guest:***@127.0.0.1:{broker.port}/")

    workers: dict[str, list[WorkerProcess]] = {}
    fleet: dict[str, list[str]] = {}
    #: Per driver: what its hosts offer the device steps (a network, an image,
    #: how to make a volume), as the conformance suite is told.
    offers: dict[str, dict[str, Any]] = {}
    for driver, peer in PEERS.items():
        try:
            hosts, extra = peer(stack, workdir)
        except Unavailable as exc:
            step(f"Skipping the {driver} worker: {exc}")
            continue
        offers[driver] = extra.pop("conformance", {})
        # One worker per host: a move between two hosts goes between two processes.
        for n, host in enumerate(hosts, 1):
            with timed(f"Starting {driver} worker {n} for {host}"):
                options = _worker_options(broker, registry_url, driver, [host], workdir, n)
                for group, values in extra.items():
                    options.setdefault(group, {}).update(values)
                worker = WorkerProcess(workdir, options, name=f"{driver}-worker-{n}")
                stack.callback(_stop_worker, worker)
                workers.setdefault(driver, []).append(worker.start())
        fleet[driver] = hosts

    conf = _client_conf(broker.url)
    rated = [d for d in ("fake", "libvirt") if d in fleet]
    for driver in rated:
        step(
            f"Rating the {driver} driver: the conformance suite over the bus, recorded in the registry"
        )
        _conformance(workdir, broker.url, registry_url, fleet[driver], offers[driver])
    step("computedctl tiers (support tiers come from recorded runs, not from the drivers' claims)")
    _computedctl(workdir, registry_url, "tiers")

    step("computedctl workers (what an operator sees)")
    _computedctl(workdir, registry_url, "workers")

    unrated = [hosts[0] for driver, hosts in fleet.items() if driver not in rated]
    if unrated:
        step(
            "With the default policy ([conformance] required_tier = partial), unrated drivers get no work"
        )
        strict = ComputeAPI(conf, registry=Registry(registry_url))
        stack.callback(strict.cleanup)
        try:
            strict.ping(None, unrated[0])
        except exception.HostUnavailable as exc:
            show(f"{type(exc).__name__}: {exc}")
        show("This walkthrough's scheduler accepts untested drivers, to show them all at work.")

    api = ComputeAPI(conf, registry=Registry(registry_url), required_tier="untested")
    stack.callback(api.cleanup)
    collector = NotificationCollector(
        rpc.get_notification_transport(conf), "versioned_notifications", pool="demo"
    )
    collector.start()
    stack.callback(collector.stop)

    walkthrough(api, collector, [h for hosts in fleet.values() for h in hosts])
    fleet_steps(
        api,
        [h for hosts in fleet.values() for h in hosts],
        dict(zip(fleet["fake"], workers["fake"], strict=True)),
        step,
        show,
        lambda *args: _computedctl(workdir, registry_url, *args),
    )
    devices(api, collector, {d: hosts[0] for d, hosts in fleet.items()}, offers)
    images_and_consoles(api, collector, {d: hosts[0] for d, hosts in fleet.items()}, offers)
    events(conf, api, fleet, offers)
    moves(api, collector, fleet, offers)

    driver = "libvirt" if "libvirt" in workers else "fake"
    restart_under_load(api, collector, workers[driver][0], fleet[driver][0])

    step("Stopping the workers with SIGTERM (they drain, deregister and exit 0)")
    for each in workers.values():
        for worker in each:
            show(f"{worker.name} exited with status {worker.terminate()}")
    _computedctl(workdir, registry_url, "workers")


def walkthrough(api: ComputeAPI, collector: NotificationCollector, hosts: list[str]) -> None:
    step("Scheduler: which hosts answer, and what can they do?")
    for host in hosts:
        pong = api.ping(None, host)
        caps = api.get_capabilities(None, host)
        show(
            f"{host}: served by {pong.worker_id} ({pong.driver}, RPC {pong.rpc_version}), "
            f"declares tier {caps.support_tier}, {len(caps.operations)} operations"
        )

    step("Scheduler: spawn two instances on each host (calls)")
    placed: dict[str, list[str]] = {}
    for host in hosts:
        for n in (1, 2):
            spec = InstanceSpec(
                uuid=str(uuid.uuid4()), name=f"{host}-vm{n}", vcpus=2, memory_mb=1024, disk_gb=20
            )
            info = api.spawn(None, host, spec)
            assert info is not None
            placed.setdefault(host, []).append(info.uuid)
            show(f"{host}: spawned {info.name} {info.uuid} -> {info.power_state}")

    step("Scheduler: spawn again with the same UUID (idempotent: no second VM)")
    host = hosts[0]
    again = api.spawn(
        None, host, InstanceSpec(uuid=placed[host][0], name=f"{host}-vm1", vcpus=2, memory_mb=1024)
    )
    assert again is not None
    show(
        f"{host}: {again.name} is still {again.power_state}; "
        f"{len(api.list_instances(None, host))} instances on the host"
    )

    step("Scheduler: reboot every instance as a cast; outcomes arrive as notifications")
    requests = []
    for host, uuids in placed.items():
        for instance in uuids:
            ctxt = context.RequestContext()
            api.reboot(ctxt, host, instance, "soft", cast=True)
            requests.append((host, instance, ctxt.request_id))
    show(f"{len(requests)} casts sent")
    for host, instance, request_id in requests:
        done = collector.for_request(request_id, "instance.reboot.end")
        show(f"{host}: {done.event_type} for {instance} -> {done.payload.power_state}")

    step("Scheduler: pause one, power off another, then list instances per host")
    api.pause(None, hosts[0], placed[hosts[0]][0])
    api.power_off(None, hosts[-1], placed[hosts[-1]][1])
    for host in hosts:
        listing = ", ".join(f"{i.name}={i.power_state}" for i in api.list_instances(None, host))
        res = api.get_host_resources(None, host)
        show(
            f"{host}: {listing}  [vcpus {res.vcpus_used}/{res.vcpus}, "
            f"memory {res.memory_mb_used}/{res.memory_mb} MiB]"
        )

    step("Scheduler: mistakes get clear errors, in bounded time")
    stopped = placed[hosts[-1]][1]
    mistakes: list[tuple[str, Callable[[], object]]] = [
        ("suspend a stopped instance", lambda: api.suspend(None, hosts[-1], stopped)),
        ("reboot a missing instance", lambda: api.reboot(None, hosts[0], str(uuid.uuid4()))),
        ("call a host nobody serves", lambda: api.ping(None, "kvm-99")),
    ]
    for label, call in mistakes:
        started = time.monotonic()
        try:
            call()
        except exception.ComputedError as exc:
            show(
                f"{label}: {type(exc).__name__} after {1000 * (time.monotonic() - started):.0f} ms: {exc}"
            )

    step("Scheduler: destroy everything (twice: destroying a missing instance succeeds)")
    for host, uuids in placed.items():
        for instance in uuids:
            api.destroy(None, host, instance)
            api.destroy(None, host, instance)
        show(f"{host}: {len(api.list_instances(None, host))} instances left")


def restart_under_load(
    api: ComputeAPI, collector: NotificationCollector, worker: WorkerProcess, host: str
) -> None:
    """Restart a worker (one step of a rolling upgrade) while a scheduler keeps calling."""
    step(f"Restarting {worker.name} (as an upgrade would) while the scheduler keeps pinging {host}")
    stop = threading.Event()
    answers: list[tuple[float, str]] = []
    failures: list[str] = []

    def keep_pinging() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                worker_id = api.ping(None, host).worker_id
                answers.append((time.monotonic() - started, worker_id))
            except exception.ComputedError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            stop.wait(0.05)

    pinger = threading.Thread(target=keep_pinging, daemon=True)
    pinger.start()
    time.sleep(0.5)
    started = time.monotonic()
    status = worker.terminate()
    starting = threading.Thread(target=worker.start, daemon=True)  # as systemd would
    starting.start()
    ctxt = context.RequestContext()
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name=f"{host}-restart", vcpus=1, memory_mb=512)
    api.spawn(ctxt, host, spec, cast=True)  # held by the client until the worker is back
    starting.join(120)
    show(
        f"stopped with status {status} and registered again {time.monotonic() - started:.1f} s later"
    )
    time.sleep(1.0)
    stop.set()
    pinger.join(30)
    end = collector.for_request(ctxt.request_id, "instance.spawn.end")
    show(f"a spawn cast sent during the restart: {end.event_type} -> {end.payload.power_state}")
    api.destroy(None, host, spec.uuid)
    slowest = max(seconds for seconds, _ in answers)
    show(
        f"{len(answers)} pings answered, {len(failures)} failed; the slowest waited "
        f"{slowest:.1f} s for the new worker ([client] handover_timeout)"
    )
    for failure in failures[:3]:
        show(f"  {failure}")


def devices(
    api: ComputeAPI,
    collector: NotificationCollector,
    hosts: dict[str, str],
    offers: dict[str, dict[str, Any]],
) -> None:
    """Contract 1.2 on one host per driver: a spawn with an interface, a volume and an
    interface attached, both read back, then detached."""
    step("Scheduler: devices (contract 1.2): a volume and an interface on one host per driver")
    for driver, host in hosts.items():
        offer = offers.get(driver, {})
        connector = api.get_volume_connector(None, host)
        show(f"{host}: volume connector initiator={connector.initiator} ip={connector.ip}")
        network = offer.get("network", DEFAULT_NETWORK)
        spec = InstanceSpec(
            uuid=str(uuid.uuid4()),
            name=f"{host}-devices",
            vcpus=1,
            memory_mb=512,
            network_interfaces=[_port(network)],
        )
        info = api.spawn(None, host, spec)
        assert info is not None
        show(f"{host}: spawned with {_listing(info)}")
        # Stopped: every driver changes a stopped instance's devices, and
        # libvirt's test driver cannot hot-plug a running one.
        api.power_off(None, host, info.uuid)
        # Made by the peer's storage command, as a storage service would, or an
        # iSCSI target that need not exist (what the fake and libvirt's test driver take).
        volume = new_volume(offer.get("volume_command"))
        ctxt = context.RequestContext()
        api.attach_volume(ctxt, host, info.uuid, volume, cast=True)
        done = collector.for_request(ctxt.request_id, "instance.attach_volume.end")
        show(f"{host}: attach_volume cast -> {done.event_type}")
        port = _port(network)
        info = api.attach_interface(None, host, info.uuid, port)
        assert info is not None
        show(f"{host}: now {_listing(info)}")
        again = api.attach_volume(None, host, info.uuid, volume)
        assert again is not None
        show(f"{host}: the same volume attached again: still {len(again.block_devices)} disk(s)")
        api.detach_volume(None, host, info.uuid, volume.volume_id)
        api.detach_interface(None, host, info.uuid, port.port_id)
        show(f"{host}: detached: {_listing(api.get_info(None, host, info.uuid))}")
        api.destroy(None, host, info.uuid)


def images_and_consoles(
    api: ComputeAPI,
    collector: NotificationCollector,
    hosts: dict[str, str],
    offers: dict[str, dict[str, Any]],
) -> None:
    """Contract 1.3 on one host per driver, as far as its driver declares it: a snapshot
    cast with its progress, a rescue and back, and where the consoles are."""
    step("Scheduler: images, rescue and consoles (contract 1.3) on one host per driver")
    for driver, host in hosts.items():
        declared = set(api.get_capabilities(None, host).operations)
        image = offers.get(driver, {}).get("image", DEFAULT_IMAGE)
        spec = InstanceSpec(
            uuid=str(uuid.uuid4()),
            name=f"{host}-images",
            vcpus=1,
            memory_mb=512,
            image=image,
            disk_gb=1,
        )
        info = api.spawn(None, host, spec)
        assert info is not None
        if "snapshot" in declared:
            ctxt = context.RequestContext()
            api.snapshot(ctxt, host, info.uuid, f"{spec.name}-snap", cast=True)
            request_id = ctxt.request_id

            def snapshotted(e: Notification, r: str = request_id) -> bool:
                return e.payload.request_id == r and e.event_type in (
                    "instance.snapshot.end",
                    "instance.snapshot.error",
                )

            done = collector.wait_for(snapshotted, 120)
            steps = [
                f"{e.payload.progress}%"
                for e in collector.events
                if e.payload.request_id == ctxt.request_id
                and e.event_type == "instance.snapshot.progress"
            ]
            taken = done.payload.image
            where = (
                f"{taken.location} ({taken.disk_format})" if taken else done.payload.error_message
            )
            show(
                f"{host}: snapshot cast -> progress {' '.join(steps)} -> {done.event_type}: {where}"
            )
            if taken is not None and "delete_image" in declared:
                api.delete_image(None, host, taken.image_id)
                show(f"{host}: delete_image {taken.image_id}: done")
        else:
            show(f"{host}: the {driver} driver does not declare snapshot")
        if {"rescue", "unrescue"} <= declared:
            rescued = api.rescue(None, host, info.uuid)
            assert rescued is not None
            show(f"{host}: rescue -> {rescued.power_state}, still {_listing(rescued)}")
            back = api.unrescue(None, host, info.uuid)
            assert back is not None
            show(f"{host}: unrescue -> {back.power_state}")
        for kind in ("serial", "graphical"):
            operation = f"get_{kind}_console"
            if operation not in declared:
                show(f"{host}: no {kind} console (the {driver} driver does not declare one)")
                continue
            console = getattr(api, operation)(None, host, info.uuid)
            place = console.path if console.host is None else f"{console.host}:{console.port}"
            extra = (
                f" selecting {console.path}" if console.host is not None and console.path else ""
            )
            show(f"{host}: {kind} console: {console.protocol} at {place}{extra}")
        api.destroy(None, host, info.uuid)


def events(
    conf: cfg.ConfigOpts,
    api: ComputeAPI,
    fleet: dict[str, list[str]],
    offers: dict[str, dict[str, Any]],
) -> None:
    """Changes nobody asked for, made on the hypervisor itself, heard by the scheduler.

    On one host per driver whose peer can change an instance behind its
    worker's back (the conformance suite's ``hypervisor_command``): the guest
    shuts itself down. libvirt and xenapi workers hear it from their
    hypervisor's events, the others at their next look.
    """
    step("Scheduler: changes on the hypervisor that no operation made arrive as events")
    heard: list[InstanceEvent] = []
    arrived = threading.Condition()

    def on_event(event: InstanceEvent) -> None:
        if event.event_type in ("instance.power_state.update", "instance.delete"):
            with arrived:
                heard.append(event)
                arrived.notify_all()

    listener = InstanceEventListener(conf, on_event, pool="demo-scheduler").start()
    try:
        for driver, hosts in fleet.items():
            command = offers.get(driver, {}).get("hypervisor_command")
            if not command:
                show(f"{hosts[0]}: nothing here changes a {driver} instance behind its worker")
                continue
            host = hosts[0]
            made = _spawned(api, host, "oob")
            done = subprocess.run(
                [*shlex.split(command), "stop", host, made], capture_output=True, text=True
            )
            if done.returncode != 0:
                show(f"{host}: could not stop the guest: {done.stderr.strip()[-200:]}")
                continue
            with arrived:
                found = arrived.wait_for(functools.partial(_heard_of, heard, made), timeout=60)
            event = next((e for e in heard if e.payload.uuid == made), None)
            if not found or event is None:
                show(f"{host}: the guest shut itself down: no event within 60 s")
            else:
                payload = event.payload
                show(
                    f"{host}: the guest shut itself down: {event.event_type} "
                    f"{payload.old_state} -> {payload.new_state} (seen by {payload.source})"
                )
            api.destroy(None, host, made)
    finally:
        listener.stop()


def moves(
    api: ComputeAPI,
    collector: NotificationCollector,
    fleet: dict[str, list[str]],
    offers: dict[str, dict[str, Any]],
) -> None:
    """Contract 1.4 between the first two hosts of each driver, each served by its own
    worker: a live migration while a client keeps looking the instance up, then a cold
    migration back, a resize reverted, and an evacuation refused while the host lives."""
    step("Scheduler: moving instances (contract 1.4) between hosts served by different workers")
    for driver, hosts in fleet.items():
        if len(hosts) < 2:
            show(f"{hosts[0]}: the only {driver} host here; nothing to move to")
            continue
        source, dest = hosts[:2]
        operations = set(api.get_capabilities(None, source).operations)
        if "live_migration" not in operations:
            show(f"{source}: the {driver} driver does not migrate instances live")
            continue
        spec = InstanceSpec(
            uuid=str(uuid.uuid4()),
            name=f"{source}-mover",
            vcpus=1,
            memory_mb=512,
            disk_gb=1,
            image=offers.get(driver, {}).get("image", DEFAULT_IMAGE),
        )
        api.spawn(None, source, spec)
        looks = _keep_looking(api, spec.uuid, (source, dest))
        ctxt = context.RequestContext()
        started = time.monotonic()
        record = api.migrations.live_migrate(ctxt, source, dest, spec.uuid)
        took = time.monotonic() - started
        seen = looks.stop()
        collector.for_request(ctxt.request_id, "instance.live_migration.end")
        progress = [
            e.payload.progress
            for e in collector.events
            if e.payload.request_id == ctxt.request_id
            and e.event_type == "instance.live_migration.progress"
        ]
        show(
            f"{source} -> {dest}: live migration {record.status} in {took:.1f} s, "
            f"progress {progress}"
        )
        show(f"a client looked the instance up {len(seen)} times meanwhile: {_summary(seen)}")
        if "finish_migration" in operations:
            cold = api.migrations.migrate(None, dest, source, spec.uuid)
            api.migrations.confirm(None, cold.id)
            show(f"{dest} -> {source}: cold migration {cold.status}, then confirmed")
            bigger = Flavor(vcpus=2, memory_mb=1024, disk_gb=2)
            resize = api.migrations.resize(None, source, spec.uuid, bigger)
            grown = api.get_info(None, source, spec.uuid)
            api.migrations.revert(None, resize.id)
            back = api.get_info(None, source, spec.uuid)
            show(
                f"{source}: resized to {grown.vcpus} vCPU/{grown.memory_mb} MiB, reverted to "
                f"{back.vcpus} vCPU/{back.memory_mb} MiB"
            )
        home = source if _where(api, spec.uuid, (source, dest)) == source else dest
        other = dest if home == source else source
        try:
            api.migrations.evacuate(None, home, other, spec)
        except exception.InvalidRequest as exc:
            show(f"evacuate from {home} while it lives: {type(exc).__name__}: {exc}")
        api.destroy(None, home, spec.uuid)


class _keep_looking:
    """A client that keeps asking which host runs an instance, until stopped."""

    def __init__(self, api: ComputeAPI, uuid: str, hosts: tuple[str, ...]) -> None:
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(api, uuid, hosts), name="looker", daemon=True
        )
        self._thread.start()

    def _run(self, api: ComputeAPI, uuid: str, hosts: tuple[str, ...]) -> None:
        while not self._stop.is_set():
            self.seen.append(_where(api, uuid, hosts))

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(30)
        return self.seen


def _where(api: ComputeAPI, uuid: str, hosts: tuple[str, ...]) -> str:
    """``host:state`` of the host running the instance, or what went wrong."""
    for host in hosts:
        try:
            info = api.get_info(None, host, uuid)
        except exception.InstanceNotFound:
            continue
        except exception.ComputedError as exc:
            return f"error: {type(exc).__name__}"
        return f"{host}:{info.power_state}" if info.power_state != "running" else host
    return "nowhere"


def _summary(seen: list[str]) -> str:
    """``host-1 x12 -> host-2 x30``: each run of one answer, in order."""
    runs: list[tuple[str, int]] = []
    for answer in seen:
        if runs and runs[-1][0] == answer:
            runs[-1] = (answer, runs[-1][1] + 1)
        else:
            runs.append((answer, 1))
    return " -> ".join(f"{answer} x{count}" for answer, count in runs) or "no answer"


def _spawned(api: ComputeAPI, host: str, name: str) -> str:
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name=f"{host}-{name}", vcpus=1, memory_mb=512)
    info = api.spawn(None, host, spec)
    assert info is not None
    return str(info.uuid)


def _port(network: str) -> NetworkInterface:
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:3])
    return NetworkInterface(port_id=str(uuid.uuid4()), mac_address=mac, network=network)


def _listing(info: Any) -> str:
    disks = ", ".join(f"{d.device_name or '?'}={d.volume_id or d.kind}" for d in info.block_devices)
    ports = ", ".join(
        f"{i.device_name or i.port_id[:8]}@{i.network}" for i in info.network_interfaces
    )
    return f"disks [{disks or 'none'}], interfaces [{ports or 'none'}]"


def _worker_options(
    broker: RabbitMQBroker,
    registry_url: str,
    driver: str,
    hosts: list[str],
    workdir: str,
    number: int,
) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {
        "DEFAULT": {
            "transport_url": broker.url,
            "driver": driver,
            "hosts": hosts,
            "worker_id": f"demo-{driver}-{number}",
            "heartbeat_interval": 2,
        },
        "registry": {"connection": registry_url, "down_time": 10},
        # Changes nobody asked for are looked for every 2 s (60 s by default).
        "notifications": {"instance_sync_interval": 2},
    }
    if driver == "fake":  # a fake hypervisor outside the worker, changed by hand below
        # Its live migrations take 2 s, for the client looking on to see.
        options["fake"] = {"state_dir": f"{workdir}/fake-state", "live_migration_delay": 2}
    return options


def _conformance(
    workdir: str, url: str, registry_url: str, hosts: list[str], offer: dict[str, Any]
) -> None:
    config = write_config(
        f"{workdir}/conformance.conf",
        {
            "DEFAULT": {"transport_url": url},
            "registry": {"connection": registry_url, "down_time": 10},
            "conformance": offer,
        },
    )
    command = console_command("computed-conformance")
    hosts_args = [arg for host in hosts for arg in ("--host", host)]
    done = subprocess.run(
        [*command, "--config-file", config, *hosts_args, "--record"], capture_output=True, text=True
    )
    lines = done.stdout.strip().splitlines()
    failing = [line for line in lines if line.startswith("FAIL")]
    for line in [lines[0], *failing, *lines[-3:]] if lines else [done.stderr.strip()]:
        if line.strip():
            show(line.strip())


def _client_conf(url: str) -> cfg.ConfigOpts:
    conf = computed_conf.CONF
    computed_conf.register_all(conf)
    conf([], project="computed", default_config_files=[])
    rpc.get_transport(conf, url=url).cleanup()
    conf.set_override("transport_url", url)
    conf.set_override("down_time", 10, group="registry")
    return conf


def _computedctl(workdir: str, registry_url: str, *args: str) -> None:
    config = write_config(
        f"{workdir}/ctl.conf", {"registry": {"connection": registry_url, "down_time": 10}}
    )
    command = console_command("computedctl")
    output = subprocess.run(
        [*command, "--config-file", config, *args], capture_output=True, text=True, check=True
    )
    for line in output.stdout.splitlines():
        show(line)


def _stop_worker(worker: WorkerProcess) -> None:
    if worker.poll() is None:
        worker.terminate()


if __name__ == "__main__":
    sys.exit(main())
