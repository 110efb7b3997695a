"""The store's promises, on both backends: the same statements against a SQLite file and a real PostgreSQL server.

Each test gets a fresh store; "another process" or "another replica" is a second `Database` opened on the same
file or database (its own connections, its own in-process wake-ups), as a second fal-mcp would open it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from fal_mcp.store import deliveries as deliveries_module
from fal_mcp.store.counters import Admitted, Counters, Full, Limits
from fal_mcp.store.database import Database, Link, StoreUnavailable
from fal_mcp.store.deliveries import Deliveries
from fal_mcp.store.history import History, OverBudget, SpendLimit
from fal_mcp.store.migrations import SCHEMA_VERSION
from fal_mcp.store.owners import owner
from fal_mcp.store.postgres import PostgresDatabase
from fal_mcp.store.records import FILE_NAME, Retention
from fal_mcp.store.sqlite import SqliteDatabase
from fal_mcp.store.tasks import TaskRow, TaskRows
from tests.postgres import Cluster, Relay
from tests.test_history import FILTERS, random_rows

pytestmark = pytest.mark.anyio

Opener = Callable[[], Database]
DEAD_OWNER = f"{socket.gethostname()}:{2**22 + 11}:1"
"""A process of this host that does not exist."""


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the test's store as one more process would; everything opened is closed after the test."""
    opened: list[Database] = []
    if request.param == "sqlite":

        def make() -> Database:
            return SqliteDatabase(tmp_path / FILE_NAME)
    else:
        cluster: Cluster = request.getfixturevalue("cluster")
        url = cluster.url(cluster.create_database())

        def make() -> Database:
            return PostgresDatabase(url)

    def opening() -> Database:
        database = make()
        opened.append(database)
        return database

    yield opening
    for database in opened:
        database.close()


def insert(db: Link, rows: list[tuple[Any, ...]]) -> None:
    """Rows of (partition, request_id, endpoint_id, state, created_at), as the server would have written them."""
    with db.transaction():
        for partition, request_id, endpoint, state, at in rows:
            db.execute(
                "INSERT INTO requests (partition, request_id, endpoint_id, origin, state, created_at, updated_at,"
                " input_digest, input_summary) VALUES (?, ?, ?, 'submit', ?, ?, ?, 'digest', '{\"prompt\": \"x\"}')",
                (partition, request_id, endpoint, state, at, at),
            )


async def test_every_filter_answers_exactly_what_a_plain_reading_would(opener: Opener) -> None:
    database = opener()
    history = History(database)
    rows = random_rows(1500)
    await database.run(lambda db: insert(db, rows))
    for states, prefix in FILTERS:
        under = prefix.rstrip("/") if prefix else None

        def wanted(row: tuple[Any, ...], states: tuple[str, ...] = states, under: str | None = under) -> bool:
            partition, _, endpoint, state, _ = row
            in_prefix = under is None or endpoint == under or endpoint.startswith(under + "/")
            return partition == "mine" and in_prefix and (not states or state in states)

        numbered = [(row[4], index, row[1]) for index, row in enumerate(rows) if wanted(row)]
        for limit in (1, 20):
            expected = [rid for _, _, rid in sorted(numbered, reverse=True)[:limit]]
            got = await history.recent("mine", states=states, endpoint_prefix=prefix, limit=limit)
            assert [r.request_id for r in got] == expected, (states, prefix, limit)


async def test_a_request_is_written_before_it_is_sent_and_read_by_another_process(opener: Opener) -> None:
    first, second = History(opener()), History(opener())
    row = await first.begin(
        "mine", "fal-ai/flux/schnell", {"prompt": "x", "image_url": "data:image/png;base64," + "A" * 500}, "submit"
    )
    pending = await second.recent("mine", states=("SUBMITTING",))
    assert [(r.state, r.request_id) for r in pending] == [("SUBMITTING", None)]
    await first.sent(row, "rid-1", "IN_QUEUE")
    await first.observe("mine", "rid-1", "COMPLETED", output={"images": [{"url": "https://v3.fal.media/a.png"}]})
    seen = await second.get("mine", "rid-1")
    assert seen is not None and seen.state == "COMPLETED" and seen.media_urls == ["https://v3.fal.media/a.png"]
    assert "inline data, 522 characters, elided" in seen.input_summary["image_url"]
    assert await second.get("theirs", "rid-1") is None  # another key's partition never sees it
    refused = await first.begin("mine", "fal-ai/flux/schnell", {"prompt": "y"}, "submit")
    await first.discard(refused)
    assert [r.request_id for r in await second.recent("mine")] == ["rid-1"]


