"""Pure modules, table by table: tool schemas made small and portable, OpenAPI read, inputs checked."""

from __future__ import annotations

from typing import Any

import pytest

from fal_mcp.jobs.model_schemas import normalize, read_endpoint_schema
from fal_mcp.jobs.validation import input_problems
from fal_mcp.server.tool_schemas import ANY_JSON, input_schema, output_schema

# -- tool schemas, small and portable ------------------------------------------------------------------------

NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"title": "X", "description": "root", "type": "object"}, {"type": "object", "properties": {}}),
        (  # an optional argument says null ("not given") as an anyOf branch, never a type array; no null default
            {"properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "A"}}},
            {"properties": {"a": NULLABLE_STRING}},
        ),
        (  # an optional argument with a default: nullable too (null takes the default), the default unsaid
            {"properties": {"n": {"type": "integer", "minimum": 1, "default": 10, "description": "d"}}},
            {"properties": {"n": {"anyOf": [{"type": "integer", "minimum": 1, "description": "d"}, {"type": "null"}]}}},
        ),
        (  # a required argument is left as it is
            {"properties": {"a": {"type": "string", "description": "d"}}, "required": ["a"]},
            {"properties": {"a": {"type": "string", "description": "d"}}, "required": ["a"]},
        ),
        (  # a property *named* title is data, not a keyword
            {"properties": {"title": {"type": "string", "title": "Title"}}, "required": ["title"]},
            {"properties": {"title": {"type": "string"}}, "required": ["title"]},
        ),
        (
            {"properties": {"x": {"type": "object", "additionalProperties": True}}, "required": ["x"]},
            {"properties": {"x": {"type": "object"}}, "required": ["x"]},
        ),
        (  # a union stays one, with its null
            {"properties": {"u": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}}},
            {"properties": {"u": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}}},
        ),
    ],
)
def test_input_schema(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert input_schema(before) == after


def test_input_schema_leaves_unlisted_arguments_out() -> None:
    before = {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}
    assert input_schema(before, unlisted=("a", "b")) == {"properties": {"a": {"type": "string"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (  # descriptions, defaults and null branches go; an untyped field says "any JSON value" with types
            {
                "description": "d",
                "properties": {
                    "n": {"type": "integer", "default": 0, "description": "d"},
                    "o": {"default": None, "description": "d"},
                    "l": {"anyOf": [{"items": {"$ref": "#/$defs/L"}, "type": "array"}, {"type": "null"}]},
                    "m": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}], "default": None},
                    "sandbox": {"type": "boolean"},
                },
                "$defs": {"L": {"title": "L", "description": "gone", "type": "object"}},
            },
            {
                "properties": {
                    "n": {"type": "integer"},
                    "o": ANY_JSON,
                    "l": {"items": {"$ref": "#/$defs/L"}, "type": "array"},
                    "m": {"type": "number"},
                },
                "$defs": {"L": {"type": "object"}},
            },
        ),
        (  # "any JSON value" said twice is said once
            {"properties": {"a": {}, "b": {"type": "array", "items": {}}}},
            {
                "properties": {
                    "a": {"$ref": "#/$defs/Json"},
                    "b": {"type": "array", "items": {"$ref": "#/$defs/Json"}},
                },
                "$defs": {"Json": ANY_JSON},
            },
        ),
    ],
)
def test_output_schema(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert output_schema(before, unlisted=("sandbox",)) == after


# -- OpenAPI read -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("openapi", "json_schema"),
    [
        ({"type": "integer", "nullable": True}, {"type": ["integer", "null"]}),
        ({"type": "string", "enum": ["a"], "nullable": True}, {"type": ["string", "null"], "enum": ["a", None]}),
        (
            {"$ref": "#/components/schemas/X", "nullable": True},
            {"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}]},
        ),
        ({"minimum": 0, "exclusiveMinimum": True}, {"exclusiveMinimum": 0}),
        ({"maximum": 1, "exclusiveMaximum": False}, {"maximum": 1}),
        (
            {"properties": {"n": {"type": "number", "nullable": True}}},
            {"properties": {"n": {"type": ["number", "null"]}}},
        ),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    ],
)
def test_openapi_30_becomes_json_schema_2020_12(openapi: dict[str, Any], json_schema: dict[str, Any]) -> None:
    assert normalize(openapi) == json_schema


def fal_document(input_schema: dict[str, Any], **components: Any) -> dict[str, Any]:
    """An OpenAPI document shaped like fal's: the submit's body refers to <Name>Input."""
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThingInput"}}}}
    return {
        "paths": {"/fal-ai/thing": {"post": {"requestBody": body}}},
        "components": {
            "schemas": {
                "ThingInput": input_schema,
                "ThingOutput": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}}},
                },
                "Image": {"type": "object", "properties": {"url": {"type": "string"}, "width": {"type": "integer"}}},
                "ImageSize": {
                    "type": "object",
                    "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
                },
                **components,
            }
        },
    }


