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
    assert rpcapi.__all__ == ["ComputeAPI", "InstanceEvent", "InstanceEventListener"]


#: Names callers import from ``computed.registry.api``, kept there by the split by concern.
_REGISTRY_API = {
    "Registry",
    "WorkerRecord",
    "ConformanceRecord",
    "CallCount",
    "HostOwnerRecord",
    "MoveRecord",
    "JournalRecord",
    "NewJournalEntry",
    "utcnow",
    "safe_db_url",
    "STATE_UP",
    "STATE_DRAINING",
    "STATE_STOPPED",
    "TIER_UNTESTED",
    "JOURNAL_RECEIVED",
    "JOURNAL_RUNNING",
    "JOURNAL_DONE",
    "JOURNAL_FINISHED",
}


@pytest.mark.parametrize("concern", ["workers", "ownership", "journal", "conformance", "counters"])
def test_registry_entry_point_has_every_concern(concern: str) -> None:
    """``Registry`` is made of each concern's table class, and re-exports its other names."""
    from computed.registry import Registry, api
    from computed.registry._db import Database

    module = importlib.import_module(f"computed.registry.{concern}")
    exported = {name: getattr(module, name) for name in module.__all__}
    (table_class,) = [
        value
        for value in exported.values()
        if isinstance(value, type) and issubclass(value, Database)
    ]
    assert issubclass(Registry, table_class)
    assert {n for n, v in exported.items() if v is not table_class} <= set(api.__all__)


def test_registry_api_keeps_its_names() -> None:
    from computed.registry import api

    assert set(api.__all__) >= _REGISTRY_API
