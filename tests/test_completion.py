"""What stands between fal completing a job and the caller holding its output, and what must not.

Only the result's GET must: the sandbox has its pictures before it reports completion, previews already made are
reused (a `get-result` of a finished request fetches and decodes nothing again), and the completion's history write
lands after the reply, while the submit's row, with the request id, is written before the call starts waiting.
How fast that is lives in `bench/long_jobs.py`; here, that it holds.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.types import CallToolResult, ImageContent

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.harness import connect
from tests.test_tools import structured, text_of

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
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
