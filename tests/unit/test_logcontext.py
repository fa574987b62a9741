"""The request context oslo.log reads while an operation runs, and only then."""

from __future__ import annotations

import io
import json
import logging as std_logging
import threading
from collections.abc import Iterator

import pytest
from oslo_config import cfg
from oslo_context import context
from oslo_log import formatters
from oslo_log import log as logging

from computed import _logcontext, rpc
from computed.cmd.worker import OPERATION_LINE

TOKEN = "secret-token-value"
UUID = "6f1c2a0e-7d1b-4f8e-9a55-0b8f3f0c2d11"


@pytest.fixture(autouse=True)
def no_current_context() -> Iterator[None]:
    _logcontext._make_current(None)
    yield
    _logcontext._make_current(None)


def _received(request_id: str = "req-1") -> context.RequestContext:
    values = {"request_id": request_id, "auth_token": TOKEN, "user": "alice"}
    return rpc.RequestContextSerializer().deserialize_context(values)


def test_a_received_context_never_becomes_current() -> None:
    ctxt = _received()
    assert context.get_current() is None
    ctxt.redacted_copy()
    assert context.get_current() is None
    assert (ctxt.request_id, ctxt.auth_token) == ("req-1", TOKEN)  # the operation's own


def test_serving_makes_the_operation_current_then_forgets_it() -> None:
    ctxt = _received()
    with _logcontext.serving(ctxt, "h1", UUID):
        current = context.get_current()
        ctxt.redacted_copy()  # as a notification does: the operation's context stays
        assert context.get_current() is current
        values = current.get_logging_values()
        assert (values["request_id"], values["host"], values["instance_uuid"]) == (
            "req-1",
            "h1",
            UUID,
        )
        assert values["user"] == "alice" and values["auth_token"] is None
    assert context.get_current() is None


def test_serving_restores_the_context_it_found() -> None:
    outer = context.RequestContext(request_id="req-outer")
    with _logcontext.serving(_received("req-inner"), "h1", None):
        assert context.get_current().request_id == "req-inner"
    assert context.get_current() is outer


def test_serving_leaves_no_context_after_a_failure() -> None:
    with pytest.raises(RuntimeError), _logcontext.serving(_received(), "h1", UUID):
        raise RuntimeError("driver failed")
    assert context.get_current() is None


def _log_with(formatter: std_logging.Formatter) -> tuple[std_logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = std_logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = std_logging.getLogger(f"test_logcontext.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(std_logging.INFO)
    return logger, stream


def _worker_formatter() -> formatters.ContextFormatter:
    """oslo.log's formatter with the worker's default line."""
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    conf.set_default("logging_context_format_string", OPERATION_LINE)
    conf([], default_config_files=[])
    return formatters.ContextFormatter(config=conf)


def test_the_worker_format_shows_request_host_and_instance() -> None:
    logger, stream = _log_with(_worker_formatter())
    with _logcontext.serving(_received(), "h1", UUID):
        logger.info("spawn done")
    with _logcontext.serving(_received("req-2"), "h1", None):
        logger.info("ping done")
    logger.info("heartbeat")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(f" [req-1 h1] [instance: {UUID}] spawn done"), lines
    assert lines[1].endswith(" [req-2 h1] ping done"), lines
    assert lines[2].endswith(" [-] heartbeat"), lines
    assert TOKEN not in stream.getvalue()


def test_a_json_record_carries_them_as_fields() -> None:
    logger, stream = _log_with(formatters.JSONFormatter())
    with _logcontext.serving(_received(), "h1", UUID):
        logger.info("spawn done")
    logger.info("heartbeat")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    fields = {k: inside["context"][k] for k in ("request_id", "host", "instance_uuid")}
    assert fields == {"request_id": "req-1", "host": "h1", "instance_uuid": UUID}
    assert outside["context"] == {}
    assert TOKEN not in stream.getvalue()


def test_a_thread_the_operation_starts_logs_under_its_context() -> None:
    from drivers.base import operation_thread

    logger, stream = _log_with(_worker_formatter())
    with _logcontext.serving(_received(), "h1", UUID):
        watcher = operation_thread(lambda: logger.info("copied 50%"), name="watcher")
        bare = threading.Thread(target=lambda: logger.info("copied 60%"))
    watcher.start()  # started after the operation's thread left serving(): carried all the same
    watcher.join()
    bare.start()
    bare.join()
    assert watcher.daemon
    carried, plain = stream.getvalue().splitlines()
    assert carried.endswith(f" [req-1 h1] [instance: {UUID}] copied 50%"), carried
    assert plain.endswith(" [-] copied 60%"), plain
    assert context.get_current() is None


def test_a_carried_function_leaves_its_thread_as_it_found_it() -> None:
    with _logcontext.serving(_received(), "h1", UUID):
        seen = _logcontext.carried(lambda: context.get_current().request_id)
    own = context.RequestContext(request_id="req-own")
    assert seen() == "req-1"
    assert context.get_current() is own
