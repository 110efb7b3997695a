"""Following a job to its output: fal-mcp against the official fal-client, on the same fake fal.

For a fast and a slow sandbox model, each client runs the same jobs; for each job the fake fal counts the HTTP
requests it received for it, and the latency is the time from the moment the fake completed the job to the
moment the caller held the output (with its previews). fal-mcp runs in process (the MCP client talks to the
server in memory) and over stdio (the real `fal-mcp` command); fal-client's `subscribe` runs with its defaults.
The fake makes its pictures while a job runs, so what is measured after the completion is the client's work.

A third case is a model that answers with its picture inline, a 6.6 MB `data:` URI: per call, the `get-result`
of a completed request without a preview, with its preview made, and again (the preview already made), through
fal-mcp in process against the fake fal in a process of its own (in the same process, the fake serializing 6.6 MB
would share the interpreter with the server it is measuring). Not over stdio: the SDK's stdio client splits its
growing read buffer on every chunk, which takes about half a second for one 6.6 MB line.

    pip install -e '.[bench]' && python bench/long_jobs.py [--runs-fast 60] [--runs-slow 3] [--slow-scale 0.25]

Prints a table and writes `bench/results/long_jobs.json`; `bench/run.py` runs it too, through `run()`. Targets:
at most 4 requests per completed job on the streaming path; the output at the client at most 10 ms after fal
completes an image job at the median, at most 20 ms at p99, over at least 50 jobs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

import rig
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.settings import Settings

FAST = "fal-ai/flux/schnell"
SLOW = "fal-ai/kling-video/v2/master/text-to-video"
INLINE = "fal-ai/sandbox/inline-image"
INLINE_MB = 5
"""The inline model's PNG size: 5 MB of noise, a 6.6 MB data URI."""
RESULTS = Path(__file__).resolve().parent / "results"
MODEL_NAMES = {FAST: "fast image", SLOW: "slow video"}
TARGET_P50_MS = 10.0
TARGET_P99_MS = 20.0
TARGET_MIN_JOBS = 50


@dataclass
class Sample:
    client: str
    model: str
    requests: float
    """Requests to fal the fake counted for the job (NaN where the fake, in its own process, cannot count)."""
    latency_ms: float
    request_id: str = ""


@dataclass
class Row:
    client: str
    model: str
    jobs: int
    requests_per_job: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float


Runner = Callable[[str, dict[str, Any]], Awaitable[str]]
"""Runs one job to its output; returns fal's request id."""


async def measure(
    fake: FakeFal, client: str, name: str, model: str, runs: int, run: Runner, payload: dict[str, Any] | None = None
) -> list[Sample]:
    """`runs` jobs of `model` one after another (after one warm-up), each as a sample named `name`."""
    base = payload if payload is not None else {"prompt": "benchmark"}
    await run(model, {**base, "prompt": "warm-up"})  # connections, imports and caches: not what is measured
    samples: list[Sample] = []
    for index in range(runs):
        seen_before = len(fake.requests)
        request_id = await run(model, {**base, "prompt": f"benchmark {index}"})
        received = time.monotonic()
        job = fake.jobs[request_id]
        requests = sum(1 for r in fake.requests[seen_before:] if r.route != "cdn")
        samples.append(Sample(client, name, requests, (received - job.end) * 1000, request_id))
    return samples


def settings_for(sandbox: SandboxServer, state_dir: str) -> Settings:
    return Settings(
        _env_file=None,  # pyright: ignore[reportCallIssue]
        fal_key=SANDBOX_KEY,
        run_url=sandbox.run_url,
        queue_url=sandbox.queue_url,
        api_url=sandbox.api_url,  # the model's schema, for the input check before a submit
        rest_url=sandbox.rest_url,
        state_dir=state_dir,
        wait_s=600,
        submits_per_minute=0,  # a benchmark's 60+ jobs a minute are not a runaway agent
    )


def run_model_through(client: Any, *, previews: bool = True) -> Runner:
    """A runner that calls run-model on an MCP client and returns fal's request id."""

    async def run(model: str, payload: dict[str, Any]) -> str:
        result = await client.call_tool("run-model", {"endpoint_id": model, "input": payload, "previews": previews})
        assert result.structured_content is not None, result
        return str(result.structured_content["request_id"])

    return run


INLINE_CASES = (
    ("inline 6.6 MB: get-result, no preview", False),
    ("inline 6.6 MB: get-result, preview made", True),
    ("inline 6.6 MB: get-result, preview again", True),
)


