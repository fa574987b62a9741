"""Base class, registry and serializer for the project's versioned objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oslo_versionedobjects import base as ovo_base

__all__ = ["ComputedObject", "ComputedObjectRegistry", "ComputedObjectSerializer"]


class ComputedObjectRegistry(ovo_base.VersionedObjectRegistry):
    """The registry of the project's object classes (kept apart from other projects')."""


class ComputedObject(ovo_base.VersionedObject, ovo_base.ComparableVersionedObject):
    """Base of every payload on the bus.

    Primitives are namespaced ``computed_object.*`` so that they cannot be
    confused with another project's objects travelling on the same broker.
    """

    OBJ_SERIAL_NAMESPACE = "computed_object"
    OBJ_PROJECT_NAMESPACE = "computed"

    if TYPE_CHECKING:  # fields are attributes made at run time from ``fields``

        def __getattr__(self, name: str) -> Any: ...

    def to_dict(self) -> dict[str, Any]:
        """Return the set fields as a plain dict (for CLIs and logs)."""
        result: dict[str, Any] = {}
        for name in self.fields:
            if not self.obj_attr_is_set(name):
                continue
            value = getattr(self, name)
            if isinstance(value, ComputedObject):
                value = value.to_dict()
            elif isinstance(value, list) and value and isinstance(value[0], ComputedObject):
                value = [item.to_dict() for item in value]
            result[name] = value
        return result


class ComputedObjectSerializer(ovo_base.VersionedObjectSerializer):
    """Serializes :class:`ComputedObject` instances for oslo.messaging."""

    OBJ_BASE_CLASS = ComputedObject
