"""Requests to fal per completed job, sustained: many sequential `run-model` jobs on one server.

A completed job should cost three requests to fal on the streaming path (submit, status stream, result), and keep
costing three: the running-jobs guard must hear of every job that ends, or once its count reaches the limit
(`FAL_MCP_MAX_RUNNING_JOBS`, 20) it asks fal about the finished ones again. One spawned `fal-mcp` (stdio, default
settings but for the submits-per-minute cap, which 120 jobs in a minute would meet) runs the fast image model job
after job, after a warm-up (which looks the model's schema and price up once); the fake fal, in this process, counts the
requests each job made (previews fetched from the CDN are not fal requests and are left out).

    python bench/requests_per_job.py [--quick]

Target (issue: speed to the floor): a mean of 3.00 requests per completed job over at least 100 jobs, max 3.
"""

from __future__ import annotations

import collections
import statistics
import tempfile

import anyio

import rig
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer

JOBS = 120
QUICK_JOBS = 25
TARGET = 3


async def measure(sandbox: SandboxServer, state_dir: str, jobs: int) -> list[list[str]]:
    """The routes each job's requests took, job by job."""
    env = {
        **rig.base_env(),
        "FAL_KEY": SANDBOX_KEY,
        "FAL_RUN_URL": sandbox.run_url,
        "FAL_QUEUE_URL": sandbox.queue_url,
        "FAL_API_URL": sandbox.api_url,
        "FAL_REST_URL": sandbox.rest_url,
        "FAL_MCP_STATE_DIR": state_dir,
        "FAL_MCP_SUBMITS_PER_MINUTE": "0",  # 120 jobs in well under a minute; the running-jobs guard stays at 20
    }
    fake = sandbox.fake
    per_job: list[list[str]] = []
    async with rig.stdio_client(rig.fal_mcp_command(), env) as client:
        await client.call_tool("run-model", {"endpoint_id": rig.FAST, "input": {"prompt": "warm-up"}})
        for index in range(jobs):
            mark = len(fake.requests)
            result = await client.call_tool("run-model", {"endpoint_id": rig.FAST, "input": {"prompt": f"job {index}"}})
            if result.is_error:
                raise RuntimeError(f"job {index} failed: {result.content}")
            per_job.append([r.route for r in fake.requests[mark:] if r.route != "cdn"])
    return per_job


def run(quick: bool) -> rig.Report:
    jobs = QUICK_JOBS if quick else JOBS
    with SandboxServer(FakeFal(time_scale=0.05)) as sandbox, tempfile.TemporaryDirectory() as state_dir:
        per_job = anyio.run(measure, sandbox, state_dir, jobs)
    counts = [len(routes) for routes in per_job]
    mean, most = float(statistics.mean(counts)), max(counts)
    routes = collections.Counter(route for job in per_job for route in job)
    rows = [
        {
            "jobs": len(counts),
            "mean requests/job": mean,
            "max": most,
            "jobs over 3": sum(count > TARGET for count in counts),
            **{f"{route} requests": routes[route] for route in ("submit", "stream", "result", "status", "models")},
        }
    ]
    targets = [
        rig.Target(
            "requests per job",
            f"a mean of {TARGET:.2f} requests to fal per completed job over {len(counts)} sequential jobs, max {TARGET}",
            f"mean {mean:.2f}, max {most}",
            mean == TARGET and most == TARGET,
        )
    ]
    notes = [
        "one spawned fal-mcp over stdio: FAL_MCP_MAX_RUNNING_JOBS=20 (the default), FAL_MCP_SUBMITS_PER_MINUTE=0; "
        "CDN fetches left out"
    ]
    return rig.Report("requests_per_job", "Requests to fal per completed job, sustained", rows, targets, notes)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
