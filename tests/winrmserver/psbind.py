"""Parameter binding: names, prefixes, aliases, positions, conversions, validation.

Errors are ParameterBindingException records with PowerShell's messages and
FullyQualifiedErrorIds (NamedParameterNotFound, AmbiguousParameter,
ParameterAlreadyBound, MissingArgument, PositionalParameterNotFound,
MissingMandatoryParameter, CannotConvertArgumentNoMessage,
ParameterArgumentValidationError, AmbiguousParameterSet); they end the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .clixml import ErrorRecord, Position
from .pslang import ArrayValue, CommandAst, ParamArg, Value
from .psobjects import PSEnum, to_display_string

if TYPE_CHECKING:
    from .psruntime import Invocation

__all__ = [
    "ACTION_PREFERENCES",
    "Binder",
    "CmdletSpec",
    "ParamSpec",
    "StatementError",
    "lookup",
    "to_int",
]

ACTION_PREFERENCES = ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")
_INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_NET_TYPES = {
    "string": "System.String",
    "string[]": "System.String[]",
    "int16": "System.Int16",
    "int32": "System.Int32",
    "int64": "System.Int64",
    "guid": "System.Guid",
    "switch": "System.Management.Automation.SwitchParameter",
}


@dataclass(frozen=True)
class ParamSpec:
    """One cmdlet parameter. ``kind`` is a key of the conversions below or ``enum``."""

    name: str
    kind: str
    position: int | None = None
    mandatory: bool = False
    aliases: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    enum_type: str = ""
    from_pipeline: bool = False
    minimum: int | None = None


@dataclass
class CmdletSpec:
    """A cmdlet: its parameters, its .NET class (for error ids) and its body."""

    name: str
    class_name: str
    module: str
    params: list[ParamSpec]
    body: Callable[[Invocation, list[Any], bool], list[Any]]
    exclusive: list[tuple[str, ...]] = field(default_factory=list)
    hyperv: bool = False
    should_process: bool = False

    def all_params(self) -> list[ParamSpec]:
        common = [
            ParamSpec(
                "ErrorAction",
                "enum",
                aliases=("ea",),
                values=ACTION_PREFERENCES,
                enum_type="ActionPreference",
            ),
            ParamSpec(
                "WarningAction",
                "enum",
                aliases=("wa",),
                values=ACTION_PREFERENCES,
                enum_type="ActionPreference",
            ),
            ParamSpec("Verbose", "switch", aliases=("vb",)),
        ]
        if self.should_process:
            common.append(ParamSpec("Confirm", "switch", aliases=("cf",)))
        return self.params + common


class StatementError(Exception):
    """A statement-terminating error (binding, command lookup, thrown by a cmdlet)."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.message)
        self.record = record


def lookup(cmdlets: dict[str, CmdletSpec], ast: CommandAst, script_text: str) -> CmdletSpec:
    """The cmdlet a command names (``Module\\Name`` allowed), or CommandNotFoundException."""
    name = ast.name
    module = ""
    if "\\" in name:
        module, name = name.rsplit("\\", 1)
    spec = cmdlets.get(name.lower())
    if spec is None or (module and module.lower() != spec.module.lower()):
        raise StatementError(
            ErrorRecord(
                message=f"The term '{ast.name}' is not recognized as the name of a cmdlet, function, script "
                "file, or operable program. Check the spelling of the name, or if a path was included, verify "
                "that the path is correct and try again.",
                fqid="CommandNotFoundException",
                category="ObjectNotFound",
                reason="CommandNotFoundException",
                target=ast.name,
                target_type="String",
                prefix=ast.name,
                position=Position(script_text, ast.start, ast.name_end),
            )
        )
    return spec


