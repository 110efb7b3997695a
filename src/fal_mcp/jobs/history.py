"""The request history: every request fal-mcp sends to fal, kept on disk so no restart loses one.

A row is written *before* a submit goes out (state `SUBMITTING`) and completed when fal answers with the request
id, so even a crash between the two leaves a trace that a billed request may exist. Rows hold the endpoint,
request id, times, last known state, error, output media URLs, and a digest of the input: a hash of the whole
input plus a summary with large inline data elided (a 5 MB data URI becomes a one-line note, never stored).

SQLite in WAL mode with a busy timeout, so several fal-mcp processes (stdio clients, HTTP replicas on one
host) can share one file. Rows are partitioned by a hash of the fal key (`state.partition_of`): a process
serving several keys never shows one key's requests to another. Writes never fail a tool call: a broken
history is logged and the fal request goes on; one that cannot be opened says why (`History.problem`).

It scales and it stays small:
- **Every filter of `list-requests` reads O(limit) rows**, through an index that leads with the partition and
  ends with the creation time: one for all rows, one per state, one per endpoint, one per endpoint and state.
  Several states (`active`) or an endpoint prefix (the models under `fal-ai/flux`) become one small covered query
  per state and endpoint, merged here; the endpoints under a prefix are found by stepping through the endpoint
  index (one lookup per endpoint, never a scan).
- **Retention** (`Retention`): rows older than `max_age_s` go, whatever their state (nothing bills or keeps a
  result at fal for weeks), and a partition keeps its newest `max_rows` rows; the row cap never takes a request that
  may still be billing (active, or `UNKNOWN`), only the age does. Pruning runs in a thread of its own at open and
  then every `PRUNE_EVERY_S`, in small batches that let calls' statements through between them.
- **A submit whose process died** (killed between send and answer) would stay `SUBMITTING` forever. At open, and on
  each pruning pass, such a row is settled to `UNKNOWN` (and so listed with the lost submits) once its owning
  process is known to be gone: each row names the host, pid and start time of the process that wrote it, and on
  this host a pid that no longer exists, or that a process started since has taken, is gone. A row whose owner cannot be checked (another host sharing the file, Windows, a file from an
  older version) is settled once it is older than `STALE_SUBMIT_S`; if its process was alive after all, fal's
  answer still lands on the row and replaces the `UNKNOWN`.
- **Upgrades keep every row**: a file from an older version gets the new columns and indexes in place, in one
  transaction, at open (`SCHEMA_VERSION` in `PRAGMA user_version`).

The history also keeps what each request costs: the estimate written with the row before it is sent, and the
charge fal reports later (`record_charge`). A key's spend over a period (`spend_since`, `spend_timeline`) is the
sum of its rows' charges, or of their estimates where no charge is known yet: the daily budget reads it here, so
it outlives restarts and is shared by every process on the file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio.to_thread
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from fal_mcp.logs import redactor

if TYPE_CHECKING:
    from fal_mcp.settings import Settings

logger = logging.getLogger(__name__)

SUBMITTING = "SUBMITTING"
UNKNOWN = "UNKNOWN"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
ACTIVE_STATES = ("SUBMITTING", "IN_QUEUE", "IN_PROGRESS", "CANCELLATION_REQUESTED")
KEPT_STATES = (*ACTIVE_STATES, UNKNOWN)
"""Rows of a request that may still be billing: never pruned to keep under the row cap."""
MAX_SUMMARY_CHARS = 2000
MAX_INLINE_CHARS = 200
MAX_MEDIA_URLS = 50
MAX_UNCHANGED_TRACKED = 1024
"""How many requests' last written state `observe` keeps, to skip writing a state that did not change."""
FILE_NAME = "history.sqlite3"
SCHEMA_VERSION = 3
"""1 (no `user_version`): the first layout. 2: the `owner` column and the indexes of every filter. 3: what each
request cost (`estimated_cost_usd`, `actual_cost_usd`, `charge_checked_at`)."""
STALE_SUBMIT_S = 3600.0
"""A `SUBMITTING` row whose owner cannot be checked is settled to `UNKNOWN` after this long (a sync run may take
`FAL_MCP_RUN_TIMEOUT_S`, 600 s by default, before fal answers)."""
PRUNE_EVERY_S = 3600.0
FIRST_PRUNE_AFTER_S = 1.0
"""The first pass waits this long after open: a starting server has better things to do."""
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

