"""The .NET values the emulated cmdlets emit, as ConvertTo-Json and Select-Object see them.

A :class:`PSObject` is a property bag with a type name and the string it converts
to when ConvertTo-Json runs out of depth. Scalars stay Python values: ``str``,
``bool``, ``int``, ``float``, :class:`uuid.UUID` (System.Guid), timezone-aware
:class:`datetime.datetime` (System.DateTime) and :class:`PSEnum`.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PSEnum", "PSObject", "custom_object", "format_output", "timespan", "to_display_string"]


@dataclass(frozen=True)
class PSEnum:
    """An enum value: serialised as its number, displayed as its name."""

    type_name: str
    name: str
    value: int


@dataclass
class PSObject:
    """A .NET object (or a PSCustomObject when ``custom``) with ordered properties.

    ``ref`` links the snapshot to live state (a VM id) so that it can be piped into
    another cmdlet the way Hyper-V passes ``VirtualMachine`` objects.
    """

    type_name: str
    props: dict[str, Any] = field(default_factory=dict)
    custom: bool = False
    string: str | None = None
    ref: Any = None
    view: tuple[str, ...] = ()

    def to_string(self) -> str:
        if self.string is not None:
            return self.string
        if self.custom:
            inner = "; ".join(f"{k}={to_display_string(v)}" for k, v in self.props.items())
            return "@{" + inner + "}"
        return self.type_name


def custom_object(props: dict[str, Any], ref: Any = None) -> PSObject:
    return PSObject(
        "System.Management.Automation.PSCustomObject", dict(props), custom=True, ref=ref
    )


def timespan(seconds: float) -> PSObject:
    """A System.TimeSpan with the properties in .NET reflection order."""
    ticks = int(round(seconds * 10_000_000))
    total_seconds = ticks / 10_000_000
    days, rem = divmod(ticks, 864_000_000_000)
    hours, rem = divmod(rem, 36_000_000_000)
    minutes, rem = divmod(rem, 600_000_000)
    secs, rem = divmod(rem, 10_000_000)
    millis = rem // 10_000
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    if days:
        text = f"{days}.{text}"
    if rem:
        text += f".{rem:07d}"
    props = {
        "Ticks": ticks,
        "Days": days,
        "Hours": hours,
        "Milliseconds": millis,
        "Minutes": minutes,
        "Seconds": secs,
        "TotalDays": total_seconds / 86400,
        "TotalHours": total_seconds / 3600,
        "TotalMilliseconds": total_seconds * 1000,
        "TotalMinutes": total_seconds / 60,
        "TotalSeconds": total_seconds,
    }
    return PSObject("System.TimeSpan", props, string=text)


def to_display_string(value: Any) -> str:
    """``LanguagePrimitives.ConvertTo(value, [string])`` for the values used here."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, PSEnum):
        return value.name
    if isinstance(value, PSObject):
        return value.to_string()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _dt.datetime):
        local = value.astimezone(_dt.UTC)
        return f"{local.month}/{local.day}/{local.year} {local.strftime('%I:%M:%S %p').lstrip('0')}"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    if isinstance(value, list):
        return " ".join(to_display_string(v) for v in value)
    return str(value)


def format_output(output: list[Any]) -> str:
    """Out-Default, approximately: strings as lines, objects as a table or a list."""
    lines: list[str] = []
    objects: list[PSObject] = []

    def flush() -> None:
        if objects:
            lines.append(_format_objects(objects))
            objects.clear()

    for item in output:
        if isinstance(item, PSObject) and item.type_name != "System.TimeSpan":
            objects.append(item)
            continue
        flush()
        lines.append(to_display_string(item).replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n")
    flush()
    return "".join(lines)


def _format_objects(objects: list[PSObject]) -> str:
    columns = list(objects[0].view) or list(objects[0].props)
    rows = [[to_display_string(o.props.get(c)) for c in columns] for o in objects]
    if objects[0].view or len(columns) <= 4:
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        head = " ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
        rule = " ".join(
            ("-" * len(c)).ljust(w) for c, w in zip(columns, widths, strict=True)
        ).rstrip()
        body = [" ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\r\n" + "\r\n".join([head, rule, *body]) + "\r\n\r\n\r\n"
    width = max(len(c) for c in columns)
    blocks = [
        "\r\n".join(f"{c.ljust(width)} : {v}" for c, v in zip(columns, r, strict=True))
        for r in rows
    ]
    return "\r\n" + "\r\n\r\n".join(blocks) + "\r\n\r\n\r\n"