THING = fal_document(
    {
        "type": "object",
        "x-fal-order-properties": ["prompt", "image_size", "num_images", "seed", "strength", "loras"],
        "required": ["prompt"],
        "properties": {
            "seed": {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "Seed"},
            "loras": {"type": "array", "items": {"$ref": "#/components/schemas/Lora"}, "default": []},
            "prompt": {"type": "string", "description": "What to draw.\n\nLonger   text.", "examples": ["a cat"]},
            "image_size": {
                "anyOf": [
                    {"$ref": "#/components/schemas/ImageSize"},
                    {"type": "string", "enum": ["square", "portrait_4_3"]},
                ],
                "default": "square",
            },
            "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            "strength": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "nullable": True},
        },
    },
    Lora={
        "type": "object",
        "required": ["path"],
        "properties": {"path": {"type": "string"}, "scale": {"type": "number"}},
    },
)


def test_fields_are_compact_and_in_fal_order() -> None:
    schema = read_endpoint_schema(THING)
    assert schema is not None
    fields = {info.name: info for info in schema.fields}
    assert [info.name for info in schema.fields] == ["prompt", "image_size", "num_images", "seed", "strength", "loras"]
    assert fields["prompt"].required and fields["prompt"].description == "What to draw. Longer text."
    assert fields["image_size"].type == "ImageSize{width, height} | string"
    assert fields["image_size"].enum == ("square", "portrait_4_3") and fields["image_size"].default == "square"
    assert (fields["num_images"].minimum, fields["num_images"].maximum) == (1, 4)
    assert fields["seed"].type == "integer" and not fields["seed"].has_default
    assert fields["strength"].type == "number" and fields["strength"].minimum == 0
    assert fields["loras"].type == "array of Lora{path, scale}"
    assert [(o.name, o.type) for o in schema.outputs] == [("images", "array of Image{url, width}")]


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"components": {"schemas": {"Other": {"type": "object"}}}},
        {"paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"schema": {"type": "string"}}}}}}}},
    ],
)
def test_no_recognisable_input_means_no_schema(document: dict[str, Any]) -> None:
    assert read_endpoint_schema(document) is None


def test_input_found_by_name_when_the_document_has_no_paths() -> None:
    schema = read_endpoint_schema(
        {"components": {"schemas": {"XInput": {"type": "object", "properties": {"a": {"type": "string"}}}}}}
    )
    assert schema is not None and [info.name for info in schema.fields] == ["a"]


# -- inputs checked -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"prompt": "a cat"}, []),
        ({"prompt": "a cat", "seed": None, "strength": None, "image_size": {"width": 8, "height": 8}}, []),
        ({}, ["missing required field 'prompt'"]),
        ({"prompt": 3}, ["prompt: expected string, got integer 3"]),
        ({"prompt": "x", "num_images": 9}, ["num_images: must be at most 4, got 9"]),
        ({"prompt": "x", "num_images": "2"}, ['num_images: expected integer, got string "2"']),
        ({"prompt": "x", "strength": 0}, ["strength: must be more than 0, got 0"]),
        ({"prompt": "x", "seed": "7"}, ['seed: expected integer, got string "7"']),
        (
            {"prompt": "x", "image_size": "huge"},
            [
                'image_size: "huge" is not allowed; allowed values: "square", "portrait_4_3" (or ImageSize{width, height} | string)'
            ],
        ),
        (
            {"prompt": "x", "num_image": 2},
            ["unknown field 'num_image' (did you mean 'num_images'?); fal would ignore it"],
        ),
        ({"prompt": "x", "zzz": 1}, ["unknown field 'zzz'; fal would ignore it"]),
        ({"prompt": "x", "loras": [{"scale": 1}]}, ["missing required field 'path' in loras[0]"]),
        (
            {"prompt": "data:image/png;base64," + "A" * 10_000, "num_images": 0},
            ["num_images: must be at least 1, got 0"],
        ),
    ],
)
def test_input_problems_name_each_field(payload: dict[str, Any], expected: list[str]) -> None:
    schema = read_endpoint_schema(THING)
    assert schema is not None
    assert input_problems(schema, payload) == expected


def test_every_problem_is_reported_at_once_and_briefly() -> None:
    schema = read_endpoint_schema(THING)
    assert schema is not None
    problems = input_problems(schema, {"num_images": "data:" + "x" * 5000, "image_size": 1, "typo": 1})
    assert problems is not None and len(problems) == 4
    assert problems[0] == "missing required field 'prompt'"
    assert all(len(problem) < 300 for problem in problems)


def test_open_schemas_accept_unknown_fields() -> None:
    schema = read_endpoint_schema(
        fal_document({"type": "object", "additionalProperties": True, "properties": {"a": {"type": "string"}}})
    )
    assert schema is not None and input_problems(schema, {"anything": 1}) == []


def test_a_broken_schema_means_no_check_not_a_failure() -> None:
    schema = read_endpoint_schema(
        fal_document({"type": "object", "properties": {"a": {"$ref": "#/components/schemas/Missing"}}})
    )
    assert schema is not None and input_problems(schema, {"a": 1}) is None
