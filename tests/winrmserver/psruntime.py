"""Runs a parsed script: command lookup, parameter binding, pipelines, error handling.

What a caller sees matches ``powershell.exe -EncodedCommand`` on Windows PowerShell
5.1 with redirected streams:

* the whole script is parsed first; a parse error runs nothing and exits 1;
* every command of a pipeline is looked up and bound before any of it runs
  (CommandNotFoundException, ParameterBindingException end the statement);
* a cmdlet's own errors are non-terminating unless ``-ErrorAction Stop`` or
  ``$ErrorActionPreference = 'Stop'`` makes them end the script;
* the exit code is that of ``exit N``, else 1 if the script was stopped or the last
  statement failed (``$?`` false), else 0;
* output objects go through Out-Default to stdout (code page 437), errors,
  warnings and progress to stderr as CLIXML.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .clixml import ErrorRecord, Position, StderrWriter
from .hyperv import HyperVError, HyperVHost
from .pslang import (
    ArrayValue,
    AssignAst,
    CommandAst,
    ExitAst,
    ExprAst,
    ParamArg,
    ParseError,
    PipelineAst,
    Value,
    parse,
)
from .psobjects import PSEnum, PSObject, to_display_string

__all__ = ["CmdletSpec", "Invocation", "ParamSpec", "Runtime", "ScriptResult", "StatementError"]

ACTION_PREFERENCES = ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")
_INT_RANGES = {"int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
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
            ParamSpec("ErrorAction", "enum", aliases=("ea",), values=ACTION_PREFERENCES, enum_type="ActionPreference"),
            ParamSpec("WarningAction", "enum", aliases=("wa",), values=ACTION_PREFERENCES, enum_type="ActionPreference"),
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


class _ScriptStop(Exception):
    def __init__(self, record: ErrorRecord | None) -> None:
        super().__init__("stopped")
        self.record = record


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class ScriptResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


class Invocation:
    """One bound command in a running pipeline; what a cmdlet body talks to."""

    def __init__(self, runtime: Runtime, spec: CmdletSpec, ast: CommandAst, bound: dict[str, Any]) -> None:
        self.runtime = runtime
        self.spec = spec
        self.ast = ast
        self.bound = bound
        self.host: HyperVHost = runtime.host
        self.failed = False

    def record(
        self, message: str, error_id: str, category: str, reason: str, target: str = "", target_type: str = ""
    ) -> ErrorRecord:
        return ErrorRecord(
            message=message,
            fqid=f"{error_id},{self.spec.class_name}",
            category=category,
            reason=reason,
            activity=self.spec.name,
            target=target,
            target_type=target_type,
            prefix=self.spec.name,
            position=Position(self.runtime.script_text, self.ast.start, self.ast.end),
        )

    def hyperv_error(self, exc: HyperVError) -> None:
        self.write_error(
            self.record(exc.message, exc.error_id, exc.category, exc.reason, exc.target, exc.target_type)
        )

    def write_error(self, record: ErrorRecord) -> None:
        """A non-terminating error, subject to -ErrorAction / $ErrorActionPreference."""
        self.failed = True
        action = self.bound.get("ErrorAction") or self.runtime.preferences["ErrorActionPreference"]
        if action in ("Stop", "Inquire", "Suspend"):
            raise _ScriptStop(record)
        if action == "Continue":
            self.runtime.stderr.error(record)

    def warnings(self, messages: list[str]) -> None:
        action = self.bound.get("WarningAction") or self.runtime.preferences["WarningPreference"]
        for text in messages:
            if action in ("SilentlyContinue", "Ignore"):
                continue
            self.runtime.stderr.warning(text)
            if action in ("Stop", "Inquire", "Suspend"):
                raise _ScriptStop(
                    self.record(
                        'The running command stopped because the preference variable "WarningPreference" '
                        f"or common parameter is set to Stop: {text}",
                        "ActionPreferenceStop",
                        "OperationStopped",
                        "ActionPreferenceStopException",
                    )
                )

    def terminate(self, record: ErrorRecord) -> StatementError:
        self.failed = True
        return StatementError(record)


class Runtime:
    """Interprets one script against one host. Not reusable across scripts."""

    def __init__(
        self,
        host: HyperVHost,
        cmdlets: dict[str, CmdletSpec],
        *,
        console_width: int | None = 80,
        module_progress: bool = True,
    ) -> None:
        self.host = host
        self.cmdlets = cmdlets
        self.stderr = StderrWriter(console_width)
        self.module_progress = module_progress
        self.script_text = ""
        self.preferences = {
            "ErrorActionPreference": "Continue",
            "WarningPreference": "Continue",
            "ProgressPreference": "Continue",
        }
        self._stdout: list[str] = []
        self._modules_loaded = False

    def run(self, text: str) -> ScriptResult:
        self.script_text = text
        try:
            script = parse(text)
        except ParseError as exc:
            self.stderr.error(_parse_record(exc, text))
            return self._result(1)
        ok = True
        try:
            for statement in script.statements:
                ok = self._statement(statement)
        except _ScriptStop as stop:
            if stop.record is not None:
                self.stderr.error(stop.record)
            return self._result(1)
        except _Exit as exit_:
            return self._result(exit_.code)
        return self._result(0 if ok else 1)

    def _result(self, code: int) -> ScriptResult:
        out = "".join(self._stdout).encode("cp437", errors="replace")
        return ScriptResult(out, self.stderr.getvalue(), code)

    # -- statements --------------------------------------------------------------

    def _statement(self, statement: PipelineAst | AssignAst | ExitAst) -> bool:
        if isinstance(statement, ExitAst):
            code = 0 if statement.code is None else _to_int(statement.code.value)
            raise _Exit(code & 0xFFFFFFFF if code >= 0 else code)
        try:
            if isinstance(statement, AssignAst):
                output, ok = self._pipeline(statement.pipeline)
                self._assign(statement, output)
                return ok
            output, ok = self._pipeline(statement)
            self._out_default(output)
            return ok
        except StatementError as exc:
            if self.preferences["ErrorActionPreference"] == "Stop":
                raise _ScriptStop(exc.record) from None
            self.stderr.error(exc.record)
            return False

    def _assign(self, statement: AssignAst, output: list[Any]) -> None:
        name = statement.variable
        if name.lower() == "null":
            return
        canonical = next(k for k in self.preferences if k.lower() == name.lower())
        value = to_display_string(output[0]) if len(output) == 1 else ""
        match = next((v for v in ACTION_PREFERENCES if v.lower() == value.lower()), None)
        if match is None:
            allowed = '"' + ",".join(ACTION_PREFERENCES) + '"'
            raise StatementError(
                ErrorRecord(
                    message=f'Cannot convert value "{value}" to type "System.Management.Automation.ActionPreference". '
                    f"Error: \"Unable to match the identifier name {value} to a valid enumerator name. Specify "
                    f'one of the following enumerator names and try again: {allowed[1:-1]}"',
                    fqid="RuntimeException",
                    category="NotSpecified",
                    reason="ArgumentTransformationMetadataException",
                    position=Position(self.script_text, statement.start, statement.end),
                )
            )
        self.preferences[canonical] = match

    def _pipeline(self, pipeline: PipelineAst) -> tuple[list[Any], bool]:
        stages: list[Invocation | ExprAst] = []
        for index, element in enumerate(pipeline.elements):
            if isinstance(element, ExprAst):
                stages.append(element)
            else:
                stages.append(self._bind(element, first=index == 0))
        data: list[Any] = []
        has_input = False
        ok = True
        for stage in stages:
            if isinstance(stage, ExprAst):
                data = _literal(stage.value)
                has_input = True
                continue
            if stage.spec.hyperv and self.module_progress and not self._modules_loaded:
                self._modules_loaded = True
                self.stderr.progress("Preparing modules for first use.")
            try:
                data = stage.spec.body(stage, data, has_input)
            except HyperVError as exc:
                stage.hyperv_error(exc)
                data = []
            has_input = True
            ok = ok and not stage.failed
        return data, ok

    # -- binding -------------------------------------------------------------------

    def _lookup(self, ast: CommandAst) -> CmdletSpec:
        name = ast.name
        module = ""
        if "\\" in name:
            module, name = name.rsplit("\\", 1)
        spec = self.cmdlets.get(name.lower())
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
                    position=Position(self.script_text, ast.start, ast.name_end),
                )
            )
        return spec

    def _bind(self, ast: CommandAst, first: bool) -> Invocation:
        spec = self._lookup(ast)
        inv = Invocation(self, spec, ast, {})
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
            param = self._resolve(inv, params, element)
            if param.name in inv.bound:
                raise self._binding_error(
                    inv,
                    f"Cannot bind parameter because parameter '{param.name}' is specified more than once. To "
                    "provide multiple values to parameters that can accept multiple values, use the array syntax. "
                    'For example, "-parameter value1,value2,value3".',
                    "ParameterAlreadyBound",
                    element,
                )
            if param.kind == "switch":
                value: Any = True if element.value is None else _literal_one(element.value)
                inv.bound[param.name] = bool(value)
                continue
            argument = element.value
            if argument is None:
                nxt = elements[i] if i < len(elements) else None
                if nxt is None or isinstance(nxt, ParamArg):
                    raise self._binding_error(
                        inv,
                        f"Missing an argument for parameter '{param.name}'. Specify a parameter of type "
                        f"'{_NET_TYPES.get(param.kind, param.enum_type)}' and try again.",
                        "MissingArgument",
                        element,
                    )
                argument = nxt
                i += 1
            inv.bound[param.name] = self._convert(inv, param, argument)
        for param in sorted((p for p in params if p.position is not None), key=lambda p: p.position or 0):
            if not positional:
                break
            if param.name not in inv.bound:
                inv.bound[param.name] = self._convert(inv, param, positional.pop(0))
        if positional:
            extra = positional[0]
            text = to_display_string(_literal_one(extra))
            raise self._binding_error(
                inv,
                f"A positional parameter cannot be found that accepts argument '{text}'.",
                "PositionalParameterNotFound",
                extra,
            )
        for group in spec.exclusive:
            if sum(1 for name in group if name in inv.bound) > 1:
                raise self._binding_error(
                    inv, "Parameter set cannot be resolved using the specified named parameters.", "AmbiguousParameterSet", ast
                )
        missing = [
            p.name for p in params if p.mandatory and p.name not in inv.bound and not (p.from_pipeline and not first)
        ]
        if missing:
            raise self._binding_error(
                inv,
                f"Cannot process command because of one or more missing mandatory parameters: {' '.join(missing)}.",
                "MissingMandatoryParameter",
                ast,
            )
        return inv

    def _resolve(self, inv: Invocation, params: list[ParamSpec], element: ParamArg) -> ParamSpec:
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
                inv,
                f"Parameter cannot be processed because the parameter name '{element.name}' is ambiguous. "
                f"Possible matches include: {names}.",
                "AmbiguousParameter",
                element,
            )
        raise self._binding_error(
            inv,
            f"A parameter cannot be found that matches parameter name '{element.name}'.",
            "NamedParameterNotFound",
            element,
        )

    def _binding_error(
        self, inv: Invocation, message: str, error_id: str, where: ParamArg | Value | ArrayValue | CommandAst
    ) -> StatementError:
        record = inv.record(message, error_id, "InvalidArgument", "ParameterBindingException")
        record.position = Position(self.script_text, where.start, where.end)
        if error_id in ("ParameterArgumentValidationError",):
            record.reason = "ParameterBindingValidationException"
        return StatementError(record)

    def _convert(self, inv: Invocation, param: ParamSpec, argument: Value | ArrayValue) -> Any:
        items = argument.items if isinstance(argument, ArrayValue) else [argument]
        values = [item.value for item in items]
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
                number = _to_int(value)
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
                        "the ValidateSet attribute. Supply an argument that is in the set and then try the command again."
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
                inv,
                f"Cannot validate argument on parameter '{param.name}'. {exc}",
                "ParameterArgumentValidationError",
                argument,
            ) from None
        except ValueError as exc:
            target = _NET_TYPES.get(param.kind, param.enum_type)
            raise self._binding_error(
                inv,
                f"Cannot bind parameter '{param.name}'. Cannot convert value \"{shown}\" to type \"{target}\". "
                f'Error: "{exc}"',
                "CannotConvertArgumentNoMessage",
                argument,
            ) from None
        raise AssertionError(param.kind)

    # -- output --------------------------------------------------------------------

    def _out_default(self, output: list[Any]) -> None:
        self._stdout.append(format_output(output))


class _Validation(Exception):
    pass


def _to_int(value: Any) -> int:
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


def _literal(argument: Value | ArrayValue) -> list[Any]:
    if isinstance(argument, ArrayValue):
        return [item.value for item in argument.items]
    return [] if argument.value is None else [argument.value]


def _parse_record(exc: ParseError, text: str) -> ErrorRecord:
    return ErrorRecord(
        message=exc.message,
        fqid=exc.fqid,
        category="NotImplemented" if exc.unsupported else "ParserError",
        reason="ParentContainsErrorRecordException",
        position=Position(text, exc.start, max(exc.end, exc.start + 1)),
        parse_error=True,
    )


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
        head = " ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
        rule = " ".join(("-" * len(c)).ljust(w) for c, w in zip(columns, widths)).rstrip()
        body = [" ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        return "\r\n" + "\r\n".join([head, rule, *body]) + "\r\n\r\n\r\n"
    width = max(len(c) for c in columns)
    blocks = ["\r\n".join(f"{c.ljust(width)} : {v}" for c, v in zip(columns, r)) for r in rows]
    return "\r\n" + "\r\n\r\n".join(blocks) + "\r\n\r\n\r\n"
