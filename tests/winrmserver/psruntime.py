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

from dataclasses import dataclass
from typing import Any

from .clixml import ErrorRecord, Position, StderrWriter
from .hyperv import HyperVError, HyperVHost
from .psbind import ACTION_PREFERENCES, Binder, CmdletSpec, StatementError, lookup, to_int
from .pslang import (
    ArrayValue,
    AssignAst,
    CommandAst,
    ExitAst,
    ExprAst,
    ParseError,
    PipelineAst,
    Value,
    parse,
)
from .psobjects import format_output, to_display_string

__all__ = ["Invocation", "Runtime", "ScriptResult"]


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

    def __init__(
        self, runtime: Runtime, spec: CmdletSpec, ast: CommandAst, bound: dict[str, Any]
    ) -> None:
        self.runtime = runtime
        self.spec = spec
        self.ast = ast
        self.bound = bound
        self.host: HyperVHost = runtime.host
        self.failed = False

    def record(
        self,
        message: str,
        error_id: str,
        category: str,
        reason: str,
        target: str = "",
        target_type: str = "",
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
            self.record(
                exc.message, exc.error_id, exc.category, exc.reason, exc.target, exc.target_type
            )
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
        error_messages: str = "en-US",
    ) -> None:
        self.host = host
        self.cmdlets = cmdlets
        self.stderr = StderrWriter(console_width, error_messages)
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
            code = 0 if statement.code is None else to_int(statement.code.value)
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
                    f'Error: "Unable to match the identifier name {value} to a valid enumerator name. Specify '
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
                spec = lookup(self.cmdlets, element, self.script_text)
                bound = Binder(spec, element, self.script_text).bind(first=index == 0)
                stages.append(Invocation(self, spec, element, bound))
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

    # -- output --------------------------------------------------------------------

    def _out_default(self, output: list[Any]) -> None:
        self._stdout.append(format_output(output))


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
