"""Workers sharing hosts: one is killed mid-stream, its hosts move, and it comes back.

Three fake workers declare the same thirty hosts; tooz's hash ring gives each
about a third. A scheduler keeps calling (ping) and casting (spawn of a new
UUID) to every host. After SIGKILL of one worker, its hosts must answer again
within the down time plus a small bound; every cast, including those sent
while nobody consumed the queue, must report exactly one outcome; calls in
the gap fail with the project's errors in bounded time or succeed. When the
worker restarts, exactly its share moves back.

The workers share one fake hypervisor (``[fake] state_dir``): an instance
spawned on a host before it changed hands is there after, whichever worker
spawned it.
"""

from __future__ import annotations

import collections
import re
import time
import uuid
from typing import Any

import pytest
from oslo_context import context

from computed import _ownership, exception
from computed.objects import InstanceSpec
from computed.registry import Registry
from computed.registry.api import utcnow
from computed.testing.notifications import NotificationCollector

from ._load import HostLoad
from .conftest import DOWN_TIME as SUITE_DOWN_TIME
from .conftest import HEARTBEAT_INTERVAL, Deployment, missing_instances, wait_until

pytestmark = pytest.mark.failover

#: Client timeout of the calls in these tests, in seconds.
CALL_TIMEOUT = 2
#: Longer than the other functional tests' 4 s: thirty hosts on three workers
#: and a busy scheduler on two cores delay heartbeats by seconds, and a live
#: worker taken for dead would hand its hosts over for nothing.
DOWN_TIME = 10.0
#: Every host of a killed worker answers again within this many seconds: the
#: down time, one heartbeat for the survivors to notice, and a generous margin
#: for a busy two-core machine (the client cache, a call timeout in flight).
RECOVERY_BOUND = DOWN_TIME + HEARTBEAT_INTERVAL + CALL_TIMEOUT + 6.0


def _owners(registry: Registry, hosts: list[str]) -> dict[str, str | None]:
    owners = registry.list_owners()
    return {h: owners[h].worker_id if h in owners else None for h in hosts}


def _settled(registry: Registry, hosts: list[str]) -> dict[str, str | None] | None:
    """The recorded owners, if they are what the ring gives over the live workers."""
    expected = _ownership.assignment(registry.list_workers(), DOWN_TIME, utcnow())
    recorded = _owners(registry, hosts)
    if all(recorded[h] is not None and recorded[h] == expected[h][0] for h in hosts):
        return recorded
    return None


class _Scheduler(HostLoad):
    """One thread per host: cast a spawn of a new UUID, then ping, again and again."""

    def __init__(self, api: Any, hosts: list[str]) -> None:
        super().__init__(api, hosts, join_timeout=CALL_TIMEOUT * 5)
        #: (sent at, host, request id, instance uuid) of every cast the client accepted.
        self.casts: list[tuple[float, str, str, str]] = []
        #: (started, ended, host, worker id or error class) of every call.
        self.calls: list[tuple[float, float, str, str]] = []
        self.unexpected: list[str] = []

    def _run(self, host: str) -> None:
        while not self.stop.is_set():
            ctxt = context.RequestContext()
            spec = InstanceSpec(uuid=str(uuid.uuid4()), name="f", vcpus=1, memory_mb=64)
            sent = time.monotonic()
            try:
                self.api.spawn(ctxt, host, spec, cast=True)
                with self.lock:
                    self.casts.append((sent, host, ctxt.request_id, spec.uuid))
            except exception.HostUnavailable:
                pass
            except Exception as exc:  # noqa: BLE001 - reported by the test
                with self.lock:
                    self.unexpected.append(f"cast to {host}: {type(exc).__name__}: {exc}")
            started = time.monotonic()
            try:
                answer = self.api.ping(None, host).worker_id
            except (exception.HostTimeout, exception.HostUnavailable) as exc:
                answer = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - reported by the test
                answer = type(exc).__name__
                with self.lock:
                    self.unexpected.append(f"ping {host}: {type(exc).__name__}: {exc}")
            with self.lock:
                self.calls.append((started, time.monotonic(), host, answer))
            self.stop.wait(0.5)


