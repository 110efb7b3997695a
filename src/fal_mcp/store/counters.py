"""The guards' counters, exact across every process sharing the store: starts per minute and jobs running, per key.

Two tables, one row per thing counted:
- `guard_starts`: one row per submit or run started, kept for the sliding minute of `FAL_MCP_SUBMITS_PER_MINUTE`.
- `guard_jobs`: one row per thing counting against `FAL_MCP_MAX_RUNNING_JOBS`: a start still in flight (no
  request id yet: a synchronous run, or a submit waiting for fal's answer), or a queued job not yet seen to end.

`admit` counts and inserts in one transaction holding the key's lock (`Link.transaction(lock=...)`), so a limit
of N holds for every replica together, with no read-then-write race. What only fal can tell (whether a job it
queued has ended) is asked outside any transaction by the caller: `admit` hands back the jobs due for that
question (`Full.due`), each claimed for `RECHECK_S` so two callers do not both ask. A start in flight whose process
died is no longer counted once that process is known to be gone (`owners.gone`); a queued job whose process died
keeps counting, as it should, until fal says it ended.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from fal_mcp.store import owners
from fal_mcp.store.database import Database, Link, StoreUnavailable, WriteBehind

WINDOW_S = 60.0
RECHECK_S = 2.0
"""A tracked job's status is asked of fal at most this often (only when the running-jobs limit is reached)."""
MAX_DUE = 50
"""The most jobs handed back for a status check at once."""
FORGOTTEN_AFTER_S = 7 * 86400.0
"""A queued job nobody has seen end for this long stops counting (fal keeps no request that long)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one admission; 0 turns either off."""

    per_minute: int
    running: int


@dataclass(frozen=True, slots=True)
class Full:
    """An admission refused: which limit, how many were counted, and when to retry."""

    limit: Literal["rate", "running"]
    counted: int
    retry_after_s: float
    due: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """(request id, endpoint id) of queued jobs to ask fal about (running limit only)."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """An admission granted: `token` names its row in `guard_jobs` (None when running jobs are not limited)."""

    token: str | None


class Counters:
    """Admissions and the jobs they count, in the store's database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._behind = WriteBehind("counters")
        """The writes `ended_soon` queued; every later statement of these counters waits for them first."""

    def close(self) -> None:
        """Let the writes `ended_soon` queued land (before the database closes)."""
        self._behind.close()

    async def _caught_up(self) -> None:
        await self._behind.caught_up()

    async def admit(self, partition: str, limits: Limits) -> Admitted | Full:
        await self._caught_up()  # a job this process saw end no longer counts
        token = uuid.uuid4().hex if limits.running else None

        def admit(db: Link) -> Admitted | Full:
            with db.transaction(lock=f"guards:{partition}"):
                now = time.time()  # once the lock is held: another admission may have gone first
                if limits.per_minute:
                    db.execute("DELETE FROM guard_starts WHERE partition = ? AND at <= ?", (partition, now - WINDOW_S))
                    count, oldest = db.execute(
                        "SELECT count(*), min(at) FROM guard_starts WHERE partition = ?", (partition,)
                    ).fetchone()
                    if count >= limits.per_minute:
                        return Full("rate", count, max(1.0, oldest + WINDOW_S - now))
                if limits.running:
                    running = _running(db, partition, now, limits.running)
                    if running >= limits.running:
                        return Full("running", running, RECHECK_S, _claim_due(db, partition, now))
                    db.execute(
                        "INSERT INTO guard_jobs (token, partition, owner, started_at, checked_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (token, partition, owners.owner(), now, now),
                    )
                if limits.per_minute:
                    db.execute("INSERT INTO guard_starts (partition, at) VALUES (?, ?)", (partition, now))
            return Admitted(token)

        return await self.database.run(admit)

    async def queued(self, token: str, endpoint_id: str, request_id: str) -> None:
        """The start `token` queued a job at fal: it counts until it is seen to end. (Checked at once by nobody:
        a fast job may be done by the time the limit is met.)"""
        await self.database.run(
            lambda db: db.execute(
                "UPDATE guard_jobs SET request_id = ?, endpoint_id = ?, checked_at = 0 WHERE token = ?",
                (request_id, endpoint_id, token),
            )
        )

    async def release(self, token: str) -> None:
        """The start `token` ended without leaving a job at fal (a synchronous run, a refused submit)."""
        await self._caught_up()
        await self.database.run(lambda db: db.execute("DELETE FROM guard_jobs WHERE token = ?", (token,)))

    async def ended(self, partition: str, request_ids: list[str]) -> None:
        """These jobs of the key ended (seen to, or fal says so, or fal does not know them): they stop counting."""
        if request_ids:
            await self._caught_up()
            await self.database.run(lambda db: _forget(db, partition, request_ids))

    def ended_soon(self, partition: str, request_id: str, failed: Callable[[StoreUnavailable], None]) -> None:
        """`ended` without waiting for the write: a job seen to end on the way to its output, whose answer need not
        wait for the count (a thread hop, about a millisecond on the path from fal's completion to the caller).

        The write runs on these counters' own writer thread, in order, and every later statement of these counters
        waits for it first: the next admission in this process never counts the job. `failed` hears a write the
        store refused (on the writer thread).
        """
        database = self.database

        def write() -> None:
            try:
                database.run_blocking(lambda db: _forget(db, partition, [request_id]))
            except StoreUnavailable as exc:
                failed(exc)

        self._behind.submit(write)


def _forget(db: Link, partition: str, request_ids: list[str]) -> None:
    marks = ", ".join("?" * len(request_ids))
    db.execute(f"DELETE FROM guard_jobs WHERE partition = ? AND request_id IN ({marks})", (partition, *request_ids))


def _running(db: Link, partition: str, now: float, limit: int) -> int:
    """What counts now. At the limit, starts in flight of processes known to be gone, and jobs long forgotten, stop
    counting first."""
    count = _count(db, partition)
    if count < limit:
        return count
    stale = db.execute(
        "SELECT token, owner FROM guard_jobs WHERE partition = ? AND request_id IS NULL", (partition,)
    ).fetchall()
    dead = owners.gone(db, (owner for _, owner in stale), now)
    for token, owner in stale:
        if owner in dead:
            db.execute("DELETE FROM guard_jobs WHERE token = ?", (token,))
    db.execute("DELETE FROM guard_jobs WHERE partition = ? AND started_at < ?", (partition, now - FORGOTTEN_AFTER_S))
    return _count(db, partition)


def _count(db: Link, partition: str) -> int:
    return int(db.execute("SELECT count(*) FROM guard_jobs WHERE partition = ?", (partition,)).fetchone()[0])


def _claim_due(db: Link, partition: str, now: float) -> list[tuple[str, str]]:
    """Queued jobs not asked about for `RECHECK_S`, claimed for the next `RECHECK_S` by this caller."""
    rows = db.execute(
        "SELECT token, request_id, endpoint_id FROM guard_jobs WHERE partition = ? AND request_id IS NOT NULL"
        " AND checked_at <= ? ORDER BY checked_at LIMIT ?",
        (partition, now - RECHECK_S, MAX_DUE),
    ).fetchall()
    for token, _, _ in rows:
        db.execute("UPDATE guard_jobs SET checked_at = ? WHERE token = ?", (now, token))
    return [(request_id, endpoint_id) for _, request_id, endpoint_id in rows]
