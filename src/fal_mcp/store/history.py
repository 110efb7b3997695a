"""The request history: every request fal-mcp sends to fal, kept so that no restart, and no other replica, loses one.

A row is written *before* a submit goes out (state `SUBMITTING`) and completed when fal answers with the request
id, so even a crash between the two leaves a trace that a billed request may exist. Rows hold the endpoint,
request id, times, last known state, error, output media URLs, and a digest of the input: a hash of the whole
input plus a summary with large inline data elided (a 5 MB data URI becomes a one-line note, never stored).

The rows live in the store's database (`store.database`): a SQLite file several processes of one host share, or
PostgreSQL shared by every replica. Rows are partitioned by a hash of the fal key (`state.partition_of`): a process
serving several keys never shows one key's requests to another. With SQLite, writes never fail a tool call: a
broken history is logged and the fal request goes on; one that cannot be opened says why (`History.problem`). With
PostgreSQL the history is the replicas' shared memory: a request is not sent when its row cannot be written first,
and a read that cannot reach the database says so (`StoreUnavailable`); a later state that cannot be written is
logged (the request's row, with its id, is already there).

It scales and it stays small:
- **Every filter of `list-requests` reads O(limit) rows**, through an index that leads with the partition and
  ends with the creation time: one for all rows, one per state, one per endpoint, one per endpoint and state.
  Several states (`active`) or an endpoint prefix (the models under `fal-ai/flux`) become one small covered query
  per state and endpoint, merged here; the endpoints under a prefix are found by stepping through the endpoint
  index (one lookup per endpoint, never a scan).
- **Retention** (`Retention`): rows older than `max_age_s` go, whatever their state (nothing bills or keeps a
  result at fal for weeks), and a partition keeps its newest `max_rows` rows; the row cap never takes a request that
  may still be billing (active, or `UNKNOWN`), only the age does. `upkeep` prunes in small batches that let calls'
  statements through between them; the store runs it in a thread of its own (`store.opening`).
- **A submit whose process died** (killed between send and answer) would stay `SUBMITTING` forever. On each upkeep
  pass such a row is settled to `UNKNOWN` (and so listed with the lost submits) once its owning process is known to
  be gone (`store.owners`: on this host by asking the system, on another by its silent heartbeat). A row whose
  owner cannot be checked at all (a file from an older version) is settled once it is older than `STALE_SUBMIT_S`;
  if its process was alive after all, fal's answer still lands on the row and replaces the `UNKNOWN`.

The history also keeps what each request costs: the estimate written with the row before it is sent, and the
charge fal reports later (`record_charge`). A key's spend over a period (`spend_since`, `spend_timeline`) is the
sum of its rows' charges, or of their estimates where no charge is known yet: the daily budget reads it here, so
it outlives restarts and is shared by every process on the store. `begin` with a `SpendLimit` sums and inserts in
one transaction under the key's lock, so the budget holds exactly across processes and replicas.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fal_mcp.store import owners
from fal_mcp.store.database import Database, Link, StoreUnavailable, WriteBehind
from fal_mcp.store.records import (
    FILE_NAME,
    FINISHED_STATES,
    KEPT_STATES,
    SUBMITTING,
    UNKNOWN,
    RequestRecord,
    Retention,
    input_digest,
    media_urls,
    summarize_input,
)

logger = logging.getLogger(__name__)

MAX_UNCHANGED_TRACKED = 1024
"""How many requests' last written state `observe` keeps, to skip writing a state that did not change."""
STALE_SUBMIT_S = 3600.0
"""A `SUBMITTING` row whose owner cannot be checked is settled to `UNKNOWN` after this long (a sync run may take
`FAL_MCP_RUN_TIMEOUT_S`, 600 s by default, before fal answers)."""
PRUNE_BATCH = 200
"""Rows deleted per statement; between batches other statements get the connection."""
PRUNE_PAUSE_S = 0.005
MAX_RANGES = 64
"""The most index ranges (endpoints x states) one listing merges; a prefix covering more models is read newest
first through the partition's index instead (its rows are then plentiful)."""
LOST_SUBMIT = (
    "fal-mcp stopped before fal answered this request, so whether fal queued (and billed) it is unknown; "
    "fal's dashboard has the truth"
)

