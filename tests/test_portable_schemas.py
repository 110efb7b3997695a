"""Every model vendor's SDK takes the tool list as it is, keeps its meaning, and the calls it then makes succeed.

Three converters run offline over the real server's `tools/list`: OpenAI's agents SDK (MCP to strict function
tools: every argument required, every object closed), google-genai's MCP bridge (to Gemini function declarations,
then Gemini's schema rules) and Anthropic's MCP helper (its tool format). Each must convert every tool without
falling back or crashing, and keep each argument's type, allowed values, description and whether it may be left
out. Then the real server (spawned over stdio) is called with what a strict-mode model sends: every argument, with
null for the ones it leaves unset, and `input` in either of its forms. Each call succeeds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from agents.mcp import MCPServerStdio
from agents.mcp.util import MCPUtil
from anthropic.lib.tools.mcp import async_mcp_tool
from google.genai import types as genai
from google.genai._mcp_utils import mcp_to_gemini_tool
from mcp import Client
from mcp.types import Tool

from fal_mcp.sandbox import SandboxServer
from fal_mcp.sandbox.models.png import picture
from fal_mcp.server.build import create_server
from tests.conftest import settings_for
from tests.harness import connect
from tests.test_tools import structured

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
GEMINI_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}


async def listed(sandbox: SandboxServer, tmp_path: Path) -> list[Tool]:
    async with connect("stdio", sandbox, tmp_path) as client:
        return (await client.list_tools()).tools


def optional(tool: Tool) -> set[str]:
    return set(tool.input_schema["properties"]) - set(tool.input_schema.get("required", []))


def typed(branch: dict[str, Any]) -> dict[str, Any]:
    """The one non-null branch of an optional argument (the schema itself for a required one)."""
    variants = [v for v in branch.get("anyOf", [branch]) if v.get("type") != "null"]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


# -- OpenAI: the agents SDK's strict conversion ---------------------------------------------------------------


def strict(tool: Tool, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="openai.agents"):
        converted = MCPUtil.to_function_tool(tool, MCPServerStdio(params={"command": "fal-mcp"}), True)
    assert converted.strict_json_schema, f"{tool.name} fell back to non-strict: {caplog.text}"
    return converted.params_json_schema


async def test_openai_strict_mode_takes_every_tool_and_keeps_its_meaning(
    sandbox: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for tool in await listed(sandbox, tmp_path):
        schema = strict(tool, caplog)
        assert set(schema["required"]) == set(schema["properties"]) == set(tool.input_schema["properties"])
        for name, converted in schema["properties"].items():
            original = tool.input_schema["properties"][name]
            branch = typed(converted)
            assert branch.get("description") or converted.get("description"), (tool.name, name)
            if name in optional(tool):  # required now, so it must take null: "not given"
                assert {"type": "null"} in converted["anyOf"], (tool.name, name)
            for keyword in ("type", "enum", "minimum", "maximum"):
                assert branch.get(keyword) == typed(original).get(keyword), (tool.name, name, keyword)


# -- Google: the google-genai MCP bridge, then Gemini's schema rules ------------------------------------------


def gemini_rules(schema: genai.Schema, where: str) -> None:
    """What Gemini's function declarations refuse: an object without properties, an array without items, an
    untyped schema, an enum on a non-string, `required` naming what is not there."""
    if schema.any_of:
        for index, variant in enumerate(schema.any_of):
            gemini_rules(variant, f"{where}.anyOf[{index}]")
        return
    assert schema.type is not None and schema.type.value in GEMINI_TYPES, where
    if schema.type == genai.Type.OBJECT:
        assert schema.properties, f"{where}: an object needs properties"
        assert set(schema.required or []) <= set(schema.properties), where
        for name, member in schema.properties.items():
            gemini_rules(member, f"{where}.{name}")
    if schema.type == genai.Type.ARRAY:
        assert schema.items is not None, f"{where}: an array needs items"
        gemini_rules(schema.items, f"{where}[]")
    if schema.enum:
        assert schema.type == genai.Type.STRING, f"{where}: enum on a {schema.type}"


async def test_gemini_takes_every_tool_and_keeps_its_meaning(sandbox: SandboxServer, tmp_path: Path) -> None:
    for tool in await listed(sandbox, tmp_path):
        declaration = mcp_to_gemini_tool(tool).function_declarations[0]  # pyright: ignore[reportOptionalSubscript]
        assert declaration.name == tool.name and declaration.description == tool.description
        parameters = declaration.parameters
        assert parameters is not None
        gemini_rules(parameters, tool.name)
        assert set(parameters.required or []) == set(tool.input_schema.get("required", []))
        assert parameters.properties is not None
        for name, original in tool.input_schema["properties"].items():
            member = parameters.properties[name]
            assert member.description, f"{tool.name}.{name} lost its description"
            assert bool(member.nullable) == (name in optional(tool)), (tool.name, name)
            if "enum" in typed(original):
                assert member.enum == typed(original)["enum"], (tool.name, name)
    run = next(tool for tool in await listed(sandbox, tmp_path) if tool.name == "run-model")
    forms = mcp_to_gemini_tool(run).function_declarations[0].parameters.properties["input"].any_of  # pyright: ignore
    assert [form.type for form in forms] == [genai.Type.OBJECT, genai.Type.STRING]  # an object, or it as JSON text


# -- Anthropic: its MCP helper's tool format ------------------------------------------------------------------


async def test_anthropic_takes_every_tool(sandbox: SandboxServer, tmp_path: Path) -> None:
    for tool in await listed(sandbox, tmp_path):
        param = dict(async_mcp_tool(tool, None).to_dict())  # pyright: ignore[reportArgumentType]
        assert param["name"] == tool.name and len(param["name"]) <= 64
        assert param["description"] == tool.description
        schema = param["input_schema"]
        assert schema == tool.input_schema and schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(schema)


# -- the calls a strict-mode model makes -----------------------------------------------------------------------


def as_strict_model_sends(tool: Tool, schema: dict[str, Any], **given: Any) -> dict[str, Any]:
    """Every argument, null where the model leaves it unset; checked against the strict schema it was shown."""
    arguments = {name: given.get(name) for name in schema["properties"]}
    jsonschema.validate(arguments, schema)
    return arguments


async def test_a_strict_mode_model_calls_every_tool_successfully(
    sandbox: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cat = tmp_path / "uploads" / "cat.png"
    cat.parent.mkdir()
    cat.write_bytes(picture(16, 16, 3))
    async with connect("stdio", sandbox, tmp_path, upload_roots=str(cat.parent)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schemas = {name: strict(tool, caplog) for name, tool in tools.items()}

        async def call(name: str, **given: Any) -> dict[str, Any]:
            return structured(await client.call_tool(name, as_strict_model_sends(tools[name], schemas[name], **given)))

        found = await call("search-models", query="image")
        assert any(model["endpoint_id"] == FLUX for model in found["models"])
        assert (await call("get-model-schema", endpoint_id=FLUX))["input"]
        ran = await call("run-model", endpoint_id=FLUX, input={"prompt": "a red fox"})
        assert ran["status"] == "COMPLETED" and ran["output"]["images"]
        as_text = json.dumps({"prompt": "a red fox", "num_images": 2, "image_size": "square"})
        ran_from_text = await call("run-model", endpoint_id=FLUX, input=as_text)
        assert len(ran_from_text["output"]["images"]) == 2  # every field of the text reached the model
        queued = await call("submit", endpoint_id=FLUX, input={"prompt": "a lighthouse"})
        request_id = queued["request_id"]
        assert (await call("get-status", request_id=request_id))["request_id"] == request_id
        assert (await call("get-result", request_id=request_id, wait_s=30))["status"] == "COMPLETED"
        assert (await call("cancel", request_id=request_id))["status"] in (
            "ALREADY_COMPLETED",
            "CANCELLATION_REQUESTED",
        )
        assert (await call("upload-file", path=str(cat)))["url"]
        assert (await call("list-requests"))["requests"]


async def test_input_as_json_text_that_is_not_an_object_is_refused_plainly(sandbox: SandboxServer) -> None:
    async with Client(create_server(settings_for(sandbox))) as client:
        refused = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": "a red fox"})
    assert refused.is_error
    text = refused.content[0].text  # pyright: ignore[reportAttributeAccessIssue]
    assert text.startswith("run-model: argument 'input' got text that is not a JSON object")
    assert "pydantic" not in text and "http" not in text
