"""Every tool through the real MCP client, in memory, over stdio and over streamable HTTP, against the fake fal.

Each scenario runs once per transport: what a user's agent sees must not depend on how it connects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from fal_mcp.sandbox import LOCKED_KEY, NGINX_503, SANDBOX_KEY, FakeFal, Fault, SandboxServer
from tests.conftest import env_for
from tests.harness import TOOL_HINTS, TRANSPORTS, HttpServer, connect, start_http_server

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
FAILS = "fal-ai/sandbox/always-fails"
PROMPT = {"prompt": "a red fox in snow"}


@pytest.fixture(scope="module")
def http_server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server(env_for(sandbox), tmp_path_factory.mktemp("http"))
    yield server
    server.stop()


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client_factory(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path, request: pytest.FixtureRequest
) -> Any:
    """Opens a client on this test's transport; HTTP shares one spawned server (with the sandbox key)."""

    @asynccontextmanager
    async def open_client(**settings: Any) -> AsyncIterator[Client]:
        url = request.getfixturevalue("http_server").url if transport == "http" else None
        async with connect(transport, sandbox, tmp_path, http_url=url, **settings) as client:
            yield client

    return open_client


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected an error, got {text_of(result)}"
    assert result.structured_content is None
    assert len(result.content) == 1
    return text_of(result)


async def test_lists_exactly_the_tools_with_contract_annotations(client_factory: Any) -> None:
    async with client_factory() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == set(TOOL_HINTS)
    for name, (read_only, destructive, idempotent, open_world) in TOOL_HINTS.items():
        tool = tools[name]
        assert tool.title and tool.description and len(tool.description) < 200
        hints = tool.annotations
        assert hints is not None
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint) == (
            read_only,
            destructive,
            idempotent,
            open_world,
        ), name
        assert tool.output_schema is not None and tool.output_schema.get("type") == "object"
        for field, schema in tool.input_schema["properties"].items():
            # an optional field's description sits in its non-null anyOf branch (where google-genai keeps it)
            typed = [branch for branch in schema.get("anyOf", [schema]) if branch.get("type") != "null"]
            assert schema.get("description") or typed[0].get("description"), f"{name}.{field} has no description"
    run = tools["run-model"].input_schema["properties"]
    assert {"endpoint_id", "app_owner", "app_id", "app_variant", "input", "mode", "wait_s", "logs"} <= set(run)
    assert {"priority", "hint", "start_timeout_s"} <= set(run)
    assert "webhook_url" in tools["submit"].input_schema["properties"]


async def test_run_model_queue_returns_the_envelope_with_progress(client_factory: Any) -> None:
    updates: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, message))

    async with client_factory() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool(
            "run-model", {"endpoint_id": FLUX, "input": PROMPT}, progress_callback=on_progress
        )
    envelope = structured(result)
    jsonschema.validate(envelope, tools["run-model"].output_schema or {})
    assert envelope["endpoint_id"] == FLUX
    assert envelope["status"] == "COMPLETED"
    assert envelope["request_id"]
    assert envelope["output"]["images"][0]["content_type"] == "image/png"
    assert "inference_time" in envelope["metrics"]
    assert json.loads(text_of(result).split("\n", 1)[1]) == envelope
    values = [value for value, _ in updates]
    assert values and values == sorted(set(values)), updates  # strictly increasing
    assert any("submitted" in (message or "") for _, message in updates)


async def test_run_model_sync_and_segment_form(client_factory: Any, fake: FakeFal) -> None:
    async with client_factory() as client:
        sync = structured(
            await client.call_tool(
                "run-model",
                {"app_owner": "fal-ai", "app_id": "flux", "app_variant": "schnell", "input": PROMPT, "mode": "sync"},
            )
        )
    assert sync["status"] == "COMPLETED" and sync["endpoint_id"] == FLUX
    assert sync["output"]["images"]
    # besides the run: the schema and price lookups ("models", "pricing") and the preview's download ("cdn"), none billed
    assert [r.route for r in fake.requests if r.route not in ("models", "pricing", "cdn")] == ["run"]


async def test_wait_budget_returns_the_handle_and_get_result_finishes(client_factory: Any, fake: FakeFal) -> None:
    async with client_factory() as client:
        handle = structured(
            await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "waves"}, "wait_s": 0.1})
        )
        assert handle["status"] in ("IN_QUEUE", "IN_PROGRESS")
        assert "output" not in handle
        assert "get-result" in handle["next_step"] and handle["request_id"] in handle["next_step"]
        assert not fake.jobs[handle["request_id"]].cancelled  # the job keeps running at fal
        early = structured(
            await client.call_tool("get-result", {"endpoint_id": VIDEO, "request_id": handle["request_id"]})
        )
        assert early["status"] in ("IN_QUEUE", "IN_PROGRESS") and early["next_step"]
        done = structured(
            await client.call_tool(
                "get-result", {"endpoint_id": VIDEO, "request_id": handle["request_id"], "wait_s": 30}
            )
        )
    assert done["status"] == "COMPLETED"
    assert done["output"]["video"]["content_type"] == "video/mp4"


