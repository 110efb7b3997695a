"""Cold start: from spawning the process to the first `tools/list` answer over stdio.

fal-mcp (the installed console script, pointed at the fake fal, with its own state directory) against a bare
`MCPServer` with one trivial tool (`bare_server.py`, same interpreter). The client is raw JSON-RPC on the
pipes (initialize, initialized, tools/list), so no client import is measured. The two are spawned in turn,
after one unmeasured start each (to write `.pyc` files and warm the page cache).

    python bench/cold_start.py [--quick]

Target: fal-mcp's median at most 1.10 times the bare server's (10 % over), both medians of at least 10 spawns
taken side by side in one run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from typing import Any

import rig

TARGET_RATIO = 1.10


def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()


def _answer(process: subprocess.Popen[bytes], id_: int) -> dict[str, Any]:
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the server closed stdout before answering")
        message = json.loads(line)
        if message.get("id") == id_:
            return message


def first_tools_list(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds from spawn to the tools/list answer, and how many tools it listed."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
        _send(process, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        _answer(process, 1)
        _send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        tools = _answer(process, 2)["result"]["tools"]
        elapsed = time.perf_counter() - started
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return elapsed, len(tools)


def run(quick: bool) -> rig.Report:
    runs = 2 if quick else 15
    with rig.sandbox() as fake, tempfile.TemporaryDirectory() as state_dir:
        servers = {
            "bare MCPServer (1 tool)": (rig.bare_command(), rig.base_env()),
            "fal-mcp": (rig.fal_mcp_command(), rig.server_env(fake, state_dir)),
        }
        samples: dict[str, list[float]] = {name: [] for name in servers}
        tools: dict[str, int] = {}
        for command, env in servers.values():
            first_tools_list(command, env)  # unmeasured
        for _ in range(runs):
            for name, (command, env) in servers.items():  # in turn, so drift on a busy machine hits both
                elapsed, tools[name] = first_tools_list(command, env)
                samples[name].append(elapsed * 1000)
    rows = [
        {
            "server": name,
            "tools": tools[name],
            "runs": len(values),
            "median ms": statistics.median(values),
            "p90 ms": rig.percentile(values, 90),
            "min ms": min(values),
        }
        for name, values in samples.items()
    ]
    bare, ours = (statistics.median(v) for v in samples.values())
    ratio = ours / bare
    rows[1]["vs bare"] = f"{ratio:.2f}x"
    rows[0]["vs bare"] = "1.00x"
    target = rig.Target(
        "cold start",
        f"fal-mcp at most {TARGET_RATIO:.2f}x the bare server (median of {runs} spawns each)",
        f"{ratio:.3f}x: {ours:.0f} ms vs {bare:.0f} ms ({ratio - 1:+.1%})",
        ratio <= TARGET_RATIO,
    )
    return rig.Report("cold_start", "Cold start over stdio: spawn to first tools/list", rows, [target], extra=samples)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
