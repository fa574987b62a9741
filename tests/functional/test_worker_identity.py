"""Worker identity: two live workers never share an id."""

from __future__ import annotations

import uuid

from computed import exception
from computed.testing.workers import WorkerProcess
from tests.functional.conftest import Deployment, wait_until


def _worker(deployment: Deployment, options: dict, name: str) -> WorkerProcess:
    worker = WorkerProcess(str(deployment.workdir), options, name=name)
    deployment.workers.append(worker)
    return worker


def test_a_configured_id_held_by_a_live_worker_is_refused(deployment: Deployment) -> None:
    suffix = uuid.uuid4().hex[:6]
    first = deployment.start_worker([f"id-{suffix}"], f"same-{suffix}")
    second = _worker(
        deployment,
        deployment.worker_options([f"id-{suffix}"], f"same-{suffix}"),
        f"same-{suffix}-second",
    )
    second.start(wait=False)
    assert second.wait(60) == 2, second.log()
    log = second.log()
    assert f"worker id 'same-{suffix}' is held by a live worker (pid {first.pid}" in log
    assert "--worker-id" in log
    assert first.poll() is None  # the first one serves on
    assert deployment.api().ping(None, f"id-{suffix}").worker_id == f"same-{suffix}"


def test_the_default_id_becomes_unique_when_the_command_runs_twice(
    deployment: Deployment,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    machine = f"box-{suffix}"
    workers = []
    registry = deployment.api()._registry

    def ids() -> set[str]:
        try:
            workers = registry.list_workers()
        except exception.RegistryError:  # the first worker has not made the schema yet
            return set()
        return {w.id for w in workers if w.machine == machine and w.state == "up"}

    for n in range(2):
        options = deployment.worker_options([f"def-{suffix}"], "unused")
        del options["DEFAULT"]["worker_id"]  # the README's command, run twice
        options["DEFAULT"]["machine"] = machine
        workers.append(_worker(deployment, options, f"default-{n}").start(wait=False))
        wait_until(lambda n=n: len(ids()) == n + 1, 60, f"worker {n} registered")
    assert ids() == {f"{machine}-fake", f"{machine}-fake-{workers[1].pid}"}
    assert "held by a live worker" in workers[1].log()
    assert all(w.poll() is None for w in workers)


def test_a_killed_workers_id_is_taken_again_at_once(deployment: Deployment) -> None:
    suffix = uuid.uuid4().hex[:6]
    first = deployment.start_worker([f"kill-{suffix}"], f"again-{suffix}")
    first.kill()
    again = deployment.start_worker([f"kill-{suffix}"], f"again-{suffix}")
    wait_until(
        lambda: deployment.api().ping(None, f"kill-{suffix}").worker_id == f"again-{suffix}",
        60,
        "the restarted worker serving",
    )
    assert again.poll() is None
