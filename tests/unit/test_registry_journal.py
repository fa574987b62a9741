"""The operation journal keyed by message id: each message journaled once, tombstones, purge.

Each check takes the URL of an empty database; here they run on SQLite,
and ``tests/functional/test_registry_postgresql.py`` runs them on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest
import sqlalchemy as sa

from computed import exception
from computed.registry import Registry, migration
from computed.registry.api import (
    JOURNAL_FINISHED,
    JOURNAL_RECEIVED,
    JOURNAL_RUNNING,
    NewJournalEntry,
    utcnow,
)


@contextlib.contextmanager
def _registry(url: str) -> Iterator[Registry]:
    registry = Registry(url)
    registry.migrate()
    try:
        yield registry
    finally:
        registry.close()


UUID = "5c0f3a4e-9d1b-4c53-8a51-1f0e2b6d7a90"


def _entry(message_id: str, host: str = "h1", operation: str = "spawn") -> NewJournalEntry:
    return NewJournalEntry(
        host=host,
        operation=operation,
        instance_uuid=UUID,
        request_id=f"req-{message_id}",
        context={"request_id": f"req-{message_id}", "user": "u"},
        arguments={"uuid": UUID, "flavor": "m1"},
        worker_id="w1",
        pid=100,
        message_id=message_id,
    )


def _receive(registry: Registry, message_ids: Sequence[str]) -> list[int | None]:
    return registry.journal_receive([_entry(m) for m in message_ids])


def _receive_new(registry: Registry, message_ids: Sequence[str]) -> list[int]:
    """Journal messages the journal has not seen yet; their entry ids."""
    ids = _receive(registry, message_ids)
    assert None not in ids, ids
    return [i for i in ids if i is not None]


def _listed(registry: Registry) -> list[str | None]:
    return [entry.message_id for entry in registry.journal_entries()]


def check_duplicates_within_one_batch(url: str) -> None:
    with _registry(url) as registry:
        assert registry.journal_receive([]) == []
        ids = _receive(registry, ["m1", "m2", "m1", "m3", "m2"])
        assert [i is not None for i in ids] == [True, True, False, True, False]
        assert len(set(ids[:2] + ids[3:4])) == 3
        entry = registry.journal_entries()[0]
        assert (entry.id, entry.message_id, entry.state) == (ids[0], "m1", JOURNAL_RECEIVED)
        assert entry.context == {"request_id": "req-m1", "user": "u"}
        assert entry.arguments["flavor"] == "m1"
        # More entries than one INSERT statement takes, a duplicate across its boundary.
        many = [f"n{i:04}" for i in range(1200)] + ["n0003", "n1199"]
        ids = _receive(registry, many)
        assert ids[-2:] == [None, None] and None not in ids[:-2]
        assert _listed(registry) == ["m1", "m2", "m3", *many[:-2]]


def check_duplicates_across_batches(url: str) -> None:
    with _registry(url) as registry:
        first = _receive_new(registry, ["m1", "m2"])
        second = _receive(registry, ["m2", "m3", "m1"])
        assert second[0] is None and second[2] is None and second[1] is not None
        assert second[1] not in first
        assert _listed(registry) == ["m1", "m2", "m3"]


def check_finished_entries_stay_as_tombstones(url: str) -> None:
    with _registry(url) as registry:
        ids = _receive_new(registry, ["m1", "m2", "m3", "m4"])
        (m4,) = [e for e in registry.journal_entries() if e.message_id == "m4"]
        registry.journal_start(ids[1])
        registry.journal_finish(ids[0])
        registry.journal_finish([ids[2], ids[3]])
        registry.journal_finish([])
        assert _listed(registry) == ["m2"]
        assert registry.journal_entries("h1")[0].state == JOURNAL_RUNNING
        assert registry.journal_message_states(["m1", "m2", "m3", "m4", "m5"]) == {
            "m1": JOURNAL_FINISHED,
            "m2": JOURNAL_RUNNING,
            "m3": JOURNAL_FINISHED,
            "m4": JOURNAL_FINISHED,
        }
        assert _receive(registry, ["m1", "m3", "m5"])[:2] == [None, None]
        assert not registry.journal_adopt(m4, "w2", 200)  # finished: nothing to adopt
        with registry.engine.connect() as connection:  # nothing of a finished one but its id
            assert connection.scalar(sa.text("SELECT count(*) FROM operation_journal")) == 2


def check_journal_begin_with_and_without_message_id(url: str) -> None:
    with _registry(url) as registry:
        keyed = registry.journal_begin("h1", "reboot", "u1", "r", {}, {}, "w1", 1, message_id="m1")
        registry.journal_begin("h1", "reboot", "u2", "r", {}, {}, "w1", 1)
        registry.journal_begin("h1", "reboot", "u3", "r", {}, {}, "w1", 1)
        with pytest.raises(exception.RegistryError, match="message m1 is already journaled"):
            registry.journal_begin("h1", "reboot", "u1", "r", {}, {}, "w1", 1, message_id="m1")
        assert _listed(registry) == ["m1", None, None]
        assert registry.journal_entries()[0].state == JOURNAL_RUNNING
        registry.journal_finish(keyed)
        assert _receive(registry, ["m1"]) == [None]


def check_purge_forgets_old_tombstones_only(url: str) -> None:
    with _registry(url) as registry:
        ids = _receive_new(registry, ["old", "new", "open"])
        registry.journal_finish(ids[0])
        _set_finished_at(registry, "old", utcnow() - datetime.timedelta(days=2))
        registry.journal_finish(ids[1])
        assert registry.journal_purge(utcnow() - datetime.timedelta(days=1)) == 1
        assert registry.journal_message_states(["old", "new", "open"]) == {
            "new": JOURNAL_FINISHED,
            "open": JOURNAL_RECEIVED,
        }
        old, new = _receive(registry, ["old", "new"])
        assert old is not None and new is None  # forgotten, so taken again; still a tombstone
        assert registry.journal_purge(utcnow() + datetime.timedelta(seconds=1)) == 1
        assert _listed(registry) == ["open", "old"]  # unfinished entries are never purged


def check_threads_journal_the_same_messages_once(url: str) -> None:
    message_ids = [f"m{i:03}" for i in range(200)]
    batches = [message_ids, message_ids[::-1], message_ids[50:150], message_ids[::2]]
    results = _race(url, batches, _in_threads)
    _assert_each_taken_once(url, message_ids, batches, results)


def check_processes_journal_the_same_messages_once(url: str) -> None:
    message_ids = [f"m{i:03}" for i in range(200)]
    batches = [message_ids, message_ids[::-1], message_ids[100:] + message_ids[:100]]
    results = _race(url, batches, _in_processes)
    _assert_each_taken_once(url, message_ids, batches, results)


def check_unencodable_string_is_a_registry_error(url: str) -> None:
    with _registry(url) as registry:
        with pytest.raises(exception.RegistryError, match="surrogates not allowed"):
            registry.journal_receive([_entry("m1"), _entry("m2", host="h\udc80")])
        assert _listed(registry) == []
        assert _receive(registry, ["m1"]) != [None]  # the failed batch took no message id


# Racing journal writers --------------------------------------------------------

Results = list[list[int | None]]


def _race(
    url: str, batches: list[list[str]], run: Callable[[str, list[list[str]]], Results]
) -> Results:
    with _registry(url):  # migrated before the writers start
        pass
    return run(url, batches)


#: What a writer reports: its index, and its entry ids or the error it met.
Outcome = tuple[int, list[int | None] | str]


def _writer(
    url: str, index: int, batch: list[str], start: threading.Barrier, out: queue.Queue[Outcome]
) -> None:
    """Journal ``batch`` through a registry of its own, once every writer is ready."""
    registry = Registry(url)
    try:
        registry.journal_entries()  # connected before the start
        start.wait(timeout=60)
        out.put((index, _receive(registry, batch)))
    except Exception as exc:
        out.put((index, repr(exc)))
    finally:
        registry.close()


def _in_threads(url: str, batches: list[list[str]]) -> Results:
    start, out = threading.Barrier(len(batches)), queue.Queue[Outcome]()
    threads = [
        threading.Thread(target=_writer, args=(url, i, batch, start, out))
        for i, batch in enumerate(batches)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return _collect([out.get(timeout=1) for _ in batches])


def _in_processes(url: str, batches: list[list[str]]) -> Results:
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(len(batches)), context.Queue()
    processes = [
        context.Process(target=_writer, args=(url, i, batch, start, out))
        for i, batch in enumerate(batches)
    ]
    for process in processes:
        process.start()
    try:
        return _collect([out.get(timeout=120) for _ in batches])
    finally:
        for process in processes:
            process.join(timeout=30)


def _collect(outcomes: list[Outcome]) -> Results:
    results = [ids for _, ids in sorted(outcomes, key=lambda outcome: outcome[0])]
    failures = [ids for ids in results if isinstance(ids, str)]
    assert not failures, failures
    return [ids for ids in results if not isinstance(ids, str)]


def _assert_each_taken_once(
    url: str, message_ids: list[str], batches: list[list[str]], results: Results
) -> None:
    taken = Counter(
        message_id
        for batch, ids in zip(batches, results, strict=True)
        for message_id, entry_id in zip(batch, ids, strict=True)
        if entry_id is not None
    )
    assert set(taken) == set(message_ids) and set(taken.values()) == {1}, taken
    with _registry(url) as registry:
        assert sorted(str(m) for m in _listed(registry)) == message_ids
    print(f"{len(batches)} writers, {sum(map(len, batches))} receipts: each message taken once")


def _set_finished_at(registry: Registry, message_id: str, when: datetime.datetime) -> None:
    with registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE journal_messages SET finished_at = :t WHERE message_id = :m"),
            {"t": when, "m": message_id},
        )


# The previous release on the new schema ----------------------------------------

#: ``operation_journal`` as the previous release knows it (revision 0004).
_OLD_JOURNAL = sa.Table(
    "operation_journal",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *(sa.Column(name, sa.String) for name in ("host", "operation", "instance_uuid")),
    *(sa.Column(name, sa.String) for name in ("request_id", "context", "arguments", "state")),
    sa.Column("worker_id", sa.String),
    sa.Column("pid", sa.Integer),
    sa.Column("started_at", sa.DateTime),
)


def _old_begin(engine: sa.Engine, uuid: str) -> int:
    """Journal an operation the way the previous release does: no message id."""
    with engine.begin() as connection:
        result = connection.execute(
            sa.insert(_OLD_JOURNAL).values(
                host="h1",
                operation="reboot",
                instance_uuid=uuid,
                request_id="r",
                context="{}",
                arguments="{}",
                state="running",
                worker_id="old",
                pid=1,
                started_at=utcnow(),
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def _old_entries(engine: sa.Engine) -> list[str]:
    """What the previous release reconciles: every row, as an operation in flight."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(_OLD_JOURNAL).order_by(_OLD_JOURNAL.c.id))
        return [row.instance_uuid for row in rows]


