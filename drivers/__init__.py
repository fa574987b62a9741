"""Hypervisor drivers: the contract in :mod:`drivers.base` and the in-tree drivers.

Drivers are loaded through the ``computed.drivers`` entry-point namespace, so
an out-of-tree driver registers itself the same way the in-tree ones do.
"""

from __future__ import annotations

__all__: list[str] = []
