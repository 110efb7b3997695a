"""Many calls waiting on one request: they share one follow of it and one fetch of its output, each keeps its own
budget and progress, and nothing is shared between callers who pay with different keys or act in different
partitions.

Through a spawned `fal-mcp --transport http` and real MCP clients, against the sandbox fake fal, whose record of
the requests it received is what the tests count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from fal_mcp.jobs.guards import EndpointPolicy, Guards
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.server.build import create_server
from fal_mcp.store.counters import Counters
from fal_mcp.store.database import StoreUnavailable
from fal_mcp.store.sqlite import SqliteDatabase
from tests.conftest import OTHER_KEY, env_for, settings_for
from tests.harness import bearer_client, start_http_server
from tests.test_auth import SECOND_TOKEN, TOKEN
from tests.test_tools import structured, text_of

pytestmark = pytest.mark.anyio

VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
SCALE = 0.5
"""The video model's 6 s queued and 12 s running take 3 s and 6 s here: long enough for every wait to join."""
WAITS = 20


async def until(done: Callable[[], bool]) -> None:
    with anyio.fail_after(30):
        while not done():
            await anyio.sleep(0.05)


def requests_on(fake: FakeFal, request_id: str) -> list[str]:
    return [r.route for r in fake.requests if r.request_id == request_id]


async def while_owner_waits(owner: Client, other: Client) -> tuple[str, Any, Any]:
    """The owner submits the video and waits on it; once it hears progress, `other` waits on the same request. The
    request id, the owner's result, the other's."""
    rid = structured(await owner.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))["request_id"]
    waiting = {"endpoint_id": VIDEO, "request_id": rid, "wait_s": 60}
    following = anyio.Event()
    owners: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        following.set()

    async def owner_waits() -> None:
        owners.append(await owner.call_tool("get-result", waiting, progress_callback=on_progress))

    async with anyio.create_task_group() as group:
        group.start_soon(owner_waits)
        with anyio.fail_after(30):
            await following.wait()
        others = await other.call_tool("get-result", waiting)
    return rid, owners[0], others


