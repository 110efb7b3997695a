"""Denial of service: a legitimate caller's latency while an attack runs, next to its latency without one.

Three attacks from issue 10, each against a spawned `fal-mcp --transport http --auth fal-key --rest` (callers bring
their own key, so an attacker needs none) on the fake fal, the attacker a process of its own:

- `random bearers` (item 7): REST calls, each with a new made-up key shaped like a fal key, which fal refuses.
  10,000 are sent first, as fast as four connections go, then 100 a second while the caller is measured. The caller: `get-status` of a
  completed request over MCP, with its own key.
- `session flood` (item 8): `initialize` requests from another address, each with a new made-up key, 10,000 first,
  then 100 a second. The caller opens a new MCP session (legacy handshake) for each `get-status`, so it needs one every time.
- `waiting calls` (item 9): one key submits a slow video job and holds 200 `get-result` calls waiting on it
  (again when it ends). The caller, with another key, submits a fast job.

Two identical servers run side by side on the same fake fal; only one is attacked. The caller calls them in turn,
ten calls each, so whatever else the machine is doing slows both alike (the attacker's own CPU use too: that is
the share of the machine an attack takes, not something a server can refuse). Each row gives the caller's p50
and p99 on the quiet server, then on the attacked one, and how many of its calls failed (a call gets 20 s; the
run stops after 120 s). The servers run with the per-key limits off so they measure nothing here, at their
default log level, except for the bearers: at `-v` every request writes a log line, each through the redactor.

    python bench/attacks.py [--quick]

Target (issue 10): under attack, the caller's p50 and p99 stay within 2x of the quiet figures, with no failure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

import rig

ATTACKS = ("random bearers", "session flood", "waiting calls")
CALLER_KEY = "caller-key-id-0001:caller-key-secret-0123456789"
"""The legitimate caller of `waiting calls`: another key than the attacker's (the sandbox's own)."""
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
ONGOING_RATE = 100
"""Requests per second of the bearer and session attacks while the caller is measured (after 10,000 at full speed):
a steady attack, not a load test; what any request costs is for the proxy's per-client limits."""
CALL_TIMEOUT_S = 20.0
PHASE_LIMIT_S = 120.0
SLICE = 10
"""Calls to one server before the caller turns to the other."""
TARGET_RATIO = 2.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "flood", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Phase:
    latencies_ms: list[float] = field(default_factory=list[float])
    failures: int = 0

    def p(self, q: float) -> float:
        return rig.percentile(self.latencies_ms, q)


@dataclass
class Outcome:
    attack: str
    quiet: Phase
    attacked: Phase
    attack_sent: dict[str, Any]


# -- the legitimate caller --------------------------------------------------------------------------------------


