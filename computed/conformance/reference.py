"""``docs/reference.md``, generated from the code: the contract as a driver author reads it.

Run ``python -m computed.conformance.reference`` to write it (``--check`` to
compare instead, as the unit tests do). It reads only the code's own tables
and docstrings, so a method, object, object version or exception added to
the contract appears without an edit here:

* every driver method of :class:`drivers.base.ComputeDriver`, with its
  signature, return type, the contract version and group of its operation,
  and its docstring;
* every versioned object of :data:`computed.version.OBJECT_VERSIONS`, with
  its fields at each object version and the RPC versions that carry it;
* every exception of :mod:`computed.exception`, with its attributes (the
  arguments of its message) and whether the worker treats it as expected.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oslo_versionedobjects import base as ovo_base

from computed import exception, version
from computed._returns import declared_return, describe
from drivers import base

__all__ = ["DEFAULT_PATH", "render", "main"]

#: Where the reference lives, relative to the repository's root.
DEFAULT_PATH = Path("docs/reference.md")
REGENERATE = "python -m computed.conformance.reference"

_HEADER = f"""# Reference

Generated from the code by `{REGENERATE}`; do not edit by hand (a unit
test regenerates it and fails when it differs). The semantics every driver
honours are in [`drivers/base.py`](../drivers/base.py)'s docstring,
repeated below; [`docs/contract.md`](contract.md) says how the contract
moves, [`docs/drivers.md`](drivers.md) how to write a driver.
"""


def render() -> str:
    """The whole reference, as Markdown."""
    parts = [_HEADER, *_driver_section(), *_object_section(), *_exception_section()]
    return "\n".join(parts).rstrip("\n") + "\n"


# Driver methods --------------------------------------------------------------------


def _group(operation: str) -> str:
    return next((g for g, ops in base.OPERATION_GROUPS.items() if operation in ops), "")


def _driver_section() -> Iterator[str]:
    yield "## Driver methods (`drivers.base.ComputeDriver`)\n"
    yield _doc(base)
    yield ""
    yield (
        "Operations the worker serves whatever a driver's `operations` says: "
        + ", ".join(f"`{op}`" for op in base.ALWAYS_SERVED)
        + ". A driver's `name` must be its entry-point name. The worker checks "
        "every result against the return type below and answers anything else "
        "with `DriverError`.\n"
    )
    yield "| method | returns | operation since | group |"
    yield "| --- | --- | --- | --- |"
    methods = list(_driver_methods())
    for name, func in methods:
        since = version.METHOD_VERSIONS.get(name, "")
        yield (
            f"| `{name}` | `{describe(declared_return(func))}` | {since or '(a hook)'} "
            f"| {_group(name) or '-'} |"
        )
    yield ""
    for name, func in methods:
        signature = str(inspect.signature(func)).replace("'", "")
        yield f"### `{name}{signature}`\n"
        yield (_doc(func) or "(no docstring)") + "\n"


def _driver_methods() -> Iterator[tuple[str, Any]]:
    """Public methods of ComputeDriver in source order: the contract's operations and hooks."""
    for name, member in base.ComputeDriver.__dict__.items():
        if name.startswith("_") or name in ("supports",):
            continue
        func = member.__func__ if isinstance(member, classmethod) else member
        if inspect.isfunction(func):
            yield name, func


# Objects ----------------------------------------------------------------------------


def _object_section() -> Iterator[str]:
    yield "## Versioned objects (`computed.objects`)\n"
    yield (
        "Each object at each of its versions that the contract carries, with the "
        "RPC versions that carry it (`computed.version.OBJECT_VERSIONS`). A field "
        "marked *nullable* may be None.\n"
    )
    registry = ovo_base.VersionedObjectRegistry.obj_classes()
    names = sorted({name for objects in version.OBJECT_VERSIONS.values() for name in objects})
    for name in names:
        cls = registry[name][0]
        yield f"### {name}\n"
        yield (_doc(cls) or "(no docstring)") + "\n"
        previous: list[str] = []
        for object_version, rpc_versions in _carried(name):
            fields = _fields_at(cls, object_version)
            added = [f for f in fields if previous and f not in previous]
            carried = ", ".join(rpc_versions)
            note = f"; adds {', '.join(f'`{f}`' for f in added)}" if added else ""
            yield f"**{name} {object_version}** (RPC {carried}{note})\n"
            yield "| field | type |"
            yield "| --- | --- |"
            for field in fields:
                yield f"| `{field}` | {_field_type(cls.fields[field])} |"
            yield ""
            previous = fields


def _carried(name: str) -> list[tuple[str, list[str]]]:
    """Each version of object ``name`` with the RPC versions that carry it, oldest first."""
    found: dict[str, list[str]] = {}
    for rpc_version in sorted(version.OBJECT_VERSIONS, key=version.parse):
        object_version = version.OBJECT_VERSIONS[rpc_version].get(name)
        if object_version is not None:
            found.setdefault(object_version, []).append(rpc_version)
    return sorted(found.items(), key=lambda item: version.parse(item[0]))


def _fields_at(cls: type[ovo_base.VersionedObject], object_version: str) -> list[str]:
    """The fields ``cls`` has at ``object_version``: what its backport keeps."""
    primitive: dict[str, Any] = dict.fromkeys(cls.fields)
    cls().obj_make_compatible(primitive, object_version)
    return sorted(primitive)


def _field_type(field: Any) -> str:
    kind = type(field).__name__.removesuffix("Field")
    target = getattr(field, "objname", None)
    if target is not None:
        kind = f"list of {target}" if kind.startswith("List") else target
    return kind + (", nullable" if field.nullable else "")


# Exceptions -------------------------------------------------------------------------


def _exception_section() -> Iterator[str]:
    yield "## Exceptions (`computed.exception`)\n"
    yield (
        "Every error a caller can see. Each carries its attributes (the names in "
        "its message) as keyword arguments, JSON-safe, so it crosses RPC intact; an "
        "*expected* one is the caller's business and logged without a traceback.\n"
    )
    yield "| exception | base | attributes | expected | message |"
    yield "| --- | --- | --- | --- | --- |"
    for name in exception.__all__:
        cls = getattr(exception, name)
        parent = cls.__mro__[1].__name__
        attributes = ", ".join(f"`{a}`" for a in dict.fromkeys(_ATTRIBUTE.findall(cls._msg_fmt)))
        message = cls._msg_fmt.replace("|", "\\|")
        yield (
            f"| `{name}` | `{parent}` | {attributes or '-'} | "
            f"{'yes' if cls.expected else 'no'} | {message} |"
        )
    yield ""


_ATTRIBUTE = re.compile(r"%\((\w+)\)s")


def _doc(obj: Any) -> str:
    return inspect.getdoc(obj) or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH, help="the file to write")
    parser.add_argument(
        "--check", action="store_true", help="compare with the file instead of writing it"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
