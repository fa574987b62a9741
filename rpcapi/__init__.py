"""The client library a scheduler imports to drive compute hosts.

:class:`ComputeAPI` hides which worker process serves a host and which
broker it lives on; errors arrive as :mod:`computed.exception` types.
:class:`InstanceEventListener` hands the scheduler what happens to
instances: the outcome of each operation, and changes on the hypervisor.
"""

from __future__ import annotations

from rpcapi.client import ComputeAPI
from rpcapi.events import InstanceEvent, InstanceEventListener

__all__ = ["ComputeAPI", "InstanceEvent", "InstanceEventListener"]
