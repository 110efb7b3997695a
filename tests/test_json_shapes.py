"""JSON that cannot make the trip, refused or degraded on every surface instead of failing.

Inputs: fal's JSON has no `NaN` or `Infinity`, and no model takes an input nested 65 levels deep; both are refused
before anything is sent, with one sentence (the MCP tools over a raw stdio wire, where a client's JSON parser lets
`NaN` through, and REST, where a 100,000-level body is refused rather than crashing the parser). Outputs: a model
may answer JSON nested deeper than an MCP result can carry; the caller still gets it, as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fal_mcp.sandbox import FakeFal, Fault, SandboxServer
from tests.conftest import env_for
from tests.harness import HttpServer, connect, initialize, raw_stdio_session, start_http_server
from tests.test_tools import error_text, text_of

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
ECHO = "workflows/sandbox/echo"


def nested(levels: int) -> Any:
    """`levels` lists, one inside the other, around a string."""
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture(scope="module")
def rest_server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server(env_for(sandbox), tmp_path_factory.mktemp("rest-shape"), "--rest")
    yield server
    server.stop()


def tool_call(call_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


async def test_numbers_json_cannot_carry_are_refused_before_sending_on_every_surface(
    sandbox: SandboxServer, fake: FakeFal, rest_server: HttpServer, tmp_path: Path
) -> None:
    """A client's JSON parser may let `NaN` or `Infinity` through; fal's JSON has neither, so nothing goes out."""
    inputs = [
        {"prompt": "x", "seed": math.nan},
        {"prompt": "x", "loras": [{"scale": math.inf}]},
        {"prompt": "x", "guidance_scale": -math.inf},
    ]
    calls = [
        tool_call(2, "run-model", {"endpoint_id": FLUX, "input": inputs[0]}),
        tool_call(3, "run-model", {"endpoint_id": FLUX, "input": inputs[1], "mode": "sync"}),
        tool_call(4, "submit", {"endpoint_id": FLUX, "input": inputs[2], "validate": False}),
    ]
    replies, _ = raw_stdio_session([*initialize(), *calls], env_for(sandbox), tmp_path)  # NaN goes out as NaN
    messages = []
    for call_id in (2, 3, 4):
        result = replies[call_id]["result"]
        assert result["isError"] is True and "structuredContent" not in result
        messages.append(result["content"][0]["text"])
    assert "input.seed is NaN" in messages[0] and "input.loras[0].scale is Infinity" in messages[1]
    assert "input.guidance_scale is -Infinity" in messages[2]
    for message in messages:
        assert "JSON cannot carry" in message and "Nothing was sent to fal" in message
    async with httpx.AsyncClient(base_url=rest_server.base, timeout=10) as http:
        refused = await http.post(
            f"/v1/models/{FLUX}/requests",
            content=b'{"prompt": "x", "seed": NaN}',
            headers={"Content-Type": "application/json"},
        )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["message"].startswith("submit: input.seed is NaN, which JSON cannot carry")
    assert not fake.requests_for("submit") and not fake.requests_for("run")


async def test_too_deep_input_is_refused_before_sending_on_every_surface(
    sandbox: SandboxServer, fake: FakeFal, rest_server: HttpServer, tmp_path: Path
) -> None:
    async with connect("stdio", sandbox, tmp_path) as client:
        deepest = await client.call_tool("submit", {"endpoint_id": ECHO, "input": {"a": nested(63)}})
        assert not deepest.is_error, text_of(deepest)  # 64 levels, the input object included: accepted
        for tool, extra in (("submit", {}), ("run-model", {}), ("run-model", {"mode": "sync"})):
            too_deep = error_text(
                await client.call_tool(tool, {"endpoint_id": ECHO, "input": {"a": nested(64)}, **extra})
            )
            assert too_deep.startswith(f"{tool}: the input is nested more than 64 levels deep (at input.a")
            assert "Nothing was sent to fal" in too_deep
    assert len(fake.requests_for("submit")) == 1 and not fake.requests_for("run")
    async with httpx.AsyncClient(base_url=rest_server.base, timeout=10) as http:
        for levels in (500, 100_000):  # json.loads itself gives up on the second
            body = b'{"a": ' + b"[" * levels + b"]" * levels + b"}"
            refused = await http.post(
                f"/v1/models/{ECHO}/requests", content=body, headers={"Content-Type": "application/json"}
            )
            assert refused.status_code == 400, refused.text[:500]
            message = refused.json()["error"]["message"]
            assert message.startswith("submit: the input is nested more than 64 levels deep")
            assert "Traceback" not in message and "\n" not in message
    assert len(fake.requests_for("submit")) == 1


async def test_an_output_too_deep_for_a_result_reaches_the_caller_as_text(
    sandbox: SandboxServer, fake: FakeFal, rest_server: HttpServer, tmp_path: Path
) -> None:
    """fal billed the job and answered 300 levels of JSON: the result degrades (the output as JSON text, no
    structured copy) instead of failing, through run-model and get-result alike, and REST gives it whole."""
    output = {"images": [], "tree": nested(300)}
    fake.inject(Fault(route="result", status=200, body=output, times=3))
    async with connect("stdio", sandbox, tmp_path) as client:
        ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
        assert not ran.is_error, text_of(ran)
        rid = ran.structured_content["request_id"]  # type: ignore[index]
        again = await client.call_tool("get-result", {"request_id": rid})
        assert not again.is_error, text_of(again)
        listed = (await client.call_tool("list-requests", {"limit": 1})).structured_content
    for result in (ran, again):
        envelope = result.structured_content
        assert envelope is not None and envelope["status"] == "COMPLETED" and envelope["request_id"] == rid
        assert "output" not in envelope  # no structured copy
        headline, as_text = result.content[0].text, result.content[-1].text  # type: ignore[union-attr]
        assert "nested more than 64 levels deep" in headline
        assert json.loads(as_text.split("\n", 1)[1]) == output
    assert listed is not None and listed["requests"][0]["state"] == "COMPLETED"
    async with httpx.AsyncClient(base_url=rest_server.base, timeout=10) as http:
        answer = await http.get(f"/v1/models/{FLUX}/requests/{rid}")
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["output"] == output


def test_a_message_too_deep_for_the_stdio_reader_is_answered_not_dropped(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Past ~200 levels the SDK's stdio reader cannot parse a message at all, so it used to drop it: the client
    waited for an answer that never came. Such a request is now answered (a tool call with a tool error, anything
    else with a JSON-RPC error), and the server goes on serving."""
    too_deep = [
        tool_call(2, "run-model", {"endpoint_id": FLUX, "input": {"prompt": nested(300)}}),
        tool_call("three", "submit", {"endpoint_id": FLUX, "input": {"prompt": nested(900)}}),
        {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "fal://x", "_meta": nested(500)}},
    ]
    after = tool_call(5, "list-requests", {"limit": 1})
    replies, _ = raw_stdio_session([*initialize(), *too_deep, after], env_for(sandbox), tmp_path, answer_within_s=20)
    for call_id in (2, "three"):
        result = replies[call_id]["result"]
        assert result["isError"] is True
        message = result["content"][0]["text"]
        assert "nested too deeply" in message and "64 levels" in message, message
    assert replies[4]["error"]["code"] == -32600 and "nested too deeply" in replies[4]["error"]["message"]
    assert "result" in replies[5] and not replies[5]["result"].get("isError")
