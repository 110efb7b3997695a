"""The request history: every request fal-mcp sends to fal, kept on disk so no restart loses one.

A row is written *before* a submit goes out (state `SUBMITTING`) and completed when fal answers with the request
id, so even a crash between the two leaves a trace that a billed request may exist. Rows hold the endpoint,
request id, times, last known state, error, output media URLs, and a digest of the input: a hash of the whole
input plus a summary with large inline data elided (a 5 MB data URI becomes a one-line note, never stored).

SQLite in WAL mode with a busy timeout, so several fal-mcp processes (stdio clients, HTTP replicas on one
host) can share one file. Rows are partitioned by a hash of the fal key (`state.partition_of`): a process
serving several keys never shows one key's requests to another. Writes never fail a tool call: a broken
history is logged and the fal request goes on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio.to_thread
from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

SUBMITTING = "SUBMITTING"
UNKNOWN = "UNKNOWN"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
ACTIVE_STATES = ("SUBMITTING", "IN_QUEUE", "IN_PROGRESS", "CANCELLATION_REQUESTED")
MAX_SUMMARY_CHARS = 2000
MAX_INLINE_CHARS = 200
MAX_MEDIA_URLS = 50
MAX_UNCHANGED_TRACKED = 1024
"""How many requests' last written state `observe` keeps, to skip writing a state that did not change."""
FILE_NAME = "history.sqlite3"

_SCHEMA = """
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

    summary = elide(value)
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

    def walk(item: Any, key: str) -> None:
        if len(found) >= MAX_MEDIA_URLS:
            return
        if isinstance(item, str):
            if item.startswith(("https://", "http://")) and (key == "url" or key.endswith("_url")):
                found.append(item)
        elif isinstance(item, dict):
            for k, v in cast(dict[Any, Any], item).items():
                walk(v, str(k))
        elif isinstance(item, list):
            for v in cast(list[Any], item):
                walk(v, key)

    walk(output, "")
    return list(dict.fromkeys(found))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class History:
    """Async front of one SQLite connection; every statement runs in a worker thread, one at a time."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._written: OrderedDict[tuple[str, str], tuple[str, str | None, str | None]] = OrderedDict()
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._behind: concurrent.futures.Future[None] | None = None
        """The last write `observe_soon` queued; every later statement waits for it first."""
        if path is not None:
            self._db = self._connect(path)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection | None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():  # prompts live here: readable by this user only
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            return db
        except (OSError, sqlite3.Error) as exc:
            logger.warning("request history disabled: cannot open %s (%s)", path, exc)
            return None

    @classmethod
    def open(cls, state_dir: Path | None) -> History:
        return cls(state_dir / FILE_NAME if state_dir is not None else None)

    def close(self) -> None:
        if self._writer is not None:  # writes queued by `observe_soon` land before the file closes
            self._writer.shutdown(wait=True)
            self._writer = None
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def _run(self, work: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
        """Run `work` on the connection in a thread; a failing history logs and returns `default`."""
        if self._db is None:
            return default

        def locked() -> _T:
            behind = self._behind
            if behind is not None:
                behind.result()  # a queued write first: a read right after a reply sees what the reply said
            with self._lock:
                if self._db is None:
                    return default
                return work(self._db)

        try:
            return await anyio.to_thread.run_sync(locked)
        except sqlite3.Error as exc:
            logger.warning("request history: %s", exc)
            return default

    # -- writes -------------------------------------------------------------------------------------

    async def begin(self, partition: str, endpoint_id: str, payload: Any, origin: str) -> int | None:
        """Note a request about to be sent; returns the row to complete once fal answers."""
        now = time.time()
        digest, summary = input_digest(payload), json.dumps(summarize_input(payload), ensure_ascii=False)

        def insert(db: sqlite3.Connection) -> int | None:
            cursor = db.execute(
                "INSERT INTO requests (partition, endpoint_id, origin, state, created_at, updated_at, input_digest,"
                " input_summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (partition, endpoint_id, origin, SUBMITTING, now, now, digest, summary),
            )
            return cursor.lastrowid

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
            _set_state(db, (partition, request_id), state, now, error=error, error_type=error_type, urls=urls)
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
        """Newest first, optionally only some states and endpoints."""

        def select(db: sqlite3.Connection) -> list[RequestRecord]:
            sql = f"{_SELECT} WHERE partition = ?"
            args: list[Any] = [partition]
            if states:
                sql += f" AND state IN ({', '.join('?' * len(states))})"
                args.extend(states)
            if endpoint_prefix:
                sql += " AND (endpoint_id = ? OR endpoint_id LIKE ? ESCAPE '\\')"
                escaped = endpoint_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                args.extend([endpoint_prefix, escaped.rstrip("/") + "/%"])
            sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
            args.append(limit)
            return [_record(row) for row in db.execute(sql, args)]

        return await self._run(select, [])


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


_SELECT = (
    "SELECT request_id, endpoint_id, state, created_at, updated_at, origin, error, error_type, media_urls,"
    " input_digest, input_summary FROM requests"
)


def _record(row: tuple[Any, ...]) -> RequestRecord:
    request_id, endpoint_id, state, created, updated, origin, error, error_type, urls, digest, summary = row
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
    )


@contextlib.contextmanager
def opened(state_dir: Path | None) -> Generator[History]:
    history = History.open(state_dir)
    try:
        yield history
    finally:
        history.close()
