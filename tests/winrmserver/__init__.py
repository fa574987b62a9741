"""A WS-Management test server that unmodified pywinrm talks to over real WinRM.

It emulates Windows Hyper-V hosts behind WinRM: NTLM with message sealing over
HTTP, Basic over HTTPS, WinRS shells, ``powershell -EncodedCommand`` and a strict
interpreter for the small PowerShell vocabulary a Hyper-V driver needs. What is
emulated from documentation rather than checked on Windows is listed in
EMULATION.md next to this file.
"""

from __future__ import annotations

from .hyperv import (
    ControllerType,
    GiB,
    HyperVHost,
    MiB,
    VhdFormat,
    VhdType,
    VirtualMachine,
    VMState,
)
from .server import WinRMTestServer, make_self_signed_cert

__all__ = [
    "ControllerType",
    "GiB",
    "HyperVHost",
    "MiB",
    "VMState",
    "VhdFormat",
    "VhdType",
    "VirtualMachine",
    "WinRMTestServer",
    "make_self_signed_cert",
]
