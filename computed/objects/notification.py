"""Payloads of the versioned notifications that report a cast's outcome."""

from __future__ import annotations

from oslo_versionedobjects import fields

from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.fields import PowerStateField

__all__ = ["InstanceActionPayload"]


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