async def test_submit_status_cancel(client_factory: Any, fake: FakeFal) -> None:
    async with client_factory() as client:
        submitted = structured(
            await client.call_tool(
                "submit",
                {
                    "endpoint_id": VIDEO,
                    "input": {"prompt": "x"},
                    "priority": "low",
                    "hint": "s1",
                    "start_timeout_s": 60,
                    "webhook_url": "https://hooks.example/done",
                },
            )
        )
        rid = submitted["request_id"]
        assert submitted["status"] == "IN_QUEUE" and "/fal-ai/kling-video/requests/" in submitted["status_url"]
        status = structured(await client.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": rid}))
        assert status["status"] == "IN_QUEUE" and isinstance(status["queue_position"], int)
        cancelled = structured(await client.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": rid}))
        assert cancelled["status"] == "CANCELLATION_REQUESTED"
        again = structured(await client.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": rid}))
        assert again["status"] == "ALREADY_COMPLETED"
        after = error_text(await client.call_tool("get-result", {"endpoint_id": VIDEO, "request_id": rid}))
    assert fake.jobs[rid].cancelled
    assert "cancel" in after.lower() and rid in after
    sent = fake.requests_for("submit")[0]
    assert sent.headers["x-fal-queue-priority"] == "low" and sent.headers["x-fal-runner-hint"] == "s1"
    assert sent.query["fal_webhook"] == "https://hooks.example/done"


async def test_status_logs(client_factory: Any, fake: FakeFal) -> None:
    fake.time_scale = 0.1
    async with client_factory() as client:
        rid = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))[
            "request_id"
        ]
        done = structured(
            await client.call_tool("get-result", {"endpoint_id": VIDEO, "request_id": rid, "wait_s": 30, "logs": True})
        )
        status = structured(
            await client.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": rid, "logs": True})
        )
    assert done["status"] == "COMPLETED"
    assert status["status"] == "COMPLETED" and status["logs"] and status["logs"][0]["message"]


async def test_failed_generation_is_an_error_but_its_status_is_not(client_factory: Any) -> None:
    async with client_factory() as client:
        failed = error_text(await client.call_tool("run-model", {"endpoint_id": FAILS, "input": {"prompt": "x"}}))
        rid = structured(await client.call_tool("submit", {"endpoint_id": FAILS, "input": {"prompt": "x"}}))[
            "request_id"
        ]
        await client.call_tool("get-result", {"endpoint_id": FAILS, "request_id": rid, "wait_s": 10})
        status = structured(await client.call_tool("get-status", {"endpoint_id": FAILS, "request_id": rid}))
    assert "runner_server_error" in failed and "Runner crashed" in failed
    assert status["status"] == "COMPLETED" and status["error"] and status["error_type"] == "runner_server_error"


async def test_invalid_input_names_the_fields(client_factory: Any) -> None:
    """fal's own 422, when the input is sent unchecked (test_ergonomics covers the check before sending)."""
    async with client_factory() as client:
        queued = error_text(
            await client.call_tool(
                "run-model",
                {"endpoint_id": FLUX, "input": {"num_images": 9, "image_size": "huge"}, "validate": False},
            )
        )
        sync = error_text(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"image_size": "huge"}, "mode": "sync", "validate": False}
            )
        )
    for message in (queued, sync):
        assert "422" in message and "prompt" in message and "image_size" in message and "Fix" in message
    assert "num_images" in queued


HOSTILE = [
    {"endpoint_id": "fal-ai/../../admin"},
    {"endpoint_id": "fal-ai/flux%2F..%2Fx"},
    {"endpoint_id": "evil.example@fal-ai/flux"},
    {"endpoint_id": "fal-ai/flux?x=1"},
    {"endpoint_id": "fal-ai/flux#x"},
    {"endpoint_id": "fal-ai\\flux"},
    {"endpoint_id": "fаl-ai/flux"},
    {"endpoint_id": "http://evil.example/x"},
    {"app_owner": "fal-ai", "app_id": "../x"},
    {"endpoint_id": FLUX, "app_owner": "fal-ai", "app_id": "flux"},
    {},
]


async def test_hostile_ids_are_refused_before_any_request(client_factory: Any, fake: FakeFal) -> None:
    async with client_factory() as client:
        for ids in HOSTILE:
            message = error_text(await client.call_tool("run-model", {**ids, "input": PROMPT}))
            assert message.startswith("run-model:"), message
            message = error_text(await client.call_tool("submit", {**ids, "input": PROMPT}))
            assert message.startswith("submit:")
        for tool in ("get-status", "get-result", "cancel"):
            for ids in HOSTILE[:3]:
                error_text(await client.call_tool(tool, {**ids, "request_id": "abc"}))
            for bad_rid in ("../../x", "a/b", "a?b", "a#b", "a%2F", ""):
                message = error_text(await client.call_tool(tool, {"endpoint_id": FLUX, "request_id": bad_rid}))
                assert "request_id" in message
        assert structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": PROMPT}))["output"]
    assert [r.route for r in fake.requests if r.route in ("run", "submit")] == ["submit"]
    assert all(r.route in ("models", "pricing", "submit", "stream", "status", "result", "cdn") for r in fake.requests)


