"""An endpoint's OpenAPI document read into what an agent and the validator need. Pure: no I/O.

fal's platform API embeds one OpenAPI document per endpoint (`expand=openapi-3.0`). The input is the schema
the submit's request body refers to (`components.schemas.<Name>Input`), the output the `<Name>Output`
component, and both point at shared components (`File`, `Image`, `ImageSize`, ...) with `$ref`. Despite the
"3.0" in the name, fal's documents mix dialects: optional fields appear as `anyOf [X, {"type": "null"}]`
(JSON Schema) as well as `nullable: true` (OpenAPI 3.0), and bounds may use 3.0's boolean
`exclusiveMinimum`. `read_endpoint_schema` normalises all of it to JSON Schema 2020-12, so `jsonschema` can
check an input exactly as written, and renders each field compactly (type, required, default, enum, bounds,
one line of description) for a model to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

_REF_PREFIX = "#/components/schemas/"
MAX_DESCRIPTION = 200
MAX_DEPTH = 4


@dataclass(frozen=True)
class InputFieldInfo:
    """One input field, compact."""

    name: str
    type: str
    required: bool
    has_default: bool = False
    default: Any = None
    enum: tuple[Any, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class OutputFieldInfo:
    """One top-level output field: its name, shape and what it is."""

    name: str
    type: str
    description: str | None = None


@dataclass(frozen=True)
class EndpointSchema:
    """What an endpoint takes and gives, as a validator and a reader need it."""

    input_schema: dict[str, Any]
    """JSON Schema 2020-12 of the input, with the document's components inlined for `$ref` to resolve."""
    fields: tuple[InputFieldInfo, ...]
    outputs: tuple[OutputFieldInfo, ...] = field(default=())

    @property
    def known_fields(self) -> frozenset[str]:
        return frozenset(info.name for info in self.fields)

    @property
    def open_ended(self) -> bool:
        """True when the schema lists no fields or invites any extra one: unknown fields are then fine."""
        extra = self.input_schema.get("additionalProperties")
        return not self.fields or extra is True or isinstance(extra, dict)


def _as_dict(value: Any) -> dict[str, Any] | None:
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _as_list(value: Any) -> list[Any]:
    return cast(list[Any], value) if isinstance(value, list) else []


# -- OpenAPI 3.0 -> JSON Schema 2020-12 ---------------------------------------------------------------------


