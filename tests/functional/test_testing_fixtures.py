"""The helpers of :mod:`computed.testing` run real servers.

Needs the rabbitmq-server and postgresql packages (``tools/bootstrap.sh``);
skipped without them.  Every server is stopped, and its directory removed,
even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from computed.testing import PostgreSQLServer, RabbitMQBroker, _procs
from computed.testing import broker as broker_mod
from computed.testing import postgres as postgres_mod
from tests.bench import scale_bench

kombu = pytest.importorskip("kombu")
amqp_exceptions = pytest.importorskip("amqp.exceptions")

pytestmark = pytest.mark.functional


def _need(find: object, what: str) -> None:
    try:
        find()  # type: ignore[operator]
    except RuntimeError as exc:
        pytest.skip(f"{what} not installed: {exc}")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQBroker]:
    """This module's own broker: its tests restart and kill it, so it must not
    be the session broker of tests/functional/conftest.py that it overrides."""
    _need(broker_mod._find_bin_dir, "RabbitMQ")
    b = RabbitMQBroker()
    b.start()  # cleans up after itself if it fails
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def vhost_user(broker: RabbitMQBroker) -> tuple[str, str, str]:
    vhost, user, password = _unique("vhost"), _unique("user"), uuid.uuid4().hex
    broker.add_vhost(vhost)
    broker.add_user(user, password)
    broker.set_permissions(vhost, user)
    return vhost, user, password


@pytest.fixture
def workdir() -> Iterator[str]:
    """A directory the rabbitmq/postgres users can reach when we are root
    (pytest's tmp_path lives under a directory only its owner can enter)."""
    path = tempfile.mkdtemp(prefix="computed-workdir-")
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_broker_urls(broker: RabbitMQBroker) -> None:
    assert broker.url == f"rabbit://guest:guest@127.0.0.1:{broker.port}/"
    assert broker.amqp_url == f"amqp://guest:guest@127.0.0.1:{broker.port}/"
    assert broker.url_for("a/b", "u@x", "p:w") == (
        f"rabbit://u%40x:p%3Aw@127.0.0.1:{broker.port}/a%2Fb"
    )
    assert len({broker.port, broker.dist_port, broker.epmd_port}) == 3
    assert _procs.port_open(broker.port) and _procs.port_open(broker.epmd_port)
    assert broker.running


def test_send_and_receive_on_fresh_vhost(
    broker: RabbitMQBroker, vhost_user: tuple[str, str, str]
) -> None:
    vhost, user, password = vhost_user
    with kombu.Connection(broker.url_for(vhost, user, password, scheme="amqp")) as conn:
        queue = conn.SimpleQueue("fixture-test")
        try:
            queue.put({"hello": "world"})
            assert broker.list_queues(vhost) == {"fixture-test": 1}
            message = queue.get(timeout=10)
            message.ack()
            assert message.payload == {"hello": "world"}
        finally:
            queue.close()
    assert broker.list_queues(vhost) == {"fixture-test": 0}


def test_quorum_queues_take_file_handles_of_their_own(
    broker: RabbitMQBroker, vhost_user: tuple[str, str, str]
) -> None:
    """What docs/capacity.md sizes a node by: each quorum queue holds file
    handles of the node's own accounting, with no message and no consumer."""
    vhost, user, password = vhost_user
    with kombu.Connection(broker.url_for(vhost, user, password, scheme="amqp")) as conn:
        channel = conn.channel()  # the connection's own socket is counted in both
        before = broker.file_handles()
        assert before["total_limit"] > 0 and before["total_used"] >= 0
        for i in range(10):
            kombu.Queue(
                f"fh-{i}", durable=True, queue_arguments={"x-queue-type": "quorum"}, channel=channel
            ).declare()
        after = broker.file_handles()
    assert after["total_used"] - before["total_used"] == 10 * scale_bench.QUORUM_QUEUE_FILE_HANDLES


def test_user_without_permissions_is_refused(
    broker: RabbitMQBroker, vhost_user: tuple[str, str, str]
) -> None:
    vhost, _, _ = vhost_user
    stranger, password = _unique("stranger"), "secret"
    broker.add_user(stranger, password)
    conn = kombu.Connection(broker.url_for(vhost, stranger, password, scheme="amqp"))
    try:
        # RabbitMQ answers connection.open with 530 NOT_ALLOWED
        with pytest.raises(amqp_exceptions.NotAllowed, match="access to vhost .* refused"):
            conn.connect()
    finally:
        conn.release()

    # with permissions that forbid configuring anything: 403 ACCESS_REFUSED
    broker.set_permissions(vhost, stranger, conf="^$", write=".*", read=".*")
    with kombu.Connection(broker.url_for(vhost, stranger, password, scheme="amqp")) as conn:
        queue = kombu.Queue("forbidden", channel=conn.default_channel)
        with pytest.raises(amqp_exceptions.AccessRefused):
            queue.declare()


def test_restart_keeps_durable_messages(broker: RabbitMQBroker) -> None:
    name = _unique("durable")
    exchange = kombu.Exchange(name, type="direct", durable=True)
    queue = kombu.Queue(name, exchange, routing_key=name, durable=True)
    with kombu.Connection(broker.amqp_url) as conn:
        with conn.Producer() as producer:
            producer.publish(
                {"n": 1}, exchange=exchange, routing_key=name, declare=[queue], delivery_mode=2
            )
    port, directory = broker.port, broker.directory

    broker.restart()

    assert (broker.port, broker.directory) == (port, directory)
    assert broker.list_queues()[name] == 1
    with kombu.Connection(broker.amqp_url) as conn:
        message = queue(conn.default_channel).get(no_ack=True)
        assert message is not None and message.payload == {"n": 1}
        queue(conn.default_channel).delete()


def test_kill_then_restart(broker: RabbitMQBroker) -> None:
    try:
        broker.kill()
        assert not broker.running
        assert not _procs.port_open(broker.port)
        broker.restart()
        assert broker.running
        with kombu.Connection(broker.amqp_url) as conn:
            conn.ensure_connection(max_retries=1)
    finally:
        if not broker.running:  # leave a working broker to the other tests
            broker.restart()


def test_second_broker_is_isolated_and_stop_cleans_up(broker: RabbitMQBroker, workdir: str) -> None:
    with RabbitMQBroker(workdir=workdir) as other:
        directory = other.directory
        ports = (other.port, other.dist_port, other.epmd_port)
        beam = _procs.read_pid(os.path.join(directory, "rabbitmq.pid"))
        assert os.path.dirname(directory) == workdir
        assert not set(ports) & {broker.port, broker.dist_port, broker.epmd_port}
        assert other.node != broker.node
        assert beam is not None and _procs.pid_alive(beam)
    assert not os.path.exists(directory)
    assert os.path.isdir(workdir)  # only the broker's own directory goes
    assert beam is not None and not _procs.pid_alive(beam)
    for port in ports:
        assert _procs.port_bindable(port), f"port {port} still in use after stop"
    other.stop()  # idempotent

    # the first broker and its epmd are untouched
    assert _procs.port_open(broker.epmd_port)
    with kombu.Connection(broker.amqp_url) as conn:
        conn.ensure_connection(max_retries=1)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches users")
def test_unreachable_workdir_is_reported(tmp_path: object) -> None:
    _need(broker_mod._find_bin_dir, "RabbitMQ")
    private = os.path.join(str(tmp_path), "private")
    os.mkdir(private, 0o700)
    b = RabbitMQBroker(workdir=private)
    with pytest.raises(RuntimeError, match="not reachable by the 'rabbitmq' user"):
        b.start()
    assert os.listdir(private) == []
    b.stop()


def test_failed_start_raises_with_log(monkeypatch: pytest.MonkeyPatch) -> None:
    _need(broker_mod._find_bin_dir, "RabbitMQ")
    busy = _procs.free_ports(1)[0]
    real = _procs.free_ports

    def ports_with_a_busy_dist_port(count: int, host: str = _procs.LOOPBACK) -> list[int]:
        amqp, *rest = real(count - 1, host)
        return [amqp, busy, *rest]  # amqp, dist, epmd: the node fails early in its boot

    monkeypatch.setattr(_procs, "free_ports", ports_with_a_busy_dist_port)
    b = RabbitMQBroker()
    try:
        with _listening(busy), pytest.raises(RuntimeError) as info:
            b.start(timeout=30)
        message = str(info.value)
        assert b.node in message and "last lines of" in message
        assert "dist_port_already_used" in message  # the node's own words, from its log
        assert b._dir is None  # a failed start cleans up after itself
    finally:
        b.stop()


class _listening:
    """Hold a TCP port with a listening socket."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((_procs.LOOPBACK, port))
        self.sock.listen()

    def __enter__(self) -> _listening:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.postgresql
def test_postgresql_server() -> None:
    _need(postgres_mod.find_bin_dir, "PostgreSQL")
    pytest.importorskip("psycopg2")
    sqlalchemy = pytest.importorskip("sqlalchemy")

    with PostgreSQLServer() as pg:
        directory, port = pg.directory, pg.port
        url = pg.create_database("fixture_test")
        assert url == f"postgresql+psycopg2://postgres@127.0.0.1:{port}/fixture_test"
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
                assert (
                    conn.execute(sqlalchemy.text("select current_database()")).scalar()
                    == "fixture_test"
                )
        finally:
            engine.dispose()
    assert not os.path.exists(directory)
    assert _procs.port_bindable(port)
    pg.stop()  # idempotent