async def test_retention_prunes_by_age_and_count_but_never_a_request_that_may_bill(opener: Opener) -> None:
    database = opener()
    history = History(database, Retention(max_age_s=30 * 86400, max_rows=5))
    now, day, flux = time.time(), 86400, "fal-ai/flux/schnell"
    rows = [
        ("mine", "ancient-unknown", flux, "UNKNOWN", now - 40 * day),
        ("mine", "ancient-done", flux, "COMPLETED", now - 31 * day),
        ("mine", "old-unknown", flux, "UNKNOWN", now - 20 * day),
        ("mine", "old-queued", flux, "IN_QUEUE", now - 19 * day),
        ("mine", "old-failed", flux, "FAILED", now - 18 * day),
        *[("mine", f"done-{n}", flux, "COMPLETED", now - 10 * day + n) for n in range(8)],
        ("theirs", "their-old-done", flux, "COMPLETED", now - 20 * day),
    ]
    await database.run(lambda db: insert(db, rows))
    assert await anyio.to_thread.run_sync(history.upkeep, now) == 6
    mine = [r.request_id for r in await history.recent("mine", limit=100)]
    assert mine == [f"done-{n}" for n in (7, 6, 5, 4, 3)] + ["old-queued", "old-unknown"]
    assert [r.request_id for r in await history.recent("theirs", limit=100)] == ["their-old-done"]


async def test_a_submit_of_a_dead_process_is_settled_to_unknown(opener: Opener) -> None:
    database = opener()
    history = History(database)
    await database.run(
        lambda db: db.execute(
            "INSERT INTO requests (partition, endpoint_id, origin, state, created_at, updated_at, input_digest,"
            " input_summary, owner) VALUES ('mine', 'fal-ai/flux', 'submit', 'SUBMITTING', ?, ?, 'd', '{}', ?)",
            (time.time(), time.time(), DEAD_OWNER),
        )
    )
    await history.begin("mine", "fal-ai/flux", {}, "submit")  # this live process's own send: left alone
    assert await anyio.to_thread.run_sync(history.settle_lost_submits) == 1
    assert sorted(r.state for r in await history.recent("mine")) == ["SUBMITTING", "UNKNOWN"]


async def test_submits_per_minute_hold_for_every_process_together(opener: Opener) -> None:
    """Forty starts at once through two processes against a limit of seven: exactly seven get through."""
    processes = [Counters(opener()), Counters(opener())]
    limits = Limits(per_minute=7, running=0)
    outcomes: list[Admitted | Full] = []

    async def start(counters: Counters) -> None:
        outcomes.append(await counters.admit("key", limits))

    async with anyio.create_task_group() as group:
        for n in range(40):
            group.start_soon(start, processes[n % 2])
    admitted = [o for o in outcomes if isinstance(o, Admitted)]
    refused = [o for o in outcomes if isinstance(o, Full)]
    assert len(admitted) == 7 and len(refused) == 33
    assert {o.limit for o in refused} == {"rate"} and all(1 <= o.retry_after_s <= 60 for o in refused)
    assert isinstance(await processes[0].admit("another key", limits), Admitted)  # every key has its own minute


async def test_running_jobs_count_until_they_are_seen_to_end(opener: Opener) -> None:
    here, there = Counters(opener()), Counters(opener())
    limits = Limits(per_minute=0, running=2)
    first, second = await here.admit("key", limits), await there.admit("key", limits)
    assert isinstance(first, Admitted) and isinstance(second, Admitted)
    assert first.token and second.token
    await here.queued(first.token, "fal-ai/flux", "rid-a")
    full = await there.admit("key", limits)  # the other start is still in flight (a sync run, say)
    assert isinstance(full, Full) and full.limit == "running" and full.counted == 2
    assert full.due == [("rid-a", "fal-ai/flux")]  # only fal can tell whether a queued job ended: ask it
    again = await here.admit("key", limits)
    assert isinstance(again, Full) and again.due == []  # claimed by the first asker for a while
    await there.release(second.token)
    third = await here.admit("key", limits)
    assert isinstance(third, Admitted)
    await there.ended("key", ["rid-a"])
    assert isinstance(await there.admit("key", limits), Admitted)


