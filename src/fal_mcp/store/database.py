"""The seam both backends implement: a connection as the store's statements see it, and a database that runs work.

Every statement of the store is written once, with `?` placeholders, against a `Link` (one connection, in a worker
thread): `execute` (the PostgreSQL link turns `?` into its own placeholder), `transaction(lock=...)` for writes that
must be exact across processes (SQLite: `BEGIN IMMEDIATE`, one writer at a time; PostgreSQL: a transaction holding
an advisory lock on `lock`, so only writers of the same key wait for each other), and `notify(topic)`, which wakes
whoever waits on `topic` once the transaction commits: in this process (`Signals`), and with PostgreSQL in every
process listening to the database.

A `Database` runs work on a link off the event loop (`run`) or from a plain thread (`run_blocking`). A database
that cannot be reached raises `StoreUnavailable`, one sentence naming the setting to check; it is not cached, so the
next call tries again and the store recovers by itself when the database is back. `WriteBehind` runs the writes an
answer need not wait for (a job's completion in the history, its end in the running count).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class StoreUnavailable(Exception):
    """The store cannot be reached or used; the message names what to check (never a credential)."""


class WriteBehind:
    """Writes a caller does not wait for, run in order on a thread of their own (made on the first write).

    Whoever owns one makes every later statement wait for them first (`caught_up`, or `settled` from a plain thread),
    so what an answer said is what the next read or count sees; `close` lets the queued writes land.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._behind: concurrent.futures.Future[None] | None = None
        """The last write queued."""

    def submit(self, write: Callable[[], None]) -> None:
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"fal-mcp-{self._name}")
        self._behind = self._writer.submit(write)

    async def caught_up(self) -> None:
        """Once every write queued so far has landed (waited for in a worker thread only when one is pending)."""
        behind = self._behind
        if behind is not None and not behind.done():
            await anyio.to_thread.run_sync(behind.result)

    def settled(self) -> None:
        """`caught_up`, from a plain thread."""
        if self._behind is not None:
            self._behind.result()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Link(Protocol):
    """One connection, as the store's statements use it (in a worker thread, never shared between two at once)."""

    dialect: str
    """"sqlite" or "postgres"."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor: ...

    def transaction(self, lock: str | None = None) -> AbstractContextManager[None]: ...

    def notify(self, topic: str) -> None: ...


class Waiter:
    """One wait for a topic, made in an event loop and woken from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = anyio.Event()

    def wake(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, within_s: float) -> bool:
        """True when woken within `within_s` seconds (then it is rearmed for the next wake)."""
        with anyio.move_on_after(within_s):
            await self._event.wait()
            self._event = anyio.Event()
            return True
        return False


class Signals:
    """In-process wake-ups by topic (`delivery:<request id>`, `cancel:<task id>`): thread-safe, nothing stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}

    @contextmanager
    def subscribed(self, topic: str) -> Generator[Waiter]:
        """Wake the returned waiter whenever `topic` fires while the block runs."""
        waiter = Waiter()
        with self._lock:
            self._waiters.setdefault(topic, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[topic]

    def fire(self, topic: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(topic, ()))
        for waiter in waiters:
            waiter.wake()

    def topics(self) -> int:
        with self._lock:
            return len(self._waiters)


class Notices:
    """Topics a link notified, fired in this process once the transaction they belong to commits (at once outside
    of one); a transaction that rolls back fires nothing."""

    def __init__(self, signals: Signals) -> None:
        self._signals = signals
        self._pending: list[str] | None = None

    @contextmanager
    def held(self) -> Generator[None]:
        self._pending = []
        try:
            yield
        except BaseException:
            self._pending = None
            raise
        topics, self._pending = self._pending, None
        for topic in topics:
            self._signals.fire(topic)

    def add(self, topic: str) -> None:
        if self._pending is not None:
            self._pending.append(topic)
        else:
            self._signals.fire(topic)


class Database(ABC):
    """A place the store's statements run: one SQLite file (or memory), or a PostgreSQL database."""

    dialect: str
    shared_across_hosts: bool = False
    """PostgreSQL: replicas on any host share it; a caller may not go on without it (`StoreUnavailable`)."""

    def __init__(self) -> None:
        self.signals = Signals()

    @abstractmethod
    def run_blocking(self, work: Callable[[Link], _T]) -> _T:
        """Run `work` on a link in this thread; raises `StoreUnavailable` when the database cannot be used."""

    async def run(self, work: Callable[[Link], _T]) -> _T:
        """Run `work` on a link in a worker thread (a statement is never abandoned halfway by a cancellation)."""
        return await anyio.to_thread.run_sync(self.run_blocking, work)

    async def ping(self) -> str | None:
        """None when the database answers, else why not (for `/readyz`)."""
        try:
            await self.run(lambda link: link.execute("SELECT 1").fetchone())
        except StoreUnavailable as exc:
            return str(exc)
        return None

    async def listen(self) -> None:  # noqa: B027 - only PostgreSQL hears other processes
        """Hear other processes' notifications from now on, when the backend can (PostgreSQL); returns once it does
        (or, with the database unreachable, after a short wait: the waits' polling covers that)."""

    @abstractmethod
    def close(self) -> None: ...
