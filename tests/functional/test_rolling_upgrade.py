"""A rolling upgrade from the previous release, checked out of this project's history.

The previous release (0.3.0, contract 1.2) is exported from git into a
temporary directory and installed into its own virtual environment. Its
workers serve two hosts beside a current worker on a third, on one broker
and registry, and all share one fake hypervisor (``[fake] state_dir``).
While a scheduler thread keeps calling and casting to every host, each old
worker is replaced by the current code on the same host, the way
docs/upgrade.md tells operators to: stop it (SIGTERM: it cancels its
subscriptions and drains), start the current code. In the middle, after
the first current worker has registered (and migrated the schema, had this
release a migration), the second old worker is restarted as the old
release once more, as an operator restarting a machine would: it must
start and serve.

The scheduler uses devices (1.2) on every host: a spawn with a network
interface and an ephemeral disk, then a volume attached, both read back
from the host. It uses what 1.3 adds where the host can take it: a
snapshot of the instance; where it cannot, the snapshot is refused at once
with UnsupportedVersion.

Asserted: no call fails and no host is skipped (messages wait for the next
worker), every cast reports its outcome, every message went out at a
version the workers consuming its host understood at the time (checked
against the version the answering worker itself reports), and no instance
is forgotten through the replacements.
"""

from __future__ import annotations

import configparser
import io
import json
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from oslo_context import context
from packaging.requirements import Requirement

from computed import exception, version
from computed.objects import (
    BlockDevice,
    Flavor,
    InstanceSpec,
    NetworkInterface,
    VolumeConnection,
)
from computed.registry import Registry
from computed.testing.notifications import NotificationCollector
from computed.testing.workers import WorkerProcess, console_command
from rpcapi import ComputeAPI
from tests.functional.conftest import Deployment, missing_instances, wait_until

pytestmark = [pytest.mark.upgrade, pytest.mark.timeout(600)]

#: Release 0.3.0 ("Failover test: four casts ..."): it speaks 1.2.
OLD_COMMIT = "1da92c1d01094e5e89c78f187cdf524486d1f071"
OLD_RPC_VERSION = "1.2"

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, timeout=120
    ).stdout


def _installed_satisfies(requirement: str) -> bool:
    wanted = Requirement(requirement)
    try:
        installed = metadata.version(wanted.name)
    except metadata.PackageNotFoundError:
        return False
    return wanted.specifier.contains(installed, prereleases=True)


