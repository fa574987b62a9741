"""The client's routing of a host changing hands, its broker link and its defaults (no broker)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

from computed import exception
from computed.conf import client as client_conf
from computed.conf import registry as registry_conf
from computed.conf import worker as worker_conf
from computed.registry import Registry, WorkerRecord
from rpcapi import ComputeAPI
from rpcapi._link import PROBE_INTERVAL, SendPool
from rpcapi._resolver import HostResolver
from rpcapi.client import TAKEOVER_ALLOWANCE


def _record(worker_id: str) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        driver="fake",
        hosts=("h1",),
        rpc_version="1.0",
        rpc_min_version="1.0",
        support_tier="conformant",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """Host h1 owned by w1, with w2 a live candidate."""
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    for worker_id in ("w1", "w2"):
        registry.register(_record(worker_id))
    registry.claim_host("h1", "w1", "initial")
    yield registry
    registry.close()


def test_a_host_whose_owner_is_gone_is_held_until_a_candidate_claims_it(
    registry: Registry,
) -> None:
    registry.set_disabled("w1", True, "maintenance")
    resolver = HostResolver(registry, ttl=0, down_time=30, handover_timeout=10)
    claimed = threading.Event()

    def take_over() -> None:
        registry.claim_host("h1", "w2", "takeover")
        claimed.set()

    successor = threading.Timer(0.5, take_over)
    successor.start()
    try:
        owner = resolver.resolve("h1")
    finally:
        successor.join()
    assert claimed.is_set() and owner.id == "w2"


def test_without_a_handover_timeout_a_live_candidate_is_used_at_once(registry: Registry) -> None:
    registry.set_disabled("w1", True, "maintenance")
    assert HostResolver(registry, ttl=0, down_time=30).resolve("h1").id == "w2"


def test_a_candidate_that_never_takes_over_gives_a_clear_error(registry: Registry) -> None:
    registry.set_disabled("w1", True, "maintenance")
    resolver = HostResolver(registry, ttl=0, down_time=30, handover_timeout=0.5)
    with pytest.raises(exception.HostUnavailable) as caught:
        resolver.resolve("h1")
    assert caught.value.kwargs["reason"] == (
        "worker w1 is disabled: maintenance; worker w2 is up but did not take the host "
        "over within the handover timeout of 0.5 s"
    )


def test_the_shipped_defaults_let_a_takeover_finish_within_a_call() -> None:
    conf = _conf()
    takeover = conf.registry.down_time + conf.heartbeat_interval + TAKEOVER_ALLOWANCE
    assert takeover <= conf.client.call_timeout
    assert conf.heartbeat_interval + TAKEOVER_ALLOWANCE <= conf.client.handover_timeout


def test_a_call_timeout_shorter_than_a_takeover_is_warned_about(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    conf = _conf()
    with caplog.at_level(logging.WARNING, logger="rpcapi.client"):
        ComputeAPI(conf, registry=registry).cleanup()
        assert not caplog.records
        conf.set_override("call_timeout", 20, group="client")
        ComputeAPI(conf, registry=registry).cleanup()
    (record,) = caplog.records
    assert "call_timeout (20 s) is shorter than a takeover" in record.getMessage()


def test_while_the_broker_is_down_messages_fail_at_once(registry: Registry) -> None:
    conf = _conf()
    conf.set_override("transport_url", f"rabbit://guest:guest@127.0.0.1:{_closed_port()}/")
    api = ComputeAPI(conf, registry=registry, required_tier="untested")
    try:
        with pytest.raises(exception.BrokerUnavailable, match="Connection refused"):
            api.destroy(None, "h1", "uuid-1", cast=True)
        started = time.monotonic()
        with pytest.raises(exception.BrokerUnavailable, match=r"checked again every 1 s"):
            api.ping(None, "h1")
        assert time.monotonic() - started < PROBE_INTERVAL  # not another connection attempt
        names = [t.name for t in threading.enumerate()]
        assert names.count("rpcapi-broker-probe") == 1
        assert "rpcapi-send" not in names  # nothing was handed to oslo.messaging
    finally:
        api.cleanup()


def test_the_send_pool_reuses_its_daemon_threads_up_to_its_limit() -> None:
    pool = SendPool(limit=2)
    release = threading.Event()
    busy = [pool.submit(release.wait) for _ in range(3)]
    assert _pool_threads() == 2  # the third waits for a free thread
    assert all(t.daemon for t in threading.enumerate() if t.name == "rpcapi-send")
    release.set()
    assert [f.result(timeout=5) for f in busy] == [True, True, True]
    assert pool.submit(lambda: 42).result(timeout=5) == 42
    assert _pool_threads() == 2
    pool.shutdown()


def _pool_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "rpcapi-send")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    for module in (client_conf, registry_conf, worker_conf):
        module.register_opts(conf)
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=None if group == "DEFAULT" else group)
    # oslo.config keeps overrides in the option objects shared by every
    # ConfigOpts: set what these tests rely on.
    conf.set_override("call_timeout", 60, group="client")
    return conf
