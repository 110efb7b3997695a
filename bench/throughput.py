"""Throughput: concurrent `get-status` calls over streamable HTTP against one spawned `fal-mcp`.

One `fal-mcp --transport http` (stateful, the default; the per-key guards off so they do not throttle; default
log level), the fake fal in a process of its own, and 1, 10 and 50 concurrent clients, each an SDK `Client` with
its own connection pool and MCP session, calling `get-status` of one completed request back to back for a fixed
time. Both protocol eras: 2026-07-28 (the SDK client's default; one POST per call, no session) and the legacy
handshake (a stateful session per client, `Mcp-Session-Id`). The same load then goes to the bare SDK server
(`bare_server.py --status`), the floor.

The load generator runs in this process, on the same 2 cores as the server and the fake: the CPU columns say
who was busy (100 % = one core).

    python bench/throughput.py [--quick]

Target (issue 6): no failed call at any level.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

import rig

LEVELS = (1, 10, 50)
ERAS = {"2026-07-28": "auto", "legacy session": "legacy"}


@dataclass
class Level:
    server: str
    era: str
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list[float])
    failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict[str, float])


async def drive(
    url: str, mode: str, seconds: float, arguments: dict[str, Any], level: Level, cpu: Callable[[], dict[str, float]]
) -> None:
    """`level.clients` clients calling back to back until `seconds` have passed; `cpu()` says who used how much."""

    async def call(client: Any) -> None:
        started = time.perf_counter()
        try:
            result = await client.call_tool("get-status", arguments)
        except Exception:
            level.failures += 1
            return
        if result.is_error:
            level.failures += 1
        else:
            level.latencies_ms.append((time.perf_counter() - started) * 1000)

    waiting, calling = level.clients, level.clients
    everyone_in, go = anyio.Event(), anyio.Event()
    started = deadline = ended = 0.0
    before: dict[str, float] = {}
    after: dict[str, float] = {}

    async def client() -> None:
        nonlocal waiting, calling, ended, after
        async with rig.http_client(url, mode) as session:
            await session.call_tool("get-status", arguments)  # session open and pool warm before the clock starts
            waiting -= 1
            if waiting == 0:
                everyone_in.set()
            await go.wait()
            while time.perf_counter() < deadline:
                await call(session)
            calling -= 1
            if calling == 0:  # the clock stops with the last call, before the clients close
                ended, after = time.perf_counter(), cpu()

    async with anyio.create_task_group() as group:
        for _ in range(level.clients):
            group.start_soon(client)
        await everyone_in.wait()
        started, before = time.perf_counter(), cpu()
        deadline = started + seconds
        go.set()
    level.seconds = ended - started
    level.cpu = {who: 100 * (used - before[who]) / level.seconds for who, used in after.items()}


def run(quick: bool) -> rig.Report:
    seconds = 0.5 if quick else 10.0
    levels: list[Level] = []

    async def main() -> None:
        with rig.sandbox() as fake, tempfile.TemporaryDirectory() as state_dir:
            request_id = rig.completed_request(fake)
            arguments = {"request_id": request_id, "endpoint_id": rig.FAST}
            env = rig.server_env(fake, state_dir, FAL_MCP_SUBMITS_PER_MINUTE="0", FAL_MCP_MAX_RUNNING_JOBS="0")
            servers = {  # the SDK's floor: a tool making the one GET
                "bare MCPServer": rig.bare_command("--http", "--status"),
                "fal-mcp": rig.fal_mcp_http_command(),
            }
            for name, command in servers.items():
                with rig.http_process(command, env) as server:

                    def cpu(server: rig.HttpProcess = server) -> dict[str, float]:
                        return {
                            "server": rig.cpu_seconds(server.pid),
                            "fake fal": rig.cpu_seconds(fake.pid),
                            "clients": time.process_time(),
                        }

                    for era, mode in ERAS.items():
                        for clients in LEVELS:
                            levels.append(Level(name, era, clients))
                            await drive(server.url, mode, seconds, arguments, levels[-1], cpu)

    anyio.run(main)
    rows = [
        {
            "server": level.server,
            "era": level.era,
            "clients": level.clients,
            "calls": len(level.latencies_ms),
            "calls/s": len(level.latencies_ms) / level.seconds,
            "p50 ms": statistics.median(level.latencies_ms) if level.latencies_ms else float("nan"),
            "p99 ms": rig.percentile(level.latencies_ms, 99),
            "failures": level.failures,
            **{f"cpu {who} %": round(value) for who, value in level.cpu.items()},
        }
        for level in levels
    ]
    ours = [level for level in levels if level.server == "fal-mcp"]
    failures = sum(level.failures for level in ours)
    calls = sum(len(level.latencies_ms) for level in ours)
    target = rig.Target(
        "throughput", "no failed call at 1, 10 and 50 clients", f"{failures} failed of {calls}", failures == 0
    )
    notes = [f"{seconds:g} s per level; the clients, the server and the fake fal share the machine's cores"]
    return rig.Report("throughput", "Throughput: concurrent get-status over streamable HTTP", rows, [target], notes)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
