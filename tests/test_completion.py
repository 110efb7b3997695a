"""What stands between fal completing a job and the caller holding its output, and what must not.

Only the result's GET must: the sandbox has its pictures before it reports completion, previews already made are
reused (a `get-result` of a finished request fetches and decodes nothing again), and the completion's history write
lands after the reply, while the submit's row, with the request id, is written before the call starts waiting.
How fast that is lives in `bench/long_jobs.py`; here, that it holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
HANG_GUARD_S = 30.0
"""Not a speed target: how long a call may take before the test calls it hung."""


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