async def measure_inline(state_dir: str, runs: int) -> list[Sample]:
    """Per call: get-result of a completed 6.6 MB inline request, without a preview, making it, and again."""
    from mcp import Client

    from fal_mcp.server.build import create_server

    samples: list[Sample] = []
    label = "fal-mcp (in process)"
    with rig.sandbox(time_scale=0.05) as fake:
        settings = Settings(
            _env_file=None,  # pyright: ignore[reportCallIssue]
            fal_key=fake.key,
            run_url=fake.run_url,
            queue_url=fake.queue_url,
            api_url=fake.api_url,
            rest_url=fake.rest_url,
            state_dir=state_dir,
        )
        async with Client(create_server(settings)) as client:
            for index in range(runs + 1):  # the first is a warm-up
                request_id = await anyio.to_thread.run_sync(inline_request, fake, index)
                for name, previews in INLINE_CASES:
                    arguments = {"endpoint_id": INLINE, "request_id": request_id, "previews": previews}
                    started = time.monotonic()
                    result = await client.call_tool("get-result", arguments)
                    took = (time.monotonic() - started) * 1000
                    assert not result.is_error, result
                    if index:
                        samples.append(Sample(label, name, math.nan, took, request_id))
    return samples


def inline_request(fake: rig.Sandbox, index: int) -> str:
    """A completed request of the inline-image model, sent to the fake directly."""
    headers = {"Authorization": f"Key {fake.key}"}
    with httpx.Client(headers=headers, timeout=30) as http:
        submitted = http.post(f"{fake.queue_url}/{INLINE}", json={"prompt": f"inline {index}", "megabytes": INLINE_MB})
        submitted.raise_for_status()
        status_url = submitted.json()["status_url"]
        while http.get(status_url).json()["status"] != "COMPLETED":
            time.sleep(0.02)
        return str(submitted.json()["request_id"])


async def fal_mcp_in_memory(sandbox: SandboxServer, state_dir: str, plan: list[tuple[str, int]]) -> list[Sample]:
    from mcp import Client

    from fal_mcp.server.build import create_server

    samples: list[Sample] = []
    async with Client(create_server(settings_for(sandbox, state_dir))) as client:
        for model, runs in plan:
            name = MODEL_NAMES[model]
            samples += await measure(sandbox.fake, "fal-mcp (in process)", name, model, runs, run_model_through(client))
    return samples


async def fal_mcp_stdio(sandbox: SandboxServer, state_dir: str, plan: list[tuple[str, int]]) -> list[Sample]:
    from mcp import Client, StdioServerParameters

    command = shutil.which("fal-mcp", path=str(Path(sys.executable).parent)) or "fal-mcp"
    env = {
        "FAL_KEY": SANDBOX_KEY,
        "FAL_QUEUE_URL": sandbox.queue_url,
        "FAL_RUN_URL": sandbox.run_url,
        "FAL_API_URL": sandbox.api_url,
        "FAL_REST_URL": sandbox.rest_url,
        "FAL_MCP_STATE_DIR": state_dir,
        "FAL_MCP_WAIT_S": "600",
        "FAL_MCP_SUBMITS_PER_MINUTE": "0",
    }
    samples: list[Sample] = []
    async with Client(StdioServerParameters(command=command, env=env)) as client:
        for model, runs in plan:
            name = MODEL_NAMES[model]
            samples += await measure(sandbox.fake, "fal-mcp (stdio)", name, model, runs, run_model_through(client))
    return samples


async def fal_client_subscribe(sandbox: SandboxServer, plan: list[tuple[str, int]]) -> list[Sample]:
    import fal_client
    import fal_client.client

    # fal-client reads its hosts at import and always uses https; point it at the fake by hand.
    fal_client.client.QUEUE_URL_FORMAT = sandbox.queue_url + "/"
    fal_client.client.RUN_URL_FORMAT = sandbox.run_url + "/"
    client = fal_client.AsyncClient(key=SANDBOX_KEY)
    samples: list[Sample] = []

    async def run(model: str, payload: dict[str, Any]) -> str:
        enqueued: list[str] = []
        await client.subscribe(model, payload, on_enqueue=enqueued.append)
        return enqueued[0]

    label = f"fal-client {fal_client_version()} subscribe"
    for model, runs in plan:
        samples += await measure(sandbox.fake, label, MODEL_NAMES[model], model, runs, run)
    return samples


def fal_client_version() -> str:
    from importlib.metadata import version

    return version("fal-client")


def summarize(samples: list[Sample]) -> list[Row]:
    rows: list[Row] = []
    keys = list(dict.fromkeys((s.client, s.model) for s in samples))
    for client, model in keys:
        group = [s for s in samples if (s.client, s.model) == (client, model)]
        latencies = [s.latency_ms for s in group]
        rows.append(
            Row(
                client=client,
                model=model,
                jobs=len(group),
                requests_per_job=statistics.mean(s.requests for s in group),
                latency_p50_ms=statistics.median(latencies),
                latency_p99_ms=rig.percentile(latencies, 99),
                latency_max_ms=max(latencies),
            )
        )
    return rows


def print_table(rows: list[Row], durations: dict[str, float]) -> None:
    print(f"jobs: fast image {durations['fast']:.2f} s, slow video {durations['slow']:.2f} s (time-scaled sandbox)")
    header = (
        f"{'client':<34} {'model':<32} {'jobs':>4} {'requests/job':>12} {'latency p50':>12} {'latency p99':>12} "
        f"{'latency max':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.client:<34} {row.model:<32} {row.jobs:>4} {row.requests_per_job:>12.1f} "
            f"{row.latency_p50_ms:>9.1f} ms {row.latency_p99_ms:>9.1f} ms {row.latency_max_ms:>9.1f} ms"
        )


