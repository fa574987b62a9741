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
from computed.testing import _procs
from computed.testing.broker import RabbitMQBroker

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
