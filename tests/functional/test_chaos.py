"""Hostile and duplicated messages on a host's queue, then its worker SIGKILLed.

Over ten thousand messages go straight onto a host's queue, as a broken or
hostile sender would put them there: not JSON, wrong envelopes, wrong types,
messages too large or too deep to read, calls naming reply queues that do
not exist, malformed message ids, lone surrogates, forged log lines, and
valid lifecycle casts published twice. Valid calls go on through the
client meanwhile. Then the worker is killed with messages still queued, and
another worker takes its host over.

What must hold, read from the outcome notifications (each carries its
request id): every valid call is answered, no refused message ever runs, no
message runs twice, and every valid cast has exactly one outcome.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from oslo_messaging._drivers import common as oslo_common

from computed.objects import InstanceSpec
from computed.testing.notifications import NotificationCollector

from .conftest import DOWN_TIME, Deployment, wait_until

pytestmark = pytest.mark.chaos

HOST = "chaos-h1"
INSTANCES = 20
#: Valid reboot casts, each published twice (same message id).
DUPLICATED = 400
#: Calls whose reply queue does not exist (about 130 starved oslo.messaging's server).
BAD_REPLY_QUEUES = 300
#: Deliberately broken messages of the cheap kinds, in rounds.
BROKEN_ROUNDS = 900


def _body(message: dict[str, Any]) -> bytes:
    return json.dumps(oslo_common.serialize_msg(message)).encode()


def _message(
    method: str, args: dict[str, Any], request_id: str, unique_id: str | None = None
) -> dict[str, Any]:
    return {
        "method": method,
        "args": args,
        "version": "1.0",
        "_unique_id": unique_id or uuid.uuid4().hex,
        "_context_request_id": request_id,
    }


class _Sender:
    """Publishes raw bodies onto the host's queue, as any AMQP client could."""

    def __init__(self, url: str) -> None:
        self._connection = kombu.Connection(url)
        self._producer = self._connection.Producer()
        self._exchange = kombu.Exchange("openstack", type="topic", durable=True)  # quorum
        self.sent = 0

    def send(self, body: bytes | str) -> None:
        self._producer.publish(
            body,
            exchange=self._exchange,
            routing_key=f"compute.{HOST}",
            content_type="application/json",
            content_encoding="utf-8",
        )
        self.sent += 1

    def close(self) -> None:
        self._connection.release()


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Calls:
    """Valid calls through the client, on a thread, while the flood goes on."""

    def __init__(self, deployment: Deployment, instances: list[str]) -> None:
        self._api = deployment.api()
        self._instances = instances
        self._stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Calls:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if n % 2:
                    self._api.get_info(None, HOST, self._instances[n % len(self._instances)])
                else:
                    self._api.ping(None, HOST)
                self.answered += 1
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - started)
            n += 1


def _broken_round(i: int, target: str) -> Iterator[bytes | str]:
    """One of each cheap kind of broken message; those naming ``target`` would destroy it."""
    rid = f"req-refused-{i}"
    yield b"{this is not json"
    yield b"[1, 2, 3]"
    yield json.dumps({"oslo.version": "9.9", "oslo.message": "{}"})
    yield json.dumps({"oslo.version": "2.0", "oslo.message": "{not json"})
    yield _body({"method": 42, "args": [], "_unique_id": uuid.uuid4().hex})
    yield _body(_message("destroy", {"uuid": 7}, rid))
    yield _body(_message("destroy", {"uuid": target, "force": True}, rid))  # unknown argument
    yield _body({**_message("destroy", {"uuid": target}, rid), "_unique_id": 12345})
    yield _body({**_message("destroy", {"uuid": target}, rid), "_unique_id": "u" * 1000})
    yield _body(_message("destroy", {"uuid": target + "\ud800"}, rid))
    yield _body(_message("destroy", {"uuid": target}, f"{rid}\n2026 CRITICAL forged line"))
    yield _body({**_message("destroy", {"uuid": target}, rid), "version": "7.0"})
    yield _body({**_message("destroy", {"uuid": target}, rid), "_timeout": "soon"})