def test_killed_worker_hosts_move_and_come_back(
    deployment: Deployment, notifications: NotificationCollector
) -> None:
    suffix = uuid.uuid4().hex[:6]
    hosts = [f"fo-{suffix}-{i:02d}" for i in range(30)]
    workers = {
        worker_id: deployment.start_worker(hosts, worker_id, registry={"down_time": DOWN_TIME})
        for worker_id in ("w1", "w2", "w3")
    }
    registry = Registry(deployment.registry_url)
    wait_until(lambda: _settled(registry, hosts) is not None, 30, "ownership settling")
    before = _settled(registry, hosts)
    assert before is not None
    assert set(before.values()) == {"w1", "w2", "w3"}
    victim_hosts = sorted(h for h, w in before.items() if w == "w2")

    conf = deployment.conf
    conf.set_override("call_timeout", CALL_TIMEOUT, group="client")
    conf.set_override("down_time", DOWN_TIME, group="registry")
    api = deployment.api()
    scheduler = _Scheduler(api, hosts)
    try:
        scheduler.start()
        time.sleep(2.0)
        killed_at = time.monotonic()
        workers["w2"].kill()
        dead_at = time.monotonic()  # the broker requeues what it had not acknowledged

        def recovered(host: str) -> float | None:
            with scheduler.lock:
                answers = [
                    end for start, end, h, w in scheduler.calls
                    if h == host and start > killed_at and w in ("w1", "w3")
                ]  # fmt: skip
            return min(answers) - killed_at if answers else None

        wait_until(
            lambda: all(recovered(h) is not None for h in victim_hosts),
            RECOVERY_BOUND + 10,
            "every host of w2 answering from another worker",
        )
        recovery = {h: recovered(h) for h in victim_hosts}
        time.sleep(2.0)  # casts keep flowing after the takeover
        wait_until(lambda: _settled(registry, hosts) is not None, 10, "ownership settling again")
        after_kill = _settled(registry, hosts)
        assert after_kill is not None
        moved = sorted(h for h in hosts if before[h] != after_kill[h])
        assert moved == victim_hosts, "only the dead worker's hosts move"

        restarted_at = time.monotonic()
        workers["w2"].start()
        wait_until(lambda: _settled(registry, hosts) == before, 30, "rebalancing after the restart")
        rebalance_time = time.monotonic() - restarted_at
        time.sleep(1.0)
    finally:
        scheduler.finish()
        conf.set_override("call_timeout", 30, group="client")
        conf.set_override("down_time", SUITE_DOWN_TIME, group="registry")

    assert not scheduler.unexpected, scheduler.unexpected[:10]
    worst = max(v for v in recovery.values() if v is not None)
    assert worst <= RECOVERY_BOUND, recovery
    durations = [end - start for start, end, _, _ in scheduler.calls]
    assert max(durations) <= CALL_TIMEOUT + 3.0, "a call took longer than its timeout"
    in_gap = [
        w for s, _, h, w in scheduler.calls
        if h in victim_hosts and killed_at < s < restarted_at
    ]  # fmt: skip
    assert set(in_gap) <= {"w1", "w3", "HostTimeout", "HostUnavailable"}, set(in_gap)

    # Every accepted cast has exactly one outcome, the ones sent in the gap included.
    casts = list(scheduler.casts)
    gap = [c for c in casts if c[1] in victim_hosts and killed_at <= c[0] <= killed_at + worst]
    assert gap, "no cast was sent while the hosts were moving"
    request_ids = {request_id for _, _, request_id, _ in casts}
    try:
        wait_until(lambda: request_ids <= _ended(notifications), 30, "an outcome for every cast")
    except AssertionError:
        pass  # reported below, with the details
    lost = request_ids - _ended(notifications)
    ends = collections.Counter(
        e.payload.request_id for e in notifications.events if e.event_type == "instance.spawn.end"
    )
    twice = {r: n for r, n in ends.items() if r in request_ids and n != 1}
    assert not twice, f"casts with more than one outcome: {twice}"
    errors = [
        e for e in notifications.events
        if e.event_type == "instance.spawn.error" and e.payload.request_id in request_ids
    ]  # fmt: skip
    assert not errors, errors[:3]
    # Every host changed hands at least once (w2's twice): no instance was forgotten.
    forgotten = missing_instances(api, [(host, uuid_) for _, host, _, uuid_ in casts])
    assert not forgotten, f"{len(forgotten)} of {len(casts)} instances are gone"

    moves = registry.list_moves(limit=200)
    takeovers = {m.host for m in moves if m.reason == "takeover" and m.from_worker_id == "w2"}
    assert takeovers == set(victim_hosts)
    print(
        f"\nfailover: {len(victim_hosts)} hosts moved; slowest answered again "
        f"{worst:.1f} s after SIGKILL (down time {DOWN_TIME} s, heartbeat "
        f"{HEARTBEAT_INTERVAL} s); rebalanced {rebalance_time:.1f} s after the restart; "
        f"{len(casts)} casts ({len(gap)} in the gap, {len(lost)} without an outcome), "
        f"{len(scheduler.calls)} calls"
    )
    registry.close()
    # Casts sent once the worker was dead waited in its hosts' queues; those it
    # had received were journaled on receipt: none is lost.
    lost_in_gap = {r for sent, _, r, _ in casts if sent > dead_at and r in lost}
    assert not lost_in_gap, f"{len(lost_in_gap)} casts sent after the kill had no outcome"
    assert not lost, f"{len(lost)} casts sent before the kill had no outcome"