def _install_requires(setup_cfg: str) -> list[str]:
    parser = configparser.ConfigParser()
    parser.read_string(setup_cfg)
    lines = parser["options"]["install_requires"].splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def old_computed(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ``computed`` command of the old release, in its own virtual environment."""
    try:
        _git("cat-file", "-e", f"{OLD_COMMIT}^{{commit}}")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"commit {OLD_COMMIT} is not in this checkout (a shallow clone?): {exc}")
    old_version = _git("show", f"{OLD_COMMIT}:computed/version.py").decode()
    assert f'RPC_API_VERSION = "{OLD_RPC_VERSION}"' in old_version
    old_setup = _git("show", f"{OLD_COMMIT}:setup.cfg").decode()
    # The old release needs nothing this environment lacks, so it may reuse its libraries.
    unmet = [
        requirement
        for requirement in _install_requires(old_setup)
        if not _installed_satisfies(requirement)
    ]
    assert not unmet, f"the old release needs what this environment lacks: {unmet}"

    base = tmp_path_factory.mktemp("old-release")
    source = base / "src"
    source.mkdir()
    with tarfile.open(fileobj=io.BytesIO(_git("archive", OLD_COMMIT))) as archive:
        archive.extractall(source, filter="data")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # What "pip install --no-deps -e <old checkout>" would leave, written out
    # directly (building a wheel needs the 'wheel' package, which this
    # environment need not have): the old tree on the path, and its
    # distribution metadata, whose entry points load its drivers. The
    # libraries come from this environment: the same requirements, checked
    # above. This environment's .pth files are not read, so this project's
    # current code stays out of the old environment.
    (purelib / "_old_release.pth").write_text(f"{source}\n")
    (purelib / "_shared_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    parser = configparser.ConfigParser()
    parser.read_string(old_setup)
    dist_info = purelib / f"computed-{parser['metadata']['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: computed\nVersion: {parser['metadata']['version']}\n"
    )
    entry_points = parser["options.entry_points"]
    (dist_info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n{entry_points[group].strip()}\n\n" for group in entry_points)
    )
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import computed, computed.version as v; print(v.RPC_API_VERSION, computed.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=base,
    ).stdout.split()
    assert check[0] == OLD_RPC_VERSION and check[1].startswith(str(source)), check
    # -I: not the current directory (this checkout) first on the path.
    return [str(python), "-I", "-m", "computed.cmd.worker"]


class _RecordingAPI(ComputeAPI):
    """Remembers, per thread, the version the last message went out at."""

    _sent = threading.local()

    def _fit(self, route: Any, method: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._sent.version = None
        rpc_version, fitted = super()._fit(route, method, kwargs)
        self._sent.version = rpc_version
        return rpc_version, fitted

    @property
    def last_version(self) -> str | None:
        return getattr(self._sent, "version", None)


@dataclass
class _Log:
    failures: list[str] = field(default_factory=list)
    #: (time, host, version sent, version of the worker that answered, worker id)
    pings: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    casts: list[str] = field(default_factory=list)
    #: (host, uuid, version sent) of every instance a cast spawned (none is destroyed)
    spawned: list[tuple[str, str, str]] = field(default_factory=list)
    consoles: int = 0
    #: snapshots refused at once because the host spoke only the old version
    refused: int = 0
    #: spawns with devices, and volumes attached, read back from the host
    devices: int = 0
    #: snapshots taken
    images: int = 0
    #: resizes refused at once because the host spoke a version without moves
    refused_moves: int = 0
    #: resizes made and confirmed
    resized: int = 0
    calls: int = 0
    #: seconds of the slowest round (a ping, three calls, two casts)
    slowest: float = 0.0


def _scheduler(api: _RecordingAPI, hosts: list[str], stop: threading.Event, log: _Log) -> None:
    """Call and cast to every host until told to stop; never raise, never skip a host."""
    while not stop.is_set():
        for host in hosts:
            started = time.monotonic()
            try:
                _one_round(api, host, log)
            except Exception as exc:
                log.failures.append(f"{time.monotonic():.2f} {host}: {type(exc).__name__}: {exc}")
            log.slowest = max(log.slowest, time.monotonic() - started)


def _one_round(api: _RecordingAPI, host: str, log: _Log) -> None:
    pong = api.ping(None, host)
    sent = api.last_version
    assert sent is not None
    log.pings.append((time.monotonic(), host, sent, pong.rpc_version, pong.worker_id))
    spec = InstanceSpec(
        uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64, description="rolling"
    )
    spec.block_devices = [BlockDevice(kind="blank", size_gb=1)]
    spec.network_interfaces = [_interface()]
    info = api.spawn(None, host, spec)
    assert info is not None
    log.calls += 2
    output = api.get_console_output(None, host, spec.uuid, tail_lines=3)
    assert "description: rolling" in output or "login:" in output, output
    log.consoles += 1
    volume = VolumeConnection(
        volume_id=f"vol-{spec.uuid[:8]}",
        driver_volume_type="file",
        data={"device_path": f"/volumes/{spec.uuid}"},
    )
    attached = api.attach_volume(None, host, spec.uuid, volume)
    assert attached is not None and attached.volume(volume.volume_id) is not None
    port = spec.network_interfaces[0].port_id
    assert info.interface(port) is not None and attached.interface(port) is not None
    log.devices += 1
    try:
        image = api.snapshot(None, host, spec.uuid, "rolling")
    except exception.UnsupportedVersion:
        log.refused += 1  # the host still runs the old release
    else:
        assert image is not None and (image.name, image.instance_uuid) == ("rolling", spec.uuid)
        log.images += 1
    log.calls += 3
    try:
        record = api.migrations.resize(None, host, spec.uuid, Flavor(vcpus=2, memory_mb=128))
    except exception.UnsupportedVersion:
        log.refused_moves += 1  # refused before anything was recorded
        assert api.migrations.list(instance_uuid=spec.uuid) == []
    else:
        api.migrations.confirm(None, record.id)
        assert api.get_info(None, host, spec.uuid).vcpus == 2
        log.resized += 1
    ctxt = context.RequestContext()
    cast_spec = InstanceSpec(
        uuid=str(uuid.uuid4()), name="cast", vcpus=1, memory_mb=64, description="cast"
    )
    api.spawn(ctxt, host, cast_spec, cast=True)
    log.casts.append(ctxt.request_id)
    sent_at = api.last_version
    assert sent_at is not None
    log.spawned.append((host, cast_spec.uuid, sent_at))
    api.destroy(None, host, spec.uuid, cast=True)


def _interface() -> NetworkInterface:
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:3])
    return NetworkInterface(port_id=str(uuid.uuid4()), mac_address=mac, network="br-int")


def _cap(api: ComputeAPI, host: str) -> str | None:
    try:
        return api.version_cap(host)
    except exception.HostUnavailable:
        return None


@pytest.fixture
def scheduler_api(deployment: Deployment) -> Iterator[_RecordingAPI]:
    deployment.conf.set_override("counters_interval", 0.5, group="upgrade_levels")
    api = _RecordingAPI(
        deployment.conf, registry=Registry(deployment.registry_url), required_tier="untested"
    )
    yield api
    api.cleanup()
    deployment.conf.clear_override("counters_interval", group="upgrade_levels")


def test_rolling_upgrade_from_the_previous_release(
    deployment: Deployment,
    old_computed: list[str],
    notifications: NotificationCollector,
    request: pytest.FixtureRequest,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    old_hosts = [f"up-{suffix}-1", f"up-{suffix}-2"]
    current_host = f"up-{suffix}-3"

    def worker(host: str, worker_id: str, command: list[str] | None) -> WorkerProcess:
        # Quorum queues, the current default, said explicitly: the old
        # release's default was classic queues, and every worker of a vhost
        # must agree (docs/upgrade.md).
        quorum = {"rabbit_quorum_queue": True}
        process = WorkerProcess(
            str(deployment.workdir),
            deployment.worker_options([host], worker_id, oslo_messaging_rabbit=quorum),
            name=worker_id,
            command=command,
        )
        deployment.workers.append(process)
        return process.start()

    # The old release creates the registry it knows; the current code then
    # upgrades the schema beside it, as a first upgraded worker would.
    old = {host: worker(host, f"old-{i}", old_computed) for i, host in enumerate(old_hosts, 1)}
    worker(current_host, "current-3", None)
    api = request.getfixturevalue("scheduler_api")
    hosts = [*old_hosts, current_host]
    assert [api.version_cap(h) for h in hosts] == [OLD_RPC_VERSION] * 2 + [version.RPC_API_VERSION]

    log = _Log()
    stop = threading.Event()
    thread = threading.Thread(target=_scheduler, args=(api, hosts, stop, log), daemon=True)
    started = time.monotonic()
    thread.start()
    upgraded_at: dict[str, float] = {}
    restarted_old_at = 0.0
    ctl_conf = deployment.workdir / "ctl.conf"
    ctl_conf.write_text(
        f"[registry]\nconnection = {deployment.registry_url}\ndown_time = 4\n"
        "[conformance]\nrequired_tier = untested\n"
    )
    try:
        _wait_for_rounds(log, hosts, 2)
        for i, host in enumerate(old_hosts, 1):
            if i == 2:
                # An old worker restarted mid-upgrade, beside a current one:
                # it starts on the registry the current code has migrated.
                assert old[host].terminate() == 0, old[host].log()
                restarted_old_at = time.monotonic()
                old[host] = worker(host, "old-2-again", old_computed)
                wait_until(lambda h=host: _answered_by(log, h, "old-2-again"), 60, "restart")
            assert old[host].terminate() == 0, old[host].log()
            worker(host, f"new-{i}", None)
            wait_until(lambda h=host: _cap(api, h) == version.RPC_API_VERSION, 10, f"{host} cap")
            upgraded_at[host] = time.monotonic()
            _wait_for_rounds(log, hosts, 2)
    finally:
        stop.set()
        thread.join(120)
    duration = time.monotonic() - started

    assert not log.failures, "\n".join(log.failures[:20])
    for request_id in log.casts:
        notifications.for_request(request_id, "instance.spawn.end", timeout=60)
    # Every instance a cast spawned is still there: the fake hypervisor is
    # shared by the old and the current workers.
    gone = missing_instances(api, [(h, u) for h, u, _ in log.spawned])
    assert not gone, f"instances forgotten through the upgrade: {sorted(gone)}"
    # Each host was sent what the worker that answered understands ...
    wrong = [p for p in log.pings if version.newer(p[2], p[3])]
    assert not wrong, wrong
    # ... the old hosts got the old version until their old worker had gone,
    # then the new one ...
    for host in old_hosts:
        sent = [(t, v, w) for t, h, v, _, w in log.pings if h == host]
        assert any(v == OLD_RPC_VERSION and w.startswith("old-") for _, v, w in sent)
        assert all(v == version.RPC_API_VERSION for t, v, _ in sent if t > upgraded_at[host])
        assert any(w.startswith("new-") for t, _, w in sent if t > upgraded_at[host])
    # ... the restarted old worker served at the old version beside a current one ...
    second = old_hosts[1]
    assert any(
        h == second and w == "old-2-again" and v == OLD_RPC_VERSION and t >= restarted_old_at
        for t, h, v, _, w in log.pings
    )
    # ... and the first upgraded host got the new version while the second still ran old code.
    first = old_hosts[0]
    assert any(
        h == first and v == version.RPC_API_VERSION and upgraded_at[first] < t
        for t, h, v, _, _ in log.pings
        if t < upgraded_at[second]
    )
    assert all(v == version.RPC_API_VERSION for _, h, v, _, _ in log.pings if h == current_host)
    assert log.consoles and log.refused and log.devices and log.images
    assert log.refused_moves and log.resized

    # The operator's view: versions, caps and the client's counters.
    api.call_counts()
    api._counters.flush(force=True)
    status = _computedctl(ctl_conf, "upgrade-status", "--json")
    rows = {row["host"]: row for row in json.loads(status)["hosts"]}
    for host in old_hosts:
        counts = rows[host]["counts"]
        assert counts[OLD_RPC_VERSION]["refused"] > 0
        assert counts[version.RPC_API_VERSION]["sent"] > 0
        assert rows[host]["cap"] == version.RPC_API_VERSION
    print(
        f"\nrolling upgrade: {duration:.1f} s, {log.calls} calls, {len(log.casts)} casts, "
        f"{log.consoles} console reads, {log.devices} spawns and attaches with devices, "
        f"{log.images} snapshots at {version.RPC_API_VERSION}, {log.refused} snapshots "
        f"refused at {OLD_RPC_VERSION}, {log.resized} resizes and {log.refused_moves} "
        f"refused, "
        f"0 failures, 0 hosts skipped, an old worker restarted mid-upgrade; slowest round "
        f"{log.slowest:.1f} s; {len(log.spawned)} instances spawned by casts, none forgotten"
    )


def _wait_for_rounds(log: _Log, hosts: list[str], rounds: int) -> None:
    """Until every host has answered ``rounds`` more pings: the scheduler is going."""

    def answered() -> dict[str, int]:
        return {h: sum(1 for p in list(log.pings) if p[1] == h) for h in hosts}

    start = answered()
    wait_until(
        lambda: all(n >= start[h] + rounds for h, n in answered().items()) or bool(log.failures),
        120,
        f"{rounds} rounds on every host",
    )


def _answered_by(log: _Log, host: str, worker_id: str) -> bool:
    return any(p[1] == host and p[4] == worker_id for p in list(log.pings))


def _spawn_ended(notifications: NotificationCollector, host: str) -> set[str]:
    """The instances on ``host`` whose spawn has reported its end so far."""
    return {
        e.payload.uuid
        for e in notifications.events
        if e.event_type == "instance.spawn.end" and e.payload.host == host
    }


def _computedctl(config: Path, *args: str) -> str:
    """The output of ``computedctl --config-file config args...``, which must succeed."""
    done = subprocess.run(
        [*console_command("computedctl"), "--config-file", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
