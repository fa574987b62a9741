"""The client library a scheduler imports to drive compute hosts.

:class:`ComputeAPI` hides which worker process serves a host and which
broker it lives on; errors arrive as :mod:`computed.exception` types.
"""

from __future__ import annotations

from rpcapi.client import ComputeAPI

__all__ = ["ComputeAPI"]