def _ended(notifications: NotificationCollector) -> set[str]:
    return {
        e.payload.request_id for e in notifications.events if e.event_type == "instance.spawn.end"
    }


def test_operation_cut_by_sigkill_is_completed_by_the_new_owner(
    deployment: Deployment, notifications: NotificationCollector
) -> None:
    suffix = uuid.uuid4().hex[:6]
    hosts = [f"mid-{suffix}-{i}" for i in range(4)]
    # Operations started are held until the kill, however long the steps
    # between take on a busy machine; the new owner's run of them after.
    hold = deployment.workdir / "hold"
    slow = {"hold_path": str(hold)}
    workers = {
        worker_id: deployment.start_worker(
            hosts, worker_id, registry={"down_time": DOWN_TIME}, fake=slow
        )
        for worker_id in ("m1", "m2")
    }
    registry = Registry(deployment.registry_url)
    wait_until(lambda: _settled(registry, hosts) is not None, 30, "ownership settling")
    owners = _settled(registry, hosts)
    assert owners is not None

    # A worker that lost a host in the first rebalance lets go at its next
    # heartbeat; until then both consume, and the casts below must reach the
    # worker about to be killed.
    wait_until(lambda: _one_consumer_each(deployment, hosts), 30, "one consumer per host queue")
    host = hosts[0]
    victim, survivor = (owners[host], "m2" if owners[host] == "m1" else "m1")
    api = deployment.api()
    # An instance to reboot, made before the kill.
    rebooted = InstanceSpec(uuid=str(uuid.uuid4()), name="r", vcpus=1, memory_mb=64)
    api.spawn(None, host, rebooted)

    spawn_ctxt, reboot_ctxt = context.RequestContext(), context.RequestContext()
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="cut", vcpus=1, memory_mb=64)
    hold.touch()
    api.spawn(spawn_ctxt, host, spec, cast=True)
    api.reboot(reboot_ctxt, host, rebooted.uuid, cast=True)
    notifications.for_request(spawn_ctxt.request_id, "instance.spawn.start")
    notifications.for_request(reboot_ctxt.request_id, "instance.reboot.start")
    assert {e.operation for e in registry.journal_entries(host)} == {"spawn", "reboot"}
    workers[victim].kill()
    hold.unlink()

    bound = DOWN_TIME + HEARTBEAT_INTERVAL + 10
    end = notifications.for_request(spawn_ctxt.request_id, "instance.spawn.end", timeout=bound)
    assert end.payload.uuid == spec.uuid
    error = notifications.for_request(
        reboot_ctxt.request_id, "instance.reboot.error", timeout=bound
    )
    assert error.payload.error_class == "OperationInterrupted"
    wait_until(lambda: registry.journal_entries(host) == [], 10, "the journal emptying")
    listed = [i.uuid for i in api.list_instances(None, host)]
    assert listed.count(spec.uuid) == 1
    # The instance the victim spawned is there, as the cut reboot left it.
    assert api.get_info(None, host, rebooted.uuid).power_state == "running"
    time.sleep(1.0)
    spawn_ends = [
        e for e in notifications.events
        if e.event_type == "instance.spawn.end" and e.payload.request_id == spawn_ctxt.request_id
    ]  # fmt: skip
    assert len(spawn_ends) == 1
    assert api.ping(None, host).worker_id == survivor
    assert "Reconciled spawn" in workers[survivor].log()
    registry.close()


