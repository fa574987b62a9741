"""The fake driver: in memory, deterministic, the executable specification of the contract."""

from __future__ import annotations

from drivers.fake.driver import FakeDriver

__all__ = ["FakeDriver"]