_TABLE = """
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
    input_summary TEXT NOT NULL,
    owner TEXT,
    estimated_cost_usd REAL,
    actual_cost_usd REAL,
    charge_checked_at REAL
)
"""
_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS requests_by_id ON requests (partition, request_id) WHERE request_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS requests_newest ON requests (partition, created_at)",
    "CREATE INDEX IF NOT EXISTS requests_by_state ON requests (partition, state, created_at)",
    "CREATE INDEX IF NOT EXISTS requests_by_endpoint ON requests (partition, endpoint_id, created_at)",
    "CREATE INDEX IF NOT EXISTS requests_by_endpoint_state ON requests (partition, endpoint_id, state, created_at)",
    "CREATE INDEX IF NOT EXISTS requests_submitting ON requests (created_at) WHERE state = 'SUBMITTING'",
)
_RETIRED_INDEXES = ("requests_recent",)
"""Indexes of older layouts that a newer one replaces (`requests_recent` sorted descending, which cannot order
newest-first ties by id without a sort)."""

_T = TypeVar("_T")


class RequestRecord(BaseModel):
    """One request as the history knows it."""

    request_id: str | None = Field(default=None, description="absent if fal's answer to the submit was lost")
    endpoint_id: str
    state: str = Field(description="IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, UNKNOWN, ...")
    submitted_at: str = Field(description="UTC, ISO 8601")
    updated_at: str
    origin: str
    error: str | None = None
    error_type: str | None = None
    media_urls: list[str] = Field(default_factory=list[str])
    input_digest: str = Field(description="sha256 of the input")
    input_summary: Any = Field(description="the input, large inline data elided")
    # Left out of the JSON schema (list-requests' output schema is read on every turn; it is open, so records that
    # hold them still conform): results carry them whenever they are known.
    estimated_cost_usd: SkipJsonSchema[float | None] = Field(default=None, description="estimated before sending")
    actual_cost_usd: SkipJsonSchema[float | None] = Field(default=None, description="what fal charged, once known")

    @property
    def cost_usd(self) -> float | None:
        """What the request cost: fal's charge when known, else the estimate."""
        return self.actual_cost_usd if self.actual_cost_usd is not None else self.estimated_cost_usd


def default_state_dir() -> Path:
    """Where per-user state lives on this platform."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "fal-mcp"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "fal-mcp"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fal-mcp"


def resolve_state_dir(setting: str | None) -> Path | None:
    """`FAL_MCP_STATE_DIR`: unset means the platform default, `off` means no history at all."""
    if setting is None or not setting.strip():
        return default_state_dir()
    if setting.strip().lower() == "off":
        return None
    return Path(setting).expanduser()


def summarize_input(value: Any, budget: int = MAX_SUMMARY_CHARS) -> Any:
    """The input with large inline data replaced by a note of what was there."""

    def elide(item: Any) -> Any:
        if isinstance(item, str):
            if item.startswith("data:") and len(item) > MAX_INLINE_CHARS:
                head = item.split(",", 1)[0]
                return f"<{head} inline data, {len(item)} characters, elided>"
            if len(item) > MAX_INLINE_CHARS:
                return item[:MAX_INLINE_CHARS] + f"... <{len(item)} characters>"
            return item
        if isinstance(item, dict):
            return {str(k): elide(v) for k, v in cast(dict[Any, Any], item).items()}
        if isinstance(item, list):
            return [elide(v) for v in cast(list[Any], item)]
        return item

    summary = redactor.scrub_data(elide(value))  # a key pasted into an input is never stored, nor shown again
    text = json.dumps(summary, ensure_ascii=False)
    if len(text) > budget:
        return {"summary": text[:budget] + "...", "truncated_from_chars": len(text)}
    return summary


def input_digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def media_urls(output: Any) -> list[str]:
    """URLs of files in a model's output: every http(s) string under a key named like a URL."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(output, "")]  # a stack, not recursion: an output may nest very deep
    while stack and len(found) < MAX_MEDIA_URLS:
        item, key = stack.pop()
        if isinstance(item, str):
            if item.startswith(("https://", "http://")) and (key == "url" or key.endswith("_url")):
                found.append(item)
        elif isinstance(item, dict):
            stack.extend((v, str(k)) for k, v in reversed(cast(dict[Any, Any], item).items()))
        elif isinstance(item, list):
            stack.extend((v, key) for v in reversed(cast(list[Any], item)))
    return list(dict.fromkeys(found))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows are kept: `max_age_s` (None: forever) and a partition's newest `max_rows` (None: all)."""

    max_age_s: float | None = 30 * 86400.0
    max_rows: int | None = 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        """`FAL_MCP_HISTORY_MAX_AGE_DAYS` and `FAL_MCP_HISTORY_MAX_ROWS`; 0 turns either off."""
        days, rows = settings.history_max_age_days, settings.history_max_rows
        return cls(max_age_s=days * 86400.0 if days else None, max_rows=rows or None)


