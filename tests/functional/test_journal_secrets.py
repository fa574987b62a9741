"""A volume's credentials, sealed in the journal, reach the worker that replays them.

Two fake workers declare one host and share one fake hypervisor; the attach
of a CHAP volume is held in its owner (``[fake] hold_path``) while the test
reads the journal row as the registry stores it, then the owner is killed
and the other worker replays the attach.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from oslo_context import context

from computed.objects import InstanceSpec, VolumeConnection
from computed.registry import Registry
from computed.testing._procs import free_ports
from computed.testing.metrics import sample_value, scrape
from computed.testing.notifications import NotificationCollector

from .conftest import DOWN_TIME, HEARTBEAT_INTERVAL, Deployment, wait_until

PASSWORD = f"chap-{uuid.uuid4().hex}"


def _key(path: Path) -> str:
    path.write_bytes(Fernet.generate_key())
    return str(path)


def _held_attach(
    deployment: Deployment,
    notifications: NotificationCollector,
    keys: dict[str, str],
) -> tuple[str, str, str, str, str]:
    """Start a worker per key (worker id -> key file), attach a CHAP volume to an
    instance on their host, held in its owner, and kill the owner once the
    journal row is checked; return the host, the survivor's metrics port, the
    survivor, the instance and the request id."""
    host = f"sec-{uuid.uuid4().hex[:6]}"
    hold = deployment.workdir / "hold"
    ports = dict(zip(keys, free_ports(len(keys)), strict=True))
    workers = {
        worker_id: deployment.start_worker(
            [host],
            worker_id,
            registry={"down_time": DOWN_TIME, "journal_key_file": key},
            fake={"hold_path": str(hold)},
            metrics={"enabled": True, "port": ports[worker_id]},
        )
        for worker_id, key in keys.items()
    }
    registry = Registry(deployment.registry_url)
    wait_until(
        lambda: host in registry.list_owners() and registry.list_owners()[host].worker_id,
        30,
        "an owner recorded",
    )
    owner = registry.list_owners()[host].worker_id
    wait_until(
        lambda: deployment.broker.consumers().get(f"compute.{host}") == 1, 30, "one consumer"
    )
    survivor = next(w for w in keys if w != owner)
    api = deployment.api()
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="vol", vcpus=1, memory_mb=64)
    api.spawn(None, host, spec)
    volume = VolumeConnection(
        volume_id=str(uuid.uuid4()),
        driver_volume_type="iscsi",
        data={
            "target_iqn": "iqn.2010-10.org.example:sealed",
            "target_portal": "192.0.2.10:3260",
            "target_lun": 1,
            "auth_method": "CHAP",
            "auth_username": "initiator",
            "auth_password": PASSWORD,
        },
    )
    ctxt = context.RequestContext()
    hold.touch()
    api.attach_volume(ctxt, host, spec.uuid, volume, cast=True)
    notifications.for_request(ctxt.request_id, "instance.attach_volume.start")
    with registry.engine.connect() as connection:
        stored = connection.execute(
            sa.text(
                "SELECT arguments FROM operation_journal"
                " WHERE host = :h AND operation = 'attach_volume'"
            ),
            {"h": host},
        ).scalar_one()
    assert "iqn.2010-10.org.example:sealed" in stored
    assert PASSWORD not in stored
    workers[owner].kill()
    hold.unlink()
    registry.close()
    return host, ports[survivor], survivor, spec.uuid, ctxt.request_id


def test_the_next_owner_opens_what_the_killed_one_sealed(
    deployment: Deployment, notifications: NotificationCollector, tmp_path: Path
) -> None:
    key = _key(tmp_path / "journal.key")

    host, metrics_port, survivor, instance, request_id = _held_attach(
        deployment, notifications, {"s1": key, "s2": key}
    )

    bound = DOWN_TIME + HEARTBEAT_INTERVAL + 20
    end = notifications.for_request(request_id, "instance.attach_volume.end", timeout=bound)
    assert end.payload.uuid == instance
    api = deployment.api()
    assert api.ping(None, host).worker_id == survivor
    (disk,) = [d for d in api.get_info(None, host, instance).block_devices if d.volume_id]
    assert disk.kind == "volume"
    replays = scrape(metrics_port)
    assert (
        sample_value(
            replays,
            "computed_journal_replays_total",
            operation="attach_volume",
            outcome="completed",
        )
        == 1
    )


def test_a_worker_without_the_key_reports_the_replay_failed(
    deployment: Deployment, notifications: NotificationCollector, tmp_path: Path
) -> None:
    keys = {"k1": _key(tmp_path / "one.key"), "k2": _key(tmp_path / "two.key")}

    _host, _port, _survivor, _instance, request_id = _held_attach(deployment, notifications, keys)

    bound = DOWN_TIME + HEARTBEAT_INTERVAL + 20
    error = notifications.for_request(request_id, "instance.attach_volume.error", timeout=bound)
    assert error.payload.error_class == "ConfigError"
    assert "sealed with another key" in (error.payload.error_message or "")
