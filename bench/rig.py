"""The benchmark rig: what every benchmark in `bench/` shares.

- the fake fal as a process of its own (`python -m fal_mcp.sandbox`), so it competes with neither the client
  nor the server for a GIL;
- spawning `fal-mcp` (the installed console script) or the bare SDK server (`bare_server.py`) with the sandbox's
  URLs and key in its environment, over HTTP with the announced URL read from stderr;
- a completed sandbox request to ask the status of;
- statistics (median, p90, p99), the tables, the JSON written to `bench/results/`.

Every benchmark module exposes `run(quick: bool) -> Report`; `run.py` calls them all.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BARE_SERVER = BENCH / "bare_server.py"
FAST = "fal-ai/flux/schnell"
"""The sandbox's fast image model (0.35 s at time scale 1)."""

_ANNOUNCED = re.compile(r"streamable HTTP on (http://[^\s\"]+/mcp)")


# -- statistics and reports -------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Target:
    """A target from the issue, and whether this run met it."""

    name: str
    goal: str
    measured: str
    met: bool


@dataclass
class Report:
    """One benchmark's outcome: its table (a list of rows with the same keys) and its targets."""

    name: str
    title: str
    rows: list[dict[str, Any]]
    targets: list[Target] = field(default_factory=list[Target])
    notes: list[str] = field(default_factory=list[str])
    extra: dict[str, Any] = field(default_factory=dict[str, Any])

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def describe(target: Target) -> str:
    return f"{'MET   ' if target.met else 'MISSED'}  {target.name}: {target.goal}; measured {target.measured}"


def _aligned(values: list[str], widths: list[int]) -> str:
    """The first column to the left, the numbers to the right."""
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))


def print_report(report: Report) -> None:
    print(f"\n== {report.title}")
    if report.rows:
        columns = list(report.rows[0])
        cells = [[fmt(row.get(c, "")) for c in columns] for row in report.rows]
        widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
        print(_aligned(columns, widths))
        print("  ".join("-" * w for w in widths))
        for line in cells:
            print(_aligned(line, widths))
    for note in report.notes:
        print(f"  note: {note}")
    for target in report.targets:
        print(f"  target {describe(target)}")


def write_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def standalone(run: Callable[[bool], Report], doc: str | None) -> None:
    """The `python bench/<module>.py [--quick]` entry point every benchmark module shares."""
    args = arguments(doc).parse_args()
    os.environ.pop("FAL_KEY", None)  # a real key must never reach a benchmark
    finish(run(args.quick))


def arguments(doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="a short run (a smoke test, not a measurement)")
    return parser


def finish(report: Report) -> None:
    """Print a report and write it to `bench/results/<name>.json`."""
    print_report(report)
    print(f"\nwrote {write_json(report.name, report.as_json()).relative_to(BENCH.parent)}")


# -- the fake fal, and a request to ask about ------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """A running `python -m fal_mcp.sandbox`: its URLs and key (the sandbox's own, never a real one)."""

    run_url: str
    queue_url: str
    api_url: str
    rest_url: str
    key: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def sandbox(time_scale: float = 0.05, extra_keys: Sequence[str] = ()) -> Iterator[Sandbox]:
    """The fake fal in a process of its own, until the block ends; it also accepts `extra_keys`."""
    keys = [arg for key in extra_keys for arg in ("--key", key)]
    process = subprocess.Popen(
        [sys.executable, "-m", "fal_mcp.sandbox", "--time-scale", str(time_scale), *keys],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=base_env(),
    )
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline() or "{}")
        if "queue_url" not in urls:
            raise RuntimeError("the sandbox did not start")
        yield Sandbox(urls["run_url"], urls["queue_url"], urls["api_url"], urls["rest_url"], urls["key"], process)
    finally:
        stop(process)


