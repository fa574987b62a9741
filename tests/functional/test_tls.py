"""Workers and clients over a broker that speaks AMQP over TLS only.

The broker of these tests has a TLS listener and no plain one, and a CA of
the tests' own signed its certificate (for 127.0.0.1 and localhost). The
worker is configured as an operator would configure it, through
``[oslo_messaging_rabbit] ssl`` and ``ssl_ca_file``; the client in this
process through the transport URL's query (``?ssl=1&ssl_ca_file=...``),
which oslo.messaging reads as the same options.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from oslo_config import cfg
from oslo_context import context

from computed import exception, rpc
from computed.objects import InstanceSpec
from computed.testing.broker import RabbitMQBroker
from computed.testing.notifications import NotificationCollector
from computed.testing.tls import TLSFiles, make_certificates
from computed.testing.workers import WorkerProcess, console_command, write_config

from .conftest import DOWN_TIME, Deployment

#: Generous: each bounded failure below comes within the connect timeout (3 s).
BOUND = 60.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Another CA: it signed nothing the broker presents."""
    return make_certificates(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture(scope="module")
def tls_broker(tls: TLSFiles) -> Iterator[RabbitMQBroker]:
    with RabbitMQBroker(tls=tls) as running:
        yield running


def _client_url(broker: RabbitMQBroker, **query: str) -> str:
    return broker.url + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())


@pytest.fixture
def client_url(conf: cfg.ConfigOpts) -> Iterator[Callable[[str], None]]:
    """Point this process's client at a URL; the session's URL is restored afterwards."""
    saved = conf.transport_url

    def use(url: str) -> None:
        conf.set_override("transport_url", url)
        conf.set_override("broker_connect_timeout", 3.0)

    yield use
    conf.set_override("transport_url", saved)
    conf.clear_override("broker_connect_timeout")


def _start_worker(
    deployment: Deployment, broker: RabbitMQBroker, rabbit: dict[str, Any], wait: bool = True
) -> tuple[str, WorkerProcess]:
    """A worker of one new host on ``broker``, with these ``[oslo_messaging_rabbit]`` options."""
    host = f"tls-{uuid.uuid4().hex[:6]}"
    return host, deployment.start_worker(
        [host],
        f"w-{host}",
        wait=wait,
        DEFAULT={"transport_url": broker.url, "broker_connect_timeout": 3},
        oslo_messaging_rabbit=rabbit,
    )


def _spec(instance: str) -> InstanceSpec:
    return InstanceSpec(uuid=instance, name="vm", vcpus=1, memory_mb=128, disk_gb=1)


def test_worker_and_client_serve_a_call_and_a_cast_over_tls(
    deployment: Deployment,
    tls_broker: RabbitMQBroker,
    tls: TLSFiles,
    conf: cfg.ConfigOpts,
    client_url: Callable[[str], None],
) -> None:
    host, _worker = _start_worker(deployment, tls_broker, tls.client_options())
    client_url(_client_url(tls_broker, ssl="1", ssl_ca_file=tls.ca_file))
    transport = rpc.get_notification_transport(conf)
    collector = NotificationCollector(
        transport, conf.notifications.topic, pool=f"tls-{uuid.uuid4().hex[:8]}"
    ).start()
    try:
        api = deployment.api()
        assert api.ping(None, host).host == host

        ctxt = context.RequestContext()
        instance = str(uuid.uuid4())
        assert api.spawn(ctxt, host, _spec(instance), cast=True) is None
        end = collector.for_request(ctxt.request_id, "instance.spawn.end")
        assert (end.payload.uuid, end.payload.power_state) == (instance, "running")
        assert [i.uuid for i in api.list_instances(None, host)] == [instance]
    finally:
        collector.stop()
        transport.cleanup()


def test_the_broker_listens_for_amqp_over_tls_only(tls_broker: RabbitMQBroker) -> None:
    status = json.loads(tls_broker.rabbitmqctl("status", "--formatter", "json"))
    amqp = {(item["protocol"], item["port"]) for item in status["listeners"]}
    amqp.discard(("clustering", tls_broker.dist_port))
    assert amqp == {("amqp/ssl", tls_broker.port)}


def test_worker_refuses_a_broker_certificate_its_ca_did_not_sign(
    deployment: Deployment, tls_broker: RabbitMQBroker, other_ca: TLSFiles
) -> None:
    _host, worker = _start_worker(deployment, tls_broker, other_ca.client_options(), wait=False)
    assert worker.wait(BOUND) == 3
    last = worker.log().strip().splitlines()[-1]
    assert last.startswith(
        f"computed: error: Cannot reach the message broker at rabbit://guest@127.0.0.1:"
        f"{tls_broker.port}/: TLS: certificate verify failed: "
    ), last
    assert f"checked against the CA in {other_ca.ca_file}" in last


def test_worker_without_tls_is_told_the_port_may_expect_it(
    deployment: Deployment, tls_broker: RabbitMQBroker
) -> None:
    _host, worker = _start_worker(deployment, tls_broker, {}, wait=False)
    assert worker.wait(BOUND) == 3
    last = worker.log().strip().splitlines()[-1]
    assert "Cannot reach the message broker" in last
    assert "if that port expects TLS, set [oslo_messaging_rabbit] ssl = true" in last


