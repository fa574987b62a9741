"""Instance payloads: what to build (:class:`InstanceSpec`) and what exists (:class:`InstanceInfo`)."""

from __future__ import annotations

from typing import Any

from oslo_utils import versionutils
from oslo_versionedobjects import fields

from computed import exception
from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.fields import PowerStateField

__all__ = ["InstanceSpec", "InstanceInfo", "InstanceInfoList", "MAX_NAME_LENGTH"]

MAX_NAME_LENGTH = 255
MAX_VCPUS = 1024
MAX_MEMORY_MB = 16 * 1024 * 1024
MAX_DISK_GB = 1024 * 1024
MAX_METADATA_ITEMS = 128
MAX_METADATA_LENGTH = 1024


@ComputedObjectRegistry.register
class InstanceSpec(ComputedObject):
    """The instance a scheduler asks a host to build.

    Version 1.0: initial version.
    Version 1.1: added ``description``, free text for operators (shown in the
    console log); a 1.0 host gets the spec without it.
    """

    VERSION = "1.1"

    fields = {
        "uuid": fields.UUIDField(),
        "name": fields.StringField(),
        "vcpus": fields.IntegerField(),
        "memory_mb": fields.IntegerField(),
        "disk_gb": fields.IntegerField(default=0),
        "image": fields.StringField(nullable=True, default=None),
        "metadata": fields.DictOfStringsField(default={}),
        "description": fields.StringField(nullable=True, default=None),
    }

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        super().obj_make_compatible(primitive, target_version)
        if versionutils.convert_version_to_tuple(target_version) < (1, 1):
            primitive.pop("description", None)

    def validate(self) -> None:
        """Check the limits a driver relies on.

        :raises computed.exception.InvalidRequest: naming the offending field.
        """
        for name in ("uuid", "name", "vcpus", "memory_mb"):
            if not self.obj_attr_is_set(name):
                _invalid(f"field {name!r} is required")
        self.obj_set_defaults()
        if not 0 < len(self.name) <= MAX_NAME_LENGTH:
            _invalid(f"name must be 1 to {MAX_NAME_LENGTH} characters")
        _check_range("vcpus", self.vcpus, 1, MAX_VCPUS)
        _check_range("memory_mb", self.memory_mb, 1, MAX_MEMORY_MB)
        _check_range("disk_gb", self.disk_gb, 0, MAX_DISK_GB)
        if self.image is not None and len(self.image) > MAX_METADATA_LENGTH:
            _invalid(f"image must be at most {MAX_METADATA_LENGTH} characters")
        if self.description is not None and len(self.description) > MAX_METADATA_LENGTH:
            _invalid(f"description must be at most {MAX_METADATA_LENGTH} characters")
        if len(self.metadata) > MAX_METADATA_ITEMS:
            _invalid(f"metadata may hold at most {MAX_METADATA_ITEMS} items")
        for key, value in self.metadata.items():
            if len(key) > MAX_NAME_LENGTH or len(value) > MAX_METADATA_LENGTH:
                _invalid(f"metadata item {key[:40]!r} is too long")


@ComputedObjectRegistry.register
class InstanceInfo(ComputedObject):
    """An instance as its host sees it.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "uuid": fields.UUIDField(),
        "name": fields.StringField(),
        "host": fields.StringField(),
        "power_state": PowerStateField(),
        "vcpus": fields.IntegerField(),
        "memory_mb": fields.IntegerField(),
        "disk_gb": fields.IntegerField(),
    }


@ComputedObjectRegistry.register
class InstanceInfoList(ComputedObject):
    """Version 1.0: initial version."""

    VERSION = "1.0"

    fields = {
        "objects": fields.ListOfObjectsField("InstanceInfo"),
    }


def _invalid(reason: str) -> None:
    raise exception.InvalidRequest(operation="spawn", reason=reason)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        _invalid(f"{name} must be between {low} and {high}, got {value}")
