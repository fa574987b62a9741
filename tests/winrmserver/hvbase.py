"""What the emulated Hyper-V host and its device rules share: sizes, VM states, errors, wildcards."""

from __future__ import annotations

import enum
import re

__all__ = [
    "GiB",
    "HyperVError",
    "INVALID_STATE",
    "MiB",
    "VMState",
    "has_wildcards",
    "invalid_state",
    "wildcard_match",
]

MiB = 1024 * 1024
GiB = 1024 * MiB

INVALID_STATE = (
    "The operation cannot be performed while the virtual machine is in its current state."
)


class VMState(enum.IntEnum):
    """``Microsoft.HyperV.PowerShell.VMState`` as ConvertTo-Json prints it (numbers)."""

    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10
    Reset = 11
    Saving = 32773
    Pausing = 32776
    Resuming = 32777
    FastSaved = 32779


class HyperVError(Exception):
    """A failure the way a Hyper-V cmdlet reports it.

    :param error_id: the first half of FullyQualifiedErrorId (``InvalidParameter``);
        the cmdlet's class name is appended by the caller.
    :param category: the ErrorCategory name shown in CategoryInfo.
    :param target: the target object shown in CategoryInfo, with its type name.
    """

    def __init__(
        self,
        message: str,
        error_id: str,
        category: str,
        target: str = "",
        target_type: str = "",
        reason: str = "VirtualizationException",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.category = category
        self.target = target
        self.target_type = target_type
        self.reason = reason


def wildcard_match(pattern: str, text: str) -> bool:
    """PowerShell ``WildcardPattern`` semantics: ``* ? [a-z]``, backtick escapes, no case."""
    return bool(_wildcard_regex(pattern).fullmatch(text))


def has_wildcards(pattern: str) -> bool:
    return any(c in "*?[" for c in pattern.replace("`*", "").replace("`?", "").replace("`[", ""))


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "`" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def invalid_state() -> HyperVError:
    """Hyper-V's refusal of an operation in the VM's current state."""
    return HyperVError(INVALID_STATE, "InvalidState", "InvalidOperation")