def _started(pid: int) -> str:
    """When a process started (clock ticks after boot, from /proc on Linux), or "" where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""  # field 22, `starttime`, counted after the name


@functools.cache
def _owner_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_started(pid)}"


def owner() -> str:
    """Who writes this process's rows (host, pid, start): a `SUBMITTING` row outlives its owner only if the owner
    died mid-send. The start time tells a reused pid apart (a restarted container's server is pid 1 again)."""
    return _owner_of(os.getpid())


def owner_gone(owner: str | None) -> bool:
    """Whether the process that wrote a row is known to be gone: on this host, its pid no longer exists or now
    belongs to a process that started at another time."""
    host, pid, started = (owner or "").rsplit(":", 2) if (owner or "").count(":") >= 2 else ("", "", "")
    if host != socket.gethostname() or not pid.isdigit() or sys.platform == "win32":
        return False  # another host (or an unknown owner): cannot tell, and Windows has no signal 0 to ask
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists (another user's, say)
    now_started = _started(int(pid))
    return bool(started and now_started and started != now_started)


class History:
    """Async front of one SQLite connection; every statement runs in a worker thread, one at a time."""

    def __init__(self, path: Path | None, retention: Retention | None = None, *, background: bool = True) -> None:
        """`background`: run `upkeep` in a thread of its own, shortly after open and then every `PRUNE_EVERY_S`
        (without it, whoever holds the history calls `upkeep`)."""
        self.path = path
        self.retention = retention if retention is not None else Retention()
        self.problem: str | None = None
        """Why the history is off although a place was configured for it (the file, and what went wrong)."""
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._written: OrderedDict[tuple[str, str], tuple[str, str | None, str | None]] = OrderedDict()
        self._stop = threading.Event()
        self._upkeep: threading.Thread | None = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._behind: concurrent.futures.Future[None] | None = None
        """The last write `observe_soon` queued; every later statement waits for it first."""
        if path is not None:
            self._db = self._connect(path)
        if self._db is not None and background:
            self._upkeep = threading.Thread(target=self._keep_up, name="fal-mcp history upkeep", daemon=True)
            self._upkeep.start()

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def _connect(self, path: Path) -> sqlite3.Connection | None:
        db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():  # prompts live here: readable by this user only
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            _migrate(db)
            _settle_lost_submits(db, time.time())
            return db
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                db.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problem = f"could not open {path} ({reason})"
            logger.warning("request history disabled: %s", self.problem)
            return None

    @classmethod
    def open(cls, state_dir: Path | None, retention: Retention | None = None) -> History:
        return cls(state_dir / FILE_NAME if state_dir is not None else None, retention)

    def close(self) -> None:
        if self._writer is not None:  # writes queued by `observe_soon` land before the file closes
            self._writer.shutdown(wait=True)
            self._writer = None
        self._stop.set()
        if self._upkeep is not None and self._upkeep is not threading.current_thread():
            self._upkeep.join(timeout=10)
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def _run(self, work: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
        """Run `work` on the connection in a thread; a failing history logs and returns `default`."""
        if self._db is None:
            return default
        try:
            return await anyio.to_thread.run_sync(self._locked, work, default)
        except sqlite3.Error as exc:
            logger.warning("request history: %s", exc)
            return default

    def _locked(self, work: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
        behind = self._behind
        if behind is not None:
            behind.result()  # a queued write first: a read right after a reply sees what the reply said
        with self._lock:
            if self._db is None:
                return default
            return work(self._db)

    # -- upkeep ---------------------------------------------------------------------------------------

    def _keep_up(self) -> None:
        """The upkeep thread: settle lost submits and prune, at open and then every `PRUNE_EVERY_S`."""
        wait = FIRST_PRUNE_AFTER_S
        while not self._stop.wait(wait):
            try:
                self.upkeep()
            except sqlite3.Error as exc:
                logger.warning("request history upkeep: %s", exc)
            wait = PRUNE_EVERY_S

    def upkeep(self, now: float | None = None) -> int:
        """One pass: settle the lost submits, then prune every partition as `retention` says. Returns the rows
        deleted. Each statement takes the connection briefly, so calls go on meanwhile."""
        now = time.time() if now is None else now
        self._locked(lambda db: _settle_lost_submits(db, now), 0)
        deleted = 0
        for partition in self._locked(lambda db: list(_partitions(db)), []):
            prunable = functools.partial(_prunable, partition=partition, retention=self.retention, now=now)
            for range_ in self._locked(prunable, []):
                while not self._stop.is_set():
                    gone = self._locked(functools.partial(_delete_batch, partition=partition, range_=range_), 0)
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
        answers.

        With `spend_limit`, the key's spend since `spend_limit.since` plus this estimate must fit `spend_limit.usd`,
        or nothing is written and `OverBudget` says what was spent: the sum and the insert are one transaction, so
        calls of every process sharing the file are counted exactly, one after another.
        """
        now = time.time()
        digest, summary = input_digest(payload), json.dumps(summarize_input(payload), ensure_ascii=False)
        row = (partition, endpoint_id, origin, SUBMITTING, now, now, digest, summary, owner(), estimated_cost_usd)

        def insert(db: sqlite3.Connection) -> int | None:
            if spend_limit is None:
                return db.execute(_INSERT, row).lastrowid
            db.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer between the sum and the insert
            try:
                spent = _spent(db, partition, spend_limit.since)
                if spent + (estimated_cost_usd or 0.0) > spend_limit.usd:
                    raise OverBudget(spent)
                row_id = db.execute(_INSERT, row).lastrowid
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return row_id

        return await self._run(insert, None)

    async def sent(self, row: int | None, request_id: str | None, state: str, **outcome: Any) -> None:
        """fal answered the submit (or run): attach its request id and state."""
        if row is None:
            return
        error, error_type, urls = outcome.get("error"), outcome.get("error_type"), outcome.get("media_urls")
        now = time.time()

        def update(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE requests SET request_id = ?, state = ?, updated_at = ?, error = ?, error_type = ?,"
                " media_urls = COALESCE(?, media_urls) WHERE id = ?",
                (request_id, state, now, error, error_type, json.dumps(urls) if urls is not None else None, row),
            )

        await self._run(update, None)

    async def discard(self, row: int | None) -> None:
        """fal refused the request outright: nothing exists at fal, so nothing is kept."""
        if row is None:
            return
        await self._run(lambda db: db.execute("DELETE FROM requests WHERE id = ?", (row,)), None)

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

        def update(db: sqlite3.Connection) -> bool:
            _set_state(db, key, state, now, error=error, error_type=error_type, urls=urls)
            return True

        if await self._run(update, False):
            self._wrote(key, seen)

    def _wrote(self, key: tuple[str, str], seen: tuple[str, str | None, str | None]) -> None:
        self._written[key] = seen
        self._written.move_to_end(key)
        if len(self._written) > MAX_UNCHANGED_TRACKED:
            self._written.popitem(last=False)

    def observe_soon(self, partition: str, request_id: str, state: str, *, output: Any = None) -> None:
        """`observe` without waiting for the write (for a completion, whose reply need not wait for the disk).

        The write runs on the history's own writer thread, in order; every later statement of this history waits
        for it first, and closing the history waits for it. A process killed in between loses only this state
        change: the request's row, with its id, was written when it was submitted.
        """
        if self._db is None:
            return
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fal-mcp-history")
        key = (partition, request_id)
        self._wrote(key, (state, None, None))

        def write() -> None:
            urls = json.dumps(media_urls(output)) if output is not None else None
            try:
                with self._lock:
                    if self._db is not None:
                        _set_state(self._db, key, state, time.time(), urls=urls)
            except sqlite3.Error as exc:
                logger.warning("request history: %s", exc)

        self._behind = self._writer.submit(write)

    # -- reads --------------------------------------------------------------------------------------

    async def get(self, partition: str, request_id: str) -> RequestRecord | None:
        def select(db: sqlite3.Connection) -> RequestRecord | None:
            rows = db.execute(f"{_SELECT} WHERE partition = ? AND request_id = ?", (partition, request_id))
            found = [_record(row) for row in rows]
            return found[0] if found else None

        return await self._run(select, None)

    async def recent(
        self, partition: str, *, states: tuple[str, ...] = (), endpoint_prefix: str | None = None, limit: int = 20
    ) -> list[RequestRecord]:
        """Newest first, optionally only some states and the endpoints under a prefix; O(limit) rows read."""

        def select(db: sqlite3.Connection) -> list[RequestRecord]:
            newest: list[tuple[float, int]] = []
            for sql, args in listing_queries(db, partition, states, endpoint_prefix, limit):
                newest += db.execute(sql, args).fetchall()
            ids = [row_id for _, row_id in sorted(newest, reverse=True)[:limit]]
            if not ids:
                return []
            rows = db.execute(f"{_SELECT_ID} WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()
            by_id = {row[0]: row[1:] for row in rows}
            return [_record(by_id[row_id]) for row_id in ids if row_id in by_id]

        return await self._run(select, [])

    # -- what requests cost -------------------------------------------------------------------------

    async def spend_since(self, partition: str, since: float) -> float | None:
        """What the key's requests made since `since` (epoch seconds) cost: charges where known, else estimates.
        None when there is no history to read."""

        return await self._run(lambda db: _spent(db, partition, since), None)

    async def spend_timeline(self, partition: str, since: float) -> list[tuple[float, float]]:
        """(created_at, cost) of the key's costed requests since `since`, oldest first: when spend leaves a window."""

        def select(db: sqlite3.Connection) -> list[tuple[float, float]]:
            sql = (
                f"SELECT created_at, {_COST} FROM requests WHERE partition = ? AND created_at >= ?"
                f" AND {_COST} > 0 ORDER BY created_at"
            )
            return [(float(at), float(cost)) for at, cost in db.execute(sql, (partition, since))]

        return await self._run(select, [])

    async def uncharged(self, partition: str, since: float, checked_before: float, limit: int) -> list[str]:
        """Request ids of the key's finished requests since `since` whose charge is not known yet and was not asked
        about after `checked_before`, newest first."""

        def select(db: sqlite3.Connection) -> list[str]:
            sql = (
                "SELECT request_id FROM requests WHERE partition = ? AND created_at >= ? AND request_id IS NOT NULL"
                f" AND actual_cost_usd IS NULL AND state IN ({', '.join('?' * len(FINISHED_STATES))})"
                " AND (charge_checked_at IS NULL OR charge_checked_at < ?) ORDER BY created_at DESC LIMIT ?"
            )
            args = (partition, since, *FINISHED_STATES, checked_before, limit)
            return [request_id for (request_id,) in db.execute(sql, args)]

        return await self._run(select, [])

    async def record_charge(self, partition: str, request_id: str, actual_usd: float | None, checked_at: float) -> None:
        """fal was asked what a request cost: its charge (`actual_usd`), or None while fal shows none yet."""

        def update(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE requests SET charge_checked_at = ?, actual_cost_usd = COALESCE(?, actual_cost_usd)"
                " WHERE partition = ? AND request_id = ?",
                (checked_at, actual_usd, partition, request_id),
            )

        await self._run(update, None)


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


def _spent(db: sqlite3.Connection, partition: str, since: float) -> float:
    row = db.execute(f"SELECT SUM({_COST}) FROM requests WHERE partition = ? AND created_at >= ?", (partition, since))
    return float(row.fetchone()[0] or 0.0)


_INSERT = (
    "INSERT INTO requests (partition, endpoint_id, origin, state, created_at, updated_at, input_digest, input_summary,"
    " owner, estimated_cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
FINISHED_STATES = ("COMPLETED", FAILED, CANCELLED)
"""States in which fal may have charged a request and will not charge it more."""
_COST = "COALESCE(actual_cost_usd, estimated_cost_usd, 0)"
_COST_COLUMNS = ("estimated_cost_usd", "actual_cost_usd", "charge_checked_at")
"""Added in layout 3, all REAL."""


# -- the SQL, kept to plain statements (each one index range) -------------------------------------------------


def _set_state(
    db: sqlite3.Connection,
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


def listing_queries(
    db: sqlite3.Connection, partition: str, states: Iterable[str], endpoint_prefix: str | None, limit: int
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


def _endpoints_under(db: sqlite3.Connection, partition: str, prefix: str, most: int) -> list[str]:
    """The endpoint ids of a partition that are `prefix` or below it (`prefix/...`), at most `most` of them, found
    by stepping through the endpoint index one distinct id at a time."""
    found = [prefix] if db.execute(_ENDPOINT_EXISTS, (partition, prefix)).fetchone() else []
    after, before = prefix + "/", prefix + "0"
    row = db.execute(_FIRST_ENDPOINT_FROM, (partition, after, before)).fetchone()
    while row is not None and len(found) < most:
        found.append(row[0])
        row = db.execute(_NEXT_ENDPOINT_AFTER, (partition, row[0], before)).fetchone()
    return found


_ENDPOINT_EXISTS = "SELECT 1 FROM requests WHERE partition = ? AND endpoint_id = ? LIMIT 1"
_FIRST_ENDPOINT_FROM = (
    "SELECT endpoint_id FROM requests WHERE partition = ? AND endpoint_id >= ? AND endpoint_id < ?"
    " ORDER BY endpoint_id LIMIT 1"
)
_NEXT_ENDPOINT_AFTER = (
    "SELECT endpoint_id FROM requests WHERE partition = ? AND endpoint_id > ? AND endpoint_id < ?"
    " ORDER BY endpoint_id LIMIT 1"
)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file of any earlier layout to this one, keeping every row; a no-op when it is current. One
    transaction, taken before looking, so two processes upgrading the same file at once do it once."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            db.execute(_TABLE)
            columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
            if "owner" not in columns:
                db.execute("ALTER TABLE requests ADD COLUMN owner TEXT")
            for column in _COST_COLUMNS:
                if column not in columns:
                    db.execute(f"ALTER TABLE requests ADD COLUMN {column} REAL")
            rows = db.execute("SELECT count(*) FROM requests").fetchone()[0]
            if rows:
                logger.info("upgrading the request history (%d rows) to layout %d", rows, SCHEMA_VERSION)
            for statement in _INDEXES:
                db.execute(statement)
            for name in _RETIRED_INDEXES:
                db.execute(f"DROP INDEX IF EXISTS {name}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _settle_lost_submits(db: sqlite3.Connection, now: float) -> int:
    """`SUBMITTING` rows whose process is gone (or that are older than `STALE_SUBMIT_S`) become `UNKNOWN`."""
    lost = [
        row_id
        for row_id, owner, created in db.execute(
            "SELECT id, owner, created_at FROM requests WHERE state = 'SUBMITTING'"
        ).fetchall()
        if created < now - STALE_SUBMIT_S or owner_gone(owner)
    ]
    for row_id in lost:
        db.execute(
            "UPDATE requests SET state = ?, updated_at = ?, error = ? WHERE id = ? AND state = 'SUBMITTING'",
            (UNKNOWN, now, LOST_SUBMIT, row_id),
        )
    if lost:
        logger.warning("request history: %d request(s) whose process stopped mid-send are now UNKNOWN", len(lost))
    return len(lost)


def _distinct(db: sqlite3.Connection, first: str, following: str, *args: Any) -> Generator[str]:
    """Distinct values of an indexed column, one index lookup each (`following` takes the previous value last)."""
    row = db.execute(first, args).fetchone()
    while row is not None:
        yield row[0]
        row = db.execute(following, (*args, row[0])).fetchone()


def _partitions(db: sqlite3.Connection) -> Generator[str]:
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


def _prunable(db: sqlite3.Connection, partition: str, retention: Retention, now: float) -> list[_PruneRange]:
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


def _delete_batch(db: sqlite3.Connection, partition: str, range_: _PruneRange) -> int:
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


@contextlib.contextmanager
def opened(state_dir: Path | None, retention: Retention | None = None) -> Generator[History]:
    history = History.open(state_dir, retention)
    try:
        yield history
    finally:
        history.close()
