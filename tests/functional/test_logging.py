"""A worker's log lines: an operation's carry its request id, host and instance; JSON too."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from oslo_context import context

from computed import exception
from computed.objects import InstanceSpec
from computed.testing.notifications import NotificationCollector

from .conftest import Deployment

HOST = "h1"
#: One operation at a time, so the lines of one end before the next one's begin.
ONE_THREAD = {"executor_threads": 1}


def _request(token: str) -> context.RequestContext:
    return context.RequestContext(request_id=f"req-{uuid.uuid4()}", auth_token=token)


def _spec(instance: str) -> InstanceSpec:
    return InstanceSpec(uuid=instance, name="logged", vcpus=1, memory_mb=128, disk_gb=1)


def _lines_of(lines: list[str], request_id: str) -> list[int]:
    return [i for i, line in enumerate(lines) if request_id in line]


def test_operation_lines_carry_request_host_and_instance(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    worker = deployment.start_worker([HOST], listener=ONE_THREAD)
    api = deployment.api()
    instance, token = new_uuid(), f"token-{uuid.uuid4()}"
    spawn, power_off, refused, pause, power_on = (_request(token) for _ in range(5))

    api.spawn(spawn, HOST, _spec(instance))
    api.power_off(power_off, HOST, instance, cast=True)
    notifications.for_request(power_off.request_id, "instance.power_off.end")
    with pytest.raises(exception.InvalidRequest, match="reboot_type"):
        api.reboot(refused, HOST, instance, "sideways")  # refused before any operation
    with pytest.raises(exception.InvalidPowerState):
        api.pause(pause, HOST, instance)  # refused by the operation
    api.power_on(power_on, HOST, instance)
    assert worker.terminate() == 0
    lines = worker.log().splitlines()

    operations = [
        (spawn, "spawn done"),
        (power_off, "power_off done"),
        (pause, f"pause on {HOST} refused"),
        (power_on, "power_on done"),
    ]
    previous_end = -1
    for ctxt, expected in operations:
        found = _lines_of(lines, ctxt.request_id)
        assert found, f"no line carries {ctxt.request_id} ({expected})"
        prefix = f"[{ctxt.request_id} {HOST}] [instance: {instance}] "
        assert all(prefix in lines[i] for i in found), [lines[i] for i in found]
        assert any(expected in lines[i] for i in found), [lines[i] for i in found]
        assert found[0] > previous_end, f"{expected}: a line of the previous operation came after"
        previous_end = found[-1]

    assert not _lines_of(lines, refused.request_id)
    refusal = [line for line in lines if f"Refused on {HOST}: reboot" in line]
    assert refusal and all(" [-] " in line for line in refusal), refusal
    after = lines[previous_end + 1 :]
    assert any(f"Worker {worker.worker_id} stopped" in line for line in after), after
    assert not [line for line in after if "[req-" in line]
    assert token not in worker.log()


def _records(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"line {number} is not one JSON object: {line!r}") from exc
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line!r}"
        records.append(record)
    return records


def test_json_records_carry_request_host_and_instance(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    log_file = str(deployment.workdir / "worker.json.log")
    worker = deployment.start_worker(
        [HOST], DEFAULT={"use_json": True, "log_file": log_file}, listener=ONE_THREAD
    )
    api = deployment.api()
    instance, token = new_uuid(), f"token-{uuid.uuid4()}"
    spawn, power_off, ping = _request(token), _request(token), _request(token)

    api.spawn(spawn, HOST, _spec(instance))
    api.power_off(power_off, HOST, instance, cast=True)
    notifications.for_request(power_off.request_id, "instance.power_off.end")
    api.ping(ping, HOST)
    assert worker.terminate() == 0
    records = _records(log_file)

    for ctxt, message, uuid_field in [
        (spawn, "spawn done", instance),
        (power_off, "power_off done", instance),
    ]:
        mine = [r for r in records if r["context"].get("request_id") == ctxt.request_id]
        assert message in [r["message"] for r in mine], mine
        assert {(r["context"]["host"], r["context"]["instance_uuid"]) for r in mine} == {
            (HOST, uuid_field)
        }
    assert any(r["message"] == f"Worker {worker.worker_id} stopped" for r in records)
    with_request = [r for r in records if r["context"]]
    assert all(r["thread_name"].startswith("operation") for r in with_request), with_request
    assert all(r["context"]["auth_token"] is None for r in with_request)
    with open(log_file, encoding="utf-8") as handle:
        assert token not in handle.read()
