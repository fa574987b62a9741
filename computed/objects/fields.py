"""Field types specific to the compute contract."""

from __future__ import annotations

from oslo_versionedobjects import fields

__all__ = ["PowerState", "PowerStateField"]


class PowerState(fields.Enum):
    """The power states every driver reports, whatever its hypervisor calls them."""

    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"

    ALL = (RUNNING, STOPPED, PAUSED, SUSPENDED)

    def __init__(self) -> None:
        super().__init__(valid_values=PowerState.ALL)


class PowerStateField(fields.BaseEnumField):
    AUTO_TYPE = PowerState()
