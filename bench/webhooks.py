"""The webhook path: requests to fal per completed job, and how soon the output reaches the client after fal pushes it.

One spawned `fal-mcp --transport http` whose `FAL_MCP_PUBLIC_URL` is itself, trusting the sandbox's signing keys
(`FAL_MCP_WEBHOOK_JWKS_URL`), runs the fast image model job after job over streamable HTTP, after a warm-up (which
looks the model's schema and price up once, and fetches the keys). The fake fal, in this process, counts each job's
requests (media from the CDN and the signing keys are not fal requests) and notes when it sent the signed webhook;
the latency is from that moment to the client holding the tool result (the route's signature check, the store, the
wake-up of the waiting call and the reply), both read on this process's monotonic clock.

    python bench/webhooks.py [--quick]

Targets (issue: webhooks instead of polling): 1.00 request to fal per completed job (the submit), max 1; the output
at the client within 20 ms of the delivery (p50).
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time

import anyio
from mcp import Client

import rig
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer

JOBS = 100
QUICK_JOBS = 15
TARGET_REQUESTS = 1
TARGET_P50_MS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(sandbox: SandboxServer, url: str, jobs: int) -> tuple[list[list[str]], list[float]]:
    """The routes each job's requests took, and each job's delivery-to-client latency in ms."""
    fake = sandbox.fake
    per_job: list[list[str]] = []
    latencies: list[float] = []
    async with Client(url) as client:
        await client.call_tool("run-model", {"endpoint_id": rig.FAST, "input": {"prompt": "warm-up"}})
        for index in range(jobs):
            mark = len(fake.requests)
            result = await client.call_tool("run-model", {"endpoint_id": rig.FAST, "input": {"prompt": f"job {index}"}})
            answered_at = time.monotonic()
            if result.is_error or not isinstance(result.structured_content, dict):
                raise RuntimeError(f"job {index} failed: {result.content}")
            rid = result.structured_content["request_id"]
            per_job.append([r.route for r in fake.requests[mark:] if r.route not in ("cdn", "jwks")])
            latencies.append((answered_at - await sent_at(fake, rid)) * 1000)
    return per_job, latencies


async def sent_at(fake: FakeFal, rid: str) -> float:
    """When the fake sent the webhook the server took (recorded once the server's 200 is back: maybe after the
    client had its result)."""
    with anyio.move_on_after(5):
        while True:
            for attempt in fake.webhook_deliveries:
                if attempt.body.get("request_id") == rid and attempt.status_code == 200:
                    return attempt.sent_at
            await anyio.sleep(0.005)
    raise RuntimeError(f"request {rid} completed without a delivered webhook")


def run(quick: bool) -> rig.Report:
    jobs = QUICK_JOBS if quick else JOBS
    with SandboxServer(FakeFal(time_scale=0.05)) as sandbox, tempfile.TemporaryDirectory() as state_dir:
        port = free_port()
        env = {
            **rig.base_env(),
            "FAL_KEY": SANDBOX_KEY,
            "FAL_RUN_URL": sandbox.run_url,
            "FAL_QUEUE_URL": sandbox.queue_url,
            "FAL_API_URL": sandbox.api_url,
            "FAL_REST_URL": sandbox.rest_url,
            "FAL_MCP_STATE_DIR": state_dir,
            "FAL_MCP_SUBMITS_PER_MINUTE": "0",
            "FAL_MCP_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "FAL_MCP_WEBHOOK_JWKS_URL": sandbox.jwks_url,
        }
        command = [*rig.fal_mcp_command(), "--transport", "http", "--port", str(port)]
        with rig.http_process(command, env) as server:
            per_job, latencies = anyio.run(measure, sandbox, server.url, jobs)
    counts = [len(routes) for routes in per_job]
    mean, most = float(statistics.mean(counts)), max(counts)
    p50 = rig.percentile(latencies, 50)
    rows = [
        {
            "jobs": len(counts),
            "mean requests/job": mean,
            "max": most,
            "status/stream/result requests": sum(r in ("status", "stream", "result") for job in per_job for r in job),
            "delivery→client p50 ms": p50,
            "p95 ms": rig.percentile(latencies, 95),
            "max ms": max(latencies),
        }
    ]
    targets = [
        rig.Target(
            "webhook requests per job",
            f"{TARGET_REQUESTS:.2f} request to fal per completed job over {len(counts)} jobs (the submit), max 1",
            f"mean {mean:.2f}, max {most}",
            mean == TARGET_REQUESTS and most == TARGET_REQUESTS,
        ),
        rig.Target(
            "webhook delivery to client",
            f"the output at the client within {TARGET_P50_MS:.0f} ms of fal's delivery (p50)",
            f"p50 {p50:.1f} ms",
            p50 <= TARGET_P50_MS,
        ),
    ]
    notes = [
        "one spawned fal-mcp over streamable HTTP, FAL_MCP_PUBLIC_URL=itself, the sandbox's JWKS, SQLite store; "
        "latency from the sandbox sending the signed webhook to the client holding the result"
    ]
    return rig.Report("webhooks", "The webhook path: requests per job, delivery to client", rows, targets, notes)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
