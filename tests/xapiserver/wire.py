"""Wire conventions of xapi's XML-RPC: how values go out and come in.

Out: every integer is an xapi ``int`` (int64) and travels as a string; the only
exception, ``event.from``'s ``valid_ref_counts``, is marked with :class:`Int32`.
Booleans stay booleans, floats doubles, dates ``dateTime.iso8601`` in xapi's
``YYYYMMDDTHH:MM:SSZ`` form, refs and enums strings.

In: parameters are checked against the declared type; a wrong type is
``FIELD_TYPE_ERROR [param]`` as in xapi's generated unmarshallers.
"""

from __future__ import annotations

import datetime as _dt
import uuid as _uuid
import xmlrpc.client
from typing import Any

from .errors import field_type_error

NULL_REF = "OpaqueRef:NULL"
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class Int32(int):
    """An integer that must travel as an XML-RPC ``<int>`` (not an int64 string)."""


def new_ref() -> str:
    return f"OpaqueRef:{_uuid.uuid4()}"


def new_uuid() -> str:
    return str(_uuid.uuid4())


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def xapi_date(value: _dt.datetime) -> xmlrpc.client.DateTime:
    """A date as xapi writes it: ``20240131T12:34:56Z``."""
    return xmlrpc.client.DateTime(value.astimezone(_dt.UTC).strftime("%Y%m%dT%H:%M:%SZ"))


def to_wire(value: Any) -> Any:
    """Convert an internal value to what xapi would put on the wire."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Int32):
        return int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.datetime):
        return xapi_date(value)
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_wire(v) for v in value]
    if value is None:
        return ""
    return str(value)


def task_result_xml(value: Any) -> str:
    """A task's ``result`` field: the marshalled value as an XML-RPC ``<value>``.

    xapi stores ``Xmlrpc.to_string`` of the result; strings (refs) appear as
    ``<value>OpaqueRef:...</value>``, void results as ``<value></value>``.
    """
    if value is None:
        return "<value></value>"
    wired = to_wire(value)
    if isinstance(wired, str):
        return "<value>" + _escape(wired) + "</value>"
    body = xmlrpc.client.dumps((wired,), allow_none=False)
    start = body.index("<value>")
    end = body.rindex("</value>") + len("</value>")
    return body[start:end]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- coercion


def coerce(kind: str, value: Any, name: str) -> Any:
    """Check/convert an incoming parameter of declared ``kind``.

    Kinds: ``string``, ``ref``, ``int``, ``bool``, ``float``, ``map``, ``set``,
    ``record``, ``enum:a|b|c``, ``any``.
    """
    if kind == "any":
        return value
    if kind in ("string", "ref"):
        if isinstance(value, str):
            return value
        raise field_type_error(name)
    if kind == "int":
        if isinstance(value, bool):
            raise field_type_error(name)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise field_type_error(name) from None
        raise field_type_error(name)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise field_type_error(name)
    if kind == "float":
        if isinstance(value, bool):
            raise field_type_error(name)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise field_type_error(name) from None
        raise field_type_error(name)
    if kind == "map":
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return {str(k): v for k, v in value.items()}
        raise field_type_error(name)
    if kind == "set":
        if isinstance(value, (list, tuple)):
            return list(value)
        raise field_type_error(name)
    if kind == "record":
        if isinstance(value, dict):
            return value
        raise field_type_error(name)
    if kind.startswith("enum:"):
        choices = kind[5:].split("|")
        if isinstance(value, str):
            for choice in choices:
                if choice.lower() == value.lower():
                    return choice
        raise field_type_error(name)
    raise ValueError(f"unknown parameter kind {kind!r}")


def kind_of_default(default: Any) -> str:
    """The parameter kind matching a record field's default value."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, dict):
        return "map"
    if isinstance(default, list):
        return "set"
    return "string"
