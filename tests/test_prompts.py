"""The prompts are real: each is listed with its arguments, renders the tool calls to make, and those calls work.

Through the real MCP client, in memory and over stdio, against the sandbox fake fal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from fal_mcp.sandbox import FakeFal, SandboxServer
from tests.harness import connect
from tests.test_tools import structured

pytestmark = pytest.mark.anyio
PROMPTS = {  # name: its arguments (required or not)
    "generate-image": {"description": True, "model": False},
    "image-to-video": {"image": True, "motion": True, "model": False},
    "run-in-queue": {"endpoint_id": True, "input": True},
}


async def rendered(client: Client, name: str, arguments: dict[str, str]) -> str:
    result = await client.get_prompt(name, arguments)
    assert len(result.messages) == 1 and result.messages[0].role == "user"
    return result.messages[0].content.text  # pyright: ignore[reportAttributeAccessIssue]


def calls_in(text: str, tool: str) -> list[dict[str, Any]]:
    """The `<tool> {json}` calls a prompt spells out, as the model would send them."""
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(text, match.end())[0] for match in re.finditer(rf"\b{tool} (?=\{{)", text)]


@pytest.mark.parametrize("transport", ["memory", "stdio"])
async def test_prompts_are_listed_with_their_arguments(transport: str, sandbox: SandboxServer, tmp_path: Path) -> None:
    async with connect(transport, sandbox, tmp_path) as client:
        listed = (await client.list_prompts()).prompts
    assert {prompt.name: {a.name: a.required for a in prompt.arguments or []} for prompt in listed} == PROMPTS
    for prompt in listed:
        assert prompt.title and prompt.description
        assert all(argument.description for argument in prompt.arguments or [])


@pytest.mark.parametrize("transport", ["memory", "stdio"])
async def test_generate_image_renders_a_run_that_works(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    async with connect(transport, sandbox, tmp_path) as client:
        text = await rendered(client, "generate-image", {"description": 'a "red" fox in the snow'})
        (run,) = calls_in(text, "run-model")
        assert run == {"endpoint_id": "fal-ai/flux/schnell", "input": {"prompt": 'a "red" fox in the snow'}}
        result = structured(await client.call_tool("run-model", run))
        other = calls_in(
            await rendered(client, "generate-image", {"description": "x", "model": "fal-ai/flux/dev"}), "run-model"
        )
    assert result["status"] == "COMPLETED" and result["output"]["images"]
    assert other[0]["endpoint_id"] == "fal-ai/flux/dev"


async def test_image_to_video_uploads_a_local_picture_and_follows_the_queue(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        local = await rendered(client, "image-to-video", {"image": "/srv/me/fox.png", "motion": "the fox runs off"})
        remote = await rendered(
            client,
            "image-to-video",
            {"image": "https://example.com/fox.png", "motion": "it runs", "model": "fal-ai/x/i2v"},
        )
        found = structured(await client.call_tool("search-models", calls_in(local, "search-models")[0]))
    assert calls_in(local, "upload-file") == [{"path": "/srv/me/fox.png"}]
    assert "submit" in local and "get-result" in local and "the fox runs off" in local
    assert calls_in(remote, "upload-file") == [] and calls_in(remote, "get-model-schema") == [
        {"endpoint_id": "fal-ai/x/i2v"}
    ]
    assert "models" in found


async def test_run_in_queue_and_missing_arguments(sandbox: SandboxServer, tmp_path: Path) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        text = await rendered(
            client, "run-in-queue", {"endpoint_id": "fal-ai/flux/schnell", "input": '{"prompt": "x"}'}
        )
        with pytest.raises(Exception, match="the generate-image prompt needs: description"):
            await client.get_prompt("generate-image", {})
    for step in ("get-model-schema", "submit", "get-status", "get-result"):
        assert step in text
    assert '{"prompt": "x"}' in text and '"endpoint_id": "fal-ai/flux/schnell"' in text
