"""The tools' JSON schemas, made small and portable: the tool list is read by the model on every turn, and every
model vendor's SDK converts it to its own dialect before the model sees it.

pydantic writes schemas for programs, not for a model's context or a vendor's converter, so each is rewritten once,
at registration (pure: schema in, schema out):

- Inputs. No `title` (it repeats the name) and no `additionalProperties: true` (the default). Every optional
  argument is written `{"anyOf": [{...X, "description": ...}, {"type": "null"}]}`: OpenAI's strict mode
  makes every argument required, so a model says "not given" with an explicit null, which the server accepts
  (`fal_mcp.server.tools.checked`). Never a `type` array (the Inspector's `--strict` flags it as unportable: Gemini's
  dialect has one type per schema) and never `additionalProperties: false` (google-genai's MCP bridge crashes on
  it): unknown arguments are refused by the server instead.
- Outputs. A client reads `structuredContent`, not these, so no descriptions and no defaults; an optional field is
  simply its type (results leave out every null), except a field marked `KEEPS_NULL`, whose null is an answer
  (`estimated_cost_usd`: no estimate could be made). A field that can hold any JSON value (a model's own output, a
  default) says so with one type per branch, so no field is left without a type.
"""

from __future__ import annotations

import json
from typing import Any, cast

from fal_mcp.jobs.results import KEEPS_NULL

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
"""Keywords whose value maps names to subschemas (the names themselves are data, never dropped)."""
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")
_NULL = {"type": "null"}
_JSON_DEF = "Json"
_NUMBER = [{"type": "integer"}, {"type": "number"}]
_SAYS_WHAT_IT_IS = ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const", "not")
ANY_JSON: dict[str, Any] = {
    "anyOf": [{"type": kind} for kind in ("object", "array", "string", "number", "boolean", "null")]
}
"""Any JSON value, spelled with one type per branch."""


def input_schema(schema: dict[str, Any], *, unlisted: tuple[str, ...] = ()) -> dict[str, Any]:
    """A tool's arguments: small, every optional argument nullable, nothing that a vendor's converter refuses.

    `unlisted` optional arguments are left out (the tool still takes them).
    """
    out = _compact(schema, output=False, root=True)
    required = set(cast(list[str], out.get("required", [])))
    properties = cast(dict[str, dict[str, Any]], out.get("properties", {}))
    out["properties"] = {
        name: member if name in required else _nullable(member)
        for name, member in properties.items()
        if name in required or name not in unlisted
    }
    return out


def output_schema(schema: dict[str, Any], *, unlisted: tuple[str, ...] = ()) -> dict[str, Any]:
    """A tool's structured result: types and shape only. "Any JSON value", when said twice or more, is said once.

    `unlisted` optional fields are left out: the schema is open, so a result holding one still conforms.
    """
    out = _compact(schema, output=True, root=True)
    properties = cast(dict[str, Any], out.get("properties", {}))
    out["properties"] = {name: member for name, member in properties.items() if name not in unlisted}
    spelled = json.dumps(ANY_JSON)
    if json.dumps(out).count(spelled) < 2:
        return out
    shared = json.loads(json.dumps(out).replace(spelled, json.dumps({"$ref": f"#/$defs/{_JSON_DEF}"})))
    shared["$defs"] = {**shared.get("$defs", {}), _JSON_DEF: ANY_JSON}
    return shared


def _nullable(member: dict[str, Any]) -> dict[str, Any]:
    """`{...X, description, default}` -> `{"anyOf": [{...X, description}, null]}`.

    The description goes inside the branch: google-genai unwraps `anyOf [X, null]` to X and drops what sat beside
    the `anyOf`. The default goes: an argument not given (or null) takes it, so a model has nothing to choose by it.
    """
    said = {"description": member["description"]} if "description" in member else {}
    core = {key: value for key, value in member.items() if key not in ("description", "default")}
    variants = cast(list[Any], core["anyOf"]) if set(core) == {"anyOf"} else [core]
    typed = [variant for variant in variants if variant != _NULL]
    if len(typed) == 1:
        return {"anyOf": [{**cast(dict[str, Any], typed[0]), **said}, _NULL]}
    return {"anyOf": [*typed, _NULL], **said}


def _compact(schema: dict[str, Any], *, output: bool, root: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "description" and (root or output)) or (key == "default" and output):
            continue
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
    keeps_null = out.pop(KEEPS_NULL, False)
    if output:
        out = out if keeps_null else _without_optional_null(out)
        if out.get("anyOf") == _NUMBER:  # an integer is a number already
            out = {**{k: v for k, v in out.items() if k != "anyOf"}, "type": "number"}
        if not root and not any(key in out for key in _SAYS_WHAT_IT_IS):
            out = {**ANY_JSON, **out}
    return out


def _sub(value: Any, output: bool) -> Any:
    return _compact(cast(dict[str, Any], value), output=output, root=False) if isinstance(value, dict) else value


def _without_optional_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, null], ...}` -> `{...X, ...}`: our results leave a null field out."""
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return schema
    listed = cast(list[Any], variants)
    others = [variant for variant in listed if variant != _NULL]
    if len(others) == len(listed) or not others:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    if len(others) > 1:
        return {"anyOf": others, **rest}
    kept = others[0]
    if not isinstance(kept, dict) or set(cast(dict[str, Any], kept)) & set(rest):
        return schema  # the two would clash; leave it as pydantic wrote it
    return {**cast(dict[str, Any], kept), **rest}