_T = TypeVar("_T")


class History:
    """The request history over a store database; `database` None means the history is off (or could not open,
    and `problem` says why)."""

    def __init__(
        self, database: Database | None, retention: Retention | None = None, *, problem: str | None = None
    ) -> None:
        self.database = database
        self.retention = retention if retention is not None else Retention()
        self.problem = problem
        """Why the history is off although a place was configured for it (the file, and what went wrong)."""
        self._strict = database is not None and database.shared_across_hosts
        self._written: OrderedDict[tuple[str, str], tuple[str, str | None, str | None]] = OrderedDict()
        self._owned = False
        self._stopping = False
        self._behind = WriteBehind("history")
        """The writes `observe_soon` queued; every later statement waits for them first."""

    @property
    def enabled(self) -> bool:
        return self.database is not None

    @classmethod
    def open(cls, state_dir: Path | None, retention: Retention | None = None) -> History:
        """A history of its own on `state_dir`'s SQLite file (closing it closes the file); for tools and tests."""
        from fal_mcp.store.sqlite import SqliteDatabase

        if state_dir is None:
            return cls(None, retention)
        history = cls(SqliteDatabase(state_dir / FILE_NAME), retention)
        history._owned = True
        return history

    def close(self) -> None:
        """Stop any upkeep pass at its next batch; close the database if this history opened it (writes queued by
        `observe_soon` land first)."""
        self._behind.close()
        self._stopping = True
        if self._owned and self.database is not None:
            self.database.close()

    async def _read(self, work: Callable[[Link], _T], default: _T) -> _T:
        """Run `work`; a failing history logs and returns `default`, unless it is shared (PostgreSQL): then the
        caller hears why (`StoreUnavailable`)."""
        if self.database is None:
            return default
        await self._caught_up()
        try:
            return await self.database.run(work)
        except StoreUnavailable as exc:
            if self._strict:
                raise
            logger.warning("request history: %s", exc)
            return default

    async def _write(self, work: Callable[[Link], _T], default: _T) -> _T:
        """Run `work`; a failing history logs and returns `default` (the request it records goes on)."""
        if self.database is None:
            return default
        await self._caught_up()
        try:
            return await self.database.run(work)
        except StoreUnavailable as exc:
            logger.warning("request history: %s", exc)
            return default

    async def _caught_up(self) -> None:
        """A write `observe_soon` queued lands before any later statement: a read right after a reply sees what the
        reply said."""
        await self._behind.caught_up()

    def _blocking(self, work: Callable[[Link], _T], default: _T) -> _T:
        if self.database is None:
            return default
        self._behind.settled()
        return self.database.run_blocking(work)

    # -- upkeep ---------------------------------------------------------------------------------------

    def settle_lost_submits(self, now: float | None = None) -> int:
        """Settle the `SUBMITTING` rows of processes that are gone (at open, and on each upkeep pass)."""
        now = time.time() if now is None else now
        return self._blocking(lambda db: _settle_lost_submits(db, now), 0)

    def upkeep(self, now: float | None = None) -> int:
        """One pass: settle the lost submits, then prune every partition as `retention` says. Returns the rows
        deleted. Each statement takes a connection briefly, so calls go on meanwhile."""
        now = time.time() if now is None else now
        self.settle_lost_submits(now)
        deleted = 0
        for partition in self._blocking(lambda db: list(_partitions(db)), []):
            prunable = functools.partial(_prunable, partition=partition, retention=self.retention, now=now)
            for range_ in self._blocking(prunable, []):
                while not self._stopping:
                    gone = self._blocking(functools.partial(_delete_batch, partition=partition, range_=range_), 0)
                    deleted += gone
                    if gone < PRUNE_BATCH:
                        break
                    time.sleep(PRUNE_PAUSE_S)  # let a waiting call's statement take the connection
        if deleted:
            logger.info("request history: pruned %d rows", deleted)
        return deleted

    # -- writes -------------------------------------------------------------------------------------

    async def begin(
        self,
        partition: str,
        endpoint_id: str,
        payload: Any,
        origin: str,
        *,
        estimated_cost_usd: float | None = None,
        spend_limit: SpendLimit | None = None,
    ) -> int | None:
        """Note a request about to be sent (with what it is estimated to cost); returns the row to complete once fal
        answers. A shared history that cannot be written raises `StoreUnavailable`: then nothing may be sent.

        With `spend_limit`, the key's spend since `spend_limit.since` plus this estimate must fit `spend_limit.usd`,
        or nothing is written and `OverBudget` says what was spent: the sum and the insert are one transaction under
        the key's lock, so calls of every process sharing the store are counted exactly, one after another.
        """
        now = time.time()
        digest, summary = input_digest(payload), json.dumps(summarize_input(payload), ensure_ascii=False)
        row = (
            partition,
            endpoint_id,
            origin,
            SUBMITTING,
            now,
            now,
            digest,
            summary,
            owners.owner(),
            estimated_cost_usd,
        )

        def insert(db: Link) -> int | None:
            if spend_limit is None:
                return _inserted(db, row)
            with db.transaction(lock=f"spend:{partition}"):
                spent = _spent(db, partition, spend_limit.since)
                if spent + (estimated_cost_usd or 0.0) > spend_limit.usd:
                    raise OverBudget(spent)
                return _inserted(db, row)

        return await self._read(insert, None)

    async def sent(self, row: int | None, request_id: str | None, state: str, **outcome: Any) -> None:
        """fal answered the submit (or run): attach its request id and state."""
        if row is None:
            return
        error, error_type, urls = outcome.get("error"), outcome.get("error_type"), outcome.get("media_urls")
        now = time.time()

        def update(db: Link) -> None:
            db.execute(
                "UPDATE requests SET request_id = ?, state = ?, updated_at = ?, error = ?, error_type = ?,"
                " media_urls = COALESCE(?, media_urls) WHERE id = ?",
                (request_id, state, now, error, error_type, json.dumps(urls) if urls is not None else None, row),
            )

        await self._write(update, None)

    async def discard(self, row: int | None) -> None:
        """fal refused the request outright: nothing exists at fal, so nothing is kept."""
        if row is None:
            return
        await self._write(lambda db: db.execute("DELETE FROM requests WHERE id = ?", (row,)), None)

    async def observe(
        self,
        partition: str,
        request_id: str,
        state: str,
        *,
        error: str | None = None,
        error_type: str | None = None,
        output: Any = None,
    ) -> None:
        """A later state of a known request (unknown ids are not ours and are ignored).

        Seeing again what this process last wrote for the request writes nothing, so polling a job's status
        costs no write per poll; `updated_at` is when the state last changed.
        """
        key, seen = (partition, request_id), (state, error, error_type)
        if output is None and self._written.get(key) == seen:
            self._written.move_to_end(key)
            return
        now = time.time()
        urls = json.dumps(media_urls(output)) if output is not None else None

        def update(db: Link) -> bool:
            _set_state(db, key, state, now, error=error, error_type=error_type, urls=urls)
            return True

        if await self._write(update, False):
            self._wrote(key, seen)

    def _wrote(self, key: tuple[str, str], seen: tuple[str, str | None, str | None]) -> None:
        self._written[key] = seen
        self._written.move_to_end(key)
        if len(self._written) > MAX_UNCHANGED_TRACKED:
            self._written.popitem(last=False)

    def observe_soon(self, partition: str, request_id: str, state: str, *, output: Any = None) -> None:
        """`observe` without waiting for the write (for a completion, whose reply need not wait for the store).

        The write runs on the history's own writer thread, in order; every later statement of this history waits
        for it first, and closing the history waits for it. A process killed in between loses only this state
        change: the request's row, with its id, was written when it was submitted.
        """
        database = self.database
        if database is None:
            return
        key = (partition, request_id)
        self._wrote(key, (state, None, None))

        def write() -> None:
            urls = json.dumps(media_urls(output)) if output is not None else None
            try:
                database.run_blocking(lambda db: _set_state(db, key, state, time.time(), urls=urls))
            except StoreUnavailable as exc:
                logger.warning("request history: %s", exc)

        self._behind.submit(write)

    # -- reads --------------------------------------------------------------------------------------

    async def get(self, partition: str, request_id: str) -> RequestRecord | None:
        def select(db: Link) -> RequestRecord | None:
            row = db.execute(f"{_SELECT} WHERE partition = ? AND request_id = ?", (partition, request_id)).fetchone()
            return _record(row) if row is not None else None

        return await self._read(select, None)

    async def recent(
        self, partition: str, *, states: tuple[str, ...] = (), endpoint_prefix: str | None = None, limit: int = 20
    ) -> list[RequestRecord]:
        """Newest first, optionally only some states and the endpoints under a prefix; O(limit) rows read."""

        def select(db: Link) -> list[RequestRecord]:
            queries = listing_queries(db, partition, states, endpoint_prefix, limit)
            if db.dialect == "postgres" and queries:  # one round trip: the ranges' newest in one statement
                return _merged(db, queries, limit)
            newest: list[tuple[float, int]] = []
            for sql, args in queries:
                newest += [(float(at), int(row_id)) for at, row_id in db.execute(sql, args).fetchall()]
            ids = [row_id for _, row_id in sorted(newest, reverse=True)[:limit]]
            if not ids:
                return []
            rows = db.execute(f"{_SELECT_ID} WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()
            by_id = {row[0]: row[1:] for row in rows}
            return [_record(by_id[row_id]) for row_id in ids if row_id in by_id]

        return await self._read(select, [])

    # -- what requests cost -------------------------------------------------------------------------

    async def spend_since(self, partition: str, since: float) -> float | None:
        """What the key's requests made since `since` (epoch seconds) cost: charges where known, else estimates.
        None when there is no history to read."""

        return await self._read(lambda db: _spent(db, partition, since), None)

    async def spend_timeline(self, partition: str, since: float) -> list[tuple[float, float]]:
        """(created_at, cost) of the key's costed requests since `since`, oldest first: when spend leaves a window."""

        def select(db: Link) -> list[tuple[float, float]]:
            sql = (
                f"SELECT created_at, {_COST} FROM requests WHERE partition = ? AND created_at >= ?"
                f" AND {_COST} > 0 ORDER BY created_at"
            )
            return [(float(at), float(cost)) for at, cost in db.execute(sql, (partition, since)).fetchall()]

        return await self._read(select, [])

    async def uncharged(self, partition: str, since: float, checked_before: float, limit: int) -> list[str]:
        """Request ids of the key's finished requests since `since` whose charge is not known yet and was not asked
        about after `checked_before`, newest first."""

        def select(db: Link) -> list[str]:
            sql = (
                "SELECT request_id FROM requests WHERE partition = ? AND created_at >= ? AND request_id IS NOT NULL"
                f" AND actual_cost_usd IS NULL AND state IN ({', '.join('?' * len(FINISHED_STATES))})"
                " AND (charge_checked_at IS NULL OR charge_checked_at < ?) ORDER BY created_at DESC LIMIT ?"
            )
            args = (partition, since, *FINISHED_STATES, checked_before, limit)
            return [request_id for (request_id,) in db.execute(sql, args).fetchall()]

        return await self._read(select, [])

    async def record_charge(self, partition: str, request_id: str, actual_usd: float | None, checked_at: float) -> None:
        """fal was asked what a request cost: its charge (`actual_usd`), or None while fal shows none yet."""

        def update(db: Link) -> None:
            db.execute(
                "UPDATE requests SET charge_checked_at = ?, actual_cost_usd = COALESCE(?, actual_cost_usd)"
                " WHERE partition = ? AND request_id = ?",
                (checked_at, actual_usd, partition, request_id),
            )

        await self._write(update, None)


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """What a key's requests created since `since` (epoch seconds) may cost in all, in USD."""

    usd: float
    since: float


class OverBudget(Exception):
    """A request was not written: it would have taken its key's spend over the limit (`spent` so far)."""

    def __init__(self, spent: float) -> None:
        super().__init__(f"spent {spent}")
        self.spent = spent


_COST = "COALESCE(actual_cost_usd, estimated_cost_usd, 0)"
_INSERT = (
    "INSERT INTO requests (partition, endpoint_id, origin, state, created_at, updated_at, input_digest, input_summary,"
    " owner, estimated_cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


def _inserted(db: Link, row: tuple[Any, ...]) -> int | None:
    found = db.execute(_INSERT, row).fetchone()
    return int(found[0]) if found is not None else None


def _spent(db: Link, partition: str, since: float) -> float:
    row = db.execute(f"SELECT SUM({_COST}) FROM requests WHERE partition = ? AND created_at >= ?", (partition, since))
    return float(row.fetchone()[0] or 0.0)


# -- the SQL, kept to plain statements (each one index range) -------------------------------------------------


def listing_queries(
    db: Link, partition: str, states: Iterable[str], endpoint_prefix: str | None, limit: int
) -> list[tuple[str, list[Any]]]:
    """The statements that list a partition's newest `limit` rows of some states and endpoints: each returns
    `(created_at, id)` pairs newest first from one index range (the caller merges them)."""
    wanted_states: list[str | None] = list(dict.fromkeys(states)) or [None]
    endpoints: list[str | None] = [None]
    prefix = endpoint_prefix.rstrip("/") if endpoint_prefix else None
    if prefix:
        endpoints = list(_endpoints_under(db, partition, prefix, MAX_RANGES // len(wanted_states) + 1))
        if len(endpoints) * len(wanted_states) > MAX_RANGES:  # a broad prefix: its rows are plentiful, read them
            sql = (
                "SELECT created_at, id FROM requests WHERE partition = ?"
                " AND (endpoint_id = ? OR (endpoint_id >= ? AND endpoint_id < ?))"
            )
            args: list[Any] = [partition, prefix, prefix + "/", prefix + "0"]  # '0' follows '/'
            if states:
                sql += f" AND state IN ({', '.join('?' * len(wanted_states))})"
                args += wanted_states
            return [(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*args, limit])]
    queries: list[tuple[str, list[Any]]] = []
    for endpoint in endpoints:
        for state in wanted_states:
            sql, args = "SELECT created_at, id FROM requests WHERE partition = ?", [partition]
            if endpoint is not None:
                sql, args = sql + " AND endpoint_id = ?", [*args, endpoint]
            if state is not None:
                sql, args = sql + " AND state = ?", [*args, state]
            queries.append((sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*args, limit]))
    return queries


def _set_state(
    db: Link,
    key: tuple[str, str],
    state: str,
    now: float,
    *,
    error: str | None = None,
    error_type: str | None = None,
    urls: str | None = None,
) -> None:
    """A known request's new state; an error, error type or media list only replaces the old one when given."""
    partition, request_id = key
    db.execute(
        "UPDATE requests SET state = ?, updated_at = ?, error = COALESCE(?, error),"
        " error_type = COALESCE(?, error_type), media_urls = COALESCE(?, media_urls)"
        " WHERE partition = ? AND request_id = ?",
        (state, now, error, error_type, urls, partition, request_id),
    )


def _merged(db: Link, queries: list[tuple[str, list[Any]]], limit: int) -> list[RequestRecord]:
    """The records the listing queries pick, newest first, read in one statement (each range still one index
    scan with its own limit; a server a network away pays one round trip instead of one per range)."""
    ranges = " UNION ALL ".join(f"({sql})" for sql, _ in queries)
    args = [arg for _, query_args in queries for arg in query_args]
    rows = db.execute(
        f"{_SELECT_ID} WHERE id IN (SELECT id FROM ({ranges}) AS picked ORDER BY created_at DESC, id DESC LIMIT ?)",
        [*args, limit],
    ).fetchall()
    rows.sort(key=lambda row: (row[4], row[0]), reverse=True)  # created_at, then id
    return [_record(row[1:]) for row in rows]


def _endpoints_under(db: Link, partition: str, prefix: str, most: int) -> list[str]:
    """The endpoint ids of a partition that are `prefix` or below it (`prefix/...`), at most `most` of them, found
    by stepping through the endpoint index one distinct id at a time (on PostgreSQL in one recursive statement, so
    a prefix costs one round trip, not one per model)."""
    after, before = prefix + "/", prefix + "0"
    if getattr(db, "dialect", "sqlite") == "postgres":
        rows = db.execute(_ENDPOINTS_UNDER, (partition, after, before, partition, before, partition, prefix, most))
        return [endpoint for (endpoint,) in rows.fetchall()][:most]
    found = [prefix] if db.execute(_ENDPOINT_EXISTS, (partition, prefix)).fetchone() else []
    row = db.execute(_FIRST_ENDPOINT_FROM, (partition, after, before)).fetchone()
    while row is not None and len(found) < most:
        found.append(row[0])
        row = db.execute(_NEXT_ENDPOINT_AFTER, (partition, row[0], before)).fetchone()
    return found


_ENDPOINT_EXISTS = "SELECT 1 FROM requests WHERE partition = ? AND endpoint_id = ? LIMIT 1"
_ENDPOINTS_UNDER = """
WITH RECURSIVE below(endpoint_id) AS (
    (SELECT endpoint_id FROM requests WHERE partition = ? AND endpoint_id >= ? AND endpoint_id < ?
     ORDER BY endpoint_id LIMIT 1)
  UNION ALL
    SELECT (SELECT r.endpoint_id FROM requests r WHERE r.partition = ? AND r.endpoint_id > below.endpoint_id
            AND r.endpoint_id < ? ORDER BY r.endpoint_id LIMIT 1)
    FROM below WHERE below.endpoint_id IS NOT NULL
)
SELECT endpoint_id FROM (
    (SELECT endpoint_id FROM requests WHERE partition = ? AND endpoint_id = ? LIMIT 1)
  UNION ALL
    (SELECT endpoint_id FROM below WHERE endpoint_id IS NOT NULL LIMIT ?)
) AS under
"""
"""`_endpoints_under` on PostgreSQL: the prefix itself, then each distinct id below it, one index probe each."""
_FIRST_ENDPOINT_FROM = (
    "SELECT endpoint_id FROM requests WHERE partition = ? AND endpoint_id >= ? AND endpoint_id < ?"
    " ORDER BY endpoint_id LIMIT 1"
)
_NEXT_ENDPOINT_AFTER = (
    "SELECT endpoint_id FROM requests WHERE partition = ? AND endpoint_id > ? AND endpoint_id < ?"
    " ORDER BY endpoint_id LIMIT 1"
)


def _settle_lost_submits(db: Link, now: float) -> int:
    """`SUBMITTING` rows whose process is gone (or that are older than `STALE_SUBMIT_S`) become `UNKNOWN`."""
    rows = db.execute("SELECT id, owner, created_at FROM requests WHERE state = 'SUBMITTING'").fetchall()
    dead = owners.gone(db, (owner for _, owner, _ in rows), now)
    lost = [row_id for row_id, owner, created in rows if created < now - STALE_SUBMIT_S or owner in dead]
    for row_id in lost:
        db.execute(
            "UPDATE requests SET state = ?, updated_at = ?, error = ? WHERE id = ? AND state = 'SUBMITTING'",
            (UNKNOWN, now, LOST_SUBMIT, row_id),
        )
    if lost:
        logger.warning("request history: %d request(s) whose process stopped mid-send are now UNKNOWN", len(lost))
    return len(lost)


def _distinct(db: Link, first: str, following: str, *args: Any) -> Generator[str]:
    """Distinct values of an indexed column, one index lookup each (`following` takes the previous value last)."""
    row = db.execute(first, args).fetchone()
    while row is not None:
        yield row[0]
        row = db.execute(following, (*args, row[0])).fetchone()


def _partitions(db: Link) -> Generator[str]:
    return _distinct(
        db,
        "SELECT partition FROM requests ORDER BY partition LIMIT 1",
        "SELECT partition FROM requests WHERE partition > ? ORDER BY partition LIMIT 1",
    )


@dataclass(frozen=True, slots=True)
class _PruneRange:
    """Rows of a partition older than `before`: of one `state`, or of any state when it is None."""

    before: float
    state: str | None = None


def _prunable(db: Link, partition: str, retention: Retention, now: float) -> list[_PruneRange]:
    """What retention takes from a partition: everything past the age limit, and the rows past the row cap that
    cannot be billing any more (a state other than active or `UNKNOWN`)."""
    ranges: list[_PruneRange] = []
    if retention.max_age_s is not None:
        ranges.append(_PruneRange(now - retention.max_age_s))
    if retention.max_rows is not None:
        last_kept = db.execute(
            "SELECT created_at FROM requests WHERE partition = ? ORDER BY created_at DESC LIMIT 1 OFFSET ?",
            (partition, retention.max_rows - 1),
        ).fetchone()
        if last_kept is not None:
            states = _distinct(
                db,
                "SELECT state FROM requests WHERE partition = ? ORDER BY state LIMIT 1",
                "SELECT state FROM requests WHERE partition = ? AND state > ? ORDER BY state LIMIT 1",
                partition,
            )
            ranges += [_PruneRange(last_kept[0], state) for state in list(states) if state not in KEPT_STATES]
    return ranges


def _delete_batch(db: Link, partition: str, range_: _PruneRange) -> int:
    """Delete up to `PRUNE_BATCH` rows of a prune range, oldest first; returns how many went."""
    if range_.state is None:
        select = "SELECT id FROM requests WHERE partition = ? AND created_at < ? ORDER BY created_at LIMIT ?"
        args: tuple[Any, ...] = (partition, range_.before, PRUNE_BATCH)
    else:
        select = (
            "SELECT id FROM requests WHERE partition = ? AND state = ? AND created_at < ? ORDER BY created_at LIMIT ?"
        )
        args = (partition, range_.state, range_.before, PRUNE_BATCH)
    return db.execute(f"DELETE FROM requests WHERE id IN ({select})", args).rowcount


_COLUMNS = (
    "request_id, endpoint_id, state, created_at, updated_at, origin, error, error_type, media_urls,"
    " input_digest, input_summary, estimated_cost_usd, actual_cost_usd"
)
_SELECT = f"SELECT {_COLUMNS} FROM requests"
_SELECT_ID = f"SELECT id, {_COLUMNS} FROM requests"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _record(row: tuple[Any, ...]) -> RequestRecord:
    request_id, endpoint_id, state, created, updated, origin, error, error_type, urls, digest, summary, *costs = row
    estimated, actual = costs
    with contextlib.suppress(json.JSONDecodeError):
        summary = json.loads(summary)
    return RequestRecord(
        request_id=request_id,
        endpoint_id=endpoint_id,
        state=state,
        submitted_at=_iso(created),
        updated_at=_iso(updated),
        origin=origin,
        error=error,
        error_type=error_type,
        media_urls=json.loads(urls or "[]"),
        input_digest=digest,
        input_summary=summary,
        estimated_cost_usd=estimated,
        actual_cost_usd=actual,
    )
