"""Payloads of the versioned notifications that report a cast's outcome."""

from __future__ import annotations

from typing import Any

from oslo_utils import versionutils
from oslo_versionedobjects import fields

from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.fields import PowerState, PowerStateField

__all__ = ["InstanceActionPayload", "InstanceStatePayload"]


@ComputedObjectRegistry.register
class InstanceActionPayload(ComputedObject):
    """Payload of ``instance.<operation>.start|end|error``.

    ``request_id`` is the request id of the context the operation was sent
    with, so a caller can match a cast to its outcome. On ``error``,
    ``error_class`` and ``error_message`` say what failed; ``error_kwargs``
    carries the exception's context. ``progress`` is the percentage done of
    a long operation's ``progress`` notifications (``instance.snapshot.progress``);
    ``image`` is the image a snapshot made, on its ``end``.

    Version 1.0: initial version.
    Version 1.1: added ``progress`` and ``image``; ``power_state`` may be ``rescued``.
    """

    VERSION = "1.1"

    fields = {
        "uuid": fields.UUIDField(),
        "host": fields.StringField(),
        "operation": fields.StringField(),
        "phase": fields.StringField(),
        "request_id": fields.StringField(nullable=True, default=None),
        "power_state": PowerStateField(nullable=True, default=None),
        "error_class": fields.StringField(nullable=True, default=None),
        "error_message": fields.StringField(nullable=True, default=None),
        "error_kwargs": fields.DictOfNullableStringsField(default={}),
        "progress": fields.IntegerField(nullable=True, default=None),
        "image": fields.ObjectField("ImageRef", nullable=True, default=None),
    }
    obj_relationships = {"image": [("1.1", "1.0")]}

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        super().obj_make_compatible(primitive, target_version)
        if versionutils.convert_version_to_tuple(target_version) < (1, 1):
            primitive.pop("progress", None)
            primitive.pop("image", None)
            _no_rescued(primitive, "power_state")


@ComputedObjectRegistry.register
class InstanceStatePayload(ComputedObject):
    """Payload of ``instance.power_state.update`` and ``instance.delete``: a change on
    the hypervisor that no operation of the contract made (a guest that shut
    itself down or crashed, an instance paused or deleted out of band).

    ``new_state`` is None for ``instance.delete``. ``source`` says how the
    worker learnt it: ``hypervisor`` (an event its driver received) or
    ``poll`` (the worker's periodic look at every instance).

    Version 1.0: initial version.
    Version 1.1: either state may be ``rescued``.
    """

    VERSION = "1.1"

    fields = {
        "uuid": fields.UUIDField(),
        "host": fields.StringField(),
        "old_state": PowerStateField(nullable=True, default=None),
        "new_state": PowerStateField(nullable=True, default=None),
        "source": fields.StringField(),
    }

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        super().obj_make_compatible(primitive, target_version)
        if versionutils.convert_version_to_tuple(target_version) < (1, 1):
            _no_rescued(primitive, "old_state")
            _no_rescued(primitive, "new_state")


def _no_rescued(primitive: dict[str, Any], field: str) -> None:
    if primitive.get(field) == PowerState.RESCUED:
        primitive[field] = PowerState.RUNNING
