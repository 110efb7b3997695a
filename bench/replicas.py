"""Two replicas on one PostgreSQL database under load: every request crosses from one replica to the other.

A real PostgreSQL cluster (started here like the tests start theirs: `initdb` and `pg_ctl` into a temporary folder),
the fake fal in a process of its own, and two `fal-mcp --transport http --stateless` replicas sharing the database
and the state secret, each with a folder of its own. 50 clients (the SDK's, on the 2026-07-28 protocol) each loop:
`submit` through one replica, then `get-result` with the `request_id` alone (waiting for the output) through the
other, so every result is found through the shared history; half the clients start on each replica. The limits'
counts are kept (set high enough not to refuse): each submit is admitted in the database. Afterwards the database
must hold every request, completed.

The load generator runs in this process, on the same cores as both replicas, the database and the fake fal.

    python bench/replicas.py [--quick]

Target (issue 15): zero failed calls at 50 clients across two replicas; p99 reported.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

import rig

sys.path.insert(0, str(rig.BENCH.parent))  # the tests' PostgreSQL cluster, shared rather than copied
from tests.postgres import running_cluster

CLIENTS = 50
ROUNDS = 8
QUICK_CLIENTS, QUICK_ROUNDS = 4, 2
SECRET = "a-benchmark-state-secret-0123456789-abcdefgh"


@dataclass
class Calls:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"submit": [], "get-result": []})
    failures: list[str] = field(default_factory=list[str])


async def client(urls: tuple[str, str], rounds: int, calls: Calls) -> None:
    sender, fetcher = urls
    async with rig.http_client(sender) as submit_on, rig.http_client(fetcher) as fetch_on:
        for n in range(rounds):
            started = time.perf_counter()
            try:
                sent = await submit_on.call_tool("submit", {"endpoint_id": rig.FAST, "input": {"prompt": f"load {n}"}})
                if sent.is_error:
                    raise RuntimeError(str(sent.content[0]))
                calls.latencies_ms["submit"].append((time.perf_counter() - started) * 1000)
                request_id = (sent.structured_content or {})["request_id"]
                started = time.perf_counter()
                got = await fetch_on.call_tool("get-result", {"request_id": request_id, "wait_s": 60})
                if got.is_error or (got.structured_content or {}).get("status") != "COMPLETED":
                    raise RuntimeError(str(got.content[0]))
                calls.latencies_ms["get-result"].append((time.perf_counter() - started) * 1000)
            except Exception as exc:
                calls.failures.append(f"{type(exc).__name__}: {exc}"[:200])


def run(quick: bool) -> rig.Report:
    clients, rounds = (QUICK_CLIENTS, QUICK_ROUNDS) if quick else (CLIENTS, ROUNDS)
    calls = Calls()
    stored: dict[str, int] = {}
    seconds = 0.0
    with running_cluster() as cluster:
        if isinstance(cluster, str):
            raise RuntimeError(f"no PostgreSQL for the replicas benchmark: {cluster}")
        url = cluster.url(cluster.create_database())
        with (
            rig.sandbox() as fake,
            tempfile.TemporaryDirectory() as folder_a,
            tempfile.TemporaryDirectory() as folder_b,
        ):
            limits = {"FAL_MCP_SUBMITS_PER_MINUTE": "100000", "FAL_MCP_MAX_RUNNING_JOBS": "10000"}
            shared = {"FAL_MCP_DATABASE_URL": url, "FAL_MCP_STATE_SECRET": SECRET, **limits}
            command = [*rig.fal_mcp_http_command(), "--stateless"]
            with (
                rig.http_process(command, rig.server_env(fake, folder_a, **shared)) as a,
                rig.http_process(command, rig.server_env(fake, folder_b, **shared)) as b,
            ):

                async def main() -> None:
                    nonlocal seconds
                    started = time.perf_counter()
                    async with anyio.create_task_group() as group:
                        for n in range(clients):
                            group.start_soon(client, (a.url, b.url) if n % 2 else (b.url, a.url), rounds, calls)
                    seconds = time.perf_counter() - started

                anyio.run(main)
        import psycopg

        with psycopg.connect(url) as conn:
            counted = conn.execute("SELECT state, count(*) FROM fal_mcp.requests GROUP BY state").fetchall()
        stored.update(dict(counted))
    submitted = len(calls.latencies_ms["submit"])
    rows: list[dict[str, Any]] = [
        {
            "call": f"{name} ({'through the other replica' if name == 'get-result' else 'one replica'})",
            "calls": len(samples),
            "p50 ms": statistics.median(samples) if samples else float("nan"),
            "p99 ms": rig.percentile(samples, 99),
        }
        for name, samples in calls.latencies_ms.items()
    ]
    failed = len(calls.failures)
    targets = [
        rig.Target(
            "replicas: load",
            f"no failed call at {clients} clients across two replicas",
            f"{failed} failed of {submitted + len(calls.latencies_ms['get-result']) + failed}",
            failed == 0,
        ),
        rig.Target(
            "replicas: shared history",
            "every request in the shared database, completed",
            f"{stored.get('COMPLETED', 0)} of {clients * rounds} completed ({stored})",
            stored.get("COMPLETED", 0) == clients * rounds,
        ),
    ]
    notes = [
        f"{clients} clients x {rounds} rounds (submit on one replica, get-result by request_id on the other) in "
        f"{seconds:.1f} s; two replicas, PostgreSQL, the fake fal and the clients share the machine's cores",
        *calls.failures[:3],
    ]
    return rig.Report(
        "replicas", "Two replicas on one database: 50 clients crossing between them", rows, targets, notes
    )


if __name__ == "__main__":
    rig.standalone(run, __doc__)