async def test_waits_on_one_request_share_one_follow_and_one_fetch(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A first wait follows the job; twenty more join it and each hears its progress; a short wait returns the
    handle while they go on; the first gives up (its client cancels it) and another takes the follow over. fal
    sees two status streams (the first wait's, the takeover's), one result request, no cancel, and every wait
    gets the output."""
    fake.time_scale = SCALE
    server = start_http_server(env_for(sandbox, FAL_MCP_HEARTBEAT_S="0.3"), tmp_path)
    heard: defaultdict[str, list[str]] = defaultdict(list)
    results: dict[str, Any] = {}
    try:
        async with Client(server.url) as client:
            rid = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))[
                "request_id"
            ]
            waiting = {"endpoint_id": VIDEO, "request_id": rid, "wait_s": 60}

            def progress(name: str) -> Callable[[float, float | None, str | None], Awaitable[None]]:
                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    heard[name].append(message or "")

                return on_progress

            async def wait(name: str, arguments: dict[str, Any]) -> None:
                results[name] = await client.call_tool("get-result", arguments, progress_callback=progress(name))

            names = [f"wait {n}" for n in range(WAITS)]
            async with anyio.create_task_group() as waits, anyio.create_task_group() as first:
                first.start_soon(wait, "first", waiting)
                await until(lambda: bool(heard["first"]))  # it follows the job
                for name in names:
                    waits.start_soon(wait, name, waiting)
                await until(lambda: all(heard[name] for name in names))  # each has heard the job's state
                await wait("short", {**waiting, "wait_s": 0.5})
                short_ended_first = not any(name in results for name in names)
                first.cancel_scope.cancel()  # the client gives up on the wait that follows the job
    finally:
        server.stop()
    short = structured(results["short"])
    assert short["status"] in ("IN_QUEUE", "IN_PROGRESS") and short["next_step"].startswith("Still")
    assert short_ended_first  # its budget ran out while the others went on waiting
    assert "first" not in results
    outputs = {structured(results[name])["output"]["video"]["url"] for name in names}
    assert len(outputs) == 1 and all(structured(results[name])["status"] == "COMPLETED" for name in names)
    assert all(any("running" in message for message in heard[name]) for name in names)
    routes = requests_on(fake, rid)
    assert routes.count("stream") == 2 and routes.count("result") == 1, routes
    assert "cancel" not in routes and not fake.jobs[rid].cancelled  # get-result never cancels, shared or not


async def test_waits_with_logs_each_hear_every_log_line(sandbox: SandboxServer, fake: FakeFal) -> None:
    """Five waits asking for logs share one stream with logs, and each turns every log line into its own progress;
    a wait without logs follows apart (fal sends logs only when asked)."""
    fake.time_scale = SCALE
    heard: defaultdict[int, list[str]] = defaultdict(list)
    results: list[Any] = []
    async with Client(create_server(settings_for(sandbox))) as client:
        rid = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))[
            "request_id"
        ]

        async def wait(n: int, logs: bool) -> None:
            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                heard[n].append(message or "")

            arguments = {"endpoint_id": VIDEO, "request_id": rid, "wait_s": 60, "logs": logs}
            results.append(await client.call_tool("get-result", arguments, progress_callback=on_progress))

        async with anyio.create_task_group() as group:
            for n in range(5):
                group.start_soon(wait, n, True)
            group.start_soon(wait, 5, False)
            await until(lambda: all(heard[n] for n in range(6)))
            assert fake.jobs[rid].state == "IN_QUEUE"  # every wait was there before the first log line
    assert len(results) == 6 and all(structured(r)["status"] == "COMPLETED" for r in results)
    lines = [[m for m in heard[n] if m.startswith("running: ")] for n in range(6)]
    assert len(lines[0]) >= 5 and all(mine == lines[0] for mine in lines[1:5]), lines
    assert lines[5] == []
    streams = [r for r in fake.requests if r.request_id == rid and r.route == "stream"]
    assert sorted(r.query.get("logs", "0") for r in streams) == ["0", "1"]
    assert requests_on(fake, rid).count("result") == 2  # a follow apart, an output fetch apart


async def test_waits_are_never_shared_between_keys(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    """With `--auth fal-key` each caller's key authenticates its own requests: a wait with another key on the same
    request id is not joined to the owner's follow (it would hear the owner's job); fal is asked with its key."""
    fake.time_scale = SCALE
    server = start_http_server(env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key"), tmp_path)
    try:
        async with bearer_client(server.url, SANDBOX_KEY) as owner, bearer_client(server.url, OTHER_KEY) as other:
            rid, done, refused = await while_owner_waits(owner, other)
    finally:
        server.stop()
    url = structured(done)["output"]["video"]["url"]
    assert refused.is_error and url not in text_of(refused)
    asked = [r for r in fake.requests if r.request_id == rid and r.headers.get("authorization") == f"Key {OTHER_KEY}"]
    assert asked  # fal itself was asked, with the other caller's own key


async def test_waits_are_never_shared_between_partitions(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    """Two token holders on one server key: one waits on its request; the other's wait on that request (model named,
    so fal would answer the shared key) is refused as not its own, rather than joined to the first's follow."""
    fake.time_scale = SCALE
    env = env_for(
        sandbox, FAL_MCP_AUTH="token", FAL_MCP_AUTH_TOKENS=f"{TOKEN},{SECOND_TOKEN}", FAL_MCP_STATE_DIR=str(tmp_path)
    )
    server = start_http_server(env, tmp_path)
    try:
        async with bearer_client(server.url, TOKEN) as alice, bearer_client(server.url, SECOND_TOKEN) as bob:
            rid, done, refused = await while_owner_waits(alice, bob)
    finally:
        server.stop()
    assert structured(done)["status"] == "COMPLETED"
    assert refused.is_error and "of yours" in text_of(refused)
    assert requests_on(fake, rid).count("result") == 1  # alice's, alone


async def test_calls_seeing_a_job_end_together_tell_the_store_once(tmp_path: Path) -> None:
    """Two hundred waits hear the same job end at once: the running-jobs count in the store is updated once, not
    once each (a thread hop or a database round trip apiece); a write that failed is tried again by the next."""
    writes: list[list[str]] = []

    class Counted(Counters):
        async def ended(self, partition: str, request_ids: list[str]) -> None:
            writes.append(request_ids)
            if len(writes) == 1 and partition == "failing":
                raise StoreUnavailable("the store is down")
            await super().ended(partition, request_ids)

    database = SqliteDatabase(tmp_path / "state.db")
    try:
        guards = Guards(
            EndpointPolicy(), Counted(database), max_input_bytes=1 << 20, submits_per_minute=0, max_running_jobs=20
        )
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(guards.ended, "partition", "rid-a")
        assert writes == [["rid-a"]]
        writes.clear()
        await guards.ended("failing", "rid-b")
        await guards.ended("failing", "rid-b")
        await guards.ended("failing", "rid-b")
        assert writes == [["rid-b"], ["rid-b"]]  # failed, tried again, then known
    finally:
        database.close()
