"""What a WinRS ``Command`` runs: cmd.exe's view of the command line, then powershell.exe.

pywinrm's ``run_ps`` sends ``powershell -encodedcommand <base64 of UTF-16LE>``; that
(and ``-Command``) is decoded and handed to the strict interpreter in
:mod:`.psruntime`. Any other program is unknown to the emulated host and fails the
way cmd.exe reports a missing program.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from .cmdlets import CMDLETS
from .devcmdlets import DEVICE_CMDLETS
from .hyperv import HyperVHost
from .imgcmdlets import IMAGE_CMDLETS
from .migcmdlets import MIGRATION_CMDLETS
from .psruntime import Runtime, ScriptResult

__all__ = ["ShellOptions", "decode_encoded_command", "run_command_line"]

_FLAGS_WITH_VALUE = {
    "executionpolicy": 2,
    "inputformat": 2,
    "outputformat": 2,
    "windowstyle": 2,
    "version": 2,
    "configurationname": 4,
}
_SWITCHES = {"noprofile": 3, "noninteractive": 4, "nologo": 3, "sta": 3, "mta": 3, "noexit": 3}


@dataclass(frozen=True)
class ShellOptions:
    """Host-wide behaviour of the emulated powershell.exe (see WinRMTestServer)."""

    console_width: int | None = 80
    module_progress: bool = True
    #: How errors reach stderr: ``en-US``, ``de-DE`` or ``none`` (see StderrWriter).
    error_messages: str = "en-US"


def decode_encoded_command(value: str) -> str:
    """The script behind ``-EncodedCommand``: base64 of UTF-16LE."""
    return base64.b64decode(value, validate=True).decode("utf-16-le")


def _matches(flag: str, full: str, minimum: int) -> bool:
    return len(flag) >= minimum and full.startswith(flag)


def run_command_line(
    host: HyperVHost, command: str, arguments: list[str], options: ShellOptions
) -> ScriptResult:
    tokens = command.split() + [a for arg in arguments for a in arg.split()]
    if not tokens:
        return ScriptResult(b"", b"", 0)
    program = tokens[0].lower().rsplit("\\", 1)[-1]
    if program == "echo":
        return ScriptResult(
            (" ".join(tokens[1:]) + "\r\n").encode("cp437", errors="replace"), b"", 0
        )
    if program not in ("powershell", "powershell.exe"):
        message = (
            f"'{tokens[0]}' is not recognized as an internal or external command,\r\n"
            "operable program or batch file.\r\n"
        )
        return ScriptResult(b"", message.encode("cp437", errors="replace"), 1)
    script = _script_from_arguments(tokens[1:])
    if isinstance(script, ScriptResult):
        return script
    runtime = Runtime(
        host,
        {**CMDLETS, **DEVICE_CMDLETS, **IMAGE_CMDLETS, **MIGRATION_CMDLETS},
        console_width=options.console_width,
        module_progress=options.module_progress,
        error_messages=options.error_messages,
    )
    return runtime.run(script)


def _script_from_arguments(args: list[str]) -> str | ScriptResult:
    i = 0
    while i < len(args):
        token = args[i]
        flag = token.lstrip("-/").lower()
        if not token.startswith(("-", "/")):
            return " ".join(args[i:])
        if _matches(flag, "encodedcommand", 1) or flag == "ec":
            if i + 1 >= len(args):
                return _usage("Missing the encoded command parameter argument for -EncodedCommand.")
            try:
                return decode_encoded_command(args[i + 1])
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return _usage(
                    "Cannot process the command because the value specified with -EncodedCommand is not properly "
                    "encoded. The value must be Base64 encoded."
                )
        if _matches(flag, "command", 1):
            return " ".join(args[i + 1 :])
        if _matches(flag, "file", 1):
            return _usage("The test server's powershell.exe does not run script files (-File).")
        if any(_matches(flag, name, n) for name, n in _SWITCHES.items()):
            i += 1
            continue
        if any(_matches(flag, name, n) for name, n in _FLAGS_WITH_VALUE.items()) or flag in (
            "ep",
            "ex",
        ):
            i += 2
            continue
        return _usage(f"Unknown or unsupported powershell.exe parameter '{token}'.")
    return _usage(
        "powershell.exe was started without -Command or -EncodedCommand and would wait for input."
    )


def _usage(message: str) -> ScriptResult:
    return ScriptResult(b"", (message + "\r\n").encode("cp437", errors="replace"), 1)
