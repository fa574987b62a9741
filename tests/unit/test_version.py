"""The client and the endpoint speak the same, documented version."""

from __future__ import annotations

import re

from computed import version
from computed.manager import ComputeManager
from rpcapi import ComputeAPI


def test_versions_in_sync() -> None:
    assert ComputeManager.target.version == version.RPC_API_VERSION
    assert version.VERSION_HISTORY[-1][0] == version.RPC_API_VERSION


def test_client_docstring_lists_every_version() -> None:
    documented = re.findall(r"^\s*\* (\d+\.\d+) - ", ComputeAPI.__doc__ or "", re.MULTILINE)
    assert documented == [v for v, _ in version.VERSION_HISTORY]


def test_aliases_name_known_versions() -> None:
    known = {v for v, _ in version.VERSION_HISTORY}
    assert set(version.VERSION_ALIASES.values()) <= known
    assert ComputeAPI.VERSION_ALIASES is version.VERSION_ALIASES


def test_parse() -> None:
    assert version.parse("1.12") == (1, 12)
    for bad in ("1", "1.x", "", "a.b"):
        try:
            version.parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")
