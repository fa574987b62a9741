"""The fake driver: deterministic, the executable specification of the contract.

Its instances live in the worker's memory, or with ``[fake] state_dir`` in
files that outlive the worker.
"""

from __future__ import annotations

from drivers.fake.driver import FakeDriver

__all__ = ["FakeDriver"]
