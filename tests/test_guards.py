"""Guards: which endpoints, how much input, how many running jobs and submits a minute per key.

The policy itself is a pure table; the rest runs through the real server (in memory for the tool-side checks, a
spawned `--auth fal-key` server for the per-key limits, over MCP and REST), against the fake fal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client

from fal_mcp.jobs.guards import EndpointPolicy
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.server.build import create_server
from fal_mcp.store import counters as counters_module
from fal_mcp.store.counters import Counters
from fal_mcp.store.database import StoreUnavailable
from tests.conftest import OTHER_KEY, env_for, settings_for
from tests.harness import HttpServer, bearer_client, connect, start_http_server
from tests.postgres import Cluster
from tests.test_tools import error_text, text_of

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"


@pytest.mark.parametrize(
    ("allowed", "denied", "endpoint_id", "permitted"),
    [
        ((), (), "fal-ai/flux/schnell", True),
        (("fal-ai/flux/*",), (), "fal-ai/flux/schnell", True),
        (("fal-ai/flux/*",), (), "fal-ai/flux", False),
        (("fal-ai/flux*",), (), "fal-ai/flux", True),
        (("fal-ai/*",), (), "fal-ai/kling-video/v2/master/text-to-video", True),  # `*` crosses '/'
        (("fal-ai/*",), (), "workflows/fal-ai/x", False),
        ((), ("*video*",), "fal-ai/kling-video/v2/master/text-to-video", False),
        (("fal-ai/*",), ("fal-ai/flux/dev",), "fal-ai/flux/dev", False),  # deny wins
        (("fal-ai/*",), ("fal-ai/flux/dev",), "fal-ai/flux/schnell", True),
        (("fal-ai/flux/*",), (), "FAL-AI/flux/schnell", False),  # case-sensitive, as fal's ids are
        (("fal-ai/flux/[sd]*",), (), "fal-ai/flux/dev", True),
    ],
)
def test_endpoint_policy(allowed: tuple[str, ...], denied: tuple[str, ...], endpoint_id: str, permitted: bool) -> None:
    assert EndpointPolicy(allowed, denied).permits(endpoint_id) is permitted


async def test_endpoint_lists_are_checked_on_every_tool_before_any_request(
    sandbox: SandboxServer, fake: FakeFal
) -> None:
    settings = settings_for(sandbox, allowed_endpoints="fal-ai/flux/*, fal-ai/fast-sdxl", denied_endpoints="*/dev")
    async with Client(create_server(settings)) as client:
        ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
        assert not ran.is_error, text_of(ran)
        mark = len(fake.requests)
        refusals = [
            error_text(
                await client.call_tool("run-model", {"endpoint_id": "fal-ai/flux/dev", "input": {"prompt": "x"}})
            ),
            error_text(
                await client.call_tool(
                    "run-model",
                    {"app_owner": "fal-ai", "app_id": "flux", "app_variant": "dev", "input": {}, "mode": "sync"},
                )
            ),
            error_text(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})),
            error_text(await client.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": "abc"})),
            error_text(await client.call_tool("get-result", {"endpoint_id": "fal-ai/flux/dev", "request_id": "abc"})),
            error_text(await client.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": "abc"})),
        ]
    assert len(fake.requests) == mark  # nothing was sent for any of them
    for message in refusals:
        assert "not allowed on this server" in message and "FAL_MCP_DENIED_ENDPOINTS" in message
        assert "Allowed here: fal-ai/flux/*, fal-ai/fast-sdxl." in message
    assert refusals[0].startswith("run-model:") and refusals[3].startswith("get-status:")


async def test_input_size_cap(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with Client(create_server(settings_for(sandbox, max_input_bytes=200))) as client:
        big = {"prompt": "é" * 100}  # 200 bytes of UTF-8, 213 as compact JSON
        for tool, extra in (("run-model", {}), ("run-model", {"mode": "sync"}), ("submit", {})):
            message = error_text(await client.call_tool(tool, {"endpoint_id": FLUX, "input": big, **extra}))
            assert "213 bytes" in message and "at most 200" in message and "FAL_MCP_MAX_INPUT_BYTES" in message
        assert not fake.requests
        ok = await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "é" * 90}})
        assert not ok.is_error


async def test_a_finished_job_stops_counting_at_once_so_every_job_costs_three_requests(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """The operation that sees a job end tells the guards: the running-jobs limit (20 by default) never makes
    them ask fal about finished jobs, so each completed run costs submit, stream and result, sustained."""
    async with connect("stdio", sandbox, tmp_path, previews=False) as client:
        warm_up = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "warm-up"}})
        assert not warm_up.is_error, text_of(warm_up)  # the model's schema is looked up once, then cached
        per_job: list[list[str]] = []
        for index in range(30):
            mark = len(fake.requests)
            result = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": f"job {index}"}})
            assert not result.is_error, text_of(result)
            per_job.append([r.route for r in fake.requests[mark:]])
    assert per_job == [["submit", "stream", "result"]] * 30


@pytest.fixture(scope="module")
def limited(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    home = tmp_path_factory.mktemp("limited")  # a deployment of its own: its own store, so its own counts
    env = env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key", FAL_MCP_MAX_RUNNING_JOBS="2", FAL_MCP_STATE_DIR=str(home))
    server = start_http_server(env, home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rate_limited(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    home = tmp_path_factory.mktemp("rate")
    env = env_for(
        sandbox, key=None, FAL_MCP_AUTH="fal-key", FAL_MCP_SUBMITS_PER_MINUTE="4", FAL_MCP_STATE_DIR=str(home)
    )
    server = start_http_server(env, home, "--rest")
    yield server
    server.stop()


async def test_running_jobs_limit_is_per_key_and_frees_up_when_a_job_ends(limited: HttpServer, fake: FakeFal) -> None:
    fake.time_scale = 1.0  # the videos stay queued for the whole test
    video: dict[str, Any] = {"endpoint_id": VIDEO, "input": {"prompt": "x"}}
    async with bearer_client(limited.url, SANDBOX_KEY) as alice, bearer_client(limited.url, OTHER_KEY) as bob:
        first = (await alice.call_tool("submit", video)).structured_content or {}
        second = (await alice.call_tool("submit", video)).structured_content or {}
        third = error_text(await alice.call_tool("run-model", {**video, "mode": "sync"}))
        assert "already has 2 requests running" in third and "FAL_MCP_MAX_RUNNING_JOBS=2" in third
        assert "cancel" in third
        assert len(fake.requests_for("submit")) == 2 and not fake.requests_for("run")
        # fal was asked whether those two were still running, with Alice's key
        assert {r.headers.get("authorization") for r in fake.requests_for("status")} == {f"Key {SANDBOX_KEY}"}

        bob_job = await bob.call_tool("submit", video)  # another key has its own count
        assert not bob_job.is_error, text_of(bob_job)

        cancelled = await alice.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": first["request_id"]})
        assert not cancelled.is_error
        again = await alice.call_tool("submit", video)
        assert not again.is_error, text_of(again)
    assert second["request_id"] in fake.jobs


async def test_submits_per_minute_is_per_key_with_a_retry_time(rate_limited: HttpServer, fake: FakeFal) -> None:
    url = f"{rate_limited.base}/v1/models/{FLUX}/requests"
    bob = {"Authorization": f"Bearer {OTHER_KEY}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(4):
            accepted = await http.post(url, json={"prompt": "x"}, headers=bob)
            assert accepted.status_code == 200, accepted.text
        refused = await http.post(url, json={"prompt": "x"}, headers=bob)
        alice = await http.post(url, json={"prompt": "x"}, headers={"Authorization": f"Bearer {SANDBOX_KEY}"})
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert "at most 4 requests per minute" in message and "FAL_MCP_SUBMITS_PER_MINUTE" in message
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and f"Retry in {refused.headers['retry-after']}s" in message
    assert alice.status_code == 200  # another key has its own minute
    assert [r.headers.get("authorization") for r in fake.requests_for("submit")] == [f"Key {OTHER_KEY}"] * 4 + [
        f"Key {SANDBOX_KEY}"
    ]
    async with bearer_client(rate_limited.url, OTHER_KEY) as client:
        over = error_text(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
    assert over.startswith("run-model: this key may start at most 4 requests per minute")


async def test_a_finished_job_is_reported_to_the_running_count_once(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking about a completed request again (a reader polling get-status) writes nothing more to the store: the
    job stopped counting the first time it was seen to end, and a store write is a thread hop or a round trip."""
    told: list[list[str]] = []
    tell, tell_soon = Counters.ended, Counters.ended_soon

    async def counted(self: Counters, partition: str, request_ids: list[str]) -> None:
        told.append(request_ids)
        await tell(self, partition, request_ids)

    def counted_soon(
        self: Counters, partition: str, request_id: str, failed: Callable[[StoreUnavailable], None]
    ) -> None:
        told.append([request_id])
        tell_soon(self, partition, request_id, failed)

    monkeypatch.setattr(Counters, "ended", counted)
    monkeypatch.setattr(Counters, "ended_soon", counted_soon)
    async with Client(create_server(settings_for(sandbox, max_running_jobs=5))) as client:
        ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
        assert not ran.is_error, text_of(ran)
        request_id = (ran.structured_content or {})["request_id"]
        for _ in range(5):
            status = await client.call_tool("get-status", {"endpoint_id": FLUX, "request_id": request_id})
            assert (status.structured_content or {})["status"] == "COMPLETED"
    assert told == [[request_id]]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_answer_does_not_wait_for_the_running_count_but_the_next_start_does(
    sandbox: SandboxServer, fake: FakeFal, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, backend: str
) -> None:
    """A job seen to end is written off the running count behind its answer's back (that write is a thread hop on
    the way from fal's completion to the caller); the next start in this process waits for the write, so with a
    limit of one job it is admitted without asking fal whether the first job ended. (SQLite's one connection orders
    the two anyway; PostgreSQL's pool would not.)"""
    store: dict[str, Any] = {}
    if backend == "postgres":
        cluster: Cluster = request.getfixturevalue("cluster")
        store["database_url"] = cluster.url(cluster.create_database())
    released = threading.Event()
    forget = counters_module._forget  # pyright: ignore[reportPrivateUsage]

    def held(db: Any, partition: str, request_ids: list[str]) -> None:
        released.wait(10)
        forget(db, partition, request_ids)

    monkeypatch.setattr(counters_module, "_forget", held)
    async with Client(create_server(settings_for(sandbox, max_running_jobs=1, **store))) as client:
        with anyio.fail_after(5):  # the write is held: an answer waiting for it would never come
            first = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
        assert not first.is_error, text_of(first)
        mark = len(fake.requests)
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, lambda: time.sleep(0.3) or released.set())
            second = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "y"}})
            assert not second.is_error, text_of(second)
    # the second job's own three requests (and its picture, for the preview): no status asked about the first
    assert [r.route for r in fake.requests[mark:] if r.route != "cdn"] == ["submit", "stream", "result"]