async def test_wrong_argument_types_are_clear_errors(client_factory: Any) -> None:
    async with client_factory() as client:
        for tool, arguments in [
            ("run-model", {"endpoint_id": FLUX, "input": "a red fox"}),
            ("run-model", {"endpoint_id": FLUX, "input": PROMPT, "mode": "fast"}),
            ("run-model", {"endpoint_id": FLUX, "input": PROMPT, "wait_s": -1}),
            ("submit", {"endpoint_id": FLUX, "input": PROMPT, "priority": "urgent"}),
            ("submit", {"endpoint_id": FLUX, "input": PROMPT, "webhook_url": "javascript:alert(1)"}),
            ("get-status", {"endpoint_id": FLUX}),
            ("get-result", {"endpoint_id": FLUX, "request_id": 42}),
        ]:
            message = error_text(await client.call_tool(tool, arguments))
            assert tool in message
        assert structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": PROMPT, "mode": "sync"}))


async def test_unknown_endpoint_and_request(client_factory: Any) -> None:
    async with client_factory() as client:
        missing = error_text(await client.call_tool("run-model", {"endpoint_id": "fal-ai/no-such", "input": PROMPT}))
        unknown = error_text(await client.call_tool("get-status", {"endpoint_id": FLUX, "request_id": "0000-none"}))
        cancel = error_text(await client.call_tool("cancel", {"endpoint_id": FLUX, "request_id": "0000-none"}))
    assert "404" in missing and "fal-ai/no-such" in missing
    assert "404" in unknown and "0000-none" in unknown
    assert "404" in cancel


@pytest.mark.parametrize(
    ("fault", "tool", "expected"),
    [
        (
            Fault(route="submit", status=429, headers={"Retry-After": "5"}),
            "submit",
            ["429", "Nothing was queued", "5s"],
        ),
        (Fault(route="submit", status=503, body=NGINX_503), "submit", ["503", "fal"]),
        (Fault(route="submit", drop="after"), "submit", ["may have received", "not re-sent"]),
        (Fault(route="run", drop="after"), "run-model-sync", ["may have received", "not re-sent"]),
        (
            Fault(route="run", status=500, body={"detail": "boom", "error_type": "internal_error"}),
            "run-model-sync",
            ["500", "internal_error", "boom"],
        ),
        (
            [
                Fault(route="stream", status=503, body=NGINX_503),
                Fault(route="status", status=503, body=NGINX_503, times=20),
            ],
            "run-model",
            ["503", "do not run it again", "get-result"],
        ),
    ],
    ids=["429", "ingress-503", "dropped-submit", "dropped-run", "run-500", "status-outage-after-submit"],
)
async def test_fal_failures_become_one_clear_error(
    client_factory: Any, fake: FakeFal, fault: Fault | list[Fault], tool: str, expected: list[str]
) -> None:
    async with client_factory(retries=1) as client:
        for each in fault if isinstance(fault, list) else [fault]:
            fake.inject(each)
        arguments: dict[str, Any] = {"endpoint_id": FLUX, "input": PROMPT}
        if tool == "run-model-sync":
            tool, arguments["mode"] = "run-model", "sync"
        message = error_text(await client.call_tool(tool, arguments))
        for fragment in expected:
            assert fragment in message, message
        fake.clear_faults()
        assert structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": PROMPT}))["output"]
    billed = [r for r in fake.requests if r.route in ("submit", "run")]
    assert len(billed) == 2  # the failed call's one attempt, then the healthy call: nothing was re-sent


async def test_missing_bad_and_locked_keys(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    cases = [
        (None, ["FAL_KEY", "--sandbox"]),
        ("wrong-key-id:wrong-secret", ["401", "FAL_KEY"]),
        (LOCKED_KEY, ["403", "locked"]),
    ]
    for key, expected in cases:
        if transport == "http":
            server = start_http_server(env_for(sandbox, key=key), tmp_path)
            try:
                async with connect("http", sandbox, tmp_path, http_url=server.url) as client:
                    message = error_text(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": PROMPT}))
                    assert {t.name for t in (await client.list_tools()).tools} == set(TOOL_HINTS)  # still serving
            finally:
                server.stop()
        else:
            async with connect(transport, sandbox, tmp_path, key=key) as client:
                message = error_text(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": PROMPT}))
                assert {t.name for t in (await client.list_tools()).tools} == set(TOOL_HINTS)
        for fragment in expected:
            assert fragment in message, message
        if key is not None:
            assert key not in message
    assert all(r.headers.get("authorization") != f"Key {SANDBOX_KEY}" for r in fake.requests)
