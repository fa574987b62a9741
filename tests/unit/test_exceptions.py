"""Project exceptions cross oslo.messaging intact and arrive as their own class."""

from __future__ import annotations

import json
import sys

import pytest
from oslo_messaging._drivers import common as rpc_common

from computed import exception, rpc
from rpcapi.client import _local_copy

_EXAMPLES = [
    exception.InstanceNotFound(uuid="u-1", host="h1"),
    exception.InvalidPowerState(uuid="u-1", operation="pause", state="stopped", allowed="running"),
    exception.UnsupportedOperation(operation="suspend", driver="lean", host="h1"),
    exception.InvalidRequest(operation="spawn", reason="name too long"),
    exception.DriverError(driver="fake", host="h1", reason="boom"),
    exception.HostDisabled(host="h1", reason="hardware maintenance"),
    exception.InsufficientResources(
        host="h1",
        operation="spawn",
        resource="memory_mb",
        requested=4096,
        free=1024,
        total=3072,
        ratio=1.0,
    ),
]


def _over_the_wire(error: exception.ComputedError) -> BaseException:
    try:
        raise error
    except exception.ComputedError:
        data = rpc_common.serialize_remote_exception(sys.exc_info())
    json.loads(data)  # the payload is plain JSON
    return rpc_common.deserialize_remote_exception(data, rpc.ALLOWED_EXMODS)


@pytest.mark.parametrize("error", _EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_keeps_class_context_and_message(error: exception.ComputedError) -> None:
    remote = _over_the_wire(error)
    assert isinstance(remote, type(error))
    local = _local_copy(remote)  # type: ignore[arg-type]
    assert type(local) is type(error)
    assert local.kwargs == error.kwargs
    assert str(local) == str(error)
    assert "Traceback" not in str(local)


def test_message_is_formatted_from_the_context() -> None:
    error = exception.HostUnavailable(host="h9", reason="no worker has registered it")
    assert str(error) == "Host h9 is unavailable: no worker has registered it"
    assert error.host == "h9"


def test_missing_context_still_gives_a_message() -> None:
    error = exception.InstanceNotFound(uuid="u-1")
    assert "u-1" in str(error)


def test_every_exception_derives_from_the_root() -> None:
    for name in exception.__all__:
        assert issubclass(getattr(exception, name), exception.ComputedError)
