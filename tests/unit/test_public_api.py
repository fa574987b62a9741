"""Every public module declares __all__, and each exported name exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import computed
import drivers
import rpcapi


def _public_modules() -> list[str]:
    names = []
    for package in (computed, drivers, rpcapi):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            parts = info.name.split(".")
            if any(part.startswith("_") for part in parts) or ".migrations" in info.name:
                continue
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_module_exports(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a driver whose optional library is absent here
        pytest.skip(f"{name} needs an optional dependency: {exc}")
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing objects: {missing}"


def test_client_surface() -> None:
    assert rpcapi.__all__ == ["ComputeAPI"]
