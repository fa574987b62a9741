"""The worker's reading and writing of oslo.messaging's wire format (computed._wire)."""

from __future__ import annotations

import json
import ssl
import sys
from typing import Any

import pytest
from oslo_config import cfg
from oslo_messaging._drivers import common as oslo_common

from computed import _wire, exception


def _enveloped(message: dict[str, Any]) -> bytes:
    """A body as oslo.messaging's client publishes it."""
    return json.dumps(oslo_common.serialize_msg(message)).encode()


def test_this_oslo_messaging_is_supported() -> None:
    _wire.check_supported()


def test_a_release_without_an_internal_is_named_with_the_supported_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(oslo_common, "serialize_remote_exception")
    with pytest.raises(_wire.UnsupportedLibrary) as caught:
        _wire.check_supported()
    text = str(caught.value)
    assert "serialize_remote_exception" in text
    assert f"oslo.messaging{_wire.SUPPORTED}" in text


def test_decodes_what_an_oslo_messaging_client_sends() -> None:
    message = {"method": "ping", "args": {}, "_unique_id": "u1", "_msg_id": "m1"}
    assert _wire.decode(_enveloped(message)) == message


def test_decodes_an_unenveloped_message() -> None:
    assert _wire.decode(b'{"method": "ping"}') == {"method": "ping"}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"oslo.version": "3.0", "oslo.message": "{}"}', "unsupported envelope version"),
        (b'{"oslo.version": "2.0", "oslo.message": 42}', "not a string"),
        (b'{"oslo.version": "2.0", "oslo.message": "{no"}', "is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
    ids=["garbage", "array", "envelope-3.0", "message-not-string", "inner-garbage", "deep"],
)
def test_malformed_bodies_are_named(body: bytes, complaint: str) -> None:
    with pytest.raises(_wire.MalformedMessage) as caught:
        _wire.decode(body)
    assert complaint in str(caught.value)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value]}
    return value


def test_problem_finds_deep_nesting_and_lone_surrogates() -> None:
    assert _wire.problem({"args": _nested(3)}, max_depth=32) is None
    assert "nested deeper than 32" in str(_wire.problem({"args": _nested(20)}, max_depth=32))
    surrogate = json.loads('"x\\ud800y"')
    assert "lone surrogate" in str(_wire.problem({"args": {"name": surrogate}}, 32))
    assert "lone surrogate" in str(_wire.problem({"args": {surrogate: 1}}, 32))


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "str"])
def test_problem_reads_the_body_the_same_as_the_message(as_text: bool) -> None:
    surrogate = json.loads('"x\\ud800y"')
    messages = {
        "plain": {"method": "reboot", "args": {"uuid": "u", "tags": ["a"]}},
        "deep": {"args": _nested(20)},
        "deep but under the limit": {"args": _nested(15)},
        "surrogate in a value": {"args": {"name": surrogate}},
        "surrogate in a key": {"args": {surrogate: 1}},
        "a backslash-u that is not an escape": {"args": {"path": "C:\\udf\\x"}},
    }
    for name, message in messages.items():
        body = _enveloped(message)
        given = body.decode() if as_text else body
        assert _wire.problem(_wire.decode(given), 32, given) == _wire.problem(message, 32), name
    assert _wire.problem(messages["plain"], 32, _enveloped(messages["plain"])) is None


def test_reply_address_is_found_without_decoding() -> None:
    message = {
        "method": "x",
        "args": {"a": "y" * 10_000},
        "_msg_id": "ab12",
        "_reply_q": "reply_f0",
    }
    assert _wire.reply_address(_enveloped(message)) == ("ab12", "reply_f0")
    assert _wire.reply_address(b'{"method": "x"}') is None


def test_replies_read_as_oslo_messaging_replies() -> None:
    body = _wire.reply("m1", result={"a": 1})
    reply = oslo_common.deserialize_msg(json.loads(body))
    assert reply["result"] == {"a": 1}
    assert reply["ending"] is True
    assert reply["_msg_id"] == "m1"
    assert reply["failure"] is None
    heartbeat = oslo_common.deserialize_msg(json.loads(_wire.reply("m1", ending=False)))
    assert heartbeat["ending"] is False and heartbeat["result"] is None