@asynccontextmanager
async def caller(url: str, key: str, mode: str = "auto", connections: int = 100) -> AsyncIterator[Any]:
    """An SDK MCP client over streamable HTTP that pays with `key` (`Authorization: Bearer`), with at most
    `connections` calls in flight (its connection pool)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(30, read=300),
            limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
        ) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # pyright: ignore[reportArgumentType]
    ):
        yield client


async def measure(call: Callable[[], Awaitable[None]], count: int, phase: Phase, stop_at: float) -> None:
    """`count` calls back to back (fewer once `stop_at` has passed), each timed into `phase`."""
    for _ in range(count):
        if time.monotonic() > stop_at:
            return
        started = time.perf_counter()
        try:
            with anyio.fail_after(CALL_TIMEOUT_S):
                await call()
        except Exception:
            phase.failures += 1
        else:
            phase.latencies_ms.append((time.perf_counter() - started) * 1000)


def checked(result: Any) -> None:
    if result.is_error:
        raise RuntimeError(str(result.content)[:200])


# -- the attacker: `python bench/attacks.py --attacker NAME --url URL` in a process of its own ------------------


async def attack(name: str, url: str, prime: int, key: str, waits: int) -> dict[str, Any]:
    """Attack until SIGTERM; print `primed` once the first wave is out; return what was sent."""
    sent: Counter[str] = Counter()
    primed = anyio.Event()
    base = url.removesuffix("/mcp")

    def note(outcome: str) -> None:
        sent[outcome] += 1
        if not primed.is_set() and sum(sent.values()) >= prime:
            primed.set()

    async def paced() -> None:
        """After the first wave, one request every 1/ONGOING_RATE s (the caller is measured meanwhile)."""
        if primed.is_set():
            await anyio.sleep(1 / ONGOING_RATE)

    async def random_bearers(http: httpx.AsyncClient, first_wave_only: bool) -> None:
        while not (first_wave_only and primed.is_set()):
            await paced()
            bearer = f"{uuid.uuid4()}:{secrets.token_hex(16)}"
            answer = await http.get(
                f"{base}/v1/models/fal-ai/flux/requests/{uuid.uuid4()}/status",
                headers={"Authorization": f"Bearer {bearer}"},
            )
            note(str(answer.status_code))

    async def session_flood(http: httpx.AsyncClient, first_wave_only: bool) -> None:
        while not (first_wave_only and primed.is_set()):
            await paced()
            bearer = f"flood-{uuid.uuid4().hex}:{secrets.token_hex(16)}"
            answer = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {bearer}"})
            note(str(answer.status_code))

    async def waiting_calls() -> None:
        async with caller(url, key, connections=waits + 10) as client:  # every wait on a connection of its own
            while True:
                submitted = await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "hold"}})
                checked(submitted)
                rid = (submitted.structured_content or {})["request_id"]
                arguments = {"endpoint_id": VIDEO, "request_id": rid, "wait_s": 600}

                async def wait(client: Any = client, arguments: dict[str, Any] = arguments) -> None:
                    note("waiting")
                    try:
                        result = await client.call_tool("get-result", arguments)
                        note("wait ended with an error" if result.is_error else "wait ended")
                    except Exception:
                        note("wait failed")

                async with anyio.create_task_group() as group:
                    for _ in range(waits):
                        group.start_soon(wait)
                    await anyio.sleep(2)  # the waits are out and following the job
                    primed.set()

    async def report_primed() -> None:
        await primed.wait()
        print("primed", flush=True)

    local = "127.0.0.2" if name == "session flood" else "127.0.0.1"  # another machine, to the server
    async with (
        httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(local_address=local)) as http,
        anyio.create_task_group() as group,
    ):
        group.start_soon(report_primed)
        if name == "waiting calls":
            group.start_soon(waiting_calls)
        else:
            worker = random_bearers if name == "random bearers" else session_flood
            for n in range(4):  # four connections send the first wave; one goes on while the caller is measured
                group.start_soon(worker, http, n > 0)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
        group.cancel_scope.cancel()
    return dict(sent)


def attacker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attacker", choices=ATTACKS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prime", type=int, default=10_000)
    parser.add_argument("--key", default="")
    parser.add_argument("--waits", type=int, default=200)
    args = parser.parse_args(argv)
    sent = anyio.run(attack, args.attacker, args.url, args.prime, args.key, args.waits)
    print(json.dumps(sent), flush=True)


@contextmanager
def attacker(name: str, url: str, *, prime: int, key: str, waits: int) -> Iterator[dict[str, Any]]:
    """The attacker process, primed when the block starts; what it sent is in the dict once the block ends."""
    command = [sys.executable, __file__, "--attacker", name, "--url", url, "--prime", str(prime)]
    command += ["--key", key, "--waits", str(waits)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=rig.base_env())
    assert process.stdout is not None
    sent: dict[str, Any] = {}
    try:
        line = process.stdout.readline()
        if line.strip() != "primed":
            raise RuntimeError(f"the attacker did not start: {line!r}")
        yield sent
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=30)
            sent.update(json.loads(out.strip().splitlines()[-1]))
        except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
            process.kill()
            process.wait()


# -- the three runs ---------------------------------------------------------------------------------------------


@asynccontextmanager
async def legitimate(name: str, url: str, key: str, request_id: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The legitimate caller's call for `name`, connected (and its key accepted by fal) before any clock starts."""
    status = {"endpoint_id": rig.FAST, "request_id": request_id}
    if name == "session flood":  # a new session for every call

        async def new_session() -> None:
            async with caller(url, key, mode="legacy") as client:
                checked(await client.call_tool("get-status", status))

        await new_session()
        yield new_session
        return
    async with caller(url, key) as client:

        async def call() -> None:
            if name == "waiting calls":
                submitted = {"endpoint_id": rig.FAST, "input": {"prompt": "a legitimate caller"}}
                checked(await client.call_tool("submit", submitted))
            else:
                checked(await client.call_tool("get-status", status))

        await call()
        yield call


