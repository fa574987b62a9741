"""Windows PowerShell 5.1 ``ConvertTo-Json``: depth handling, escaping and layout.

Three steps, as in PowerShell 5.1:

1. ``process_value`` walks the objects the way ConvertToJsonCommand.ProcessValue
   does: scalars, enums, Guids and DateTimes are kept at any depth; any other
   object deeper than ``-Depth`` becomes its string form (usually its type name);
   several pipeline objects form an array that itself counts as one level.
2. ``compact`` serialises like System.Web's JavaScriptSerializer (what ``-Compress``
   prints): enums as numbers, dates as ``"\\/Date(ms)\\/"``, and the HTML-sensitive
   characters ``< > & '`` escaped as ``\\u003c``-style sequences.
3. ``pretty`` reproduces 5.1's own indenter: 4 spaces, two spaces after the colon,
   nested containers aligned under the end of their key, empty containers printed
   with a blank line, CRLF line ends.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

from .psobjects import PSEnum, PSObject, to_display_string

__all__ = ["convert_to_json"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class _Date:
    def __init__(self, value: _dt.datetime) -> None:
        self.value = value


def convert_to_json(objects: list[Any], depth: int = 2, compress: bool = False) -> str | None:
    """The single string ConvertTo-Json writes, or None when it had no input."""
    if not objects:
        return None
    root: Any = objects if len(objects) > 1 else objects[0]
    processed = process_value(root, 0, depth)
    return compact(processed) if compress else pretty(processed)


def process_value(value: Any, depth: int, max_depth: int) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, PSEnum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _dt.datetime):
        return _Date(value)
    if depth > max_depth:
        return to_display_string(value)
    if isinstance(value, (list, tuple)):
        return [process_value(v, depth + 1, max_depth) for v in value]
    if isinstance(value, dict):
        return {str(k): process_value(v, depth + 1, max_depth) for k, v in value.items()}
    if isinstance(value, PSObject):
        return {k: process_value(v, depth + 1, max_depth) for k, v in value.props.items()}
    return str(value)


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "<>&'":
            out.append(f"\\u{code:04x}")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, _Date):
        millis = int((value.value - _EPOCH).total_seconds() * 1000)
        return f'"\\/Date({millis})\\/"'
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return _string(str(value))


def compact(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(compact(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(_string(k) + ":" + compact(v) for k, v in value.items()) + "}"
    return _scalar(value)


def pretty(value: Any) -> str:
    if isinstance(value, dict):
        return _dict(value, "", 0)
    if isinstance(value, list):
        return _list(value, "", 0)
    return _scalar(value)


def _dict(value: dict[str, Any], pad: str, spaces: int) -> str:
    inner = pad + " " * spaces + "    "
    lines = []
    for key, item in value.items():
        head = _string(key) + ":  "
        lines.append(inner + head + _nested(item, inner, len(head)))
    return "{\r\n" + ",\r\n".join(lines) + "\r\n" + pad + " " * spaces + "}"


def _list(value: list[Any], pad: str, spaces: int) -> str:
    inner = pad + " " * spaces + "    "
    lines = [inner + _nested(item, inner, 0) for item in value]
    return "[\r\n" + ",\r\n".join(lines) + "\r\n" + pad + " " * spaces + "]"


def _nested(value: Any, pad: str, spaces: int) -> str:
    if isinstance(value, dict):
        return _dict(value, pad, spaces)
    if isinstance(value, list):
        return _list(value, pad, spaces)
    return _scalar(value)
