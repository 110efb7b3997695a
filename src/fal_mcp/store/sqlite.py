"""The SQLite backend: one file shared by the processes of one host, or an in-memory database of one process.

One connection per process, in autocommit mode, used by one thread at a time (a lock). WAL mode lets readers go
on while one process writes; `BEGIN IMMEDIATE` makes an exact write (a guard's count, a task's quota) wait for the
file's write lock, so two processes sharing the file never both squeeze under a limit. Wake-ups reach the waiters
of this process at commit; another process sharing the file finds what changed on its next look (the waits poll
as a safety net).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fal_mcp.store.database import Cursor, Database, Notices, Signals, StoreUnavailable
from fal_mcp.store.migrations import migrate_sqlite

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
MEMORY = ":memory:"


class SqliteLink:
    """A SQLite connection as the store's statements use it."""

    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection, signals: Signals) -> None:
        self._db = db
        self._notices = Notices(signals)

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        return self._db.execute(sql, args)

    @contextmanager
    def transaction(self, lock: str | None = None) -> Generator[None]:
        """A write transaction holding the file's write lock from the start (whatever `lock` names)."""
        with self._notices.held():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def notify(self, topic: str) -> None:
        self._notices.add(topic)


class SqliteDatabase(Database):
    """One SQLite file (`path`), or a database in this process's memory (`path` None)."""

    dialect = "sqlite"

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._db = self._connect(path)
        self._link = SqliteLink(self._db, self.signals)

    @staticmethod
    def _connect(path: Path | None) -> sqlite3.Connection:
        """Open and migrate; raises `OSError` or `sqlite3.Error` when the file cannot be used."""
        if path is None:
            db = sqlite3.connect(MEMORY, check_same_thread=False, isolation_level=None)
            migrate_sqlite(db)
            return db
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():  # prompts live here: readable by this user only
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
        try:
            _use_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            migrate_sqlite(db)
        except BaseException:
            db.close()
            raise
        return db

    def run_blocking(self, work: Callable[[Any], _T]) -> _T:
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("the store is closed")
            try:
                return work(self._link)
            except sqlite3.Error as exc:
                where = str(self.path) if self.path is not None else "the in-memory store"
                raise StoreUnavailable(f"{where}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _use_wal(db: sqlite3.Connection, wait_s: float = 5.0) -> None:
    """Switch the file to WAL, waiting out other processes doing the same at the same moment.

    SQLite answers this pragma "database is locked" at once, without its busy timeout, while another connection
    is switching the same new file, so processes started together (replicas, a client launching two servers)
    would fail to open their history. A few short retries let the first one finish.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