async def run_attack(name: str, fake: rig.Sandbox, request_id: str, quick: bool) -> Outcome:
    """Two identical servers; one is attacked. The caller calls them in turn, a slice each, so whatever else the
    machine is doing slows both alike."""
    calls = 10 if quick else {"random bearers": 300, "session flood": 100, "waiting calls": 100}[name]
    prime = 300 if quick else 10_000
    waits = 20 if quick else 200
    key = CALLER_KEY if name == "waiting calls" else fake.key
    # Bearers: at -v, where every request logs a line through the redactor (where made-up keys used to cost).
    command = [*rig.fal_mcp_http_command(), "--rest", *(["-v"] if name == "random bearers" else [])]
    with tempfile.TemporaryDirectory() as quiet_dir, tempfile.TemporaryDirectory() as attacked_dir:

        def env(state_dir: str) -> dict[str, str]:
            env = rig.server_env(
                fake, state_dir, FAL_MCP_AUTH="fal-key", FAL_MCP_SUBMITS_PER_MINUTE="0", FAL_MCP_MAX_RUNNING_JOBS="0"
            )
            env.pop("FAL_KEY")  # with --auth fal-key the server holds no key
            return env

        with (
            rig.http_process(command, env(quiet_dir)) as quiet_server,
            rig.http_process(command, env(attacked_dir)) as attacked_server,
        ):
            quiet, attacked = Phase(), Phase()
            async with (
                legitimate(name, quiet_server.url, key, request_id) as quiet_call,
                legitimate(name, attacked_server.url, key, request_id) as attacked_call,
            ):
                with attacker(name, attacked_server.url, prime=prime, key=fake.key, waits=waits) as sent:
                    stop_at = time.monotonic() + PHASE_LIMIT_S
                    for _ in range(0, calls, SLICE):
                        await measure(quiet_call, SLICE, quiet, stop_at)
                        await measure(attacked_call, SLICE, attacked, stop_at)
    return Outcome(name, quiet, attacked, sent)


def run(quick: bool) -> rig.Report:
    outcomes: list[Outcome] = []

    async def main() -> None:
        with rig.sandbox(time_scale=1.0, extra_keys=(CALLER_KEY,)) as fake:
            request_id = rig.completed_request(fake)
            outcomes.extend([await run_attack(name, fake, request_id, quick) for name in ATTACKS])

    anyio.run(main)
    rows: list[dict[str, Any]] = []
    targets: list[rig.Target] = []
    for o in outcomes:
        ratio_50 = o.attacked.p(50) / o.quiet.p(50) if o.quiet.latencies_ms else float("nan")
        ratio_99 = o.attacked.p(99) / o.quiet.p(99) if o.quiet.latencies_ms else float("nan")
        failed = o.quiet.failures + o.attacked.failures
        rows.append(
            {
                "attack": o.attack,
                "quiet p50 ms": o.quiet.p(50),
                "quiet p99 ms": o.quiet.p(99),
                "attacked p50 ms": o.attacked.p(50),
                "attacked p99 ms": o.attacked.p(99),
                "x p50": ratio_50,
                "x p99": ratio_99,
                "calls ok": f"{len(o.quiet.latencies_ms)} / {len(o.attacked.latencies_ms)}",
                "failed": failed,
                "attack sent": " ".join(f"{k}:{v}" for k, v in sorted(o.attack_sent.items())),
            }
        )
        targets.append(
            rig.Target(
                f"{o.attack}: the caller's latency under attack",
                f"p50 and p99 within {TARGET_RATIO:g}x of quiet, no failed call",
                f"p50 x{ratio_50:.2f}, p99 x{ratio_99:.2f}, {failed} failed",
                ratio_50 <= TARGET_RATIO and ratio_99 <= TARGET_RATIO and failed == 0,
            )
        )
    return rig.Report(
        name="attacks",
        title="Denial of service: one caller on a quiet server and, in turn, on an attacked one (--auth fal-key)",
        rows=rows,
        targets=targets,
        notes=[f"load average {os.getloadavg()[0]:.2f} at the end (other work on the machine shows here)"],
        extra={
            o.attack: {"quiet_ms": o.quiet.latencies_ms, "attacked_ms": o.attacked.latencies_ms, "sent": o.attack_sent}
            for o in outcomes
        },
    )


if __name__ == "__main__":
    if "--attacker" in sys.argv:
        attacker_main(sys.argv[1:])
    else:
        rig.standalone(run, __doc__)
