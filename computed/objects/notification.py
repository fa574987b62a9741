"""Payloads of the versioned notifications that report a cast's outcome."""

from __future__ import annotations

from oslo_versionedobjects import fields

from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.fields import PowerStateField

__all__ = ["InstanceActionPayload", "InstanceStatePayload"]


@ComputedObjectRegistry.register
class InstanceActionPayload(ComputedObject):
    """Payload of ``instance.<operation>.start|end|error``.

    ``request_id`` is the request id of the context the operation was sent
    with, so a caller can match a cast to its outcome. On ``error``,
    ``error_class`` and ``error_message`` say what failed; ``error_kwargs``
    carries the exception's context.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

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
    }


@ComputedObjectRegistry.register
class InstanceStatePayload(ComputedObject):
    """Payload of ``instance.power_state.update`` and ``instance.delete``: a change on
    the hypervisor that no operation of the contract made (a guest that shut
    itself down or crashed, an instance paused or deleted out of band).

    ``new_state`` is None for ``instance.delete``. ``source`` says how the
    worker learnt it: ``hypervisor`` (an event its driver received) or
    ``poll`` (the worker's periodic look at every instance).

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "uuid": fields.UUIDField(),
        "host": fields.StringField(),
        "old_state": PowerStateField(nullable=True, default=None),
        "new_state": PowerStateField(nullable=True, default=None),
        "source": fields.StringField(),
    }
