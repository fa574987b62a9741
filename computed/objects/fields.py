"""Field types specific to the compute contract."""

from __future__ import annotations

import json
from typing import Any

from oslo_versionedobjects import fields

__all__ = ["PowerState", "PowerStateField", "JSONDict", "JSONDictField"]


class PowerState(fields.Enum):
    """The power states every driver reports, whatever its hypervisor calls them."""

    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    #: Booted from a rescue image with its own root disk attached (1.3).
    RESCUED = "rescued"

    ALL = (RUNNING, STOPPED, PAUSED, SUSPENDED, RESCUED)

    #: The states an InstanceInfo 1.1 or a payload 1.0 can carry.
    BEFORE_1_3 = (RUNNING, STOPPED, PAUSED, SUSPENDED)

    def __init__(self) -> None:
        super().__init__(valid_values=PowerState.ALL)


class PowerStateField(fields.BaseEnumField):
    AUTO_TYPE = PowerState()


class JSONDict(fields.FieldType[dict[str, Any]]):
    """A dictionary of JSON values, sent as it is (a storage service's connection data)."""

    @staticmethod
    def coerce(obj: Any, attr: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"{attr} must be a dict, got {type(value).__name__}")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{attr} must hold only JSON values: {exc}") from None
        return dict(value)


class JSONDictField(fields.AutoTypedField[dict[str, Any]]):
    AUTO_TYPE = JSONDict()
