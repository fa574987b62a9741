"""Moving instances over the bus, the source and destination served by different workers.

Every test runs two fake workers (``w1`` serving ``h1``, ``w2`` serving
``h2``) over one fake hypervisor (``[fake] state_dir``), the orchestrator
in the test process (``ComputeAPI.migrations``), and checks what each host
lists after each move: never the instance on both hosts, never on neither.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oslo_context import context

from computed import exception
from computed.objects import (
    Flavor,
    InstanceSpec,
    MigrationStatus,
    NetworkInterface,
    PowerState,
)
from computed.registry import Registry
from computed.registry.instance_migrations import MigrationRecord
from computed.testing.notifications import Notification, NotificationCollector
from computed.testing.workers import WorkerProcess, console_command, write_config
from rpcapi import ComputeAPI

from .conftest import Deployment, wait_until

#: The client's call timeout in the tests that kill a worker: a step whose
#: worker died is noticed in that time, then sent again.
CALL_TIMEOUT = 2
#: What a live migration takes on the fake workers that are cut short or aborted.
SLOW_MIGRATION = 8 * CALL_TIMEOUT


@pytest.fixture
def short_calls(deployment: Deployment) -> Iterator[None]:
    deployment.conf.set_override("call_timeout", CALL_TIMEOUT, group="client")
    yield
    deployment.conf.clear_override("call_timeout", group="client")


def _spec(uuid: str, **fields: Any) -> InstanceSpec:
    vif = NetworkInterface(
        port_id=f"port-{uuid[:8]}", mac_address="fa:16:3e:00:10:01", network="private"
    )
    values: dict[str, Any] = {
        "uuid": uuid,
        "name": "moving",
        "vcpus": 1,
        "memory_mb": 128,
        "image": "cirros",
        "disk_gb": 1,
        "network_interfaces": [vif],
    }
    values.update(fields)
    return InstanceSpec(**values)


def _where(api: ComputeAPI, uuid: str, hosts: tuple[str, ...] = ("h1", "h2")) -> dict[str, str]:
    """``{host: power state}`` of every host that lists the instance."""
    found = {}
    for host in hosts:
        for info in api.list_instances(None, host):
            if info.uuid == uuid:
                found[host] = info.power_state
    return found


def _two_hosts(deployment: Deployment, **fake: Any) -> ComputeAPI:
    deployment.start_worker(["h1"], "w1", fake=fake)
    deployment.start_worker(["h2"], "w2", fake=fake)
    return deployment.api()


def test_a_cold_migration_moves_the_instance_and_its_devices_and_confirm_removes_the_source(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment)
    uuid = new_uuid()
    spawned = api.spawn(None, "h1", _spec(uuid))
    assert spawned is not None

    record = api.migrations.migrate(None, "h1", "h2", uuid)

    assert record.status == MigrationStatus.FINISHED
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}
    moved = api.get_info(None, "h2", uuid)
    assert moved.network_interfaces == spawned.network_interfaces
    assert [d.device_name for d in moved.block_devices] == ["vda"]
    # The source keeps its copy, unlisted, until the move is confirmed.
    held = json.loads((deployment.fake_state_dir / "h1.json").read_text())["moves"]
    assert list(held) == [record.id]

    confirmed = api.migrations.confirm(None, record.id)

    assert confirmed.status == MigrationStatus.CONFIRMED
    assert json.loads((deployment.fake_state_dir / "h1.json").read_text())["moves"] == {}
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}
    # Over: neither confirmed again nor reverted.
    assert api.migrations.confirm(None, record.id).status == MigrationStatus.CONFIRMED
    with pytest.raises(exception.InvalidMigrationState, match="confirmed"):
        api.migrations.revert(None, record.id)


def test_a_reverted_cold_migration_leaves_the_instance_on_its_source_as_it_was(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment)
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    api.power_off(None, "h1", uuid)

    record = api.migrations.migrate(None, "h1", "h2", uuid)
    assert _where(api, uuid) == {"h2": PowerState.STOPPED}
    reverted = api.migrations.revert(None, record.id)

    assert reverted.status == MigrationStatus.REVERTED
    assert _where(api, uuid) == {"h1": PowerState.STOPPED}
    assert api.migrations.revert(None, record.id).status == MigrationStatus.REVERTED


def test_a_resize_changes_the_size_in_place_and_a_revert_restores_it(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment)
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    bigger = Flavor(vcpus=2, memory_mb=256, disk_gb=2)

    record = api.migrations.resize(None, "h1", uuid, bigger)

    assert record.status == MigrationStatus.FINISHED
    info = api.get_info(None, "h1", uuid)
    assert (info.vcpus, info.memory_mb, info.disk_gb, info.power_state) == (2, 256, 2, "running")
    api.migrations.revert(None, record.id)
    info = api.get_info(None, "h1", uuid)
    assert (info.vcpus, info.memory_mb, info.disk_gb, info.power_state) == (1, 128, 1, "running")

    again = api.migrations.resize(None, "h1", uuid, bigger)
    api.migrations.confirm(None, again.id)
    assert api.get_info(None, "h1", uuid).memory_mb == 256
    # Disks do not shrink; nothing is recorded for a refused resize.
    with pytest.raises(exception.InvalidRequest, match="disks do not shrink"):
        api.migrations.resize(None, "h1", uuid, Flavor(vcpus=1, memory_mb=128, disk_gb=1))
    assert [r.id for r in api.migrations.list(instance_uuid=uuid)] == [again.id, record.id]


def test_a_live_migration_goes_both_ways_with_its_progress(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment)
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    ctxt = context.RequestContext()

    there = api.migrations.live_migrate(ctxt, "h1", "h2", uuid)

    assert there.status == MigrationStatus.COMPLETED
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}
    end = notifications.for_request(ctxt.request_id, "instance.live_migration.end", 30)
    assert end.publisher_id == "computed.h1"
    progress = [
        e.payload.progress
        for e in notifications.events
        if e.payload.request_id == ctxt.request_id
        and e.event_type == "instance.live_migration.progress"
    ]
    assert progress == [0, 25, 50, 75, 100]

    back = api.migrations.live_migrate(None, "h2", "h1", uuid)

    assert back.status == MigrationStatus.COMPLETED
    assert _where(api, uuid) == {"h1": PowerState.RUNNING}


def test_moves_that_cannot_be_made_are_refused_before_any_step(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment)
    uuid, stopped = new_uuid(), new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    api.spawn(None, "h1", _spec(stopped, network_interfaces=[]))
    api.power_off(None, "h1", stopped)

    with pytest.raises(exception.InvalidPowerState, match="live migration"):
        api.migrations.live_migrate(None, "h1", "h2", stopped)
    with pytest.raises(exception.InvalidRequest, match="destination other than"):
        api.migrations.migrate(None, "h1", "h1", uuid)
    with pytest.raises(exception.InstanceNotFound):
        api.migrations.migrate(None, "h1", "h2", new_uuid())
    with pytest.raises(exception.HostUnavailable):
        api.migrations.migrate(None, "h1", "nowhere", uuid)
    assert api.migrations.list(instance_uuid=uuid) == []
    assert _where(api, uuid) == {"h1": PowerState.RUNNING}


def test_a_destination_that_cannot_take_the_instance_refuses_it_and_nothing_moves(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    deployment.start_worker(["h1"], "w1")
    deployment.start_worker(["h2"], "w2", fake={"networks": "other"})
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))

    with pytest.raises(exception.MigrationPreCheckFailed, match="no network private"):
        api.migrations.live_migrate(None, "h1", "h2", uuid)

    (record,) = api.migrations.list(instance_uuid=uuid)
    assert record.status == MigrationStatus.ERROR
    assert "no network private" in (record.error or "")
    assert _where(api, uuid) == {"h1": PowerState.RUNNING}


def test_an_aborted_live_migration_leaves_the_instance_running_on_its_source(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment, live_migration_delay=SLOW_MIGRATION)
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    ctxt = context.RequestContext()
    outcome: list[BaseException | object] = []
    mover = threading.Thread(
        target=_capture, args=(outcome, api.migrations.live_migrate, ctxt, "h1", "h2", uuid)
    )
    mover.start()
    notifications.wait_for(
        lambda e: (
            e.payload.request_id == ctxt.request_id
            and e.event_type == "instance.live_migration.progress"
        ),
        30,
    )
    (running,) = api.migrations.list(instance_uuid=uuid, active=True)

    assert api.migrations.abort(None, running.id).status == MigrationStatus.ABORTING
    mover.join(60)

    assert len(outcome) == 1 and isinstance(outcome[0], exception.MigrationAborted), outcome
    assert api.migrations.get(running.id).status == MigrationStatus.ABORTED
    assert _where(api, uuid) == {"h1": PowerState.RUNNING}
    assert json.loads((deployment.fake_state_dir / "h2.json").read_text())["moves"] == {}


def _killed_mid_step(
    deployment: Deployment,
    notifications: NotificationCollector,
    move: Callable[[Any], object],
    victim: WorkerProcess,
    under_way: Callable[[Notification, str], bool],
    step: str,
) -> tuple[BaseException | object, MigrationRecord]:
    """Run ``move(ctxt)`` in a thread, kill ``victim`` once ``under_way`` says the step
    is under way, serve its host with a successor, and let the move end.

    :returns: what the move returned or raised, and its record once recovered if
        the orchestrator gave up on the silent host.
    """
    ctxt = context.RequestContext()
    outcome: list[BaseException | object] = []
    mover = threading.Thread(target=_capture, args=(outcome, move, ctxt))
    mover.start()
    # Killed mid-step: the journal holds the step as started.
    notifications.wait_for(lambda e: under_way(e, ctxt.request_id), 30)
    victim.kill()
    deployment.start_worker(list(victim.options["DEFAULT"]["hosts"]), f"{victim.worker_id}b")
    # The successor finds the step in its host's journal and runs it again.
    notifications.for_request(ctxt.request_id, f"instance.{step}.end", 60)
    mover.join(120)
    assert len(outcome) == 1
    (record,) = deployment.api().migrations.list()
    if isinstance(outcome[0], exception.MigrationError):
        # The orchestrator gave up on the silent host: recovery takes it up
        # from its record.
        assert "recover" in str(outcome[0])
        record = deployment.api().migrations.recover(None, record.id)
    return outcome[0], record


def test_a_live_migration_cut_short_by_its_source_workers_death_ends_on_one_host(
    deployment: Deployment,
    notifications: NotificationCollector,
    new_uuid: Callable[[], str],
    short_calls: None,
) -> None:
    first = deployment.start_worker(["h1"], "w1", fake={"live_migration_delay": SLOW_MIGRATION})
    deployment.start_worker(["h2"], "w2")
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))

    outcome, record = _killed_mid_step(
        deployment,
        notifications,
        lambda ctxt: api.migrations.live_migrate(ctxt, "h1", "h2", uuid),
        first,
        lambda e, request_id: (
            e.payload.request_id == request_id
            and e.event_type == "instance.live_migration.progress"
            and e.payload.progress == 25
        ),
        "live_migration",
    )

    assert record.status == MigrationStatus.COMPLETED, (outcome, record)
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}


def test_a_cold_migration_cut_short_by_its_destination_workers_death_ends_on_one_host(
    deployment: Deployment,
    notifications: NotificationCollector,
    new_uuid: Callable[[], str],
    short_calls: None,
) -> None:
    deployment.start_worker(["h1"], "w1")
    second = deployment.start_worker(["h2"], "w2", fake={"action_delay": SLOW_MIGRATION})
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))

    outcome, record = _killed_mid_step(
        deployment,
        notifications,
        lambda ctxt: api.migrations.migrate(ctxt, "h1", "h2", uuid),
        second,
        lambda e, request_id: (
            e.payload.request_id == request_id and e.event_type == "instance.finish_migration.start"
        ),
        "finish_migration",
    )

    assert record.status == MigrationStatus.FINISHED, (outcome, record)
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}
    api.migrations.revert(None, record.id)
    assert _where(api, uuid) == {"h1": PowerState.RUNNING}


def test_an_evacuation_is_refused_while_the_source_lives_and_its_return_removes_the_copy(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    first = deployment.start_worker(["h1"], "w1")
    deployment.start_worker(["h2"], "w2")
    api = deployment.api()
    uuid = new_uuid()
    spec = _spec(uuid)
    api.spawn(None, "h1", spec)

    with pytest.raises(exception.InvalidRequest, match="served by live worker w1"):
        api.migrations.evacuate(None, "h1", "h2", spec)
    first.terminate()

    record = api.migrations.evacuate(None, "h1", "h2", spec)

    assert record.status == MigrationStatus.COMPLETED
    assert api.get_info(None, "h2", uuid).power_state == PowerState.RUNNING
    # h1 still holds its copy: nothing has served it since.
    h1 = json.loads((deployment.fake_state_dir / "h1.json").read_text())["instances"]
    assert uuid in h1
    deployment.start_worker(["h1"], "w1")
    registry = Registry(deployment.registry_url)
    try:
        wait_until(
            lambda: registry.get_migration(record.id).status == MigrationStatus.CLEANED,
            30,
            "the returning host's clean-up",
        )
    finally:
        registry.close()
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}


def _ctl(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(
        str(deployment.workdir / "ctl.conf"),
        {
            "DEFAULT": {"transport_url": deployment.broker.url},
            "registry": {"connection": deployment.registry_url},
            "conformance": {"required_tier": "untested"},
        },
    )
    command = [*console_command("computedctl"), "--config-file", config, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_computedctl_lists_moves_and_confirms_or_reverts_them(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    api = _two_hosts(deployment)
    kept, undone = new_uuid(), new_uuid()
    api.spawn(None, "h1", _spec(kept))
    api.spawn(None, "h1", _spec(undone, network_interfaces=[]))
    first = api.migrations.migrate(None, "h1", "h2", kept)
    second = api.migrations.migrate(None, "h1", "h2", undone)

    listed = json.loads(_ctl(deployment, "migration", "list", "--active", "--json").stdout)
    assert [(m["id"], m["kind"], m["status"]) for m in listed] == [
        (second.id, "cold", "finished"),
        (first.id, "cold", "finished"),
    ]
    confirmed = _ctl(deployment, "migration", "confirm", first.id)
    reverted = _ctl(deployment, "migration", "revert", second.id)

    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip().endswith(": confirmed")
    assert reverted.returncode == 0, reverted.stderr
    assert _where(api, kept) == {"h2": PowerState.RUNNING}
    assert _where(api, undone) == {"h1": PowerState.RUNNING}
    shown = _ctl(deployment, "migration", "show", second.id, "-f", "value", "-c", "status")
    assert shown.stdout.strip() == "reverted"
    missing = _ctl(deployment, "migration", "confirm", new_uuid())
    assert missing.returncode != 0
    assert "is not in the registry" in missing.stderr
    assert _ctl(deployment, "migration", "list", "--active", "--json").stdout.strip() == "[]"


def test_a_destination_without_room_or_disabled_refuses_a_move_before_anything_moves(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    deployment.start_worker(["h1"], "w1")
    small = deployment.start_worker(["h2"], "w2", fake={"memory_mb": 100})
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))

    with pytest.raises(exception.InsufficientResources, match="memory_mb"):
        api.migrations.live_migrate(None, "h1", "h2", uuid)
    with pytest.raises(exception.InsufficientResources, match="memory_mb"):
        api.migrations.migrate(None, "h1", "h2", uuid)
    # A resize on its own host claims only what it adds.
    with pytest.raises(exception.InsufficientResources, match="memory_mb"):
        api.migrations.resize(None, "h1", uuid, Flavor(vcpus=1, memory_mb=1 << 20, disk_gb=1))
    assert _where(api, uuid) == {"h1": PowerState.RUNNING}

    _ctl(deployment, "host", "disable", "h1", "--reason", "firmware upgrade")
    small.terminate()
    deployment.start_worker(["h2"], "w2b")
    wait_until(
        lambda: "Host h1 is disabled" in deployment.workers[0].log(), 30, "w1 reading the flag"
    )
    with pytest.raises(exception.HostDisabled, match="firmware upgrade"):
        api.migrations.live_migrate(None, "h2", "h1", _moved_to_h2(api, uuid))
    statuses = [r.status for r in api.migrations.list(instance_uuid=uuid)]
    assert statuses == ["error", "completed", "error", "error", "error"]  # newest first
    assert _where(api, uuid) == {"h2": PowerState.RUNNING}


def _moved_to_h2(api: ComputeAPI, uuid: str) -> str:
    api.migrations.live_migrate(None, "h1", "h2", uuid)
    return uuid


def test_host_maintenance_moves_what_it_can_and_reports_the_rest(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    deployment.start_worker(["h1"], "w1")
    deployment.start_worker(["h2"], "w2")
    deployment.start_worker(["h3"], "w3", fake={"memory_mb": 1024})
    api = deployment.api()
    running, stopped, suspended = new_uuid(), new_uuid(), new_uuid()
    for uuid in (running, stopped, suspended):
        api.spawn(None, "h1", _spec(uuid, network_interfaces=[]))
    api.power_off(None, "h1", stopped)
    api.suspend(None, "h1", suspended)
    wait_until(
        lambda: {s.host for s in api.list_hosts()} == {"h1", "h2", "h3"},
        30,
        "the three hosts in the inventory",
    )

    done = _ctl(deployment, "host", "maintenance", "h1", "--reason", "new disks")

    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "h1 disabled (new disks); 3 instance(s) to move"
    assert lines[-2] == "h1: 2 moved, 1 not moved"
    assert lines[-1].startswith(f"not moved: {suspended}: ")
    assert "suspended" in lines[-1]
    # Each went where the most memory was free: h2 (the default 256 GiB), not h3.
    assert _where(api, running, ("h1", "h2", "h3")) == {"h2": PowerState.RUNNING}
    assert _where(api, stopped, ("h1", "h2", "h3")) == {"h2": PowerState.STOPPED}
    assert _where(api, suspended, ("h1", "h2", "h3")) == {"h1": PowerState.SUSPENDED}
    kinds = {r.migration.instance_uuid: (r.migration.kind, r.status) for r in api.migrations.list()}
    assert kinds == {running: ("live", "completed"), stopped: ("cold", "confirmed")}
    (h1,) = api.list_hosts(hosts=["h1"], include_disabled=True)
    assert h1.disabled and h1.disabled_reason == "new disks"


def _capture(
    outcome: list[BaseException | object], call: Callable[..., object], *args: Any
) -> None:
    try:
        outcome.append(call(*args))
    except BaseException as exc:  # the test looks at it
        outcome.append(exc)