def _in_thread(func: Callable[[], Any]) -> BaseException | None:
    """What ``func`` raised, run in a thread that must end within :data:`BOUND` seconds."""
    raised: list[BaseException | None] = [None]

    def run() -> None:
        try:
            func()
        except BaseException as exc:
            raised[0] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"still running after {BOUND} s"
    return raised[0]


def test_client_refuses_a_broker_certificate_its_ca_did_not_sign(
    deployment: Deployment,
    tls_broker: RabbitMQBroker,
    tls: TLSFiles,
    other_ca: TLSFiles,
    client_url: Callable[[str], None],
) -> None:
    host, _worker = _start_worker(deployment, tls_broker, tls.client_options())
    client_url(_client_url(tls_broker, ssl="1", ssl_ca_file=other_ca.ca_file))
    api = deployment.api()
    raised = _in_thread(lambda: api.ping(None, host))
    assert isinstance(raised, exception.BrokerUnavailable), raised
    assert "TLS: certificate verify failed" in str(raised)
    assert other_ca.ca_file in str(raised)


def test_plain_amqp_to_the_tls_port_is_refused_clearly(
    tls_broker: RabbitMQBroker, conf: cfg.ConfigOpts
) -> None:
    raised = _in_thread(lambda: rpc.check_broker(conf, tls_broker.url, 3.0))
    assert isinstance(raised, exception.BrokerUnavailable), raised
    assert f"127.0.0.1:{tls_broker.port}" in str(raised)
    assert "if that port expects TLS, set [oslo_messaging_rabbit] ssl = true" in str(raised)


def test_the_broker_check_speaks_tls_when_the_url_asks(
    tls_broker: RabbitMQBroker, tls: TLSFiles, other_ca: TLSFiles, conf: cfg.ConfigOpts
) -> None:
    rpc.check_broker(conf, _client_url(tls_broker, ssl="1", ssl_ca_file=tls.ca_file), 3.0)
    with pytest.raises(exception.BrokerUnavailable, match="certificate verify failed"):
        rpc.check_broker(conf, _client_url(tls_broker, ssl="1", ssl_ca_file=other_ca.ca_file), 3.0)
    # ssl alone trusts the system's CAs, which know nothing of the tests' CA
    with pytest.raises(exception.BrokerUnavailable, match="checked against the system's CAs"):
        rpc.check_broker(conf, _client_url(tls_broker, ssl="1"), 3.0)


def test_conformance_command_reaches_the_tls_broker(
    deployment: Deployment, tls_broker: RabbitMQBroker, tls: TLSFiles
) -> None:
    host, _worker = _start_worker(deployment, tls_broker, tls.client_options())
    config = write_config(
        str(deployment.workdir / "conformance.conf"),
        {
            "DEFAULT": {"transport_url": tls_broker.url},
            "oslo_messaging_rabbit": tls.client_options(),
            "registry": {"connection": deployment.registry_url, "down_time": DOWN_TIME},
        },
    )
    done = subprocess.run(
        [
            *console_command("computed-conformance"),
            "--config-file",
            config,
            "--host",
            host,
            "--only",
            "host.ping",
            "--only",
            "spawn.call",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Running 2 checks" in done.stdout


@pytest.fixture(scope="module")
def mutual_tls_broker(tls: TLSFiles) -> Iterator[RabbitMQBroker]:
    with RabbitMQBroker(tls=tls, require_client_cert=True) as running:
        yield running


def test_a_client_certificate_is_presented_when_configured(
    deployment: Deployment,
    mutual_tls_broker: RabbitMQBroker,
    tls: TLSFiles,
    conf: cfg.ConfigOpts,
) -> None:
    with_cert = tls.client_options(client_cert=True)
    _start_worker(deployment, mutual_tls_broker, with_cert)  # registered: it is connected
    url = _client_url(mutual_tls_broker, **{k: str(v) for k, v in with_cert.items()})
    rpc.check_broker(conf, url, 3.0)
    without = _client_url(mutual_tls_broker, ssl="1", ssl_ca_file=tls.ca_file)
    with pytest.raises(exception.BrokerUnavailable, match="TLS"):
        rpc.check_broker(conf, without, 3.0)


@pytest.fixture(scope="module")
def misnamed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQBroker]:
    """A broker whose certificate, from a CA the client trusts, names another host."""
    files = make_certificates(
        tmp_path_factory.mktemp("misnamed"), hostnames=("broker.example.org",), addresses=()
    )
    with RabbitMQBroker(tls=files) as running:
        yield running


def test_the_broker_certificate_must_name_the_host_connected_to(
    misnamed_broker: RabbitMQBroker, conf: cfg.ConfigOpts
) -> None:
    assert misnamed_broker.tls is not None
    query = f"?ssl=1&ssl_ca_file={quote(misnamed_broker.tls.ca_file, safe='')}"
    mismatch = "mismatch, certificate is not valid for '127.0.0.1'"
    with pytest.raises(exception.BrokerUnavailable, match=mismatch) as caught:
        rpc.check_broker(conf, misnamed_broker.url + query, 3.0)
    assert "TLS: certificate verify failed" in str(caught.value)
    # With several hosts in the URL, the name is the host connected to.
    host = f"guest:guest@127.0.0.1:{misnamed_broker.port}"
    with pytest.raises(exception.BrokerUnavailable, match=mismatch):
        rpc.check_broker(conf, f"rabbit://{host},{host}/{query}", 3.0)
