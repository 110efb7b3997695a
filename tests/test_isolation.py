"""One caller never changes what another gets: a bogus key does not switch input checks off, and a flood of calls
does not evict another caller's tasks.

Both run against a spawned `fal-mcp --transport http --auth fal-key` (each caller brings its own key, as on a
shared server), with real MCP clients and the sandbox fake fal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import HttpServer, bearer_client, start_http_server
from tests.tasks_client import GetTask, TaskIdParams, TasksClient
from tests.test_tools import error_text

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
BOGUS_KEY = "bogus-key-id:bogus-key-secret-0000000000"
"""Key-shaped, so the gate lets it through to fal, which refuses it (401)."""


@pytest.fixture
def byok(sandbox: SandboxServer, tmp_path: Path) -> Iterator[HttpServer]:
    """A fresh server per test: its model catalog and tasks start empty."""
    server = start_http_server(env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key"), tmp_path)
    yield server
    server.stop()


async def test_a_bogus_key_never_switches_input_checks_off_for_another_caller(byok: HttpServer, fake: FakeFal) -> None:
    async with bearer_client(byok.url, BOGUS_KEY) as intruder:
        refused = error_text(await intruder.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
    assert "fal rejected the key" in refused
    assert [r.route for r in fake.requests] == ["models", "pricing", "submit"]  # its schema and price lookups: 401 too
    async with bearer_client(byok.url, SANDBOX_KEY) as victim:
        mistaken = error_text(
            await victim.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x", "num_images": "two"}})
        )
    assert "input refused before sending" in mistaken and "num_images" in mistaken
    victims = [r.route for r in fake.requests if r.headers.get("authorization") == f"Key {SANDBOX_KEY}"]
    assert victims == ["models"]  # checked against the schema, and nothing was queued or billed


@pytest.fixture
def byok_unlimited(sandbox: SandboxServer, tmp_path: Path) -> Iterator[HttpServer]:
    """As `byok`, with the per-key limits off: only the task store's own bounds are left to act."""
    env = env_for(
        sandbox, key=None, FAL_MCP_AUTH="fal-key", FAL_MCP_MAX_RUNNING_JOBS="0", FAL_MCP_SUBMITS_PER_MINUTE="0"
    )
    server = start_http_server(env, tmp_path)
    yield server
    server.stop()


async def get_task(client: Client, task_id: str) -> dict[str, Any]:
    return await client.session.send_request(GetTask(params=TaskIdParams(taskId=task_id)), TypeAdapter(dict[str, Any]))


async def test_a_flood_of_calls_never_evicts_another_callers_task(byok_unlimited: HttpServer, fake: FakeFal) -> None:
    url, run = byok_unlimited.url, {"endpoint_id": FLUX, "input": {"prompt": "x"}}
    victim_tasks = TasksClient()
    async with bearer_client(url, SANDBOX_KEY, extensions=[victim_tasks]) as victim:
        assert not (await victim.call_tool("run-model", run)).is_error
        (kept,) = victim_tasks.created

        # 1,000 calls that fail (a bogus key: fal refuses the submit) leave no task behind
        flood_tasks = TasksClient()
        async with bearer_client(url, BOGUS_KEY, extensions=[flood_tasks]) as flood:
            calls = iter(range(1000))

            async def fail() -> None:
                while next(calls, None) is not None:
                    assert "fal rejected the key" in error_text(await flood.call_tool("run-model", run))

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(fail)
        assert flood_tasks.created == []  # answered directly: no record for a call that failed before fal took it

        # a valid key running 120 tasks fills its own quota and then gives up its own oldest finished ones
        busy_tasks = TasksClient()
        async with bearer_client(url, OTHER_KEY, extensions=[busy_tasks]) as busy:
            for _ in range(6):
                async with anyio.create_task_group() as group:
                    for _ in range(20):
                        group.start_soon(busy.call_tool, "run-model", run)
            assert len(busy_tasks.created) == 120
            with pytest.raises(MCPError, match="not found"):
                await get_task(busy, busy_tasks.created[0].task_id)  # its own oldest went first
            assert (await get_task(busy, busy_tasks.created[-1].task_id))["status"] == "completed"

        survived = await get_task(victim, kept.task_id)
    assert survived["status"] == "completed" and survived["result"]["structuredContent"]["status"] == "COMPLETED"
