"""computed: hypervisor drivers served as worker processes over a versioned RPC contract.

The modules shared by the worker and the client library live here and import
nothing from the worker itself: :mod:`computed.exception`,
:mod:`computed.objects`, :mod:`computed.version` and :mod:`computed.rpc`.
"""

from __future__ import annotations

__all__: list[str] = []
