"""Memory: the resident size of a spawned HTTP `fal-mcp` as calls go by.

RSS (VmRSS from /proc) right after start, after a warm-up of 1,000 calls, and then every 1,000 calls up to
10,000 more. The calls are mixed as a busy server sees them: mostly `get-status` of a completed request, and
every 50th a `run-model` of the fast image model (submit, status stream, result, and a preview made with
Pillow). Ten clients call at once, each reconnecting every 250 calls, half of them in the 2026-07-28 era and
half in a legacy stateful session, so per-session state that is never freed would show.

    python bench/memory.py [--quick]

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


async def calls(url: str, total: int, counter: itertools.count[int], arguments: dict[str, Any]) -> int:
    """Make `total` calls from `WORKERS` clients; returns how many failed."""
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
                    if next(counter) % RUN_MODEL_EVERY == 0:
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


def run(quick: bool) -> rig.Report:
    warm_up, total, step = (100, 200, 100) if quick else (1000, 10_000, 1000)
    samples: list[dict[str, Any]] = []

    async def main() -> None:
        with rig.sandbox(time_scale=0.02) as fake, tempfile.TemporaryDirectory() as state_dir:
            request_id = rig.completed_request(fake)
            arguments = {"request_id": request_id, "endpoint_id": rig.FAST}
            env = rig.server_env(fake, state_dir, FAL_MCP_SUBMITS_PER_MINUTE="0", FAL_MCP_MAX_RUNNING_JOBS="0")
            with rig.http_process(rig.fal_mcp_http_command(), env) as server:
                counter = itertools.count()
                await anyio.sleep(0.5)  # let the lifespan settle
                samples.append({"after": "start", "calls": 0, "rss MB": rig.rss_mb(server.pid), "failures": 0})
                failures = await calls(server.url, warm_up, counter, arguments)
                samples.append(
                    {"after": "warm-up", "calls": warm_up, "rss MB": rig.rss_mb(server.pid), "failures": failures}
                )
                done = 0
                while done < total:
                    failures = await calls(server.url, step, counter, arguments)
                    done += step
                    samples.append(
                        {
                            "after": f"+{done:,}",
                            "calls": warm_up + done,
                            "rss MB": rig.rss_mb(server.pid),
                            "failures": failures,
                        }
                    )

    anyio.run(main)
    warm, last = samples[1]["rss MB"], samples[-1]["rss MB"]
    growth = last - warm
    for sample in samples:
        sample["since warm-up MB"] = sample["rss MB"] - warm if sample["after"] != "start" else ""
    target = rig.Target(
        "memory",
        f"RSS grows under {TARGET_GROWTH_MB:g} MB over {total:,} calls after a {warm_up:,}-call warm-up",
        f"{samples[0]['rss MB']:.1f} MB at start, {warm:.1f} after warm-up, {last:.1f} after {total:,} more ({growth:+.1f})",
        growth < TARGET_GROWTH_MB and not any(s["failures"] for s in samples),
    )
    notes = [f"every {RUN_MODEL_EVERY}th call is run-model (fast image, with a preview); the rest get-status"]
    return rig.Report("memory", "Memory: RSS of an HTTP fal-mcp over many calls", samples, [target], notes)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
