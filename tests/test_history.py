"""The request history at scale and over time: every filter through an index, retention, upgrades, lost submits.

The answers are checked against a plain Python reading of the same rows; the query plans with SQLite's own
`EXPLAIN QUERY PLAN`; lost submits, retention, upgrades and a history that cannot open through the real server.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from fal_mcp.jobs.state import partition_of
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, Fault, SandboxServer
from fal_mcp.server.build import create_server
from fal_mcp.store.history import MAX_RANGES, STALE_SUBMIT_S, History, listing_queries
from fal_mcp.store.migrations import SCHEMA_VERSION
from fal_mcp.store.owners import owner, owner_gone
from fal_mcp.store.records import ACTIVE_STATES, FILE_NAME, Retention, media_urls
from tests.conftest import env_for, settings_for
from tests.harness import connect, start_http_server
from tests.test_tools import structured

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
STATES = ("COMPLETED", "FAILED", "CANCELLED", "UNKNOWN", "SUBMITTING", "IN_QUEUE", "IN_PROGRESS")
ENDPOINTS = (
    "fal-ai/flux",
    "fal-ai/flux/schnell",
    "fal-ai/flux/dev",
    "fal-ai/flux/dev/image-to-image",
    "fal-ai/flux-pro",
    "fal-ai/kling-video/v2/master/text-to-video",
    "workflows/sandbox/echo",
)

VERSION_1 = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition TEXT NOT NULL,
    request_id TEXT,
    endpoint_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    error TEXT,
    error_type TEXT,
    media_urls TEXT NOT NULL DEFAULT '[]',
    input_digest TEXT NOT NULL,
    input_summary TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS requests_by_id ON requests (partition, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS requests_recent ON requests (partition, created_at DESC);
"""
"""The layout every history file had before indexes per filter (a user upgrading has one of these)."""


def insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows of (partition, request_id, endpoint_id, state, created_at), as the server would have written them."""
    db.executemany(
        "INSERT INTO requests (partition, request_id, endpoint_id, origin, state, created_at, updated_at,"
        " input_digest, input_summary) VALUES (?, ?, ?, 'submit', ?, ?, ?, 'digest', '{\"prompt\": \"x\"}')",
        [(p, rid, e, s, t, t) for p, rid, e, s, t in rows],
    )


def random_rows(count: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    start = time.time() - 86400
    return [
        (
            rng.choice(("mine", "theirs")),
            f"rid-{index}",
            rng.choice(ENDPOINTS),
            rng.choices(STATES, weights=(60, 10, 5, 5, 5, 10, 5))[0],
            start + rng.randrange(0, 86400 * 10) / 10,  # many share a timestamp: ties go by row
        )
        for index in range(count)
    ]


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[History, list[tuple[Any, ...]]]]:
    history = History.open(tmp_path)
    rows = random_rows(3000)
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        insert(db, rows)
    yield history, rows
    history.close()


FILTERS: list[tuple[tuple[str, ...], str | None]] = [
    ((), None),
    (("UNKNOWN",), None),
    (("COMPLETED",), None),
    (ACTIVE_STATES, None),
    ((), "fal-ai/flux/schnell"),
    ((), "fal-ai/flux"),
    ((), "fal-ai/flux/"),
    ((), "fal-ai"),
    ((), "fal-ai/nothing"),
    (("UNKNOWN",), "fal-ai/flux"),
    (ACTIVE_STATES, "fal-ai/flux/dev"),
]


@pytest.mark.parametrize(("states", "prefix"), FILTERS)
async def test_every_filter_answers_exactly_what_a_plain_reading_would(
    filled: tuple[History, list[tuple[Any, ...]]], states: tuple[str, ...], prefix: str | None
) -> None:
    history, rows = filled
    under = prefix.rstrip("/") if prefix else None

    def wanted(row: tuple[Any, ...]) -> bool:
        partition, _, endpoint, state, _ = row
        in_prefix = under is None or endpoint == under or endpoint.startswith(under + "/")
        return partition == "mine" and in_prefix and (not states or state in states)

    numbered = [(row[4], index, row[1]) for index, row in enumerate(rows) if wanted(row)]
    for limit in (1, 20, 100):
        expected = [rid for _, _, rid in sorted(numbered, reverse=True)[:limit]]
        got = await history.recent("mine", states=states, endpoint_prefix=prefix, limit=limit)
        assert [r.request_id for r in got] == expected


def plans(db: sqlite3.Connection, sql: str, args: list[Any] | tuple[Any, ...]) -> list[str]:
    return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


@pytest.mark.parametrize(("states", "prefix"), FILTERS)
def test_every_filter_reads_one_index_range_per_query(
    filled: tuple[History, list[tuple[Any, ...]]], tmp_path: Path, states: tuple[str, ...], prefix: str | None
) -> None:
    """O(limit): each statement is a search of an index that is already in newest-first order, with no sort and no
    scan of the table, whatever the filter."""
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        queries = listing_queries(db, "mine", states, prefix, 20)
        assert len(queries) <= MAX_RANGES and (queries or prefix == "fal-ai/nothing")  # no such model: no reading
        for sql, args in queries:
            steps = plans(db, sql, args)
            assert len(steps) == 1 and steps[0].startswith("SEARCH requests USING COVERING INDEX"), (sql, steps)


def test_a_prefix_covering_many_models_reads_newest_first_through_an_index(tmp_path: Path) -> None:
    history = History.open(tmp_path)
    many = [f"fal-ai/model-{n}" for n in range(MAX_RANGES + 1)]
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        insert(db, [("mine", f"rid-{n}", endpoint, "COMPLETED", 1000.0 + n) for n, endpoint in enumerate(many)])
        (sql, args), *more = listing_queries(db, "mine", (), "fal-ai", 20)
        assert not more
        assert plans(db, sql, args) == ["SEARCH requests USING INDEX requests_newest (partition=?)"]
    history.close()


def test_upkeep_statements_use_the_indexes_too(filled: tuple[History, list[tuple[Any, ...]]], tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        statements = [
            ("SELECT id, owner, created_at FROM requests WHERE state = 'SUBMITTING'", ()),
            ("SELECT partition FROM requests WHERE partition > ? ORDER BY partition LIMIT 1", ("a",)),
            ("SELECT state FROM requests WHERE partition = ? AND state > ? ORDER BY state LIMIT 1", ("mine", "A")),
            (
                "SELECT created_at FROM requests WHERE partition = ? ORDER BY created_at DESC LIMIT 1 OFFSET ?",
                ("mine", 10),
            ),
            (
                "SELECT id FROM requests WHERE partition = ? AND state = ? AND created_at < ? ORDER BY created_at"
                " LIMIT ?",
                ("mine", "COMPLETED", 1.0, 500),
            ),
            ("SELECT id FROM requests WHERE partition = ? AND created_at < ? ORDER BY created_at LIMIT ?", ("m", 1, 5)),
        ]
        for sql, args in statements:
            steps = plans(db, sql, args)
            assert len(steps) == 1 and " USING " in steps[0] and "INDEX" in steps[0], (sql, steps)
            assert not steps[0].startswith("SCAN requests USING INDEX requests_by"), (sql, steps)


async def test_retention_prunes_by_age_and_count_but_never_a_request_that_may_bill(tmp_path: Path) -> None:
    history = History.open(tmp_path, Retention(max_age_s=30 * 86400, max_rows=5))
    now = time.time()
    day = 86400
    rows = [
        ("mine", "ancient-unknown", FLUX, "UNKNOWN", now - 40 * day),  # past the age limit: goes, whatever its state
        ("mine", "ancient-done", FLUX, "COMPLETED", now - 31 * day),
        ("mine", "old-unknown", FLUX, "UNKNOWN", now - 20 * day),  # past the row cap, but may be billing: kept
        ("mine", "old-queued", FLUX, "IN_QUEUE", now - 19 * day),
        ("mine", "old-failed", FLUX, "FAILED", now - 18 * day),  # past the row cap: goes
        *[("mine", f"done-{n}", FLUX, "COMPLETED", now - 10 * day + n) for n in range(8)],
        ("theirs", "their-old-done", FLUX, "COMPLETED", now - 20 * day),  # another key's rows count on their own
    ]
    try:
        with sqlite3.connect(tmp_path / FILE_NAME) as db:
            insert(db, rows)
        deleted = history.upkeep(now)
        mine = [r.request_id for r in await history.recent("mine", limit=100)]
        theirs = [r.request_id for r in await history.recent("theirs", limit=100)]
        assert deleted == 6
        assert mine == [f"done-{n}" for n in (7, 6, 5, 4, 3)] + ["old-queued", "old-unknown"]
        assert theirs == ["their-old-done"]
        assert history.upkeep(now) == 0
    finally:
        history.close()


def own_partition() -> str:
    """The partition of the sandbox key: what a server started with it lists."""
    return partition_of(SecretStr(SANDBOX_KEY))


async def test_the_server_prunes_in_the_background(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    state = tmp_path / "state"
    History.open(state).close()
    now = time.time()
    with sqlite3.connect(state / FILE_NAME) as db:
        insert(db, [(own_partition(), f"done-{n}", FLUX, "COMPLETED", now - 100 + n) for n in range(6)])
    async with connect("stdio", sandbox, tmp_path, state_dir=str(state), history_max_rows=3) as client:
        with anyio.fail_after(10):  # the first pass runs shortly after the start, in a thread of its own
            while len(listed := structured(await client.call_tool("list-requests", {}))["requests"]) > 3:
                await anyio.sleep(0.1)
    assert [r["request_id"] for r in listed] == ["done-5", "done-4", "done-3"]


async def test_an_existing_history_file_is_upgraded_in_place(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A user upgrading keeps every row, and the old file gets the indexes and the owner column."""
    state = tmp_path / "state"
    state.mkdir()
    rows = [(own_partition(), rid, e, s, t) for _, rid, e, s, t in random_rows(300, seed=3)]
    with sqlite3.connect(state / FILE_NAME) as db:
        db.executescript(VERSION_1)
        insert(db, rows)
    newest = [row[1] for _, _, row in sorted(((row[4], n, row) for n, row in enumerate(rows)), reverse=True)]
    # an old file's SUBMITTING rows name no process: settled to UNKNOWN once older than STALE_SUBMIT_S
    settled = {row[1] for row in rows if row[3] == "SUBMITTING" and row[4] < time.time() - STALE_SUBMIT_S}
    unknown = [rid for rid in newest if next(r for r in rows if r[1] == rid)[3] == "UNKNOWN" or rid in settled]
    async with Client(create_server(settings_for(sandbox, state_dir=str(state)))) as client:
        listed = structured(await client.call_tool("list-requests", {"limit": 100}))["requests"]
        lost = structured(await client.call_tool("list-requests", {"state": "UNKNOWN", "limit": 100}))["requests"]
        fresh = structured(await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "new"}}))
        first = structured(await client.call_tool("list-requests", {"limit": 1}))["requests"]
    assert [r["request_id"] for r in listed] == newest[:100]
    assert [r["request_id"] for r in lost] == unknown[:100] and settled
    assert first[0]["request_id"] == fresh["request_id"]
    with sqlite3.connect(state / FILE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 301
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    assert {"requests_newest", "requests_by_state", "requests_by_endpoint", "requests_by_endpoint_state"} <= indexes
    assert "requests_recent" not in indexes and "owner" in columns


async def test_a_submit_cut_off_by_a_kill_is_listed_as_unknown_at_the_next_start(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """Killed between send and answer, a request stays SUBMITTING while its process lives (another process sharing
    the file leaves it alone), and is settled to UNKNOWN, and listed, by the next start once that process is gone."""
    env = env_for(sandbox, FAL_MCP_STATE_DIR=str(tmp_path / "state"))
    fake.inject(Fault(route="submit", drop="before", delay_s=20))  # fal takes its time to answer
    first = start_http_server(env, tmp_path)
    try:

        async def doomed_submit() -> None:
            try:
                async with Client(first.url) as client:
                    await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "keep me"}})
            except Exception:
                pass  # its server is about to die under it

        async with anyio.create_task_group() as group:
            group.start_soon(doomed_submit)
            with anyio.fail_after(10):
                while not fake.requests_for("submit"):
                    await anyio.sleep(0.02)
            second = start_http_server(env, tmp_path)  # a live neighbour starts meanwhile
            try:
                async with Client(second.url) as client:
                    active = structured(await client.call_tool("list-requests", {"state": "active"}))["requests"]
                    assert [(r["state"], r.get("request_id")) for r in active] == [("SUBMITTING", None)]
            finally:
                second.stop()
            first.process.send_signal(signal.SIGKILL)  # the machine died mid-send
            first.process.wait(timeout=10)
            group.cancel_scope.cancel()
    finally:
        first.stop()
    third = start_http_server(env, tmp_path)
    try:
        async with Client(third.url) as client:
            lost = structured(await client.call_tool("list-requests", {"state": "UNKNOWN"}))["requests"]
            active = structured(await client.call_tool("list-requests", {"state": "active"}))["requests"]
    finally:
        third.stop()
    assert len(lost) == 1 and "request_id" not in lost[0]
    assert lost[0]["endpoint_id"] == FLUX and lost[0]["input_summary"] == {"prompt": "keep me"}
    assert "whether fal queued (and billed) it is unknown" in lost[0]["error"]
    assert active == []


