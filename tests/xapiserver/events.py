"""``event.from``: changes since a token, waiting up to a timeout.

Modelled on ``from_inner`` in ocaml/xapi/xapi_event.ml: the token is
``"%020d,%020d"`` (generation, message generation); ``""`` means "from the
beginning". An object created since the token yields an ``add`` event, one
modified since the token a ``mod`` event (a new object is both), one deleted
since the token a ``del`` event unless it was also created since then.
Subscriptions are ``"*"``, a class name, or ``"class/ref"``, case-insensitive.
Events carry ``id``, ``timestamp``, ``class``, ``operation``, ``ref`` and, for
add/mod, ``snapshot`` (the record). The reply is ``{events, valid_ref_counts,
token}``, with int32 counts. If nothing matches, the call waits until something
does or the timeout passes; a session that dies meanwhile gives SESSION_INVALID.
"""

from __future__ import annotations

import time
from typing import Any

from . import records
from .errors import EVENT_FROM_TOKEN_PARSE_FAILURE, SESSION_INVALID, XapiError
from .state import PoolState
from .wire import Int32

_LOWER = {c.lower(): c for c in records.CLASSES}


def parse_token(token: str) -> int:
    if token == "":
        return 0
    parts = token.split(",")
    try:
        if len(parts) == 2:
            int(parts[1])
            return int(parts[0])
        if len(parts) == 1:
            return int(parts[0])
    except ValueError:
        pass
    raise XapiError(EVENT_FROM_TOKEN_PARSE_FAILURE, token)


def format_token(generation: int) -> str:
    return f"{generation:020d},{0:020d}"


def _parse_subs(classes: list[str]) -> list[tuple[str, str | None]]:
    subs: list[tuple[str, str | None]] = []
    for item in classes:
        if item == "*":
            subs.append(("*", None))
        elif "/" in item:
            cls, ref = item.split("/", 1)
            subs.append((cls.lower(), ref))
        else:
            subs.append((item.lower(), None))
    return subs


def _matches(subs: list[tuple[str, str | None]], cls: str, ref: str) -> bool:
    lcls = cls.lower()
    for sub_cls, sub_ref in subs:
        if sub_cls == "*" or (sub_cls == lcls and (sub_ref is None or sub_ref == ref)):
            return True
    return False


def _collect(
    pool: PoolState, subs: list[tuple[str, str | None]], since: int
) -> list[dict[str, Any]]:
    adds: list[dict[str, Any]] = []
    mods: list[dict[str, Any]] = []
    dels: list[dict[str, Any]] = []
    for cls, objs in pool.objects.items():
        for ref, obj in objs.items():
            if obj.mtime <= since or not _matches(subs, cls, ref):
                continue
            snapshot = pool.view(cls, ref)
            if obj.ctime > since:
                adds.append(_event(obj.ctime, cls, "add", ref, snapshot))
            mods.append(_event(obj.mtime, cls, "mod", ref, snapshot))
    for cls, ref, ctime, _mtime, dtime in pool.deleted:
        if dtime > since and ctime <= since and _matches(subs, cls, ref):
            dels.append(_event(dtime, cls, "del", ref, None))
    return adds + mods + dels


def _event(
    gen: int, cls: str, op: str, ref: str, snapshot: dict[str, Any] | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": gen,
        "timestamp": "0.0",
        "class": cls.lower(),
        "operation": op,
        "ref": ref,
    }
    if snapshot is not None:
        event["snapshot"] = snapshot
    return event


def event_from(
    pool: PoolState, session: str, classes: list[str], token: str, timeout: float
) -> dict[str, Any]:
    since = parse_token(token)
    subs = _parse_subs(classes)
    deadline = time.monotonic() + max(0.0, timeout)
    with pool.lock:
        while True:
            if not pool.session_valid(session):
                raise XapiError(SESSION_INVALID, session)
            generation = pool.generation
            events = _collect(pool, subs, since)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                break
            since = generation
            pool.changed.wait(remaining)
        counts = {cls.lower(): Int32(len(objs)) for cls, objs in pool.objects.items()}
        return {"events": events, "valid_ref_counts": counts, "token": format_token(generation)}


def known_class(name: str) -> str | None:
    """The canonical class for a lower-cased event class name."""
    return _LOWER.get(name.lower())