def test_failures_rebuild_as_the_projects_exceptions() -> None:
    error = exception.InstanceNotFound(uuid="u-1", host="h1")
    try:
        raise error
    except exception.InstanceNotFound:
        failure = _wire.failure(sys.exc_info())  # type: ignore[arg-type]
    rebuilt = oslo_common.deserialize_remote_exception(failure, ["computed.exception"])
    assert isinstance(rebuilt, exception.InstanceNotFound)
    assert rebuilt.kwargs["uuid"] == "u-1"


def test_host_queues_are_declared_as_oslo_messaging_declares_them() -> None:
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.FloatOpt("broker_connect_timeout", default=10.0)])
    _wire.register_opts(conf)
    conf([], default_config_files=[])
    # Quorum queues by default (docs/delivery.md).
    quorum = _wire.host_queue(conf, "compute", "h1")
    assert (quorum.name, quorum.routing_key) == ("compute.h1", "compute.h1")
    assert quorum.exchange.name == "openstack" and quorum.exchange.type == "topic"
    assert quorum.durable and quorum.exchange.durable
    assert quorum.queue_arguments == {"x-queue-type": "quorum"}
    conf.set_override("rabbit_quorum_queue", False, group="oslo_messaging_rabbit")
    classic = _wire.host_queue(conf, "compute", "h1")
    assert not classic.durable and not classic.exchange.durable
    assert classic.queue_arguments == {}


def _wire_conf(**rabbit: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.FloatOpt("broker_connect_timeout", default=10.0)])
    _wire.register_opts(conf)
    conf([], default_config_files=[])
    for name, value in rabbit.items():
        conf.set_override(name, value, group="oslo_messaging_rabbit")
    return conf


def test_connections_are_plain_unless_tls_is_asked_for() -> None:
    conn = _wire.connection(_wire_conf(), "rabbit://u:p@broker:5672/", "test")
    assert conn.ssl is False
    assert conn.connect_timeout == 10.0
    assert _wire.connection(_wire_conf(), None, "test", connect_timeout=2.5).connect_timeout == 2.5


def test_tls_from_the_options_verifies_the_ca_and_the_hosts_name() -> None:
    conf = _wire_conf(
        ssl=True, ssl_ca_file="/ca.pem", ssl_cert_file="/c.pem", ssl_key_file="/k.pem"
    )
    conn = _wire.connection(conf, "rabbit://u:p@broker.example:5671/", "test")
    assert conn.ssl == {
        "ca_certs": "/ca.pem",
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "broker.example",
        "certfile": "/c.pem",
        "keyfile": "/k.pem",
    }


def test_tls_with_several_hosts_leaves_the_name_to_kombu() -> None:
    conf = _wire_conf(ssl=True, ssl_ca_file="/ca.pem")
    conn = _wire.connection(conf, "rabbit://u:p@b1:5671,u:p@b2:5671/", "test")
    # None, present: kombu fills in the host it connects to, as for oslo.messaging
    assert "server_hostname" in conn.ssl and conn.ssl["server_hostname"] is None


def test_the_urls_query_overrides_the_options_as_for_oslo_messaging() -> None:
    url = "rabbit://u:p@broker:5671/?ssl=1&ssl_ca_file=/q.pem&ssl_version=tlsv1_2"
    conn = _wire.connection(_wire_conf(ssl_ca_file="/ca.pem"), url, "test")
    assert conn.ssl["ca_certs"] == "/q.pem"
    assert conn.ssl["ssl_version"] == ssl.PROTOCOL_TLSv1_2
    assert _wire.connection(_wire_conf(), "rabbit://broker/?ssl=1", "test").ssl is True
    assert _wire.connection(_wire_conf(ssl=True), "rabbit://broker/?ssl=0", "test").ssl is False


def test_a_py_amqp_without_the_read_buffer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from amqp import transport

    slots = tuple(s for s in transport._AbstractTransport.__slots__ if s != "_read_buffer")
    monkeypatch.setattr(transport._AbstractTransport, "__slots__", slots)
    with pytest.raises(_wire.UnsupportedLibrary, match="amqp's transport _read_buffer"):
        _wire.check_supported()