async def test_a_history_that_cannot_open_says_where_and_why(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    async with Client(create_server(settings_for(sandbox, state_dir=str(blocker / "state")))) as client:
        ran = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
        result = await client.call_tool("list-requests", {})
    assert ran["status"] == "COMPLETED"  # the request itself goes on
    listed = structured(result)
    assert listed == {"requests": [], "history": "unavailable"}
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"could not open {blocker / 'state' / FILE_NAME} (Not a directory)" in text
    assert "FAL_MCP_STATE_DIR=off" not in text


def test_a_deep_output_is_no_trouble_for_the_history() -> None:
    deep: Any = {"url": "https://v3.fal.media/files/deep.png"}
    for _ in range(5000):
        deep = [deep]
    assert media_urls({"images": [{"url": "https://a/1.png"}], "deep": deep}) == [
        "https://a/1.png",
        "https://v3.fal.media/files/deep.png",
    ]


def test_a_row_outlives_its_owner_only_when_that_process_is_really_gone() -> None:
    host, pid, started = owner().rsplit(":", 2)
    assert not owner_gone(owner())  # this very process
    assert owner_gone(f"{host}:{pid}:{int(started or 0) + 1}")  # the same pid, taken by a later process
    assert owner_gone(f"{host}:{2**22 + 7}:1")  # no such pid
    assert not owner_gone(f"another-host:{2**22 + 7}:1")  # another machine sharing the file: cannot tell
    assert not owner_gone(None)  # a row from before owners were recorded: the age decides
