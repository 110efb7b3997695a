"""The PostgreSQL backend (`FAL_MCP_DATABASE_URL`): one database shared by any number of replicas.

The driver is psycopg 3 with psycopg_pool, used synchronously in worker threads, like the SQLite backend: both are
DB-API connections, so every statement of the store is written once and runs unchanged on either (this link only
turns `?` into psycopg's `%s`). psycopg also brings what a shared store needs: a pool that checks a connection
before lending it and reconnects in the background (a database that was down at start, or restarted, is picked up
again without a restart of ours), transactions, and `LISTEN`/`NOTIFY` on a connection of its own. asyncpg would
have meant a second copy of every statement in another API.

The tables live in the `fal_mcp` schema (the database may hold other applications' tables). An exact write takes a
transaction-scoped advisory lock on its key (`pg_advisory_xact_lock(hashtextextended(key, 0))`): writers of the
same key wait for each other, every other key goes on. `notify(topic)` is `pg_notify('fal_mcp', topic)`, delivered
at commit to every replica's listener (a thread here that wakes this process's waiters), and to this process's
waiters directly.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from fal_mcp.store.database import Cursor, Database, Notices, Signals, StoreUnavailable
from fal_mcp.store.migrations import SCHEMA, migrate_postgres

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
CHANNEL = "fal_mcp"
POOL_MAX = 10
WAIT_FOR_CONNECTION_S = 3.0
"""How long a call waits for a connection before it is told the database cannot be reached."""
CONNECT_TIMEOUT_S = 3
TRUST_RECENT_S = 1.0
"""A connection returned to the pool less than this long ago is lent without a ping."""
LISTEN_TICK_S = 1.0
LISTEN_READY_S = 3.0
SETTING = "FAL_MCP_DATABASE_URL"


@functools.lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (and a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def unreachable(exc: BaseException) -> StoreUnavailable:
    """One sentence naming the setting and the database's own reason (its first line; never the URL itself)."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if type(exc).__name__ == "PoolTimeout":
        reason = f"no connection within {WAIT_FOR_CONNECTION_S:g}s"
    return StoreUnavailable(f"the database at {SETTING} cannot be used right now ({reason}); retry in a moment")


class PostgresLink:
    """A psycopg connection (autocommit) as the store's statements use it."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any], signals: Signals) -> None:
        self._conn = conn
        self._notices = Notices(signals)

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(placeholders(sql), tuple(args))  # pyright: ignore[reportArgumentType]

    @contextmanager
    def transaction(self, lock: str | None = None) -> Generator[None]:
        with self._notices.held(), self._conn.transaction():
            if lock is not None:
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
            yield

    def notify(self, topic: str) -> None:
        self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))  # every replica's listener, at commit
        self._notices.add(topic)


class PostgresDatabase(Database):
    """A PostgreSQL database reached through a pool; the schema is migrated on first use."""

    dialect = "postgres"
    shared_across_hosts = True

    def __init__(self, url: str) -> None:
        super().__init__()
        from psycopg_pool import ConnectionPool

        self._url = url
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c search_path={SCHEMA}",
            "application_name": "fal-mcp",
        }
        self._returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_MAX,
            kwargs=self._kwargs,
            check=self._check,
            reset=self._stamp,
            timeout=WAIT_FOR_CONNECTION_S,
            name="fal-mcp",
            open=False,
        )
        self._pool.open(wait=False)  # a database that is down now is waited for in the background, not here
        self._migrated = False
        self._migrating = threading.Lock()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()

    def _stamp(self, conn: psycopg.Connection[Any]) -> None:
        self._returned[conn] = time.monotonic()

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """Before a connection is lent: one idle for a while is pinged (a restarted database left it dead), one
        just returned is not (it costs a round trip per call); a dead one is replaced by the pool."""
        from psycopg_pool import ConnectionPool

        if time.monotonic() - self._returned.get(conn, 0.0) > TRUST_RECENT_S:
            ConnectionPool.check_connection(conn)

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        if self._migrated:
            return
        with self._migrating:
            if not self._migrated:
                migrate_postgres(conn)
                self._migrated = True

    def run_blocking(self, work: Callable[[Any], _T]) -> _T:
        import psycopg
        from psycopg_pool import PoolClosed, PoolTimeout

        try:
            with self._pool.connection() as conn:
                self._ensure_schema(conn)
                return work(PostgresLink(conn, self.signals))
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            raise unreachable(exc) from exc

    async def listen(self) -> None:
        """Hear every replica's notifications, in a thread with a connection of its own (started once)."""
        if self._listening.is_set():
            return
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="fal-mcp store listener", daemon=True)
            self._listener.start()
        await anyio.to_thread.run_sync(self._listening.wait, LISTEN_READY_S)

    def _listen(self) -> None:
        import psycopg

        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, **self._kwargs) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    backoff = 0.2
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_TICK_S):
                            self.signals.fire(note.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                logger.debug("store listener: %s; reconnecting", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=LISTEN_TICK_S + 2)
        self._pool.close()
