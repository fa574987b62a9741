"""Base class, registry and serializer for the project's versioned objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import fields as ovo_fields

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
    #: Whether the object travels in RPC arguments or results, and so has a
    #: version in every entry of :data:`computed.version.OBJECT_VERSIONS`.
    #: The client's own views (HostState, read from the registry) do not.
    carried_by_rpc = True

    if TYPE_CHECKING:  # fields are attributes made at run time from ``fields``

        def __getattr__(self, name: str) -> Any: ...

    def obj_to_primitive(
        self, target_version: str | None = None, version_manifest: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """oslo.versionedobjects' dehydration, with a fast path for flat objects at their
        own version (no nested objects, so nothing to make compatible or to collect
        changes from)."""
        if (
            target_version not in (None, self.VERSION)
            or version_manifest
            or _has_object_fields(type(self))
        ):
            full = super().obj_to_primitive(target_version, version_manifest)
            key = f"{self.OBJ_SERIAL_NAMESPACE}.changes"
            if key in full:
                # oslo.versionedobjects lists a set: sorted, equal objects have equal primitives.
                full[key] = sorted(full[key])
            return full
        data = {}
        for name, field in self.fields.items():
            if self.obj_attr_is_set(name):
                data[name] = field.to_primitive(self, name, getattr(self, name))
        ns = self.OBJ_SERIAL_NAMESPACE
        primitive = {
            f"{ns}.name": self.obj_name(),
            f"{ns}.namespace": self.OBJ_PROJECT_NAMESPACE,
            f"{ns}.version": self.VERSION,
            f"{ns}.data": data,
        }
        changes = sorted(name for name in self._changed_fields if name in data)
        if changes:
            primitive[f"{ns}.changes"] = changes
        return primitive

    def obj_load_attr(self, attrname: str) -> None:
        """A field left unset reads as its default, if it has one (a nullable
        field a sender did not fill, or one its older version lacks)."""
        field = self.fields.get(attrname)
        if field is None or field.default is ovo_fields.UnspecifiedDefault:
            super().obj_load_attr(attrname)
            return
        self.obj_set_defaults(attrname)
        self.obj_reset_changes([attrname])

    def assign(self, **values: Any) -> None:
        """Set fields by name (one statement for several, and typed for mypy)."""
        for name, value in values.items():
            setattr(self, name, value)

    def backport_loss(self, target_version: str) -> str | None:
        """What this object would lose at ``target_version`` that matters, or None.

        The client backports an argument to an older host's version only when
        this is None, and refuses the message with the reason otherwise.
        """
        return None

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


_OBJECT_FIELDS: dict[type, bool] = {}


def _has_object_fields(cls: type[ComputedObject]) -> bool:
    found = _OBJECT_FIELDS.get(cls)
    if found is None:
        found = _OBJECT_FIELDS[cls] = any(
            isinstance(field, (ovo_fields.ObjectField, ovo_fields.ListOfObjectsField))
            or isinstance(getattr(field, "_type", None), ovo_fields.Object)
            for field in cls.fields.values()
        )
    return found


class ComputedObjectSerializer(ovo_base.VersionedObjectSerializer):
    """Serializes :class:`ComputedObject` instances for oslo.messaging."""

    OBJ_BASE_CLASS = ComputedObject
