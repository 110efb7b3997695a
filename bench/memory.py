"""Memory: the resident size of a spawned HTTP `fal-mcp` as calls go by.

RSS (VmRSS from /proc) right after start, after a warm-up of 1,000 calls, and then every 1,000 calls up to
10,000 more; then the same for the bare SDK server (`bare_server.py --status`, get-status only), the floor. The calls are mixed as a busy server sees them: mostly `get-status` of a completed request, and
every 50th a `run-model` of the fast image model (submit, status stream, result, and a preview made with
Pillow). Ten clients call at once, each reconnecting every 250 calls, half of them in the 2026-07-28 era and
half in a legacy stateful session, so per-session state that is never freed would show.

    python bench/memory.py [--quick] [--calls 10000]     # a soak: --calls 100000 (about 10 minutes)

Target (issue 6): no growth beyond a small bound after the warm-up (here: under 10 MB over 10,000 calls).
"""

from __future__ import annotations

import itertools
import tempfile
from typing import Any

import anyio

import rig

TARGET_GROWTH_MB = 10.0
WORKERS = 10
CALLS_PER_SESSION = 250
RUN_MODEL_EVERY = 50


async def calls(url: str, total: int, counter: itertools.count[int], arguments: dict[str, Any], mixed: bool) -> int:
    """Make `total` calls from `WORKERS` clients (`mixed`: with a run-model now and then); returns the failures."""
    failures = 0
    quota = iter(range(total))

    async def worker(index: int) -> None:
        nonlocal failures
        mode = "auto" if index % 2 == 0 else "legacy"
        while True:
            async with rig.http_client(url, mode) as client:
                for _ in range(CALLS_PER_SESSION):
                    if next(quota, None) is None:
                        return
                    if mixed and next(counter) % RUN_MODEL_EVERY == 0:
                        result = await client.call_tool(
                            "run-model", {"endpoint_id": rig.FAST, "input": {"prompt": "a memory benchmark"}}
                        )
                    else:
                        result = await client.call_tool("get-status", arguments)
                    failures += bool(result.is_error)

    async with anyio.create_task_group() as group:
        for index in range(WORKERS):
            group.start_soon(worker, index)
    return failures


async def follow(
    command: list[str], env: dict[str, str], arguments: dict[str, Any], plan: list[int], mixed: bool
) -> tuple[list[float], int]:
    """RSS after start and after each batch of calls in `plan`; and the failures."""
    rss: list[float] = []
    failures = 0
    with rig.http_process(command, env) as server:
        await anyio.sleep(0.5)  # let the lifespan settle
        rss.append(rig.rss_mb(server.pid))
        counter = itertools.count()
        for batch in plan:
            failures += await calls(server.url, batch, counter, arguments, mixed)
            rss.append(rig.rss_mb(server.pid))
    return rss, failures


def run(quick: bool, calls_after_warm_up: int = 10_000) -> rig.Report:
    warm_up, total, step = (
        (100, 200, 100) if quick else (1000, calls_after_warm_up, max(1000, calls_after_warm_up // 10))
    )
    plan = [warm_up] + [step] * (total // step)

    async def main() -> dict[str, tuple[list[float], int]]:
        with rig.sandbox(time_scale=0.02) as fake, tempfile.TemporaryDirectory() as state_dir:
            request_id = rig.completed_request(fake)
            arguments = {"request_id": request_id, "endpoint_id": rig.FAST}
            env = rig.server_env(fake, state_dir, FAL_MCP_SUBMITS_PER_MINUTE="0", FAL_MCP_MAX_RUNNING_JOBS="0")
            return {
                "fal-mcp": await follow(rig.fal_mcp_http_command(), env, arguments, plan, mixed=True),
                # the SDK's floor under the same load, get-status only (it has no run-model)
                "bare MCPServer": await follow(
                    rig.bare_command("--http", "--status"), env, arguments, plan, mixed=False
                ),
            }

    measured = anyio.run(main)
    (ours, ours_failed), (bare, bare_failed) = measured["fal-mcp"], measured["bare MCPServer"]
    rows: list[dict[str, Any]] = []
    done = 0
    for index, batch in enumerate([0, *plan]):
        done += batch
        rows.append(
            {
                "after": "start" if index == 0 else "warm-up" if index == 1 else f"+{done - warm_up:,}",
                "calls": done,
                "fal-mcp MB": ours[index],
                "growth MB": ours[index] - ours[1] if index else "",
                "bare MCPServer MB": bare[index],
                "bare growth MB": bare[index] - bare[1] if index else "",
            }
        )
    growth = ours[-1] - ours[1]
    target = rig.Target(
        "memory",
        f"RSS grows under {TARGET_GROWTH_MB:g} MB over {total:,} calls after a {warm_up:,}-call warm-up",
        f"{ours[0]:.1f} MB at start, {ours[1]:.1f} after warm-up, {ours[-1]:.1f} after {total:,} more "
        f"({growth:+.1f}; the bare MCPServer {bare[-1] - bare[1]:+.1f}); {ours_failed} failed",
        growth < TARGET_GROWTH_MB and ours_failed == 0,
    )
    notes = [
        f"fal-mcp: every {RUN_MODEL_EVERY}th call is run-model (fast image, with a preview), the rest get-status; "
        "bare MCPServer: get-status only",
    ]
    if bare_failed:
        notes.append(f"{bare_failed} calls to the bare MCPServer failed")
    return rig.Report("memory", "Memory: RSS of an HTTP server over many calls", rows, [target], notes)


if __name__ == "__main__":
    parser = rig.arguments(__doc__)
    parser.add_argument("--calls", type=int, default=10_000, help="calls after the warm-up (a soak: 100000)")
    args = parser.parse_args()
    rig.finish(run(args.quick, args.calls))
