"""The request, host and instance on every line a worker logs for an operation.

oslo.log's formatters read the request context that oslo.context keeps for
the current thread: ``logging_context_format_string`` may name any value of
its ``get_logging_values()`` (``%(request_id)s``, ``%(host)s``, ...),
``%(instance)s`` is rendered from its ``instance_uuid``, and a JSON record
carries those values as its ``context`` field. While an operation runs, its
thread's context is an :class:`OperationLogContext`: the request's identity
(never its token), the host and the instance. When the operation ends the
thread gets back the context it had before (none, on the worker's threads),
so its later lines carry no stale request.

oslo.context makes every ``RequestContext`` it builds the current one of
the thread that built it. The contexts the worker reads (from messages and
from the journal) are :class:`ReceivedContext`: neither they nor their
copies (a notification's redacted one) ever become current, so a thread
that reads messages never logs under the last request it read, and an
operation's lines keep their context whatever the operation builds.

A thread an operation starts (a driver's progress watcher) has no context
of its own: :func:`carried` gives it the operation's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

from oslo_context import context as oslo_context

__all__ = ["OperationLogContext", "ReceivedContext", "carried", "detached", "serving"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class OperationLogContext(oslo_context.RequestContext):
    """A request's context as the lines of one operation on one host show it.

    Built from the request's own logging values, so the token is never in
    it (oslo.context masks it there). Only logging reads it: the operation
    itself, its journal entry and its notifications keep the request's context.
    """

    def __init__(
        self, host: str | None = None, instance_uuid: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.host = host
        #: oslo.log renders ``%(instance)s`` from this (``instance_uuid_format``).
        self.instance_uuid = instance_uuid

    def get_logging_values(self) -> dict[str, Any]:
        values: dict[str, Any] = super().get_logging_values()
        values["host"] = self.host
        values["instance_uuid"] = self.instance_uuid
        return values


class ReceivedContext(oslo_context.RequestContext):
    """A request's context as the worker received it: never the current context
    of a thread (only :func:`serving` makes one current, for an operation)."""

    def update_store(self) -> None:
        pass


def detached(values: Mapping[str, Any]) -> ReceivedContext:
    """The request context of ``values`` (a context's dict), as the worker received it."""
    context: ReceivedContext = ReceivedContext.from_dict(dict(values))
    return context


@contextlib.contextmanager
def serving(ctxt: Any, host: str, instance_uuid: str | None) -> Iterator[OperationLogContext]:
    """Log this thread's lines as those of request ``ctxt`` on ``host`` and its instance.

    :param ctxt: the request's context (a RequestContext, or the dict of one).
    :param instance_uuid: the instance the operation acts on; None for a host-wide one.
    """
    previous = oslo_context.get_current()
    if isinstance(ctxt, oslo_context.RequestContext):
        values = ctxt.get_logging_values()
    else:
        values = dict(ctxt or {})
    current = OperationLogContext.from_dict(
        values, host=host, instance_uuid=instance_uuid, auth_token=None, overwrite=True
    )
    try:
        yield current
    finally:
        _make_current(previous)


def carried(target: Callable[_P, _T]) -> Callable[_P, _T]:
    """``target``, to be run on another thread under this thread's current context.

    The context is the one current when :func:`carried` is called (the
    operation's, inside :func:`serving`); the thread that runs ``target``
    gets back the context it had afterwards.
    """
    ctxt = oslo_context.get_current()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        previous = oslo_context.get_current()
        if ctxt is not None:
            ctxt.update_store()
        try:
            return target(*args, **kwargs)
        finally:
            _make_current(previous)

    return run


def _make_current(ctxt: oslo_context.RequestContext | None) -> None:
    if ctxt is not None:
        ctxt.update_store()
        return
    # oslo.context offers no way to forget the current context; its own
    # ClearRequestContext fixture removes it from this store as well.
    store = oslo_context._request_store
    if hasattr(store, "context"):
        del store.context