def test_hostile_flood_then_takeover_runs_nothing_refused_and_nothing_twice(
    deployment: Deployment, notifications: NotificationCollector
) -> None:
    slow = {"action_delay": 0.2}  # so the owner dies with casts queued and running
    registry = {"down_time": DOWN_TIME}
    first = deployment.start_worker([HOST], "chaos-1", fake=slow, registry=registry)
    api = deployment.api()
    specs = [
        InstanceSpec(uuid=str(uuid.uuid4()), name=f"c{i}", vcpus=1, memory_mb=64)
        for i in range(INSTANCES)
    ]
    for spec in specs:
        api.spawn(None, HOST, spec)
    uuids = [spec.uuid for spec in specs]
    baseline_rss = _rss_mb(first.pid)
    log_lines_before = first.log().count("\n")
    sender = _Sender(deployment.broker.amqp_url)

    # Phase 1: the flood, with valid calls going on through the client.
    hostile = 0
    flood_started = time.monotonic()
    with _Calls(deployment, uuids) as calls:
        for i in range(BROKEN_ROUNDS):
            for body in _broken_round(i, uuids[i % INSTANCES]):
                sender.send(body)
                hostile += 1
            if i % 3 == 0 and hostile < BAD_REPLY_QUEUES * 3:
                call = _message("ping", {}, f"req-bad-reply-{i}")
                call.update(_msg_id=uuid.uuid4().hex, _reply_q=f"reply_gone_{i}", _timeout=None)
                sender.send(_body(call))
                hostile += 1
            if i % 6 == 0:  # large, but under the limit: decoded, then refused
                sender.send(_body(_message("ping", {"x": "z" * 900_000}, "req-large")))
                hostile += 1
            if i % 45 == 0:
                sender.send(_body(_message("ping", {"x": "y" * (2 * 1024 * 1024)}, "req-huge")))
                sender.send(_body(_message("ping", {"x": _nested(60)}, "req-deep")))
                sender.send(b"[" * 200_000 + b"]" * 200_000)
                hostile += 3
        wait_until(
            lambda: deployment.broker.list_queues().get(f"compute.{HOST}") == 0,
            300,
            "the flood consumed",
            interval=0.5,
        )
        peak_rss = _rss_mb(first.pid)
    flood_seconds = time.monotonic() - flood_started
    after_rss = _rss_mb(first.pid)
    flood_log_lines = first.log().count("\n") - log_lines_before

    # Phase 2: valid casts, each published twice, then the owner killed with
    # some of them still queued; a second worker takes the host over.
    second = deployment.start_worker([HOST], "chaos-2", fake=slow, registry=registry)
    casts = []
    for i in range(DUPLICATED):
        rid = f"req-dup-{i}-{uuid.uuid4().hex[:6]}"
        body = _body(_message("reboot", {"uuid": uuids[i % INSTANCES], "reboot_type": "hard"}, rid))
        casts.append(rid)
        sender.send(body)
        sender.send(body)
    sender.close()
    wait_until(
        lambda: deployment.broker.list_queues().get(f"compute.{HOST}", 0) < 2 * DUPLICATED - 50,
        120,
        "the owner consuming the casts",
        interval=0.05,
    )
    owner = first if _owner(deployment) == "chaos-1" else second
    survivor = second if owner is first else first
    owner.kill()
    killed_at = time.monotonic()
    wait_until(lambda: _owner(deployment) == survivor.worker_id, 60, "the takeover", interval=0.2)
    takeover_seconds = time.monotonic() - killed_at

    # Every valid cast: an outcome; never two starts, nor two different outcomes.
    # The same outcome twice is allowed after a SIGKILL: the owner died between
    # publishing it and finishing its journal entry, and the new owner
    # published the outcome it found recorded there (docs/delivery.md).
    def outcomes() -> dict[str, list[tuple[str, str | None]]]:
        seen: dict[str, list[tuple[str, str | None]]] = collections.defaultdict(list)
        for event in notifications.events:
            rid = event.payload.request_id
            if rid:
                data = event.payload.obj_to_primitive()["computed_object.data"]
                seen[rid].append((event.event_type.rsplit(".", 1)[1], data.get("error_class")))
        return seen

    def terminal(events: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        return [e for e in events if e[0] != "start"]

    try:
        wait_until(
            lambda: all(terminal(outcomes()[rid]) for rid in casts),
            180,
            "an outcome for every valid cast",
            interval=0.5,
        )
    except AssertionError:
        seen = outcomes()
        missing = {rid: seen[rid] for rid in casts if not terminal(seen[rid])}
        raise AssertionError(
            f"{len(missing)} of {len(casts)} casts have no outcome after 180 s, e.g. "
            f"{dict(list(missing.items())[:5])}; killed {owner.worker_id}, survivor "
            f"{survivor.worker_id}"
        ) from None
    time.sleep(1.0)  # anything run twice would publish within this
    seen = outcomes()
    twice = [
        rid
        for rid in casts
        if [p for p, _ in seen[rid]].count("start") > 1 or len(set(terminal(seen[rid]))) > 1
    ]
    repeated = [rid for rid in casts if len(terminal(seen[rid])) > 1 and rid not in twice]
    refused_ran = sorted(rid for rid in seen if rid.startswith("req-refused-") or "forged" in rid)
    api_after = deployment.api()
    still_there = sum(1 for u in uuids if _exists(api_after, u))

    print(
        f"\nhostile flood: {hostile} broken or hostile messages and {2 * DUPLICATED} duplicated "
        f"casts; {calls.answered} valid calls answered during the flood, {len(calls.failures)} "
        f"failed, slowest {calls.slowest:.2f} s; flood consumed in {flood_seconds:.1f} s; "
        f"worker RSS {baseline_rss:.0f} MB before, {peak_rss:.0f} MB at the end of the flood, "
        f"{after_rss:.0f} MB after; {flood_log_lines} log lines for the flood; takeover "
        f"{takeover_seconds:.1f} s after SIGKILL; {len(casts)} valid casts, {len(twice)} run "
        f"twice, {len(repeated)} with their outcome published again by the new owner, "
        f"{len(refused_ran)} refused messages run; {still_there}/{INSTANCES} instances "
        "answer after the takeover"
    )
    assert calls.failures == []
    assert calls.answered > 0
    assert refused_ran == []
    assert twice == [], {rid: seen[rid] for rid in twice}
    assert after_rss < baseline_rss + 64, "the flood's memory must be given back"
    assert flood_log_lines < hostile / 20, "a bad message must cost a bounded number of log lines"
    assert not any(line.startswith("2026 CRITICAL forged") for line in first.log().splitlines())


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _owner(deployment: Deployment) -> str | None:
    from computed.registry import Registry

    registry = Registry(deployment.registry_url)
    try:
        owner = registry.list_owners().get(HOST)
        return owner.worker_id if owner is not None else None
    finally:
        registry.close()


def _exists(api: Any, instance: str) -> bool:
    try:
        api.get_info(None, HOST, instance)
    except Exception:
        return False
    return True
