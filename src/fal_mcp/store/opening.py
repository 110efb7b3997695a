"""Opening the store the settings describe, and keeping it up while the process runs.

- `FAL_MCP_DATABASE_URL=postgresql://...`: PostgreSQL, shared by every replica (history, counters, tasks,
  deliveries). The process starts even when the database is down; calls that need it say so until it is back.
- else `FAL_MCP_STATE_DIR` (or its platform default): the SQLite file `history.sqlite3`, shared by the processes of
  this host that open it.
- `FAL_MCP_STATE_DIR=off`, or a file that cannot be opened: no history (`History.problem` says why); the counters,
  tasks and deliveries live in an in-memory database of this process, so the limits still hold, per process.

`Store.start()` runs the upkeep in a thread of its own: with PostgreSQL a heartbeat every `BEAT_S` (how replicas on
other hosts know this process lives; a SQLite file's processes share a host, where a pid says it), and, shortly after start and then every `PRUNE_EVERY_S`, the history's pruning and lost-submit
settling, tasks of dead processes failed and expired ones forgotten, old deliveries and starts dropped.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from fal_mcp.settings import Settings
from fal_mcp.store import deliveries, owners, tasks
from fal_mcp.store.counters import WINDOW_S, Counters
from fal_mcp.store.database import Database, Link, StoreUnavailable
from fal_mcp.store.deliveries import Deliveries
from fal_mcp.store.history import History
from fal_mcp.store.records import FILE_NAME, Retention, resolve_state_dir
from fal_mcp.store.sqlite import SqliteDatabase
from fal_mcp.store.tasks import TaskRows

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
FIRST_PRUNE_AFTER_S = 1.0
"""The first pass waits this long after start: a starting server has better things to do."""
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass
class Store:
    """Everything kept, over one database."""

    database: Database
    history: History
    backend: str
    """"postgres", "sqlite" (a file) or "memory" (no history)."""
    counters: Counters = field(init=False)
    tasks: TaskRows = field(init=False)
    deliveries: Deliveries = field(init=False)

    def __post_init__(self) -> None:
        self.counters = Counters(self.database)
        self.tasks = TaskRows(self.database)
        self.deliveries = Deliveries(self.database)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the upkeep (heartbeat, pruning) in a thread of its own until `close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._keep_up, name="fal-mcp store upkeep", daemon=True)
            self._thread.start()

    def _keep_up(self) -> None:
        next_prune = time.monotonic() + FIRST_PRUNE_AFTER_S
        if self.backend == "postgres":  # a file's were settled at open (a database may be down now: not waited on)
            with contextlib.suppress(StoreUnavailable):
                self.history.settle_lost_submits()
        while True:
            if self.database.shared_across_hosts:  # a file's processes share one host: their pids say if they live
                self._quietly(owners.beat)
            if time.monotonic() >= next_prune:
                self.upkeep()
                next_prune = time.monotonic() + PRUNE_EVERY_S
            if self._stop.wait(min(owners.BEAT_S, max(0.0, next_prune - time.monotonic()))):
                return

    def _quietly(self, work: object) -> None:
        try:
            self.database.run_blocking(work)  # pyright: ignore[reportArgumentType]
        except StoreUnavailable as exc:
            logger.warning("store upkeep: %s", exc)

    def upkeep(self, now: float | None = None) -> None:
        """One pass of everything that is pruned or settled (the history's own pass included)."""
        now = time.time() if now is None else now

        def prune(db: Link) -> None:
            tasks.fail_orphans(db, now)
            tasks.expire(db, now)
            deliveries.prune(db, now)
            db.execute("DELETE FROM guard_starts WHERE at <= ?", (now - WINDOW_S,))

        self._quietly(prune)
        try:
            self.history.upkeep(now)
        except StoreUnavailable as exc:
            logger.warning("request history upkeep: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self.history.close()
        self.counters.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self.database.shared_across_hosts:
            with contextlib.suppress(StoreUnavailable):
                self.database.run_blocking(owners.stopped)
        self.database.close()


def database_url_problem(url: str) -> str | None:
    """Why `FAL_MCP_DATABASE_URL` cannot be used (one line), or None."""
    if not url.startswith(POSTGRES_SCHEMES):
        return "FAL_MCP_DATABASE_URL must be a PostgreSQL URL such as postgresql://user:password@host:5432/database"
    try:
        import psycopg  # noqa: F401  # pyright: ignore[reportUnusedImport]
        import psycopg_pool  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        return "FAL_MCP_DATABASE_URL needs the PostgreSQL driver: pip install 'fal-mcp[postgres]'"
    return None


SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def startup_problem(settings: Settings) -> str | None:
    """Why the store's settings must not start (said on stderr with exit code 2), or None."""
    url = settings.database_url.get_secret_value() if settings.database_url is not None else None
    if not url:
        return None
    problem = database_url_problem(url)
    if problem is not None:
        return problem
    if settings.state_secret is None:
        return (
            "FAL_MCP_DATABASE_URL serves several replicas, so they need FAL_MCP_STATE_SECRET (the same on each, at "
            f"least 32 characters) to seal multi-round-trip request state alike; make one with {SECRET_HINT}"
        )
    return None


def open_store(settings: Settings) -> Store:
    """The store the settings describe (see the module docstring); never raises for a database that is down."""
    retention = Retention.from_settings(settings)
    url = settings.database_url.get_secret_value() if settings.database_url is not None else None
    if url:
        from fal_mcp.store.postgres import PostgresDatabase

        database = PostgresDatabase(url)
        return Store(database, History(database, retention), "postgres")
    return open_file_store(resolve_state_dir(settings.state_dir), retention)


def open_file_store(state_dir: Path | None, retention: Retention | None = None) -> Store:
    """SQLite in `state_dir` (None: the history is off), or in memory when the file cannot be used."""
    if state_dir is None:
        return Store(SqliteDatabase(None), History(None, retention), "memory")
    path = state_dir / FILE_NAME
    try:
        database = SqliteDatabase(path)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = f"could not open {path} ({reason})"
        logger.warning("request history disabled: %s", problem)
        return Store(SqliteDatabase(None), History(None, retention, problem=problem), "memory")
    history = History(database, retention)
    history.settle_lost_submits()  # before the first call lists them
    return Store(database, history, "sqlite")


@contextlib.contextmanager
def opened(settings: Settings) -> Generator[Store]:
    """The store, with its upkeep running, for as long as the block runs."""
    store = open_store(settings)
    store.start()
    try:
        yield store
    finally:
        store.close()
