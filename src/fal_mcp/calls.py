"""Each tool or REST call as the process lives it: an id for its log lines, the count in flight, and the drain.

The id lives in a context variable set around the call, so every log record made while serving it (ours, httpx's)
carries it: the log formats print it as `call_id`. At shutdown (SIGTERM) `calls.begin_drain()` cancels every wait
that is following a fal job, so that call answers at once with the request's handle (the job keeps running at fal)
instead of being cut off when the grace period ends.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio

logger = logging.getLogger(__name__)

current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fal_mcp_call_id", default=None)


@dataclass
class Call:
    """One call in flight; `outcome` is what its closing log line says ("ok" unless told otherwise)."""

    name: str
    id: str
    started: float
    outcome: str = "ok"


class Calls:
    """The calls in flight in this process, and the drain that cuts their waits short at shutdown."""

    def __init__(self) -> None:
        self._in_flight: dict[str, Call] = {}
        self._waits: set[anyio.CancelScope] = set()
        self.draining = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @contextmanager
    def call(self, name: str) -> Generator[Call]:
        """Around one call: a fresh id in the log context, one closing log line with its outcome and duration."""
        record = Call(name=name, id=os.urandom(8).hex(), started=time.monotonic())  # 16 hex digits, as a uuid's
        token = current_call_id.set(record.id)
        self._in_flight[record.id] = record
        try:
            yield record
        except BaseException as exc:
            record.outcome = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else "crashed"
            raise
        finally:
            del self._in_flight[record.id]
            logger.info("%s %s in %.2fs", name, record.outcome, time.monotonic() - record.started)
            current_call_id.reset(token)

    @contextmanager
    def interruptible_wait(self) -> Generator[anyio.CancelScope]:
        """A scope around a wait on a fal job that the drain cancels (at once, if it has begun)."""
        scope = anyio.CancelScope()
        if self.draining:
            scope.cancel()
        self._waits.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._waits.discard(scope)

    def begin_drain(self) -> None:
        """The server is stopping: end every wait now (call it on the event loop's thread)."""
        if self.draining:
            return
        self.draining = True
        logger.warning(
            "shutting down: %d call(s) in flight; waits on fal jobs return their handles now", self.in_flight
        )
        for scope in list(self._waits):
            scope.cancel()


calls = Calls()
"""The process-wide registry (one server per process, like `logs.redactor`)."""
