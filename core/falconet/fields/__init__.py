"""Field registry and core field providers (evt, proc, thread, user, group, fd)."""

from falconet.fields.registry import (
    ArgKind,
    Extractor,
    FieldDef,
    FieldRegistry,
    FieldType,
    ResolvedField,
    UnknownFieldError,
    attr_field,
)

__all__ = ["ArgKind", "Extractor", "FieldDef", "FieldRegistry", "FieldType", "ResolvedField",
           "UnknownFieldError", "attr_field"]