class Binder:
    """Binds one command's arguments to its parameters the way PowerShell does."""

    def __init__(self, spec: CmdletSpec, ast: CommandAst, script_text: str) -> None:
        self.spec = spec
        self.ast = ast
        self.script_text = script_text
        self.bound: dict[str, Any] = {}

    def record(self, message: str, error_id: str) -> ErrorRecord:
        return ErrorRecord(
            message=message,
            fqid=f"{error_id},{self.spec.class_name}",
            category="InvalidArgument",
            reason="ParameterBindingException",
            activity=self.spec.name,
            prefix=self.spec.name,
            position=Position(self.script_text, self.ast.start, self.ast.end),
        )

    def bind(self, first: bool) -> dict[str, Any]:
        """Bind the command's arguments; ``first``: no pipeline input is coming."""
        spec, ast = self.spec, self.ast
        params = spec.all_params()
        positional: list[Value | ArrayValue] = []
        elements = list(ast.elements)
        i = 0
        while i < len(elements):
            element = elements[i]
            i += 1
            if not isinstance(element, ParamArg):
                positional.append(element)
                continue
            param = self._resolve(params, element)
            if param.name in self.bound:
                raise self._binding_error(
                    f"Cannot bind parameter because parameter '{param.name}' is specified more than once. To "
                    "provide multiple values to parameters that can accept multiple values, use the array syntax. "
                    'For example, "-parameter value1,value2,value3".',
                    "ParameterAlreadyBound",
                    element,
                )
            if param.kind == "switch":
                value: Any = True if element.value is None else _literal_one(element.value)
                self.bound[param.name] = bool(value)
                continue
            argument = element.value
            if argument is None:
                nxt = elements[i] if i < len(elements) else None
                if nxt is None or isinstance(nxt, ParamArg):
                    raise self._binding_error(
                        f"Missing an argument for parameter '{param.name}'. Specify a parameter of type "
                        f"'{_NET_TYPES.get(param.kind, param.enum_type)}' and try again.",
                        "MissingArgument",
                        element,
                    )
                argument = nxt
                i += 1
            self.bound[param.name] = self._convert(param, argument)
        for param in sorted(
            (p for p in params if p.position is not None), key=lambda p: p.position or 0
        ):
            if not positional:
                break
            if param.name not in self.bound:
                self.bound[param.name] = self._convert(param, positional.pop(0))
        if positional:
            extra = positional[0]
            text = to_display_string(_literal_one(extra))
            raise self._binding_error(
                f"A positional parameter cannot be found that accepts argument '{text}'.",
                "PositionalParameterNotFound",
                extra,
            )
        for group in spec.exclusive:
            if sum(1 for name in group if name in self.bound) > 1:
                raise self._binding_error(
                    "Parameter set cannot be resolved using the specified named parameters.",
                    "AmbiguousParameterSet",
                    ast,
                )
        missing = [
            p.name
            for p in params
            if p.mandatory and p.name not in self.bound and not (p.from_pipeline and not first)
        ]
        if missing:
            raise self._binding_error(
                f"Cannot process command because of one or more missing mandatory parameters: {' '.join(missing)}.",
                "MissingMandatoryParameter",
                ast,
            )
        return self.bound

    def _resolve(self, params: list[ParamSpec], element: ParamArg) -> ParamSpec:
        wanted = element.name.lower()
        for param in params:
            if wanted == param.name.lower() or wanted in (a.lower() for a in param.aliases):
                return param
        matches = [p for p in params if p.name.lower().startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = " ".join("-" + p.name for p in matches)
            raise self._binding_error(
                f"Parameter cannot be processed because the parameter name '{element.name}' is ambiguous. "
                f"Possible matches include: {names}.",
                "AmbiguousParameter",
                element,
            )
        raise self._binding_error(
            f"A parameter cannot be found that matches parameter name '{element.name}'.",
            "NamedParameterNotFound",
            element,
        )

    def _binding_error(
        self, message: str, error_id: str, where: ParamArg | Value | ArrayValue | CommandAst
    ) -> StatementError:
        record = self.record(message, error_id)
        record.position = Position(self.script_text, where.start, where.end)
        if error_id in ("ParameterArgumentValidationError",):
            record.reason = "ParameterBindingValidationException"
        return StatementError(record)

    def _convert(self, param: ParamSpec, argument: Value | ArrayValue) -> Any:
        items = argument.items if isinstance(argument, ArrayValue) else [argument]
        values = [item.value for item in items]
        if param.kind == "hashtable":
            if len(items) == 1 and isinstance(items[0].value, dict):
                return dict(items[0].value)
            raise self._binding_error(
                f"Cannot bind parameter '{param.name}'. Cannot convert the value to type "
                '"System.Collections.IDictionary".',
                "CannotConvertArgument",
                argument,
            )
        if param.kind in ("string[]", "object[]"):
            return [v if param.kind == "object[]" else to_display_string(v) for v in values]
        if len(values) > 1:
            value: Any = values
            shown = " ".join(to_display_string(v) for v in values)
        else:
            value = values[0]
            shown = to_display_string(value)
        try:
            if param.kind == "string":
                if isinstance(value, list):
                    return shown
                return to_display_string(value)
            if param.kind in _INT_RANGES:
                number = to_int(value)
                low, high = _INT_RANGES[param.kind]
                if not low <= number <= high:
                    raise ValueError("Value was either too large or too small.")
                if param.minimum is not None and number < param.minimum:
                    raise _Validation(
                        f"The {number} argument is less than the minimum allowed range of {param.minimum}. Supply an "
                        f"argument that is greater than or equal to {param.minimum} and then try the command again."
                    )
                if param.values and str(number) not in param.values:
                    raise _Validation(
                        f'The argument "{number}" does not belong to the set "{",".join(param.values)}" specified by '
                        "the ValidateSet attribute. Supply an argument that is in the set and then try the "
                        "command again."
                    )
                return number
            if param.kind == "guid":
                if isinstance(value, (list, bool)) or value is None:
                    raise ValueError("Invalid cast.")
                try:
                    return uuid.UUID(str(value).strip("{}"))
                except ValueError:
                    raise ValueError(
                        "Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."
                    ) from None
            if param.kind == "enum":
                match = next((v for v in param.values if v.lower() == shown.lower()), None)
                if match is None:
                    raise ValueError(
                        f"Unable to match the identifier name {shown} to a valid enumerator name. Specify one of "
                        f"the following enumerator names and try again: {', '.join(param.values)}"
                    )
                return match
        except _Validation as exc:
            raise self._binding_error(
                f"Cannot validate argument on parameter '{param.name}'. {exc}",
                "ParameterArgumentValidationError",
                argument,
            ) from None
        except ValueError as exc:
            target = _NET_TYPES.get(param.kind, param.enum_type)
            raise self._binding_error(
                f'Cannot bind parameter \'{param.name}\'. Cannot convert value "{shown}" to type "{target}". '
                f'Error: "{exc}"',
                "CannotConvertArgumentNoMessage",
                argument,
            ) from None
        raise AssertionError(param.kind)


class _Validation(Exception):
    pass


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(round(value))
    if isinstance(value, PSEnum):
        return value.value
    text = to_display_string(value).strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError("Input string was not in a correct format.") from None


def _literal_one(argument: Value | ArrayValue) -> Any:
    if isinstance(argument, ArrayValue):
        return [item.value for item in argument.items]
    return argument.value
