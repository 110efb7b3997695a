"""Webhook deliveries: what fal pushed about a request, kept once, and a wait that wakes on any replica.

The interface the webhook route and the waiting path build on:

- `record(request_id, outcome) -> bool`: keep fal's delivery for a request (the route calls it once the
  delivery's signature checked out). `outcome` is any JSON object (the webhook's body as the route chose to keep
  it: status, payload or error). True when it is new; False when a delivery for this request id was already
  recorded (by this or any replica): a duplicate, and nothing changes (the first one stands).
- `get(request_id) -> Delivery | None`: the recorded delivery, if any.
- `wait(request_id, timeout_s) -> Delivery | None`: the delivery, as soon as one is recorded anywhere, or None
  after `timeout_s`. It returns at once when one is already there (so a delivery that arrives before anyone waits
  is not missed), else wakes when a `record` commits: on PostgreSQL through `NOTIFY` from whichever replica
  recorded it, with SQLite from this process directly. A poll every `POLL_S` is the safety net (another process on
  the same SQLite file, a listener reconnecting). The caller bounds the wait and falls back to asking fal.

- `expect(request_id, partition, endpoint_id)`: note that a request was submitted with this server's webhook, and
  whose it is (the first note stands). `awaited(request_id) -> Awaited | None` reads it back on any replica: the
  webhook route takes a delivery only for a request noted here, and records it in that partition's history.

Deliveries are keyed by fal's request id alone (fal's webhook carries nothing else); the waiting path reads one
only for a request it knows is its caller's. Deliveries and notes are kept `KEEP_S` and then pruned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from fal_mcp.store.database import Database, Link

POLL_S = 1.0
"""How often a waiting call looks for itself, besides being woken."""
KEEP_S = 86400.0


@dataclass(frozen=True, slots=True)
class Delivery:
    request_id: str
    outcome: dict[str, Any]
    received_at: float


@dataclass(frozen=True, slots=True)
class Awaited:
    """A request submitted with this server's webhook: whose it is, and when it was sent."""

    request_id: str
    partition: str
    endpoint_id: str
    submitted_at: float


def topic(request_id: str) -> str:
    return f"delivery:{request_id}"


def prune(db: Link, now: float) -> int:
    """Drop the deliveries and notes older than `KEEP_S`; how many rows went."""
    gone = db.execute("DELETE FROM deliveries WHERE received_at < ?", (now - KEEP_S,)).rowcount
    return gone + db.execute("DELETE FROM awaited_deliveries WHERE submitted_at < ?", (now - KEEP_S,)).rowcount


class Deliveries:
    """The deliveries table, and the wake-ups of those waiting for one."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def record(self, request_id: str, outcome: Mapping[str, Any]) -> bool:
        body = json.dumps(dict(outcome), ensure_ascii=False, separators=(",", ":"))

        def record(db: Link) -> bool:
            with db.transaction():
                new = db.execute(
                    "INSERT INTO deliveries (request_id, outcome, received_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
                    (request_id, body, time.time()),
                ).fetchone()
                if new is not None:
                    db.notify(topic(request_id))
            return new is not None

        return await self.database.run(record)

    async def get(self, request_id: str) -> Delivery | None:
        def get(db: Link) -> Delivery | None:
            row = db.execute(
                "SELECT outcome, received_at FROM deliveries WHERE request_id = ?", (request_id,)
            ).fetchone()
            return Delivery(request_id, json.loads(row[0]), float(row[1])) if row is not None else None

        return await self.database.run(get)

    async def expect(self, request_id: str, partition: str, endpoint_id: str) -> None:
        def expect(db: Link) -> None:
            db.execute(
                "INSERT INTO awaited_deliveries (request_id, partition, endpoint_id, submitted_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (request_id) DO NOTHING",
                (request_id, partition, endpoint_id, time.time()),
            )

        await self.database.run(expect)

    async def awaited(self, request_id: str) -> Awaited | None:
        def awaited(db: Link) -> Awaited | None:
            row = db.execute(
                "SELECT partition, endpoint_id, submitted_at FROM awaited_deliveries WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            return Awaited(request_id, str(row[0]), str(row[1]), float(row[2])) if row is not None else None

        return await self.database.run(awaited)

    async def wait(self, request_id: str, timeout_s: float) -> Delivery | None:
        await self.database.listen()
        deadline = anyio.current_time() + timeout_s
        with self.database.signals.subscribed(topic(request_id)) as waiter:
            while True:
                found = await self.get(request_id)  # after subscribing: a record committed meanwhile is seen
                left = deadline - anyio.current_time()
                if found is not None or left <= 0:
                    return found
                await waiter.wait(min(left, POLL_S))
