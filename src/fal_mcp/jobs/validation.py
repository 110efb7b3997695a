"""An input checked against its endpoint's schema before it is sent, worded field by field. Pure: no I/O.

fal checks inputs too, but only after the request is queued, and a 422 may still be billed; worse, fal's
apps silently drop fields they do not know, so a misspelt `num_image` is simply ignored. Checking here
names every problem at once, before anything leaves: a missing required field, a wrong type, a value outside
its enum (listing the allowed ones) or bounds, and an unknown field (with the nearest known name).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from fal_mcp.jobs.model_schemas import EndpointSchema, type_label

if TYPE_CHECKING:  # jsonschema is imported on first use: it costs ~30 ms of every server start otherwise
    from jsonschema.exceptions import ValidationError

MAX_SHOWN = 60
"""Characters of a caller's value shown in a message (a data URI must not flood the refusal)."""
MAX_CHOICES = 25
MAX_PROBLEMS = 12

_JSON_TYPES: dict[type[object], str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _json_type(value: object) -> str:
    kind: type[object] = type(value)
    return _JSON_TYPES.get(kind, kind.__name__)


def _where(path: Iterable[Any]) -> str:
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where or "input"


def _choices(values: Iterable[Any]) -> str:
    listed = [_shown(value) for value in values]
    more = f", ... ({len(listed) - MAX_CHOICES} more)" if len(listed) > MAX_CHOICES else ""
    return ", ".join(listed[:MAX_CHOICES]) + more


def _enum_values(error: ValidationError) -> list[Any]:
    """Allowed values named by an `anyOf`/`oneOf` whose variants include enums (fal's image_size is one)."""
    found: list[Any] = []
    for sub in error.context or ():
        if sub.validator == "enum":
            found += [value for value in cast(list[Any], sub.validator_value) if value not in found]
    return found


def _word(error: ValidationError, components: Mapping[str, Any]) -> str:
    where = _where(error.absolute_path)
    value = error.instance
    kind = error.validator
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else "?"
        inside = "" if where == "input" else f" in {where}"
        return f"missing required field '{missing}'{inside}"
    if kind == "type":
        expected = error.validator_value
        wanted = " or ".join(cast(list[str], expected)) if isinstance(expected, list) else str(expected)
        return f"{where}: expected {wanted}, got {_json_type(value)} {_shown(value)}"
    if kind == "enum":
        allowed = [v for v in cast(list[Any], error.validator_value) if v is not None]
        return f"{where}: {_shown(value)} is not allowed; allowed values: {_choices(allowed)}"
    if kind == "const":
        return f"{where}: must be {_shown(error.validator_value)}, got {_shown(value)}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {
            "minimum": "at least",
            "exclusiveMinimum": "more than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[str(kind)]
        return f"{where}: must be {relation} {error.validator_value}, got {_shown(value)}"
    if kind in ("minLength", "maxLength", "minItems", "maxItems"):
        bound = "at least" if str(kind).startswith("min") else "at most"
        unit = "characters" if str(kind).endswith("Length") else "items"
        return f"{where}: must have {bound} {error.validator_value} {unit}"
    if kind in ("anyOf", "oneOf"):
        allowed = _enum_values(error)
        shape = type_label(cast(Mapping[str, Any], error.schema), components)
        if allowed:
            return f"{where}: {_shown(value)} is not allowed; allowed values: {_choices(allowed)} (or {shape})"
        return f"{where}: expected {shape}, got {_json_type(value)} {_shown(value)}"
    if kind == "additionalProperties":
        return f"{where}: {error.message.split(' (')[0]}"
    return f"{where}: {error.message[:200]}"


def _unknown_fields(schema: EndpointSchema, payload: Mapping[str, Any]) -> list[str]:
    if schema.open_ended:
        return []
    known = sorted(schema.known_fields)
    problems: list[str] = []
    for name in payload:
        if name in schema.known_fields:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"unknown field '{name}'{hint}; fal would ignore it")
    return problems


def input_problems(schema: EndpointSchema, payload: Mapping[str, Any]) -> list[str] | None:
    """Every way `payload` does not fit `schema`, one plain sentence each: empty when it fits, None when the
    schema itself cannot be used (a broken `$ref` or pattern in fal's document must not stop a run)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from referencing.exceptions import Unresolvable

    components = cast(dict[str, Any], schema.input_schema.get("components", {})).get("schemas", {})
    try:
        validator = Draft202012Validator(schema.input_schema)
        found: list[ValidationError] = list(validator.iter_errors(dict(payload)))  # pyright: ignore[reportUnknownMemberType]
    except (SchemaError, Unresolvable, re.error, RecursionError):
        return None
    errors = sorted(found, key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))
    worded = [
        _word(error, components)
        for error in errors
        if not (error.validator == "additionalProperties" and not error.absolute_path)  # worded below, with hints
    ]
    problems = list(dict.fromkeys([*worded, *_unknown_fields(schema, payload)]))
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more"]
    return problems
