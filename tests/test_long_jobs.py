"""Long-running jobs through the real client: progress with a heartbeat, the stream's request budget, a wait
budget that returns the handle, cancellation that reaches fal, a history that survives a crash, and MCP tasks.

The slow model here is the sandbox video model stretched to three minutes (60 s queued, 120 s running) and
time-scaled 50x, so each job takes 3.6 s of real time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, Fault, SandboxServer, default_models
from tests.conftest import OTHER_KEY, env_for, settings_for
from tests.harness import (
    HttpServer,
    connect,
    fal_mcp_command,
    http_server,
    initialize,
    raw_stdio_session,
    start_http_server,
)
from tests.tasks_client import TASKS, TasksClient

pytestmark = pytest.mark.anyio

VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
FLUX = "fal-ai/flux/schnell"
SCALE = 0.02
HEARTBEAT_S = "0.3"
TRANSPORTS = ("memory", "stdio", "http")


def three_minute_models() -> list[Any]:
    return [replace(m, queue_s=60.0, run_s=120.0) if VIDEO in m.endpoint_ids else m for m in default_models()]


@pytest.fixture(scope="module")
def slow_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(FakeFal(time_scale=SCALE, keys=(SANDBOX_KEY, OTHER_KEY), models=three_minute_models())) as s:
        yield s


@pytest.fixture
def slow_fake(slow_sandbox: SandboxServer) -> Iterator[FakeFal]:
    slow_sandbox.fake.reset()
    yield slow_sandbox.fake
    slow_sandbox.fake.reset()


@pytest.fixture(scope="module")
def slow_http(slow_sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http_server(
        env_for(slow_sandbox, FAL_MCP_HEARTBEAT_S=HEARTBEAT_S), tmp_path_factory.mktemp("slow-http"), "-v"
    )
    yield server
    server.stop()


@pytest.fixture
def open_client(slow_sandbox: SandboxServer, slow_fake: FakeFal, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    @asynccontextmanager
    async def opened(transport: str, **client_options: Any) -> AsyncIterator[Client]:
        if transport == "http":
            url = request.getfixturevalue("slow_http").url
            async with Client(url, **client_options) as client:
                yield client
            return
        if client_options:
            async with _client_with_options(transport, slow_sandbox, tmp_path, **client_options) as client:
                yield client
            return
        async with connect(transport, slow_sandbox, tmp_path, heartbeat_s=float(HEARTBEAT_S)) as client:
            yield client

    return opened


@asynccontextmanager
async def _client_with_options(
    transport: str, sandbox: SandboxServer, workdir: Path, **options: Any
) -> AsyncIterator[Client]:
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    from fal_mcp.server.build import create_server

    if transport == "memory":
        async with Client(create_server(settings_for(sandbox, heartbeat_s=float(HEARTBEAT_S))), **options) as client:
            yield client
    else:
        env = env_for(sandbox, FAL_MCP_HEARTBEAT_S=HEARTBEAT_S)
        params = StdioServerParameters(command=fal_mcp_command(), env=env, cwd=workdir)
        with (workdir / "stdio.stderr").open("a") as log:
            async with Client(stdio_client(params, errlog=log), **options) as client:
                yield client


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, [b.text for b in result.content if isinstance(b, TextContent)]
    assert result.structured_content is not None
    return result.structured_content


def routes_for(fake: FakeFal, request_id: str) -> list[str]:
    return [r.route for r in fake.requests if r.request_id == request_id or (r.route == "submit" and r.body)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_three_minute_job_streams_progress_with_heartbeat(
    open_client: Any, slow_fake: FakeFal, transport: str
) -> None:
    updates: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, message or ""))

    async with open_client(transport) as client:
        result = await client.call_tool(
            "run-model",
            {"endpoint_id": VIDEO, "input": {"prompt": "waves"}, "wait_s": 60},
            progress_callback=on_progress,
        )
    envelope = structured(result)
    assert envelope["status"] == "COMPLETED" and envelope["output"]["video"]["url"]
    messages = [message for _, message in updates]
    values = [value for value, _ in updates]
    assert values == sorted(set(values)), "progress values must strictly increase"
    assert messages[0].startswith("submitted to " + VIDEO)
    assert "queued, position 3" in messages and "running" in messages
    assert any(m.startswith("still running") for m in messages), messages  # the 2.4 s run has no news: heartbeats
    assert messages[-1] == "completed"
    rid = envelope["request_id"]
    to_fal = [r.route for r in slow_fake.requests if r.route != "cdn"]
    # the target: 3 requests per completed job, plus the model's schema and price, looked up once, then cached
    assert [r for r in to_fal if r not in ("models", "pricing")] == ["submit", "stream", "result"], to_fal
    assert len(to_fal) <= 5, to_fal
    assert all(r.request_id in (None, rid) for r in slow_fake.requests)


async def test_log_lines_become_progress(open_client: Any) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with open_client("memory") as client:
        structured(
            await client.call_tool(
                "run-model",
                {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "logs": True},
                progress_callback=on_progress,
            )
        )
    log_lines = [m for m in messages if m.startswith("running: ")]
    assert len(log_lines) >= 5 and len(set(log_lines)) == len(log_lines), messages


async def test_stream_refused_falls_back_to_adaptive_polling(open_client: Any, slow_fake: FakeFal) -> None:
    slow_fake.inject(Fault(route="stream", status=404, body={"detail": "Not Found"}))
    async with open_client("memory") as client:
        envelope = structured(await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))
    assert envelope["status"] == "COMPLETED"
    polls = len(slow_fake.requests_for("status"))
    # 3.6 s of job: polling that backs off needs far fewer looks than a fixed 100 ms loop (36)
    assert 3 <= polls <= 20, polls


@pytest.mark.parametrize(
    "fault",
    [
        Fault(route="stream", drop="before"),
        Fault(route="stream", events=2),
        Fault(route="stream", events=2, drop="after"),
    ],
    ids=["dropped-on-open", "ended-early", "broken-midway"],
)
async def test_a_stream_that_fails_falls_back_to_polling(open_client: Any, slow_fake: FakeFal, fault: Fault) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    slow_fake.inject(fault)
    async with open_client("memory") as client:
        envelope = structured(
            await client.call_tool(
                "run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}, progress_callback=on_progress
            )
        )
    assert envelope["status"] == "COMPLETED"
    assert slow_fake.requests_for("status")  # polling took over
    assert messages.count("running") == 1 and messages[-1] == "completed"  # and the narration did not restart


async def test_budget_expiry_returns_the_handle_and_the_job_goes_on(open_client: Any, slow_fake: FakeFal) -> None:
    async with open_client("stdio") as client:
        handle = structured(
            await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "wait_s": 0.5})
        )
        assert handle["status"] == "IN_QUEUE" and handle["next_step"].startswith("Still queued")
        assert not slow_fake.requests_for("cancel")
        # the endpoint may be left out now: the history knows where this request went
        done = structured(await client.call_tool("get-result", {"request_id": handle["request_id"], "wait_s": 30}))
    assert done["status"] == "COMPLETED" and done["endpoint_id"] == VIDEO


CANCEL_CASES = [
    ("memory", {}),
    ("stdio", {}),
    ("stdio", {"mode": "legacy"}),
    ("http", {}),
    ("http", {"mode": "legacy"}),
]


@pytest.mark.parametrize(
    ("transport", "options"), CANCEL_CASES, ids=["memory", "stdio", "stdio-legacy", "http", "http-legacy"]
)
async def test_a_cancelled_call_cancels_the_job_at_fal(
    open_client: Any, slow_fake: FakeFal, transport: str, options: dict[str, Any]
) -> None:
    async with open_client(transport, **options) as client:
        queued = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if (message or "").startswith("queued"):
                queued.set()

        async with anyio.create_task_group() as group:

            async def call() -> None:
                await client.call_tool(
                    "run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}, progress_callback=on_progress
                )

            group.start_soon(call)
            with anyio.fail_after(10):
                await queued.wait()
            group.cancel_scope.cancel()  # the user pressed stop
        (rid,) = slow_fake.jobs
        with anyio.fail_after(1.0):  # fal hears of it within a second
            while not slow_fake.jobs[rid].cancelled:
                await anyio.sleep(0.02)
        assert slow_fake.jobs[rid].state == "COMPLETED"  # nothing left running, nothing billing
        assert [r.request_id for r in slow_fake.requests_for("cancel")] == [rid]
        # the history notes it once fal's answer to the cancel is in, which may be just after fal acted on it
        with anyio.fail_after(2.0):
            while not any(
                r["request_id"] == rid and r["state"] in ("CANCELLATION_REQUESTED", "CANCELLED")
                for r in structured(await client.call_tool("list-requests", {"limit": 5}))["requests"]
            ):
                await anyio.sleep(0.05)


@pytest.mark.parametrize(
    ("transport", "options"),
    [("stdio", {}), ("http", {}), ("http", {"mode": "legacy"})],
    ids=["stdio", "http", "http-legacy"],
)
async def test_an_abandoned_get_result_wait_never_cancels_the_job(
    open_client: Any, slow_fake: FakeFal, transport: str, options: dict[str, Any]
) -> None:
    """get-result is read-only: a client giving up on its wait (as the TypeScript SDK does after 60 s) stops the
    wait, never the job, which the caller did not start through this call."""
    async with open_client(transport, **options) as client:
        submitted = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))
        rid = submitted["request_id"]
        waiting = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            waiting.set()

        async with anyio.create_task_group() as group:

            async def call() -> None:
                await client.call_tool(
                    "get-result",
                    {"request_id": rid, "endpoint_id": VIDEO, "wait_s": 30},
                    progress_callback=on_progress,
                )

            group.start_soon(call)
            with anyio.fail_after(10):
                await waiting.wait()  # the server is following the job for this call
            group.cancel_scope.cancel()  # the client gave up on the wait
        with anyio.fail_after(15):  # the job runs to its own end at fal
            while slow_fake.jobs[rid].state != "COMPLETED":
                await anyio.sleep(0.05)
        assert not slow_fake.jobs[rid].cancelled
        assert not slow_fake.requests_for("cancel")  # fal was never asked to cancel anything
        done = structured(await client.call_tool("get-result", {"request_id": rid, "endpoint_id": VIDEO}))
        assert done["status"] == "COMPLETED" and done["output"]["video"]["url"]
        listed = structured(await client.call_tool("list-requests", {"limit": 5}))["requests"]
    assert [r["state"] for r in listed if r["request_id"] == rid] == ["COMPLETED"]


async def test_a_killed_server_loses_nothing(slow_sandbox: SandboxServer, slow_fake: FakeFal, tmp_path: Path) -> None:
    env = env_for(slow_sandbox, FAL_MCP_STATE_DIR=str(tmp_path / "state"))
    first = start_http_server(env, tmp_path)

    async def doomed_call() -> None:
        with contextlib.suppress(Exception):  # its server is about to die under it
            async with Client(first.url) as client:
                await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "keep me"}})

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(doomed_call)
            with anyio.fail_after(10):
                while not slow_fake.jobs:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)
            first.process.send_signal(signal.SIGKILL)  # the machine died mid-job
            first.process.wait(timeout=10)
    finally:
        first.stop()
    (rid,) = slow_fake.jobs
    assert not slow_fake.jobs[rid].cancelled
    with http_server(env, tmp_path) as second:
        async with Client(second.url) as client:
            listed = structured(await client.call_tool("list-requests", {"state": "active"}))["requests"]
            assert [r["request_id"] for r in listed] == [rid]
            assert listed[0]["endpoint_id"] == VIDEO and listed[0]["input_summary"] == {"prompt": "keep me"}
            done = structured(await client.call_tool("get-result", {"request_id": rid, "wait_s": 30}))
            assert done["status"] == "COMPLETED" and done["output"]["video"]["url"]
            record = json.loads((await client.read_resource(f"fal://requests/{rid}")).contents[0].text)  # type: ignore[union-attr]
    assert record["state"] == "COMPLETED" and record["media_urls"] == [done["output"]["video"]["url"]]


# -- MCP tasks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tasks_capable_client_completes_a_run_model_task(
    open_client: Any, slow_fake: FakeFal, transport: str
) -> None:
    tasks = TasksClient()
    async with open_client(transport, extensions=[tasks]) as client:
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})
    envelope = structured(result)
    assert envelope["status"] == "COMPLETED" and envelope["output"]["video"]["url"]
    assert len(tasks.created) == 1 and tasks.created[0].status == "working"
    messages = [poll.get("statusMessage") for poll in tasks.polls]
    assert any((m or "").startswith(("queued", "running", "still")) for m in messages), messages
    assert tasks.polls[-1]["status"] == "completed"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tasks_capable_client_cancels_a_run_model_task_at_fal(
    open_client: Any, slow_fake: FakeFal, transport: str
) -> None:
    tasks = TasksClient(cancel_after_s=0.5)
    async with open_client(transport, extensions=[tasks]) as client:
        result = await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})
    assert result.is_error and "cancelled" in result.content[0].text  # type: ignore[union-attr]
    (rid,) = slow_fake.jobs
    assert slow_fake.jobs[rid].cancelled and slow_fake.jobs[rid].state == "COMPLETED"
    assert tasks.polls[-1]["status"] == "cancelled"


async def test_legacy_connections_never_get_a_task(
    open_client: Any, tmp_path: Path, slow_sandbox: SandboxServer
) -> None:
    """A handshake-era client that claims the extension still gets a plain result (a task is no legacy result)."""
    tasks = TasksClient()
    async with open_client("memory", mode="legacy", extensions=[tasks]) as client:
        structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
    assert tasks.created == []
    messages = [
        *initialize({"extensions": {TASKS: {}}}),
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "run-model", "arguments": {"endpoint_id": FLUX, "input": {"prompt": "x"}}},
        },
    ]
    replies, _ = raw_stdio_session(messages, env_for(slow_sandbox), tmp_path)
    assert replies[2]["result"]["structuredContent"]["status"] == "COMPLETED"
    assert "resultType" not in replies[2]["result"]


async def test_tasks_are_private_to_their_caller(slow_sandbox: SandboxServer, slow_fake: FakeFal) -> None:
    from fal_mcp.server.build import create_server
    from tests.tasks_client import GetTask, TaskIdParams

    tasks = TasksClient()
    server = create_server(settings_for(slow_sandbox))
    async with Client(server, extensions=[tasks]) as client:
        await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    other = create_server(settings_for(slow_sandbox, key=OTHER_KEY))
    async with Client(other, extensions=[TasksClient()]) as client:
        from mcp.shared.exceptions import MCPError
        from pydantic import TypeAdapter

        with pytest.raises(MCPError, match="not found"):
            await client.session.send_request(
                GetTask(params=TaskIdParams(taskId=tasks.created[0].task_id)), TypeAdapter(dict[str, Any])
            )


# -- the history ----------------------------------------------------------------------------------------


async def test_history_is_partitioned_by_key(slow_sandbox: SandboxServer, slow_fake: FakeFal, tmp_path: Path) -> None:
    from fal_mcp.server.build import create_server

    state = str(tmp_path / "shared")
    mine = create_server(settings_for(slow_sandbox, state_dir=state))
    theirs = create_server(settings_for(slow_sandbox, key=OTHER_KEY, state_dir=state))
    async with Client(mine) as me, Client(theirs) as them:
        my_rid = structured(await me.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "mine"}}))[
            "request_id"
        ]
        their_rid = structured(await them.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "theirs"}}))[
            "request_id"
        ]
        assert [r["request_id"] for r in structured(await me.call_tool("list-requests", {}))["requests"]] == [my_rid]
        assert [r["request_id"] for r in structured(await them.call_tool("list-requests", {}))["requests"]] == [
            their_rid
        ]
        refused = await them.call_tool("get-status", {"request_id": my_rid})
        assert refused.is_error and "history" in refused.content[0].text  # type: ignore[union-attr]
        with pytest.raises(Exception, match="not in this server's request history"):
            await them.read_resource(f"fal://requests/{my_rid}")


async def test_history_filters_and_keeps_lost_submits(
    slow_sandbox: SandboxServer, slow_fake: FakeFal, tmp_path: Path
) -> None:
    from fal_mcp.server.build import create_server

    server = create_server(settings_for(slow_sandbox, state_dir=str(tmp_path / "h")))
    async with Client(server) as client:
        done = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a"}}))
        queued = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "b"}}))
        await client.call_tool("run-model", {"endpoint_id": "fal-ai/sandbox/always-fails", "input": {}})
        await client.call_tool("submit", {"endpoint_id": "fal-ai/no-such-model", "input": {}})  # 404: nothing exists
        slow_fake.inject(Fault(route="submit", drop="after"))
        lost = await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "lost"}})
        assert lost.is_error

        async def listed(**filters: Any) -> list[dict[str, Any]]:
            return structured(await client.call_tool("list-requests", filters))["requests"]

        everything = await listed()
        assert [r["state"] for r in everything] == ["UNKNOWN", "FAILED", "IN_QUEUE", "COMPLETED"]
        assert "request_id" not in everything[0] and "lost" in everything[0]["error"]
        assert everything[1]["error_type"] == "runner_server_error"
        assert everything[3]["request_id"] == done["request_id"] and everything[3]["media_urls"]
        assert [r["request_id"] for r in await listed(state="active")] == [queued["request_id"]]
        assert [r["state"] for r in await listed(endpoint_id="fal-ai/flux")] == ["UNKNOWN", "COMPLETED"]
        assert len(await listed(limit=1)) == 1


async def test_history_can_be_turned_off(slow_sandbox: SandboxServer, slow_fake: FakeFal) -> None:
    from fal_mcp.server.build import create_server

    async with Client(create_server(settings_for(slow_sandbox, state_dir="off"))) as client:
        structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a"}}))
        result = structured(await client.call_tool("list-requests", {}))
    assert result == {"requests": [], "history": "off"}


async def test_processes_share_one_history(slow_sandbox: SandboxServer, slow_fake: FakeFal, tmp_path: Path) -> None:
    """Two servers (as two clients' stdio processes, or two replicas) write the same file concurrently."""
    env = env_for(slow_sandbox, FAL_MCP_STATE_DIR=str(tmp_path / "shared"))
    with http_server(env, tmp_path) as one, http_server(env, tmp_path) as two:
        async with Client(one.url) as first, Client(two.url) as second, anyio.create_task_group() as group:
            for client in (first, second) * 8:
                group.start_soon(client.call_tool, "submit", {"endpoint_id": FLUX, "input": {"prompt": "p"}})
        async with Client(two.url) as client:
            listed = structured(await client.call_tool("list-requests", {"limit": 100}))["requests"]
    assert len(listed) == 16 and {r["request_id"] for r in listed} == set(slow_fake.jobs)


def test_state_dir_default_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fal_mcp.store.records import default_state_dir, resolve_state_dir

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if os.name == "posix" and "darwin" not in os.sys.platform:
        assert default_state_dir() == tmp_path / "fal-mcp"
    assert resolve_state_dir(None) == default_state_dir()
    assert resolve_state_dir("off") is None and resolve_state_dir("OFF") is None
    assert resolve_state_dir("~/x") == tmp_path / "home" / "x"


async def test_resource_arguments_complete_from_the_history(
    slow_sandbox: SandboxServer, slow_fake: FakeFal, tmp_path: Path
) -> None:
    from mcp.types import ResourceTemplateReference

    from fal_mcp.server.build import create_server

    state = str(tmp_path / "completions")
    async with Client(create_server(settings_for(slow_sandbox, state_dir=state))) as client:
        rids = [
            structured(await client.call_tool("submit", {"endpoint_id": model, "input": {"prompt": "x"}}))["request_id"]
            for model in (FLUX, VIDEO, FLUX)
        ]
        requests_ref = ResourceTemplateReference(uri="fal://requests/{request_id}")
        everything = await client.complete(requests_ref, {"name": "request_id", "value": ""})
        one = await client.complete(requests_ref, {"name": "request_id", "value": rids[1][:8]})
        schema_ref = ResourceTemplateReference(uri="fal://models/{+endpoint_id}/schema")
        endpoints = await client.complete(schema_ref, {"name": "endpoint_id", "value": "fal-ai/"})
        kling = await client.complete(schema_ref, {"name": "endpoint_id", "value": "fal-ai/k"})
    assert everything.completion.values == rids[::-1]  # newest first
    assert one.completion.values == [rids[1]]
    assert endpoints.completion.values == [FLUX, VIDEO]  # each once, the latest use first
    assert kling.completion.values == [VIDEO]
    async with Client(create_server(settings_for(slow_sandbox, key=None, state_dir=state, auth="fal-key"))) as client:
        hidden = await client.complete(requests_ref, {"name": "request_id", "value": ""})
    assert hidden.completion.values == []  # whose history it would be is not known here: offer none