async def test_a_start_of_a_dead_process_stops_counting(opener: Opener) -> None:
    database = opener()
    counters = Counters(database)
    await database.run(
        lambda db: db.execute(
            "INSERT INTO guard_jobs (token, partition, owner, started_at, checked_at) VALUES ('t', 'key', ?, ?, ?)",
            (DEAD_OWNER, time.time(), time.time()),
        )
    )
    assert isinstance(await counters.admit("key", Limits(per_minute=0, running=1)), Admitted)


def task(partition: str = "alice", owner_name: str | None = None) -> TaskRow:
    now = time.time()
    return TaskRow(str(uuid.uuid4()), partition, owner_name or owner(), now, now, status_message="starting")


async def test_tasks_are_bounded_per_owner_and_room_comes_from_its_own_finished_ones(opener: Opener) -> None:
    rows, elsewhere = TaskRows(opener()), TaskRows(opener())
    made = [task() for _ in range(3)]
    for row in made:
        assert await rows.reserve(row, per_owner=3) is None
        await anyio.sleep(0.002)
    assert await elsewhere.reserve(task(), per_owner=3) == 3  # three working across the replicas: refused
    assert await rows.reserve(task("bob"), per_owner=3) is None  # another caller is not affected
    assert await elsewhere.finish(made[0].task_id, "completed", result={"content": []})
    assert not await rows.finish(made[0].task_id, "failed")  # terminal states are final
    newest = task()
    assert await rows.reserve(newest, per_owner=3) is None  # room from its own oldest finished task
    assert await rows.get(made[0].task_id) is None
    assert (await elsewhere.get(newest.task_id)) is not None


async def test_a_cancel_asked_on_another_replica_reaches_the_owner(
    opener: Opener, request: pytest.FixtureRequest
) -> None:
    owner_db, other_db = opener(), opener()
    rows, elsewhere = TaskRows(owner_db), TaskRows(other_db)
    row = task()
    assert await rows.reserve(row, per_owner=10) is None
    await owner_db.listen()
    with owner_db.signals.subscribed(f"cancel:{row.task_id}") as waiter:
        await elsewhere.request_cancel(row.task_id)
        assert await rows.cancel_requested(row.task_id)
        if owner_db.dialect == "postgres":  # NOTIFY reaches the owner's process; SQLite's owner finds it by polling
            with anyio.fail_after(10):
                assert await waiter.wait(30)
    seen = await elsewhere.get(row.task_id)
    assert seen is not None and seen.status == "working" and seen.status_message == "cancelling"


async def test_a_task_whose_process_died_is_failed_with_its_request_id(opener: Opener) -> None:
    rows = TaskRows(opener())
    orphan = task(owner_name=DEAD_OWNER)
    assert await rows.reserve(orphan, per_owner=10) is None
    await rows.started(orphan.task_id, "rid-9", "fal-ai/kling-video")
    seen = await rows.get(orphan.task_id)
    assert seen is not None and seen.status == "failed" and seen.error is not None
    assert "get-result (request_id='rid-9', endpoint_id='fal-ai/kling-video')" in (seen.status_message or "")