def test_casts_queued_in_a_killed_worker_are_run_by_the_new_owner(
    deployment: Deployment, notifications: NotificationCollector
) -> None:
    """Casts the killed worker had received (and oslo.messaging acknowledged) but not started.

    One thread runs the worker's operations (``[listener] executor_threads``), so
    while a slow spawn runs the casts behind it sit acknowledged inside the
    worker: only their receipt entries in the journal remember them.
    """
    suffix = uuid.uuid4().hex[:6]
    hosts = [f"rcv-{suffix}-{i}" for i in range(2)]
    # The first spawn is held in the victim until it is killed, however long
    # the checks before the kill take on a busy machine.
    hold = deployment.workdir / "hold"
    workers = {
        worker_id: deployment.start_worker(
            hosts,
            worker_id,
            listener={"executor_threads": 1},
            registry={"down_time": DOWN_TIME},
            fake={"hold_path": str(hold)},
        )
        for worker_id in ("r1", "r2")
    }
    registry = Registry(deployment.registry_url)
    wait_until(lambda: _settled(registry, hosts) is not None, 30, "ownership settling")
    owners = _settled(registry, hosts)
    assert owners is not None
    host = hosts[0]
    victim = owners[host]
    assert victim is not None
    survivor = "r2" if victim == "r1" else "r1"
    wait_until(lambda: _one_consumer_each(deployment, hosts), 30, "one consumer per host queue")

    api = deployment.api()
    # One running and three waiting: as many as the worker reads while its one
    # thread is busy (it stops reading at four waiting per thread).
    contexts = [context.RequestContext() for _ in range(4)]
    specs = [
        InstanceSpec(uuid=str(uuid.uuid4()), name=f"q{i}", vcpus=1, memory_mb=64)
        for i in range(len(contexts))
    ]
    hold.touch()
    for ctxt, spec in zip(contexts, specs, strict=True):
        api.spawn(ctxt, host, spec, cast=True)
    notifications.for_request(contexts[0].request_id, "instance.spawn.start")

    def journaled() -> list[str]:
        return sorted(e.state for e in registry.journal_entries(host))

    # Spawn is repeatable, so the running one keeps its receipt state: all four are "received".
    wait_until(lambda: journaled() == ["received"] * 4, 30, "four casts journaled on receipt")
    assert deployment.broker.list_queues().get(f"compute.{host}") == 0  # all acknowledged
    workers[victim].kill()
    hold.unlink()

    bound = DOWN_TIME + HEARTBEAT_INTERVAL + 20
    for ctxt, spec in zip(contexts, specs, strict=True):
        end = notifications.for_request(ctxt.request_id, "instance.spawn.end", timeout=bound)
        assert end.payload.uuid == spec.uuid
    wait_until(lambda: registry.journal_entries(host) == [], 10, "the journal emptying")
    time.sleep(1.0)
    request_ids = {c.request_id for c in contexts}
    ends = collections.Counter(
        e.payload.request_id
        for e in notifications.events
        if e.event_type == "instance.spawn.end" and e.payload.request_id in request_ids
    )
    assert set(ends.values()) == {1}, ends
    forgotten = missing_instances(api, [(host, spec.uuid) for spec in specs])
    assert not forgotten, forgotten
    assert api.ping(None, host).worker_id == survivor

    # The three casts behind the held spawn never started in the victim, and
    # the held one never finished there: the new owner ran all four, and each
    # ended once.
    def reconciled() -> set[str]:
        pattern = rf"Reconciled spawn of (\S+) on {host} left by {victim}:"
        return set(re.findall(pattern, workers[survivor].log()))

    # Logged once each has reported its end: on a busy machine, a little later.
    wait_until(lambda: reconciled() == {s.uuid for s in specs}, 30, "the reconciliations logged")
    registry.close()


