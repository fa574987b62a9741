"""The XenAPI driver: ``drivers.xenapi.driver.XenAPIDriver``, entry point ``xenapi``.

Serves compute hosts that are hosts of XenServer / XCP-ng pools, through the
``XenAPI`` client (``pip install XenAPI``). The package itself imports
nothing, so that :mod:`~drivers.xenapi.conf` loads without the client.
"""

from __future__ import annotations

__all__: list[str] = []