def normalize(schema: Any) -> Any:
    """Rewrite OpenAPI 3.0 keywords (`nullable`, boolean exclusive bounds) as JSON Schema 2020-12, deeply."""
    if isinstance(schema, list):
        return [normalize(item) for item in cast(list[Any], schema)]
    mapping = _as_dict(schema)
    if mapping is None:
        return schema
    out: dict[str, Any] = {key: normalize(value) for key, value in mapping.items() if key != "nullable"}
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            del out[exclusive]
            if flag and bound in out:
                out[exclusive] = out.pop(bound)
    if mapping.get("nullable") is True:
        out = _nullable(out)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema = {**schema, "type": [kind, "null"]}
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    if isinstance(kind, list) and "null" not in kind:
        return {**schema, "type": [*cast(list[Any], kind), "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


# -- finding the input and output in a document -------------------------------------------------------------


def _components(document: Mapping[str, Any]) -> dict[str, Any]:
    schemas = _as_dict((_as_dict(document.get("components")) or {}).get("schemas"))
    return schemas or {}


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref[len(_REF_PREFIX) :] if isinstance(ref, str) and ref.startswith(_REF_PREFIX) else None


def _request_body_schema(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON body schema of the document's (first) POST: the submit."""
    for item in (_as_dict(document.get("paths")) or {}).values():
        post = _as_dict((_as_dict(item) or {}).get("post"))
        body = _as_dict((post or {}).get("requestBody"))
        content = _as_dict((_as_dict((body or {}).get("content")) or {}).get("application/json"))
        schema = _as_dict((content or {}).get("schema"))
        if schema is not None:
            return schema
    return None


def _named(components: Mapping[str, Any], suffix: str, prefer: str | None) -> dict[str, Any] | None:
    if prefer is not None and _as_dict(components.get(prefer)) is not None:
        return _as_dict(components[prefer])
    return next((_as_dict(v) for k, v in components.items() if k.endswith(suffix) and _as_dict(v)), None)


def read_endpoint_schema(document: Mapping[str, Any]) -> EndpointSchema | None:
    """The endpoint's input and output, or None when the document has no recognisable input schema."""
    components = cast(dict[str, Any], normalize(_components(document)))
    body = _request_body_schema(document)
    name = _ref_name(body) if body is not None else None
    if body is not None and name is None:
        root = cast(dict[str, Any], normalize(body))
    else:
        root = _named(components, "Input", name)
    if root is None or not (root.get("type") == "object" or "properties" in root):
        return None
    output_name = name[: -len("Input")] + "Output" if name and name.endswith("Input") else None
    output = _named(components, "Output", output_name) or {}
    return EndpointSchema(
        input_schema={**root, "components": {"schemas": components}},
        fields=tuple(_input_fields(root, components)),
        outputs=tuple(
            OutputFieldInfo(key, type_label(value, components), _one_line(value))
            for key, value in _properties(output).items()
        ),
    )


# -- compact rendering --------------------------------------------------------------------------------------


def _properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in (_as_dict(schema.get("properties")) or {}).items() if _as_dict(value)}


def _ordered(schema: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    listed = [name for name in _as_list(schema.get("x-fal-order-properties")) if isinstance(name, str)]
    known = list(names)
    return [name for name in listed if name in known] + [name for name in known if name not in listed]


def _one_line(schema: Mapping[str, Any]) -> str | None:
    text = schema.get("description")
    if not isinstance(text, str) or not text.strip():
        return None
    line = " ".join(text.split())
    return line if len(line) <= MAX_DESCRIPTION else line[: MAX_DESCRIPTION - 3].rstrip() + "..."


def _variants(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = [_as_dict(v) for v in _as_list(schema.get("anyOf")) + _as_list(schema.get("oneOf"))]
    return [v for v in found if v is not None and v.get("type") != "null"]


def _resolve(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Mapping[str, Any]:
    name = _ref_name(schema)
    target = _as_dict(components.get(name)) if name else None
    return target if target is not None else schema


def type_label(schema: Mapping[str, Any], components: Mapping[str, Any], depth: int = 0) -> str:
    """A short type for a reader: `integer`, `array of Image{url, width, height}`, `ImageSize{width, height} | string`."""
    if depth > MAX_DEPTH:
        return "any"
    name = _ref_name(schema)
    if name is not None:
        target = _as_dict(components.get(name)) or {}
        keys = list(_properties(target))
        return f"{name}{{{', '.join(keys)}}}" if keys else type_label(target, components, depth + 1)
    variants = _variants(schema)
    if variants:
        labels = dict.fromkeys(type_label(v, components, depth + 1) for v in variants)
        return " | ".join(labels)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in cast(list[Any], kind) if k != "null") or "null"
    if kind == "array":
        items = _as_dict(schema.get("items"))
        return f"array of {type_label(items, components, depth + 1)}" if items else "array"
    if kind == "object" or "properties" in schema:
        keys = list(_properties(schema))
        return f"object{{{', '.join(keys)}}}" if keys else "object"
    if isinstance(kind, str):
        return kind
    if "enum" in schema:
        return "string"
    return "any"


def _facet(schema: Mapping[str, Any], components: Mapping[str, Any], key: str) -> Any:
    """A keyword from the field itself, else from its one non-null variant (or what that refers to)."""
    if key in schema:
        return schema[key]
    for variant in _variants(schema):
        resolved = _resolve(variant, components)
        if key in resolved:
            return resolved[key]
    return None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _input_fields(root: Mapping[str, Any], components: Mapping[str, Any]) -> list[InputFieldInfo]:
    properties = _properties(root)
    required = {name for name in _as_list(root.get("required")) if isinstance(name, str)}
    infos: list[InputFieldInfo] = []
    for name in _ordered(root, properties):
        schema = cast(dict[str, Any], properties[name])
        enum = _facet(schema, components, "enum")
        minimum = _facet(schema, components, "minimum")
        maximum = _facet(schema, components, "maximum")
        min_length = _facet(schema, components, "minLength")
        max_length = _facet(schema, components, "maxLength")
        infos.append(
            InputFieldInfo(
                name=name,
                type=type_label(schema, components),
                required=name in required,
                has_default="default" in schema,
                default=schema.get("default"),
                enum=tuple(v for v in _as_list(enum) if v is not None),
                minimum=_number(minimum if minimum is not None else _facet(schema, components, "exclusiveMinimum")),
                maximum=_number(maximum if maximum is not None else _facet(schema, components, "exclusiveMaximum")),
                min_length=min_length if isinstance(min_length, int) else None,
                max_length=max_length if isinstance(max_length, int) else None,
                description=_one_line(schema),
            )
        )
    return infos
