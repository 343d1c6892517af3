"""Check a decoded API answer against a `returns` schema in Proxmox VE's JSON-schema dialect.

The dialect (pve-common PVE::JSONSchema): a property is required unless `"optional": 1`;
`boolean` travels as the integers 0/1; `integer`, `number`, `string`, `array` (`items`),
`object` (`properties`, `additionalProperties`), `null`, `enum`, `minimum`/`maximum`,
`pattern` and `maxLength`. Stricter than PVE's own (untyped Perl) check, because our clients
read JSON: `"5"` is not an integer here. Keys an object's schema does not declare are allowed
unless it says `additionalProperties: 0` (PVE's default; the published schema declares only
part of most answers). Known wire exceptions replace the schema's check at their json path
with a check of the documented wire form.

The schema itself comes from the simulator's trimmed copy (simulator/apischema.py), its one home.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# json path (dotted, `[]` for any list item, `*` for any key) -> a check of the wire value
WireExceptions = Mapping[str, Callable[[Any], bool]]


def problems(value: Any, schema: Mapping[str, Any], exceptions: WireExceptions | None = None, path: str = "") -> list[str]:
    """Every way `value` departs from `schema`, as `path: what` lines (empty when it conforms)."""
    for pattern, accepts in (exceptions or {}).items():
        if _matches(pattern, path):
            return [] if accepts(value) else [f"{path}: {value!r} is not the documented wire form"]
    kind = schema.get("type", "string" if "enum" in schema or "pattern" in schema else None)
    if kind is None:
        return []  # unspecified: anything goes
    where = path or "(answer)"
    if not _has_type(value, kind):
        return [f"{where}: expected {kind}, got {type(value).__name__} {_short(value)}"]
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in enum {schema['enum']}")
    if kind in ("integer", "number"):
        if schema.get("minimum") is not None and value < float(schema["minimum"]):
            found.append(f"{where}: {value} below minimum {schema['minimum']}")
        if schema.get("maximum") is not None and value > float(schema["maximum"]):
            found.append(f"{where}: {value} above maximum {schema['maximum']}")
    if kind == "string":
        if schema.get("pattern") and not re.search(schema["pattern"].replace("(?^:", "(?:"), value):
            found.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if schema.get("maxLength") is not None and len(value) > int(schema["maxLength"]):
            found.append(f"{where}: longer than {schema['maxLength']}")
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        for item in value:
            found += problems(item, schema["items"], exceptions, f"{path}[]")
    if kind == "object":
        found += _object_problems(value, schema, exceptions or {}, path)
    return found


def _object_problems(value: Mapping[str, Any], schema: Mapping[str, Any], exceptions: WireExceptions,
                     path: str) -> list[str]:
    declared = schema.get("properties")
    extra = schema.get("additionalProperties")
    found: list[str] = []
    for name, prop in (declared or {}).items():
        child = f"{path}.{name}" if path else name
        if name in value:
            found += problems(value[name], prop, exceptions, child)
        elif not prop.get("optional") and not _excepted(exceptions, child):
            found.append(f"{child}: required by the schema, missing")
    for name in value.keys() - set(declared or {}):
        child = f"{path}.{name}" if path else name
        if isinstance(extra, Mapping) or _excepted(exceptions, child):
            found += problems(value[name], extra if isinstance(extra, Mapping) else {}, exceptions, child)
        elif extra == 0:
            found.append(f"{child}: not declared by the schema, which allows no other properties")
    return found


def _excepted(exceptions: WireExceptions, path: str) -> bool:
    return any(_matches(pattern, path) for pattern in exceptions)


def _matches(pattern: str, path: str) -> bool:
    regex = re.escape(pattern).replace(r"\*", r"[^.\[]+").replace(r"\[\]", r"\[\]")
    return re.fullmatch(regex, path) is not None


def _has_type(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return type(value) is int and value in (0, 1)
    if kind == "integer":
        return type(value) is int
    if kind == "number":
        return type(value) in (int, float)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "null":
        return value is None
    return True  # "any" and the like


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
