"""Per-call overhead: `get-status` of one completed request, through fal-mcp and without it, in one run.

Five paths to the same status of the same request on the same fake fal (a process of its own):

- `httpx direct`: the GET of fal's status URL, made with one `httpx.AsyncClient`: what the call costs with no
  MCP at all;
- `bare MCPServer, stdio|HTTP`: the SDK's floor, a tool that makes that one GET (`bare_server.py --status`);
- `fal-mcp, stdio|HTTP`: the real `get-status` tool of the installed `fal-mcp`.

All five stay connected and are called in turn, a slice of calls each per round, so a busy machine slows them
alike. The MCP clients are the SDK's `Client` (over HTTP the 2026-07-28 era, its default).

    python bench/overhead.py [--quick]

Target: our code adds at most 0.2 ms (median) per call over the bare server on the same transport, stdio and HTTP
alike (the fair floor: a GET made from a server process costs more than the same GET from the benchmark client).
The table also shows what each path adds to the direct request (the SDK and its transport: bare - direct).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx

import rig

TARGET_OURS_MS = 0.2
Call = Callable[[], Awaitable[None]]


def tool_call(client: Any, arguments: dict[str, Any]) -> Call:
    async def call() -> None:
        result = await client.call_tool("get-status", arguments)
        if result.is_error or result.structured_content is None:
            raise RuntimeError(f"get-status failed: {result.content}")
        if result.structured_content["status"] != "COMPLETED":
            raise RuntimeError(f"unexpected status: {result.structured_content}")

    return call


@asynccontextmanager
async def paths(fake: rig.Sandbox, state_dir: str, request_id: str) -> AsyncIterator[dict[str, Call]]:
    """The five ways to ask, each connected and ready."""
    arguments = {"request_id": request_id, "endpoint_id": rig.FAST}
    ours_env = rig.server_env(fake, state_dir)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(headers={"Authorization": f"Key {fake.key}"}))
        url = rig.status_url(fake, request_id)

        async def direct() -> None:
            response = await http.get(url, params={"logs": "0"})
            response.raise_for_status()
            if response.json()["status"] != "COMPLETED":
                raise RuntimeError(f"unexpected status: {response.text}")

        bare_http = stack.enter_context(rig.http_process(rig.bare_command("--http", "--status"), ours_env))
        ours_http = stack.enter_context(rig.http_process(rig.fal_mcp_http_command(), ours_env))
        clients = {
            "bare MCPServer, stdio": rig.stdio_client(rig.bare_command("--status"), ours_env),
            "fal-mcp, stdio": rig.stdio_client(rig.fal_mcp_command(), ours_env),
            "bare MCPServer, HTTP": rig.http_client(bare_http.url),
            "fal-mcp, HTTP": rig.http_client(ours_http.url),
        }
        calls: dict[str, Call] = {"httpx direct": direct}
        for name, client in clients.items():
            calls[name] = tool_call(await stack.enter_async_context(client), arguments)
        yield calls


async def measure(calls: dict[str, Call], per_path: int, rounds: int, warm_up: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(warm_up):
            await call()
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_path // rounds):
                started = time.perf_counter()
                await call()
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def report(samples: dict[str, list[float]]) -> rig.Report:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    direct = medians["httpx direct"]
    rows: list[dict[str, Any]] = []
    for name, values in samples.items():
        floor = medians.get(name.replace("fal-mcp", "bare MCPServer"))
        rows.append(
            {
                "path": name,
                "calls": len(values),
                "median ms": medians[name],
                "p90 ms": rig.percentile(values, 90),
                "p99 ms": rig.percentile(values, 99),
                "added ms": medians[name] - direct,
                "ratio": f"{medians[name] / direct:.1f}x",
                "ours ms": medians[name] - floor if name.startswith("fal-mcp") and floor is not None else "",
            }
        )
    targets: list[rig.Target] = []
    for transport in ("stdio", "HTTP"):
        ours = medians[f"fal-mcp, {transport}"] - medians[f"bare MCPServer, {transport}"]
        targets.append(
            rig.Target(
                f"per-call overhead ({transport})",
                f"our code adds at most {TARGET_OURS_MS:g} ms (median) over the bare server",
                f"ours {ours:+.3f} ms ({medians[f'fal-mcp, {transport}']:.2f} ms vs "
                f"{medians[f'bare MCPServer, {transport}']:.2f} ms; the SDK floor adds "
                f"{medians[f'bare MCPServer, {transport}'] - direct:.2f} ms to a direct GET)",
                ours <= TARGET_OURS_MS,
            )
        )
    notes = ["added = median - httpx direct; ours = fal-mcp - bare MCPServer over the same transport"]
    return rig.Report("overhead", "Per-call overhead: get-status of one completed request", rows, targets, notes)


def run(quick: bool) -> rig.Report:
    per_path, rounds, warm_up = (30, 3, 5) if quick else (500, 25, 50)

    async def main() -> dict[str, list[float]]:
        with rig.sandbox() as fake, tempfile.TemporaryDirectory() as state_dir:
            request_id = rig.completed_request(fake)
            async with paths(fake, state_dir, request_id) as calls:
                return await measure(calls, per_path, rounds, warm_up)

    samples = anyio.run(main)
    result = report(samples)
    result.extra = {"samples_ms": samples}
    return result


if __name__ == "__main__":
    rig.standalone(run, __doc__)
