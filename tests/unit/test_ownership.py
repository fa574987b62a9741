"""Host ownership: tooz's hash ring over each host's live, enabled candidates."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg
from oslo_context import context

from computed import _ownership
from computed._journal import Journal
from computed._logcontext import OperationLogContext
from computed.manager import ComputeManager, reconcile
from computed.objects import InstanceSpec
from computed.registry import Registry, WorkerRecord
from computed.registry.api import JOURNAL_DONE, JOURNAL_RECEIVED, utcnow
from drivers.fake import FakeDriver

HOSTS = tuple(f"host-{i:02d}" for i in range(30))
DOWN = 10.0


def _worker(worker_id: str, hosts: tuple[str, ...] = HOSTS, **changes: Any) -> WorkerRecord:
    record = WorkerRecord(
        id=worker_id,
        driver="fake",
        hosts=hosts,
        rpc_version="1.1",
        rpc_min_version="1.0",
        support_tier="conformant",
        heartbeat_at=utcnow(),
    )
    return dataclasses.replace(record, **changes)


def _owners(workers: list[WorkerRecord]) -> dict[str, str | None]:
    return {h: o for h, (o, _) in _ownership.assignment(workers, DOWN, utcnow()).items()}


def test_every_host_has_one_owner_and_workers_agree() -> None:
    workers = [_worker("w1"), _worker("w2"), _worker("w3")]
    owners = _owners(workers)
    assert set(owners.values()) == {"w1", "w2", "w3"}
    for worker in workers:
        mine = _ownership.owned_by(worker, workers, DOWN, utcnow())
        assert mine == {h for h, o in owners.items() if o == worker.id}


def test_a_dead_workers_hosts_move_and_only_those() -> None:
    workers = [_worker("w1"), _worker("w2"), _worker("w3")]
    before = _owners(workers)
    stale = utcnow() - datetime.timedelta(seconds=DOWN + 1)
    after = _owners([workers[0], workers[1], dataclasses.replace(workers[2], heartbeat_at=stale)])
    moved = {h for h in HOSTS if before[h] != after[h]}
    assert moved == {h for h in HOSTS if before[h] == "w3"}
    assert "w3" not in after.values()
    # It comes back: exactly its share returns to it.
    assert _owners(workers) == before


def test_disabled_and_draining_workers_own_nothing() -> None:
    workers = [_worker("w1", disabled=True), _worker("w2", state="draining"), _worker("w3")]
    assert set(_owners(workers).values()) == {"w3"}
    assert _owners([_worker("w1", disabled=True)]) == dict.fromkeys(HOSTS)


def test_a_host_declared_in_two_groups_is_served_by_the_first_with_a_live_worker() -> None:
    workers = [
        _worker("a1", hosts=("x", "y"), group="rack-a"),
        _worker("b1", hosts=("x", "y", "z"), group="rack-b"),
        _worker("a2", hosts=("x",), group="rack-a"),
    ]

    def owned(worker: WorkerRecord, among: list[WorkerRecord] = workers) -> set[str]:
        return _ownership.owned_by(worker, among, DOWN, utcnow())

    assert owned(workers[1]) == {"z"}  # rack-a comes first, and is live
    assert owned(workers[0]) | owned(workers[2]) == {"x", "y"}
    assert owned(workers[2]) <= {"x"}
    # As computedctl shows it: the same owner for every host.
    expected = _ownership.assignment(workers, DOWN, utcnow())
    for worker in workers:
        assert owned(worker) == {h for h, (o, _) in expected.items() if o == worker.id}
    # rack-a down: rack-b serves every host it declares.
    down = utcnow() - datetime.timedelta(seconds=DOWN + 1)
    gone = [dataclasses.replace(w, heartbeat_at=down) for w in (workers[0], workers[2])]
    assert owned(workers[1], [*gone, workers[1]]) == {"x", "y", "z"}


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    yield registry
    registry.close()


def test_claims_record_moves(registry: Registry) -> None:
    registry.claim_host("h1", "w1", "rebalance")
    registry.claim_host("h1", "w1", "rebalance")  # again: no move
    registry.release_host("h1", "w1")
    assert registry.list_owners()["h1"].worker_id is None
    registry.claim_host("h1", "w2", "takeover")
    registry.release_host("h1", "w1")  # not its own any more: no change
    assert registry.list_owners()["h1"].worker_id == "w2"
    moves = [(m.from_worker_id, m.to_worker_id, m.reason) for m in registry.list_moves()]
    assert moves == [("w1", "w2", "takeover"), (None, "w1", "initial")]
    assert registry.list_moves(host="h2") == []


def test_a_record_said_otherwise_is_claimed_again_and_only_it(registry: Registry) -> None:
    registry.claim_hosts("w1", {"h1": "rebalance", "h2": "rebalance"})
    assert registry.confirm_hosts("w1", ["h1", "h2"]) == []
    registry.claim_hosts("early", {"h2": "rebalance"})
    registry.release_hosts(["h2"], "early")
    assert registry.confirm_hosts("w1", ["h1", "h2"]) == ["h2"]
    assert {h: r.worker_id for h, r in registry.list_owners().items()} == {"h1": "w1", "h2": "w1"}
    assert registry.confirm_hosts("w1", ["h1", "h2"]) == []


def _fingerprint(registry: Registry, now: datetime.datetime) -> _ownership.Fingerprint:
    return _ownership.fingerprint(registry.worker_states(), DOWN, now)


def test_ownership_is_computed_again_only_when_what_it_depends_on_changed(
    registry: Registry,
) -> None:
    """Heartbeats leave the fingerprint alone; a worker going down, joining,
    registering again (new hosts), or being disabled changes it."""
    registry.register(_worker("w1"))
    registry.register(_worker("w2"))
    now = utcnow()
    seen = _fingerprint(registry, now)
    registry.heartbeat("w1")
    assert _fingerprint(registry, now) == seen
    later = now + datetime.timedelta(seconds=DOWN + 1)
    registry.heartbeat("w1")
    assert _fingerprint(registry, later) != _fingerprint(registry, now)
    changes = [
        lambda: registry.register(_worker("w3")),
        lambda: registry.register(_worker("w2", hosts=HOSTS[:3])),
        lambda: registry.set_disabled("w1", True),
        lambda: registry.set_state("w2", "draining"),
    ]
    for change in changes:
        before = _fingerprint(registry, utcnow())
        change()
        assert _fingerprint(registry, utcnow()) != before


def test_the_next_expiry_is_when_the_first_other_live_worker_of_the_driver_would_be_down(
    registry: Registry,
) -> None:
    for worker_id in ("me", "w2", "w3", "gone"):
        registry.register(_worker(worker_id))
    registry.register(_worker("other", driver="libvirt"))
    now = utcnow()
    heartbeats = {"me": 0, "w2": 4, "w3": 7, "gone": DOWN + 1, "other": 9}  # seconds ago
    states = [
        s._replace(heartbeat_at=now - datetime.timedelta(seconds=heartbeats[s.id]))
        for s in registry.worker_states()
    ]

    def expiry(me: str = "me", at: datetime.datetime = now) -> float | None:
        return _ownership.next_expiry(states, "fake", me, DOWN, at)

    assert expiry() == pytest.approx(DOWN - 7)  # w3's: "gone" is down already
    assert expiry("w3") == pytest.approx(DOWN - 4)  # never its own
    later = now + datetime.timedelta(seconds=DOWN - 7 + 0.05)
    assert not next(s for s in states if s.id == "w3").fresh(DOWN, later)  # down by then
    assert expiry(at=later) == pytest.approx(DOWN - 4 - 3.05)
    assert _ownership.next_expiry(states, "xenapi", "me", DOWN, now) is None


class _Notifications:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        #: What each notification's lines would be logged under (request, host, instance).
        self.logged_as: list[tuple[str, str, str]] = []

    def emit(self, ctxt: Any, host: str, operation: str, phase: str, uuid: str, **kw: Any) -> None:
        self.sent.append((operation, phase, ctxt.request_id))
        current = context.get_current()
        if isinstance(current, OperationLogContext):
            values = current.get_logging_values()
            self.logged_as.append((values["request_id"], values["host"], values["instance_uuid"]))

    def emit_outcome(
        self,
        ctxt: Any,
        host: str,
        operation: str,
        uuid: str,
        recorded: dict[str, Any],
        message_id: str | None = None,
    ) -> None:
        self.sent.append((operation, recorded["phase"], ctxt.request_id))


def _manager(registry: Registry, worker_id: str, pid: int) -> tuple[ComputeManager, Any]:
    conf = cfg.ConfigOpts()
    FakeDriver.register_opts(conf)
    conf([], default_config_files=[])
    driver = FakeDriver(conf)
    driver.init_host("h1")
    notifier = _Notifications()
    journal = Journal(registry, worker_id, pid)
    return ComputeManager("h1", driver, worker_id, notifier, journal), notifier  # type: ignore[arg-type]


def test_journal_is_cleared_after_an_operation(registry: Registry) -> None:
    manager, sent = _manager(registry, "w1", 1)
    ctxt = context.RequestContext()
    manager.spawn(ctxt, InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64))
    assert registry.journal_entries() == []
    assert [p for _, p, _ in sent.sent] == ["start", "end"]


def test_takeover_completes_repeatable_and_fails_others(registry: Registry) -> None:
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64)
    spawn_ctxt, reboot_ctxt, done_ctxt = (context.RequestContext() for _ in range(3))
    registry.journal_begin(
        "h1", "spawn", spec.uuid, spawn_ctxt.request_id, spawn_ctxt.to_dict(),
        {"instance": spec.obj_to_primitive()}, "dead", 7,
    )  # fmt: skip
    registry.journal_begin(
        "h1", "reboot", spec.uuid, reboot_ctxt.request_id, reboot_ctxt.to_dict(),
        {"uuid": spec.uuid, "reboot_type": "soft"}, "dead", 7,
    )  # fmt: skip
    done = registry.journal_begin(
        "h1", "destroy", spec.uuid, done_ctxt.request_id, done_ctxt.to_dict(),
        {"uuid": spec.uuid}, "dead", 7,
    )  # fmt: skip
    registry.journal_done(done)
    manager, sent = _manager(registry, "w2", 8)
    outcomes = [reconcile(manager, entry) for entry in registry.journal_entries("h1")]
    assert outcomes == ["completed", "failed", "finished"]
    assert sent.sent == [
        ("spawn", "end", spawn_ctxt.request_id),
        ("reboot", "error", reboot_ctxt.request_id),
    ]
    assert registry.journal_entries() == []
    # Running the spawn again made one VM, and a second takeover would change nothing.
    assert [i.uuid for i in manager.list_instances(context.RequestContext()).objects] == [spec.uuid]


def test_takeover_publishes_the_recorded_outcome_of_a_finished_operation(
    registry: Registry,
) -> None:
    """A worker that died between the driver's return and the notification: the
    new owner publishes the outcome it recorded, and does not run it again."""
    manager, sent = _manager(registry, "w2", 8)
    ctxt = context.RequestContext()
    uuid_ = str(uuid.uuid4())
    entry_id = registry.journal_begin(
        "h1", "reboot", uuid_, ctxt.request_id, ctxt.to_dict(),
        {"uuid": uuid_, "reboot_type": "hard"}, "dead", 7,
    )  # fmt: skip
    registry.journal_done(entry_id, {"phase": "error", "error_class": "InstanceNotFound"})
    (entry,) = registry.journal_entries("h1")
    assert reconcile(manager, entry) == "finished"
    assert sent.sent == [("reboot", "error", ctxt.request_id)]
    assert registry.journal_entries() == []


def test_takeover_runs_a_received_cast_that_never_started(registry: Registry) -> None:
    manager, sent = _manager(registry, "w2", 8)
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64)
    manager.spawn(context.RequestContext(), spec)
    sent.sent.clear()
    ctxt = context.RequestContext()
    registry.journal_begin(
        "h1", "reboot", spec.uuid, ctxt.request_id, ctxt.to_dict(),
        {"uuid": spec.uuid, "reboot_type": "hard"}, "dead", 7, state=JOURNAL_RECEIVED,
    )  # fmt: skip
    (entry,) = registry.journal_entries("h1")
    # Not "failed" like a reboot that was running: this one never started.
    assert reconcile(manager, entry) == "completed"
    assert sent.sent == [("reboot", "start", ctxt.request_id), ("reboot", "end", ctxt.request_id)]
    assert registry.journal_entries() == []
    # The replay logs under the journaled request, on its host and instance;
    # then the thread's context is the one it had.
    assert sent.logged_as == [(ctxt.request_id, "h1", spec.uuid)]
    assert context.get_current() is ctxt


def test_an_entry_is_adopted_once(registry: Registry) -> None:
    registry.journal_begin("h1", "destroy", str(uuid.uuid4()), "r", {}, {"uuid": "x"}, "dead", 7)
    (entry,) = registry.journal_entries()
    assert registry.journal_adopt(entry, "w2", 8)
    assert not registry.journal_adopt(entry, "w3", 9)
    assert registry.journal_entries()[0].worker_id == "w2"
    assert entry.state != JOURNAL_DONE
