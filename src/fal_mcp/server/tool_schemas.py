"""The tools' JSON schemas made small: the whole tool list is read by the model on every turn.

pydantic writes schemas for programs, not for a model's context: a `title` on every field (repeating its
name), `anyOf [X, {"type": "null"}]` plus `"default": null` for every optional argument, and
`"additionalProperties": true` where that is the default anyway. None of it helps a model choose or call a
tool, so it goes; what stays means exactly what it meant before (a client that validates arguments against
the smaller schema accepts the same calls, except an explicit null for an optional argument, which a model
has no reason to send). Pure: schema in, smaller schema out.
"""

from __future__ import annotations

from typing import Any, cast

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
"""Keywords whose value maps names to subschemas (the names themselves are data, never dropped)."""
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")
_NULL = {"type": "null"}


def compact_schema(schema: dict[str, Any], *, output: bool = False) -> dict[str, Any]:
    """A copy of `schema` without titles, null-unions of optional fields and default-valued keywords.

    With `output`, defaults go too: a result's reader has no use for them, and our structured results leave
    out every null, so an optional field is either absent or of its declared type.
    """
    return _compact(schema, output=output, root=True)


def _compact(schema: dict[str, Any], *, output: bool, root: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (root and key == "description"):
            continue  # the tool's own title and description say this already
        if key == "additionalProperties" and value is True:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            members = cast(dict[str, Any], value)
            out[key] = {name: _sub(member, output) for name, member in members.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_sub(member, output) for member in cast(list[Any], value)]
        elif key in _SCHEMA_VALUES:
            out[key] = _sub(value, output)
        else:
            out[key] = value
    out = _without_optional_null(out)
    if output:
        out.pop("default", None)
    return out


def _sub(value: Any, output: bool) -> Any:
    return _compact(cast(dict[str, Any], value), output=output, root=False) if isinstance(value, dict) else value


def _without_optional_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, null], "default": null, ...}` -> `{...X, ...}`: an optional field is simply not given."""
    variants = schema.get("anyOf")
    if "default" not in schema or schema["default"] is not None or not isinstance(variants, list):
        return schema
    listed = cast(list[Any], variants)
    others = [variant for variant in listed if variant != _NULL]
    if len(others) == len(listed) or not others:
        return schema
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    if len(others) > 1:
        return {"anyOf": others, **rest}
    kept = others[0]
    if not isinstance(kept, dict) or set(cast(dict[str, Any], kept)) & set(rest):
        return schema  # the two would clash; leave it as pydantic wrote it
    return {**cast(dict[str, Any], kept), **rest}
