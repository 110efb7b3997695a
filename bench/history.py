"""The request history at 1,000,000 rows: `list-requests` for each filter it offers, and while a prune runs; then
each filter at 100,000 rows on both backends, SQLite and PostgreSQL.

One history file gets 1,000,000 rows in one key's partition (plus 50,000 in others), spread over 30 days, 12
models and every state as a busy user's history would hold them (UNKNOWN and active rows rare and scattered, the
worst case for a query that scans). Then, for each filter, `History.recent` (what `list-requests` calls: the worker
thread, the index reads, the records) runs 200 times after a warm-up; the p50 and p99 are printed next to the
target. Last, the same unfiltered listing runs while the background upkeep prunes 100,000 rows (the row cap set
to 900,000), which shows calls are not held up by pruning. Then the same rows, 100,000 of them in the partition,
go into a SQLite file and into a PostgreSQL database (a real cluster started here, as the tests start theirs), and
every filter is timed on each: the same statements, the same indexes, two backends.

    python bench/history.py [--quick]

Targets: at most 5 ms at 1,000,000 rows for any filter (p50, SQLite); at most 5 ms at 100,000 rows on both
backends (p50).
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

import rig
from fal_mcp.store.history import History
from fal_mcp.store.records import ACTIVE_STATES, FILE_NAME, Retention

sys.path.insert(0, str(rig.BENCH.parent))  # the tests' PostgreSQL cluster, shared rather than copied
from tests.postgres import running_cluster

ROWS = 1_000_000
QUICK_ROWS = 20_000
BACKEND_ROWS = 100_000
QUICK_BACKEND_ROWS = 2_000
OTHER_ROWS = 50_000
RUNS = 200
TARGET_MS = 5.0
PARTITION = "a-busy-key"
ENDPOINTS = {
    "fal-ai/flux/schnell": 30,
    "fal-ai/flux/dev": 15,
    "fal-ai/flux/dev/image-to-image": 5,
    "fal-ai/flux-pro/v1.1-ultra": 10,
    "fal-ai/fast-sdxl": 8,
    "fal-ai/kling-video/v2/master/text-to-video": 8,
    "fal-ai/minimax/video-01": 5,
    "fal-ai/any-llm": 7,
    "fal-ai/whisper": 4,
    "fal-ai/recraft-v3": 4,
    "workflows/team/pipeline": 3,
    "comfy/team/graph": 1,
}
STATES = {
    "COMPLETED": 930,
    "FAILED": 40,
    "CANCELLED": 15,
    "UNKNOWN": 2,
    "IN_QUEUE": 5,
    "IN_PROGRESS": 5,
    "CANCELLATION_REQUESTED": 1,
}
FILTERS: dict[str, dict[str, Any]] = {
    "newest 20 (no filter)": {},
    "newest 100 (no filter)": {"limit": 100},
    "state=UNKNOWN": {"states": ("UNKNOWN",)},
    "state=FAILED": {"states": ("FAILED",)},
    "state=active": {"states": ACTIVE_STATES},
    "endpoint fal-ai/flux/schnell": {"endpoint_prefix": "fal-ai/flux/schnell"},
    "endpoint prefix fal-ai/flux": {"endpoint_prefix": "fal-ai/flux"},
    "endpoint prefix fal-ai": {"endpoint_prefix": "fal-ai"},
    "UNKNOWN under fal-ai/flux": {"states": ("UNKNOWN",), "endpoint_prefix": "fal-ai/flux"},
    "active under fal-ai": {"states": ACTIVE_STATES, "endpoint_prefix": "fal-ai"},
}


def generated(rows: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows in batches of 10,000: (partition, request_id, endpoint_id, state, created_at, updated_at)."""
    rng = random.Random(12)
    endpoints, endpoint_weights = list(ENDPOINTS), list(ENDPOINTS.values())
    states, state_weights = list(STATES), list(STATES.values())
    now = time.time()
    for partition, count in ((PARTITION, rows), *((f"other-{n}", OTHER_ROWS // 5) for n in range(5))):
        batch: list[tuple[Any, ...]] = []
        for index in range(count):
            created = now - 30 * 86400 * (1 - index / count)
            state = rng.choices(states, state_weights)[0]
            rid = None if state == "UNKNOWN" else f"{partition}-{index:07d}"
            endpoint = rng.choices(endpoints, endpoint_weights)[0]
            batch.append((partition, rid, endpoint, state, created, created))
            if len(batch) == 10_000:
                yield batch
                batch = []
        yield batch


INSERT = (
    "INSERT INTO requests (partition, request_id, endpoint_id, origin, state, created_at, updated_at,"
    " input_digest, input_summary, media_urls) VALUES (?, ?, ?, 'run-model', ?, ?, ?, 'sha256', "
    '\'{"prompt": "a red fox in the snow, golden hour"}\', \'["https://v3.fal.media/files/x.png"]\')'
)


def fill(path: Path, rows: int) -> float:
    """Write the rows straight into a history file made by `History`; returns the seconds it took."""
    History.open(path.parent).close()  # the current layout, every index
    started = time.monotonic()
    with sqlite3.connect(path) as db:
        for batch in generated(rows):
            db.executemany(INSERT, batch)
    return time.monotonic() - started


def fill_postgres(url: str, rows: int) -> float:
    """The same rows into a PostgreSQL database migrated by the store; returns the seconds it took."""
    import psycopg

    from fal_mcp.store.postgres import PostgresDatabase, placeholders

    database = PostgresDatabase(url)
    database.run_blocking(lambda db: db.execute("SELECT 1"))  # the schema, migrated on first use
    database.close()
    started = time.monotonic()
    with psycopg.connect(url, options="-c search_path=fal_mcp") as conn, conn.cursor() as cursor:
        for batch in generated(rows):
            cursor.executemany(placeholders(INSERT), batch)
        conn.execute("ANALYZE requests")
    return time.monotonic() - started


async def timings(history: History, filters: dict[str, Any], runs: int) -> list[float]:
    """Milliseconds per `recent` call, after a warm-up."""
    arguments = {"limit": 20, **filters}
    for _ in range(5):
        await history.recent(PARTITION, **arguments)
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        found = await history.recent(PARTITION, **arguments)
        samples.append((time.perf_counter() - started) * 1000)
        assert found or "UNKNOWN under" in str(filters), filters
    return samples


async def while_pruning(path: Path, rows: int, runs: int) -> tuple[list[float], int, float]:
    """The unfiltered listing while an upkeep pass prunes 10 % of the partition in another thread (as the history's
    own background thread does, here started by hand to know when it ends)."""
    history = History.open(path.parent, Retention(max_age_s=None, max_rows=rows - rows // 10))
    pruned: list[int] = []
    took: list[float] = []

    def prune() -> None:
        started = time.monotonic()
        pruned.append(history.upkeep())
        took.append(time.monotonic() - started)

    worker = threading.Thread(target=prune)
    worker.start()
    samples: list[float] = []
    try:
        while worker.is_alive() and len(samples) < runs * 50:
            started = time.perf_counter()
            await history.recent(PARTITION, limit=20)
            samples.append((time.perf_counter() - started) * 1000)
            await anyio.sleep(0.001)
    finally:
        worker.join()
        history.close()
    return samples, pruned[0], took[0]


def on_both_backends(rows: int, runs: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, float]]:
    """Every filter at `rows` rows, on a SQLite file and on a PostgreSQL database; and how long each took to fill."""
    from fal_mcp.store.postgres import PostgresDatabase

    measured: dict[str, dict[str, list[float]]] = {}
    filled: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FILE_NAME
        filled["SQLite"] = fill(path, rows)
        history = History.open(path.parent, Retention(max_age_s=None, max_rows=None))
        try:
            measured["SQLite"] = {name: anyio.run(timings, history, f, runs) for name, f in FILTERS.items()}
        finally:
            history.close()
    with running_cluster() as cluster:
        if isinstance(cluster, str):
            raise RuntimeError(f"no PostgreSQL for the history benchmark: {cluster}")
        url = cluster.url(cluster.create_database())
        filled["PostgreSQL"] = fill_postgres(url, rows)
        database = PostgresDatabase(url)
        history = History(database, Retention(max_age_s=None, max_rows=None))
        try:
            measured["PostgreSQL"] = {name: anyio.run(timings, history, f, runs) for name, f in FILTERS.items()}
        finally:
            database.close()
    return measured, filled


def run(quick: bool) -> rig.Report:
    backend_rows = QUICK_BACKEND_ROWS if quick else BACKEND_ROWS
    rows = QUICK_ROWS if quick else ROWS
    runs = 20 if quick else RUNS
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FILE_NAME
        filled_s = fill(path, rows)
        size_mb = path.stat().st_size / 2**20
        history = History.open(path.parent, Retention(max_age_s=None, max_rows=None))
        try:
            measured = {name: anyio.run(timings, history, filters, runs) for name, filters in FILTERS.items()}
        finally:
            history.close()
        during, pruned, prune_s = anyio.run(while_pruning, path, rows, runs)
    backends, backends_filled = on_both_backends(backend_rows, runs)
    table = [
        {
            "backend": "SQLite",
            "rows": rows,
            "filter (limit 20 unless said)": name,
            "p50 ms": statistics.median(samples),
            "p99 ms": rig.percentile(samples, 99),
            "target ms": TARGET_MS,
        }
        for name, samples in measured.items()
    ]
    table.append(
        {
            "backend": "SQLite",
            "rows": rows,
            "filter (limit 20 unless said)": f"newest 20, while {pruned:,} rows are pruned",
            "p50 ms": statistics.median(during) if during else float("nan"),
            "p99 ms": rig.percentile(during, 99),
            "target ms": TARGET_MS,
        }
    )
    table += [
        {
            "backend": backend,
            "rows": backend_rows,
            "filter (limit 20 unless said)": name,
            "p50 ms": statistics.median(samples),
            "p99 ms": rig.percentile(samples, 99),
            "target ms": TARGET_MS,
        }
        for backend, filters in backends.items()
        for name, samples in filters.items()
    ]
    slowest = max(statistics.median(samples) for samples in measured.values())
    targets = [
        rig.Target(
            "history: list-requests",
            f"at most {TARGET_MS:g} ms (p50) for any filter at {rows:,} rows in one key's partition",
            f"slowest filter p50 {slowest:.2f} ms",
            slowest <= TARGET_MS,
        )
    ]
    for backend, filters in backends.items():
        slowest_here = max(statistics.median(samples) for samples in filters.values())
        targets.append(
            rig.Target(
                f"history on {backend}",
                f"at most {TARGET_MS:g} ms (p50) for any filter at {backend_rows:,} rows",
                f"slowest filter p50 {slowest_here:.2f} ms",
                slowest_here <= TARGET_MS,
            )
        )
    notes = [
        f"{rows:,} rows in one partition plus {OTHER_ROWS:,} in five others, written in {filled_s:.0f} s; "
        f"file {size_mb:.0f} MB",
        f"a prune of {pruned:,} rows took {prune_s:.1f} s in the background, {len(during)} listings ran meanwhile",
        "History.recent in process: the worker thread, the index reads and the records, not the MCP round trip",
        f"{backend_rows:,} rows on both backends, filled in "
        + ", ".join(f"{backend} {seconds:.0f} s" for backend, seconds in backends_filled.items())
        + "; PostgreSQL on loopback with fsync off (a test cluster), each call one pooled connection",
    ]
    return rig.Report("history", "The request history: list-requests at scale, on both backends", table, targets, notes)


if __name__ == "__main__":
    rig.standalone(run, __doc__)
