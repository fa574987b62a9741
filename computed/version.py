"""The RPC contract's version, shared by the client and the worker's endpoint.

Both sides import :data:`RPC_API_VERSION` from here; a unit test checks that
the client's history and the endpoint's target agree with it.
"""

from __future__ import annotations

__all__ = [
    "RPC_API_VERSION",
    "RPC_API_MIN_VERSION",
    "VERSION_HISTORY",
    "VERSION_ALIASES",
    "parse",
]

#: The newest version of the compute RPC contract this code speaks.
RPC_API_VERSION = "1.0"

#: The oldest version this code still serves (the start of the current major).
RPC_API_MIN_VERSION = "1.0"

#: One line per bump, oldest first.
VERSION_HISTORY: tuple[tuple[str, str], ...] = (
    ("1.0", "Initial contract: instance lifecycle, host resources, capabilities, ping"),
)

#: Release names operators may use as a pin, mapped to the version they speak.
VERSION_ALIASES: dict[str, str] = {
    "alpha": "1.0",
}


def parse(version: str) -> tuple[int, int]:
    """Return ``(major, minor)`` for a ``"major.minor"`` string.

    :raises ValueError: if the string is not of that form.
    """
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"not a major.minor version: {version!r}")
    return int(major), int(minor)
