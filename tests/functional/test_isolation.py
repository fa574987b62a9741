"""Per-driver-type broker isolation: etc/broker-isolation.sh against the test broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from oslo_config import cfg

from computed import exception, rpc
from computed.objects import InstanceSpec
from computed.testing import _procs
from computed.testing.broker import RabbitMQBroker

from .conftest import Deployment

SCRIPT = Path(__file__).parents[2] / "etc" / "broker-isolation.sh"


def test_broker_refuses_a_driver_types_credentials_on_another_vhost(
    broker: RabbitMQBroker, conf: cfg.ConfigOpts, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    xen, hyperv = f"xenapi{suffix}", f"hyperv{suffix}"
    wrapper = _rabbitmqctl_wrapper(broker, tmp_path)
    env = dict(
        os.environ,
        RABBITMQCTL=str(wrapper),
        **{f"COMPUTED_BROKER_PASSWORD_{d.upper()}": f"pw-{d}" for d in (xen, hyperv)},
        COMPUTED_BROKER_PASSWORD_SCHEDULER="pw-scheduler",
    )
    result = subprocess.run(
        [str(SCRIPT), xen, hyperv], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr

    def url(driver: str, user: str, password: str) -> str:
        return broker.url_for(f"computed-{driver}", f"computed-{user}", password)

    rpc.check_broker(conf, url(xen, xen, f"pw-{xen}"), 10)  # its own vhost
    rpc.check_broker(conf, url(xen, "scheduler", "pw-scheduler"), 10)
    with pytest.raises(exception.BrokerUnavailable) as refused:
        rpc.check_broker(conf, url(hyperv, xen, f"pw-{xen}"), 10)
    assert "access" in str(refused.value).lower() or "refused" in str(refused.value).lower()
    assert f"pw-{xen}" not in str(refused.value)

    # Run again (another driver type added later): existing users keep their
    # passwords, and none is generated for them.
    env[f"COMPUTED_BROKER_PASSWORD_{xen.upper()}"] = "another-password"
    again = subprocess.run(
        [str(SCRIPT), xen, hyperv], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "added 0 vhost(s) and 0 user(s)" in again.stdout, again.stdout
    assert "generated" not in again.stderr
    rpc.check_broker(conf, url(xen, xen, f"pw-{xen}"), 10)


def test_client_routes_each_host_to_its_driver_types_vhost(
    broker: RabbitMQBroker, conf: cfg.ConfigOpts, deployment: Deployment, tmp_path: Path
) -> None:
    pytest.importorskip(
        "computed_example.driver", reason="tools/bootstrap.sh installs tests/example_driver"
    )
    suffix = uuid.uuid4().hex[:6]
    vhosts = {"fake": f"fake{suffix}", "example": f"example{suffix}"}
    passwords = {name: f"pw-{name}" for name in vhosts.values()}
    env = dict(
        os.environ,
        RABBITMQCTL=str(_rabbitmqctl_wrapper(broker, tmp_path)),
        **{f"COMPUTED_BROKER_PASSWORD_{n.upper()}": pw for n, pw in passwords.items()},
        COMPUTED_BROKER_PASSWORD_SCHEDULER="pw-scheduler",
    )
    result = subprocess.run(
        [str(SCRIPT), *vhosts.values()], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr

    # Each worker reaches the broker only through its own vhost and user.
    for driver, name in vhosts.items():
        deployment.start_worker(
            [f"{driver}-{suffix}"],
            f"iso-{driver}",
            DEFAULT={
                "driver": driver,
                "transport_url": broker.url_for(
                    f"computed-{name}", f"computed-{name}", passwords[name]
                ),
            },
        )
    routes = [
        f"{driver}={broker.url_for(f'computed-{name}', 'computed-scheduler', 'pw-scheduler')}"
        for driver, name in vhosts.items()
    ]
    conf.set_override("driver_transport_url", routes, group="client")
    try:
        api = deployment.api()
        for driver in vhosts:
            pong = api.ping(None, f"{driver}-{suffix}")
            assert (pong.driver, pong.worker_id) == (driver, f"iso-{driver}")
        spec = InstanceSpec(uuid=str(uuid.uuid4()), name="routed", vcpus=1, memory_mb=64)
        assert api.spawn(None, f"example-{suffix}", spec).uuid == spec.uuid
        assert [i.uuid for i in api.list_instances(None, f"example-{suffix}")] == [spec.uuid]
        assert api.list_instances(None, f"fake-{suffix}") == []
    finally:
        conf.clear_override("driver_transport_url", group="client")

    # Without the routes the client's default vhost has no such servers.
    conf.set_override("call_timeout", 2, group="client")
    try:
        with pytest.raises(exception.HostTimeout):
            deployment.api().ping(None, f"fake-{suffix}")
    finally:
        conf.set_override("call_timeout", 30, group="client")


def test_a_malformed_driver_transport_url_is_a_config_error(
    conf: cfg.ConfigOpts, deployment: Deployment
) -> None:
    conf.set_override("driver_transport_url", ["rabbit://u:secret@h:5672/x"], group="client")
    try:
        with pytest.raises(exception.ConfigError, match="must be DRIVER=URL") as caught:
            deployment.api()
        assert "secret" not in str(caught.value)
    finally:
        conf.clear_override("driver_transport_url", group="client")


def _rabbitmqctl_wrapper(broker: RabbitMQBroker, tmp_path: Path) -> Path:
    """An executable that runs rabbitmqctl against the test node, as the helper does."""
    uid, gid, groups = _procs._ids(broker._user)
    settings = {
        "command": [os.path.join(broker._bin, "rabbitmqctl"), "-n", broker.node],
        "env": dict(broker._env),
        "cwd": broker.directory,
        "uid": uid,
        "gid": gid,
        "groups": list(groups) if groups is not None else None,
    }
    wrapper = tmp_path / "rabbitmqctl"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import json, subprocess, sys\n"
        f"s = json.loads({json.dumps(json.dumps(settings))})\n"
        "sys.exit(subprocess.run(s['command'] + sys.argv[1:], env=s['env'], cwd=s['cwd'],\n"
        "    user=s['uid'], group=s['gid'], extra_groups=s['groups']).returncode)\n"
    )
    wrapper.chmod(0o755)
    return wrapper