def completed_request(fake: Sandbox, endpoint: str = FAST) -> str:
    """Submit one job to the fake fal directly and wait for it to complete; returns its request id."""
    headers = {"Authorization": f"Key {fake.key}"}
    with httpx.Client(headers=headers, timeout=30) as http:
        submitted = http.post(f"{fake.queue_url}/{endpoint}", json={"prompt": "a benchmark"})
        submitted.raise_for_status()
        status_url = submitted.json()["status_url"]
        deadline = time.monotonic() + 30
        while http.get(status_url).json()["status"] != "COMPLETED":
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox job did not complete")
            time.sleep(0.02)
        return str(submitted.json()["request_id"])


def status_url(fake: Sandbox, request_id: str, endpoint: str = FAST) -> str:
    """fal's status address: the base app id (owner/app, no subpath), as `fal_mcp.fal.endpoint` builds it."""
    owner, app = endpoint.split("/")[:2]
    return f"{fake.queue_url}/{owner}/{app}/requests/{request_id}/status"


# -- spawning servers ---------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """Enough to run Python, and none of the caller's FAL_* variables (a real key must never reach a benchmark)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")
    return {name: os.environ[name] for name in keep if name in os.environ}


def server_env(fake: Sandbox, state_dir: str, **extra: str) -> dict[str, str]:
    """The environment of a spawned server: the sandbox's URLs and key, its own state directory."""
    return {
        **base_env(),
        "FAL_KEY": fake.key,
        "FAL_RUN_URL": fake.run_url,
        "FAL_QUEUE_URL": fake.queue_url,
        "FAL_API_URL": fake.api_url,
        "FAL_REST_URL": fake.rest_url,
        "FAL_MCP_STATE_DIR": state_dir,
        **extra,
    }


def fal_mcp_command() -> list[str]:
    """The console script installed next to this interpreter (what a client config launches)."""
    found = shutil.which("fal-mcp", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("the fal-mcp console script is not installed next to this Python: pip install -e .")
    return [found]


def fal_mcp_http_command() -> list[str]:
    """fal-mcp on streamable HTTP, on a free loopback port (announced on stderr)."""
    return [*fal_mcp_command(), "--transport", "http", "--port", "0"]


def bare_command(*args: str) -> list[str]:
    """The bare SDK server, with the same interpreter."""
    return [sys.executable, str(BARE_SERVER), *args]


@dataclass
class HttpProcess:
    """A spawned server on streamable HTTP."""

    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def http_process(command: list[str], env: dict[str, str]) -> Iterator[HttpProcess]:
    """Spawn a server that announces `streamable HTTP on <url>` on stderr; stop it when the block ends."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            yield HttpProcess(process, _announced(process, stderr))
        finally:
            stop(process)


def _announced(process: subprocess.Popen[bytes], stderr: Any) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
        found = _ANNOUNCED.search(text)  # a plain line, or inside a JSON one
        if found is not None:
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {text[-2000:]}")
        time.sleep(0.02)
    raise RuntimeError("the server did not announce its address in time")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- MCP clients ------------------------------------------------------------------------------------------


@asynccontextmanager
async def stdio_client(command: list[str], env: dict[str, str]) -> AsyncIterator[Any]:
    """An MCP client (the SDK's) that spawns `command` over stdio; the server's stderr is dropped."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client as spawn

    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 - /dev/null never blocks
        async with Client(spawn(params, errlog=errlog)) as client:
            yield client


@asynccontextmanager
async def http_client(url: str, mode: str = "auto") -> AsyncIterator[Any]:
    """An MCP client (the SDK's) over streamable HTTP: `auto` speaks 2026-07-28, `legacy` opens a session.

    Its connection pool is its own, with the SDK's default timeouts; only the TLS context (unused on loopback
    http, and ~30 ms of CPU to make) is shared, so opening 50 clients does not measure the CA bundle's loading.
    """
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300), verify=_tls_context()) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # pyright: ignore[reportArgumentType]
    ):
        yield client


@functools.cache
def _tls_context() -> Any:
    import httpx2

    return httpx2.create_ssl_context()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