async def measure_all(
    runs_fast: int, runs_slow: int, slow_scale: float, *, with_fal_client: bool = True, inline_runs: int = 0
) -> tuple[list[Row], list[Sample]]:
    fake = FakeFal(time_scale=1.0)
    with SandboxServer(fake) as sandbox, tempfile.TemporaryDirectory() as state_dir:
        fast = [(FAST, runs_fast)]
        slow = [(SLOW, runs_slow)]
        samples: list[Sample] = []
        for plan, scale in ((fast, 1.0), (slow, slow_scale)):
            fake.time_scale = scale
            samples += await fal_mcp_in_memory(sandbox, state_dir, plan)
            samples += await fal_mcp_stdio(sandbox, state_dir, plan)
            if with_fal_client:
                samples += await fal_client_subscribe(sandbox, plan)
        if inline_runs:
            samples += await measure_inline(state_dir, inline_runs)
    return summarize(samples), samples


def durations_s(slow_scale: float) -> dict[str, float]:
    return {"fast": 0.35, "slow": 18.0 * slow_scale}


async def main(runs_fast: int, runs_slow: int, slow_scale: float, inline_runs: int) -> list[Row]:
    rows, samples = await measure_all(runs_fast, runs_slow, slow_scale, inline_runs=inline_runs)
    durations = durations_s(slow_scale)
    print_table(rows, durations)
    RESULTS.mkdir(exist_ok=True)
    report = {"durations_s": durations, "rows": [asdict(r) for r in rows], "samples": [asdict(s) for s in samples]}
    (RESULTS / "long_jobs.json").write_text(json.dumps(report, indent=2))
    return rows


def run(quick: bool) -> rig.Report:
    """For `run.py`: the same measurement, as a report with the issue's targets (fal-client rows if installed)."""
    runs_fast, runs_slow, slow_scale, inline_runs = (2, 1, 0.02, 1) if quick else (60, 3, 0.25, 10)
    with_fal_client = importlib.util.find_spec("fal_client") is not None
    rows, samples = anyio.run(
        lambda: measure_all(runs_fast, runs_slow, slow_scale, with_fal_client=with_fal_client, inline_runs=inline_runs)
    )
    ours = [row for row in rows if row.client.startswith("fal-mcp") and row.model in MODEL_NAMES.values()]
    most_requests = max(row.requests_per_job for row in ours)
    targets = [
        rig.Target(
            "long jobs: requests",
            "at most 4 requests to fal per completed job",
            f"{most_requests:g}",
            most_requests <= 4,
        )
    ]
    for row in rows:
        if row.client.startswith("fal-mcp") and row.model == MODEL_NAMES[FAST]:
            enough = row.jobs >= TARGET_MIN_JOBS
            jobs = f" over {row.jobs} jobs" + ("" if enough else f" (fewer than {TARGET_MIN_JOBS})")
            targets += [
                rig.Target(
                    f"long jobs: output latency p50, {row.client}",
                    f"an image job's output at the client within {TARGET_P50_MS:g} ms of fal completing it (median)",
                    f"{row.latency_p50_ms:.1f} ms{jobs}",
                    enough and row.latency_p50_ms <= TARGET_P50_MS,
                ),
                rig.Target(
                    f"long jobs: output latency p99, {row.client}",
                    f"the same within {TARGET_P99_MS:g} ms at p99",
                    f"{row.latency_p99_ms:.1f} ms{jobs}",
                    enough and row.latency_p99_ms <= TARGET_P99_MS,
                ),
            ]
    durations = durations_s(slow_scale)
    notes = [
        f"jobs: fast image {durations['fast']:.2f} s, slow video {durations['slow']:.2f} s (time-scaled sandbox)",
        "inline rows: the whole get-result call of a completed request whose output is a 6.6 MB data URI"
        " (the fake in its own process; requests not counted)",
    ]
    if not with_fal_client:
        notes.append("fal-client is not installed (pip install -e '.[bench]'): its rows are left out")
    table = [
        {
            "client": row.client,
            "model": row.model,
            "jobs": row.jobs,
            "requests/job": row.requests_per_job,
            "latency p50 ms": row.latency_p50_ms,
            "latency p99 ms": row.latency_p99_ms,
            "latency max ms": row.latency_max_ms,
        }
        for row in rows
    ]
    report = rig.Report("long_jobs", "Following a job to its output (vs fal-client)", table, targets, notes)
    report.extra = {"durations_s": durations, "samples": [asdict(s) for s in samples]}
    return report


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs-fast", type=int, default=60)
    parser.add_argument("--runs-slow", type=int, default=3)
    parser.add_argument("--runs-inline", type=int, default=10, help="jobs of the 6.6 MB inline-image model")
    parser.add_argument("--slow-scale", type=float, default=0.25, help="time scale of the 18 s video model")
    args = parser.parse_args(argv)
    os.environ.pop("FAL_KEY", None)
    anyio.run(main, args.runs_fast, args.runs_slow, args.slow_scale, args.runs_inline)


if __name__ == "__main__":
    cli()
