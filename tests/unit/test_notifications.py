"""Outcome notification payloads: built directly, identical to the versioned object's."""

from __future__ import annotations

from typing import Any

import pytest

from computed import exception, notifications
from computed.objects import ImageRef, InstanceActionPayload, InstanceInfo

UUID = "0b0c2c9e-8f1e-4a53-9d0b-6a1f3c3e7d21"


def _through_the_object(request_id: str | None, recorded: dict[str, Any]) -> dict[str, Any]:
    payload = InstanceActionPayload(
        uuid=UUID,
        host="host-1",
        operation="reboot",
        phase=recorded["phase"],
        request_id=request_id,
        power_state=recorded.get("power_state"),
    )
    for field in ("error_class", "error_message", "error_kwargs", "progress"):
        if field in recorded:
            setattr(payload, field, recorded[field])
    if recorded.get("image") is not None:
        payload.assign(image=ImageRef.obj_from_primitive(recorded["image"]))
    return payload.obj_to_primitive()


@pytest.mark.parametrize(
    "recorded",
    [
        notifications.outcome("start"),
        notifications.outcome("end", info=InstanceInfo(uuid=UUID, power_state="running")),
        notifications.outcome("error", error=exception.InstanceNotFound(uuid=UUID, host="host-1")),
        notifications.outcome("error", error=RuntimeError("boom")),
        {"phase": "progress", "progress": 40},
        notifications.outcome("end", image=ImageRef(id="img-1", name="snap")),
    ],
    ids=["start", "end", "error", "foreign-error", "progress", "snapshot"],
)
@pytest.mark.parametrize("request_id", ["req-1", None])
def test_payload_is_the_versioned_objects_primitive(
    recorded: dict[str, Any], request_id: str | None
) -> None:
    built = notifications.action_payload(UUID, "host-1", "reboot", request_id, recorded)
    assert built == _through_the_object(request_id, recorded)
    restored = InstanceActionPayload.obj_from_primitive(built)
    assert restored.phase == recorded["phase"]
    assert restored.request_id == request_id