async def test_a_delivery_is_kept_once_and_wakes_a_wait_on_another_replica(
    opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting, recording = Deliveries(opener()), Deliveries(opener())
    shared = waiting.database.dialect == "postgres"
    # With PostgreSQL the wake-up must come from the notification: the safety-net poll is pushed out of reach.
    monkeypatch.setattr(deliveries_module, "POLL_S", 60.0 if shared else 0.05)
    found: list[Any] = []

    async def wait() -> None:
        found.append(await waiting.wait("rid-1", 30))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.sleep(0.3)  # the waiter is waiting before the delivery arrives
            assert await recording.record("rid-1", {"status": "OK", "payload": {"images": []}})
    assert found and found[0] is not None and found[0].outcome == {"status": "OK", "payload": {"images": []}}
    assert not await waiting.record("rid-1", {"status": "ERROR"})  # a repeat is a duplicate; the first stands
    delivery = await recording.get("rid-1")
    assert delivery is not None and delivery.outcome["status"] == "OK"
    assert await waiting.wait("rid-1", 0) is not None  # already there: no wait at all
    assert await waiting.wait("rid-2", 0.1) is None


async def test_a_request_awaiting_the_webhook_is_known_to_every_replica_and_pruned_with_age(opener: Opener) -> None:
    submitting, receiving = Deliveries(opener()), Deliveries(opener())
    await submitting.expect("rid-1", "partition-a", "fal-ai/flux/schnell")
    await submitting.expect("rid-1", "partition-b", "fal-ai/other")  # the first note stands
    awaited = await receiving.awaited("rid-1")
    assert awaited is not None and (awaited.partition, awaited.endpoint_id) == ("partition-a", "fal-ai/flux/schnell")
    assert abs(awaited.submitted_at - time.time()) < 60
    assert await receiving.awaited("rid-2") is None
    await receiving.record("rid-1", {"status": "OK", "payload": {}})
    database = receiving.database
    later = time.time() + deliveries_module.KEEP_S + 1
    assert database.run_blocking(lambda db: deliveries_module.prune(db, time.time())) == 0
    assert database.run_blocking(lambda db: deliveries_module.prune(db, later)) == 2  # the note and the delivery
    assert await submitting.awaited("rid-1") is None and await submitting.get("rid-1") is None


async def test_processes_starting_at_once_migrate_once(opener: Opener) -> None:
    errors: list[BaseException] = []
    opened: list[Database] = []

    def start() -> None:
        try:
            database = opener()
            opened.append(database)
            database.run_blocking(lambda db: db.execute("SELECT count(*) FROM tasks").fetchone())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    if opened[0].dialect == "postgres":
        versions = opened[0].run_blocking(lambda db: db.execute("SELECT version FROM schema_versions").fetchall())
        assert sorted(v for (v,) in versions) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_database_that_is_down_says_which_setting_and_recovers(cluster: Cluster) -> None:
    name = cluster.create_database()
    relay = Relay(cluster.port)
    database = PostgresDatabase(cluster.url(name, port=relay.port))  # down at start
    try:
        with pytest.raises(StoreUnavailable) as down:
            await database.run(lambda db: db.execute("SELECT 1").fetchone())
        message = str(down.value)
        assert "FAL_MCP_DATABASE_URL" in message and "secret-in-the-url" not in message
        assert await database.ping() is not None
        relay.open()
        with anyio.fail_after(30):
            while await database.ping() is not None:
                await anyio.sleep(0.2)
        history = History(database)
        await history.begin("mine", "fal-ai/flux", {}, "submit")
        relay.close()  # down mid-run: a shared history refuses to write a request it cannot keep
        with pytest.raises(StoreUnavailable):
            await history.begin("mine", "fal-ai/flux", {}, "submit")
        relay.open()
        with anyio.fail_after(30):
            while await database.ping() is not None:
                await anyio.sleep(0.2)
        assert len(await history.recent("mine")) == 1
    finally:
        relay.close()
        database.close()


def test_the_cluster_does_not_run_as_root(cluster: Cluster) -> None:
    assert cluster.user is None or cluster.user[0] != 0
    assert os.stat(cluster.folder).st_uid != 0 or os.geteuid() != 0


async def test_a_daily_budget_holds_for_every_process_together(opener: Opener) -> None:
    """Ten $1 calls at once through two processes against a $3 budget: exactly three are written (and sent)."""
    here, there = History(opener()), History(opener())
    limit = SpendLimit(usd=3.0, since=time.time() - 86400)
    written: list[int | None] = []
    refused: list[OverBudget] = []

    async def call(history: History, n: int) -> None:
        try:
            written.append(
                await history.begin("key", "fal-ai/flux", {"n": n}, "submit", estimated_cost_usd=1.0, spend_limit=limit)
            )
        except OverBudget as over:
            refused.append(over)

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(call, (here, there)[n % 2], n)
    assert len(written) == 3 and all(row is not None for row in written) and len(refused) == 7
    assert await there.spend_since("key", limit.since) == 3.0
    assert {over.spent for over in refused} <= {3.0}
