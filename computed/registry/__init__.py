"""The service registry: which worker serves which host, and whether it is alive."""

from __future__ import annotations

from computed.registry.api import Registry, WorkerRecord

__all__ = ["Registry", "WorkerRecord"]
