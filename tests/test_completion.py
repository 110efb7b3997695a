"""What stands between fal completing a job and the caller holding its output, and what must not.

Only the result's GET must: the sandbox has its pictures before it reports completion, previews already made are
reused (a `get-result` of a finished request fetches and decodes nothing again), and the completion's history write
lands after the reply, while the submit's row, with the request id, is written before the call starts waiting.
How fast that is lives in `bench/long_jobs.py`; here, that it holds.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import CallToolResult, ImageContent

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer, default_models
from fal_mcp.store.history import History
from fal_mcp.store.records import FILE_NAME
from tests.harness import connect
from tests.test_tools import structured, text_of

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
INLINE = "fal-ai/sandbox/inline-image"
HANG_GUARD_S = 30.0
"""Not a speed target: how long a call may take before the test calls it hung."""


def preview_data(result: CallToolResult) -> list[bytes]:
    return [base64.b64decode(block.data) for block in result.content if isinstance(block, ImageContent)]


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def still_sandbox() -> Iterator[tuple[SandboxServer, ManualClock]]:
    """A fake fal whose clock moves only when the test moves it."""
    clock = ManualClock()
    with SandboxServer(FakeFal(clock=clock)) as running:
        yield running, clock


async def test_the_sandbox_has_its_pictures_before_it_reports_completion(
    still_sandbox: tuple[SandboxServer, ManualClock],
) -> None:
    sandbox, clock = still_sandbox
    headers = {"Authorization": f"Key {SANDBOX_KEY}"}
    async with httpx.AsyncClient(headers=headers) as http:
        submitted = (await http.post(f"{sandbox.queue_url}/{FLUX}", json={"prompt": "x", "num_images": 2})).json()
        job = sandbox.fake.jobs[submitted["request_id"]]
        with anyio.fail_after(HANG_GUARD_S):
            while not job.prepared:  # made in a worker thread while the job is queued, not when it completes
                await anyio.sleep(0.01)
        assert job.state == "IN_QUEUE"
        status = (await http.get(submitted["status_url"])).json()
        assert status["status"] == "IN_QUEUE"
        assert (await http.get(submitted["response_url"])).status_code == 400  # still nothing to show
        clock.now = job.end
        output = (await http.get(submitted["response_url"])).json()
        picture = await http.get(output["images"][1]["url"])
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


async def test_get_result_reuses_the_previews_run_model_made(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    async with connect("memory", sandbox, tmp_path) as client:
        ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x", "num_images": 3}})
        rid = structured(ran)["request_id"]
        fetched_by_run = len(fake.requests_for("cdn"))
        again = await client.call_tool("get-result", {"endpoint_id": FLUX, "request_id": rid})
        inline = await client.call_tool("run-model", {"endpoint_id": INLINE, "input": {"prompt": "x", "megabytes": 1}})
        inline_again = await client.call_tool(
            "get-result", {"endpoint_id": INLINE, "request_id": structured(inline)["request_id"]}
        )
    assert fetched_by_run == 3 and len(fake.requests_for("cdn")) == 3, "get-result fetched the pictures again"
    assert len(preview_data(ran)) == 3 and preview_data(again) == preview_data(ran)
    assert "3 of 3 images previewed" in text_of(again)
    assert len(preview_data(inline)) == 1 and preview_data(inline_again) == preview_data(inline)


def history_rows(state_dir: Path) -> dict[str, str]:
    """Request id -> state, as the history's file holds them (nothing before the server first opens it)."""
    if not (state_dir / FILE_NAME).exists():
        return {}
    with contextlib.closing(sqlite3.connect(state_dir / FILE_NAME)) as db:
        try:
            return dict(db.execute("SELECT request_id, state FROM requests WHERE request_id IS NOT NULL").fetchall())
        except sqlite3.OperationalError as exc:  # the file is there, its table not yet
            if "no such table" not in str(exc):
                raise
            return {}


@pytest.fixture
def video_sandbox() -> Iterator[SandboxServer]:
    """The video model queues 0.3 s and runs 0.6 s: time to look at the history mid-job."""
    models = [
        replace(model, queue_s=0.3, run_s=0.6) if VIDEO in model.endpoint_ids else model for model in default_models()
    ]
    with SandboxServer(FakeFal(models=models)) as running:
        yield running


async def test_the_completion_is_written_after_the_reply_and_the_submit_before_the_wait(
    video_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The history's file is locked by another writer from mid-job until after the reply: the reply still comes,
    the request id was already on disk, and the completion lands once the lock goes."""
    state_dir = tmp_path / "state"
    outcome: dict[str, Any] = {}
    async with connect("memory", video_sandbox, tmp_path, state_dir=str(state_dir)) as client:

        async def run() -> None:
            outcome["result"] = await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})

        with anyio.fail_after(HANG_GUARD_S):
            async with anyio.create_task_group() as group:
                group.start_soon(run)
                while "IN_PROGRESS" not in history_rows(state_dir).values():
                    await anyio.sleep(0.02)
                (rid,) = history_rows(state_dir)  # written at submit, before the wait began
                blocker = sqlite3.connect(state_dir / FILE_NAME, isolation_level=None)
                blocker.execute("BEGIN EXCLUSIVE")
        try:
            # the reply came while the file was locked; readers still read (WAL): the completion is not there yet
            assert "result" in outcome and history_rows(state_dir) == {rid: "IN_PROGRESS"}
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        listed = structured(await client.call_tool("list-requests", {"state": "COMPLETED"}))
    assert structured(outcome["result"])["request_id"] == rid
    assert [entry["request_id"] for entry in listed["requests"]] == [rid]
    assert history_rows(state_dir) == {rid: "COMPLETED"}


async def test_a_queued_completion_is_read_back_at_once_and_kept_at_close(tmp_path: Path) -> None:
    history = History.open(tmp_path)
    row = await history.begin("p", FLUX, {"prompt": "x"}, "run-model")
    await history.sent(row, "rid-1", "IN_PROGRESS")
    history.observe_soon("p", "rid-1", "COMPLETED", output={"images": [{"url": "https://v3.fal.media/files/a.png"}]})
    (record,) = await history.recent("p")
    assert (record.state, record.media_urls) == ("COMPLETED", ["https://v3.fal.media/files/a.png"])
    history.observe_soon("p", "rid-1", "FAILED")
    history.close()
    assert history_rows(tmp_path) == {"rid-1": "FAILED"}