def _old_adopt_and_finish(engine: sa.Engine, entry_id: int) -> None:
    with engine.begin() as connection:
        adopted = connection.execute(
            sa.update(_OLD_JOURNAL).where(_OLD_JOURNAL.c.id == entry_id).values(worker_id="old2")
        )
        assert adopted.rowcount == 1
        connection.execute(sa.delete(_OLD_JOURNAL).where(_OLD_JOURNAL.c.id == entry_id))


def check_previous_release_journals_on_the_new_schema(url: str) -> None:
    registry = Registry(url)
    try:
        migration.upgrade(registry.engine, "0004")
        before = _old_begin(registry.engine, "u-before")  # journaled before the upgrade
        registry.migrate()
        during = _old_begin(registry.engine, "u-during")
        _old_begin(registry.engine, "u-another")
        new_id, finished_id = _receive_new(registry, ["m1", "m2"])
        registry.journal_finish(finished_id)
        # The previous release sees entries in flight only, never a tombstone.
        assert _old_entries(registry.engine) == ["u-before", "u-during", "u-another", UUID]
        _old_adopt_and_finish(registry.engine, before)
        _old_adopt_and_finish(registry.engine, new_id)  # as its takeover would: no finish mark
        assert _old_entries(registry.engine) == ["u-during", "u-another"]
        # The current release reads and finishes what the previous one journaled.
        assert [e.message_id for e in registry.journal_entries()] == [None, None]
        registry.journal_finish(during)
        assert [e.instance_uuid for e in registry.journal_entries()] == ["u-another"]
        # m1's entry was deleted without a finish mark: purged once old enough.
        assert registry.journal_purge(utcnow() + datetime.timedelta(seconds=1)) == 2
        assert registry.journal_message_states(["m1", "m2"]) == {}
    finally:
        registry.close()


CHECKS: list[Callable[[str], None]] = [
    check_duplicates_within_one_batch,
    check_duplicates_across_batches,
    check_finished_entries_stay_as_tombstones,
    check_journal_begin_with_and_without_message_id,
    check_purge_forgets_old_tombstones_only,
    check_threads_journal_the_same_messages_once,
    check_processes_journal_the_same_messages_once,
    check_unencodable_string_is_a_registry_error,
    check_previous_release_journals_on_the_new_schema,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__[len("check_") :])
def test_journal_on_sqlite(tmp_path, check: Callable[[str], None]) -> None:  # type: ignore[no-untyped-def]
    check(f"sqlite:///{tmp_path}/registry.sqlite")