def test_a_worker_puts_right_a_record_another_worker_left_empty(deployment: Deployment) -> None:
    """Workers starting together: one that had not yet seen another claimed a host
    the other already served, then gave it back, leaving the record with no
    owner. The worker serving the host says so again at its next heartbeat,
    and the client, which routes by the record, reaches it."""
    deployment.start_worker(["fix-1"], "w1")
    registry = Registry(deployment.registry_url)

    def owner() -> str | None:
        record = registry.list_owners().get("fix-1")
        return record.worker_id if record is not None else None

    wait_until(lambda: owner() == "w1", 30, "the first claim")
    registry.claim_hosts("early", {"fix-1": "rebalance"})
    registry.release_hosts(["fix-1"], "early")
    assert owner() is None

    wait_until(lambda: owner() == "w1", HEARTBEAT_INTERVAL * 4 + 10, "the record put right")
    assert deployment.api().ping(None, "fix-1").worker_id == "w1"
    registry.close()


def test_a_standby_group_serves_nothing_until_the_main_group_is_down(
    deployment: Deployment,
) -> None:
    """A host declared in two groups is served by the first (by name) with a live
    worker: the standby worker consumes none of its queues while the main one
    lives, then takes every host over, with the instances the main one made."""
    suffix = uuid.uuid4().hex[:6]
    hosts = [f"sb-{suffix}-{i}" for i in range(6)]
    options = {"registry": {"down_time": DOWN_TIME}}
    main = deployment.start_worker(hosts, "main", DEFAULT={"group": "a-main"}, **options)
    standby = deployment.start_worker(hosts, "standby", DEFAULT={"group": "b-standby"}, **options)
    assert re.search(r"can serve 6 host\(s\) and owns 0\b", standby.log()), standby.log()
    registry = Registry(deployment.registry_url)
    conf = deployment.conf
    conf.set_override("down_time", DOWN_TIME, group="registry")
    try:
        wait_until(
            lambda: _owners(registry, hosts) == dict.fromkeys(hosts, "main"), 30, "main's claims"
        )
        api = deployment.api()
        assert {api.ping(None, host).worker_id for host in hosts} == {"main"}
        # A worker asks to consume without waiting for the broker's answer:
        # on a busy machine the broker may count a consumer a moment later.
        wait_until(lambda: _one_consumer_each(deployment, hosts), 30, "one consumer per host queue")
        spec = InstanceSpec(uuid=str(uuid.uuid4()), name="sb", vcpus=1, memory_mb=64)
        api.spawn(context.RequestContext(), hosts[0], spec)

        main.kill()
        wait_until(
            lambda: _owners(registry, hosts) == dict.fromkeys(hosts, "standby"),
            DOWN_TIME + 30,
            "the standby group taking every host over",
        )
        assert {api.ping(None, host).worker_id for host in hosts} == {"standby"}
        assert [i.uuid for i in api.list_instances(None, hosts[0])] == [spec.uuid]
        moves = registry.list_moves(limit=50)
        assert {
            m.host for m in moves if m.reason == "takeover" and m.to_worker_id == "standby"
        } == (set(hosts))
    finally:
        conf.set_override("down_time", SUITE_DOWN_TIME, group="registry")
        registry.close()


def _one_consumer_each(deployment: Deployment, hosts: list[str]) -> bool:
    """Whether the broker counts exactly one consumer on each host's queue."""
    counts = deployment.broker.consumers()
    return all(counts.get(f"compute.{host}") == 1 for host in hosts)
