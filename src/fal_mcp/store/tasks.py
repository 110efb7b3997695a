"""MCP tasks as rows any replica can read: who owns a task, where it stands, its result, and a cancel request.

A task's *work* lives in the process that started it (its `owner`); its *record* lives here, so `tasks/get` and
`tasks/cancel` work on whichever replica they reach. The owner writes the record as the run goes (its status
message, the fal request it started, its end). Another replica's cancel sets `cancel_requested` and notifies
`cancel:<task id>`; the owner hears it (or finds it on its next poll) and cancels the run, at fal too.

A task whose owner died cannot end by itself: any reader (and the upkeep pass) marks a working task of a process
known to be gone (`owners.gone`) as failed, naming the fal request so the caller can continue with `get-result`.

Bounds per owner (the caller's partition): `reserve` counts its working tasks and stores the new one in one
transaction under the caller's lock, so the per-caller quota holds across replicas; to make room it drops the
caller's own oldest finished tasks, never another caller's and never a working one. Records expire after `TTL_S`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from fal_mcp.store import owners
from fal_mcp.store.database import Database, Link

TTL_S = 3600.0
WORKING = "working"
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class TaskRow:
    """One task's record."""

    task_id: str
    partition: str
    owner: str
    created_at: float
    updated_at: float
    status: str = WORKING
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    request_id: str | None = None
    endpoint_id: str | None = None
    cancel_requested: bool = False


def orphaned_message(request_id: str | None, endpoint_id: str | None) -> str:
    """What a task whose process died says: where its fal request stands, and how to carry on."""
    if request_id is None:
        return (
            "the fal-mcp process running this task stopped before fal accepted its request; "
            "list-requests shows whether it was sent"
        )
    return (
        "the fal-mcp process running this task stopped before it finished; the request may still be running at fal: "
        f"continue with get-result (request_id='{request_id}', endpoint_id='{endpoint_id}')"
    )


_COLUMNS = (
    "task_id, partition, owner, created_at, updated_at, status, status_message, result, error, request_id,"
    " endpoint_id, cancel_requested"
)


def _row(values: tuple[Any, ...]) -> TaskRow:
    task_id, partition, owner, created, updated, status, message, result, error, request_id, endpoint, flag = values
    return TaskRow(
        task_id=task_id,
        partition=partition,
        owner=owner,
        created_at=float(created),
        updated_at=float(updated),
        status=status,
        status_message=message,
        result=json.loads(result) if result else None,
        error=json.loads(error) if error else None,
        request_id=request_id,
        endpoint_id=endpoint,
        cancel_requested=bool(flag),
    )


def fail_orphans(db: Link, now: float, partition: str | None = None) -> int:
    """Working tasks whose process is gone become failed (of one partition, or all); returns how many."""
    sql = "SELECT task_id, owner, request_id, endpoint_id FROM tasks WHERE status = ?"
    args: tuple[Any, ...] = (WORKING,)
    if partition is not None:
        sql, args = sql + " AND partition = ?", (*args, partition)
    rows = db.execute(sql, args).fetchall()
    dead = owners.gone(db, (owner for _, owner, _, _ in rows), now)
    failed = 0
    for task_id, owner, request_id, endpoint_id in rows:
        if owner in dead:
            message = orphaned_message(request_id, endpoint_id)
            failed += db.execute(
                "UPDATE tasks SET status = 'failed', status_message = ?, error = ?, updated_at = ?"
                " WHERE task_id = ? AND status = ?",
                (message, json.dumps({"message": message}), now, task_id, WORKING),
            ).rowcount
    return failed


def expire(db: Link, now: float) -> int:
    """Forget every task older than `TTL_S`."""
    return db.execute("DELETE FROM tasks WHERE created_at < ?", (now - TTL_S,)).rowcount


class TaskRows:
    """The tasks table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def reserve(self, row: TaskRow, per_owner: int) -> int | None:
        """Store a new working task unless its owner already has `per_owner` working; then return that count."""

        def reserve(db: Link) -> int | None:
            now = time.time()
            with db.transaction(lock=f"tasks:{row.partition}"):
                working = _working(db, row.partition)
                if working >= per_owner:
                    fail_orphans(db, now, row.partition)
                    working = _working(db, row.partition)
                    if working >= per_owner:
                        return working
                db.execute("DELETE FROM tasks WHERE partition = ? AND created_at < ?", (row.partition, now - TTL_S))
                held = int(db.execute("SELECT count(*) FROM tasks WHERE partition = ?", (row.partition,)).fetchone()[0])
                if held >= per_owner:  # room from the caller's own oldest finished tasks
                    db.execute(
                        "DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM tasks WHERE partition = ?"
                        " AND status != ? ORDER BY created_at LIMIT ?)",
                        (row.partition, WORKING, held - per_owner + 1),
                    )
                db.execute(
                    f"INSERT INTO tasks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, 0)",
                    (
                        row.task_id,
                        row.partition,
                        row.owner,
                        row.created_at,
                        row.updated_at,
                        row.status,
                        row.status_message,
                    ),
                )
            return None

        return await self.database.run(reserve)

    async def drop(self, task_id: str) -> None:
        """The run ended before it was answered as a task: it leaves no record."""
        await self.database.run(lambda db: db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,)))

    async def progress(self, task_id: str, message: str) -> None:
        await self.database.run(
            lambda db: db.execute(
                "UPDATE tasks SET status_message = ?, updated_at = ? WHERE task_id = ? AND status = ?",
                (message, time.time(), task_id, WORKING),
            )
        )

    async def started(self, task_id: str, request_id: str, endpoint_id: str) -> None:
        """The run's fal request: what a caller continues with if this process dies."""
        await self.database.run(
            lambda db: db.execute(
                "UPDATE tasks SET request_id = ?, endpoint_id = ? WHERE task_id = ?", (request_id, endpoint_id, task_id)
            )
        )

    async def finish(
        self,
        task_id: str,
        status: str,
        *,
        message: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """A working task's end (terminal states are final); False when it had already ended."""

        def finish(db: Link) -> bool:
            return (
                db.execute(
                    "UPDATE tasks SET status = ?, status_message = COALESCE(?, status_message), result = ?, error = ?,"
                    " updated_at = ? WHERE task_id = ? AND status = ?",
                    (
                        status,
                        message,
                        json.dumps(result) if result is not None else None,
                        json.dumps(error) if error is not None else None,
                        time.time(),
                        task_id,
                        WORKING,
                    ),
                ).rowcount
                > 0
            )

        return await self.database.run(finish)

    async def get(self, task_id: str) -> TaskRow | None:
        """The task, unless it expired; a working task whose process is gone is failed first."""

        def get(db: Link) -> TaskRow | None:
            now = time.time()
            found = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if found is None:
                return None
            row = _row(found)
            if row.created_at < now - TTL_S:
                return None
            if row.status == WORKING and owners.gone(db, [row.owner], now):
                fail_orphans(db, now, row.partition)
                return _row(db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone())
            return row

        return await self.database.run(get)

    async def request_cancel(self, task_id: str) -> None:
        """Ask the task's owner, wherever it runs, to cancel it."""

        def flag(db: Link) -> None:
            with db.transaction():
                db.execute(
                    "UPDATE tasks SET cancel_requested = 1, status_message = 'cancelling', updated_at = ?"
                    " WHERE task_id = ? AND status = ?",
                    (time.time(), task_id, WORKING),
                )
                db.notify(f"cancel:{task_id}")

        await self.database.run(flag)

    async def cancel_requested(self, task_id: str) -> bool:
        row = await self.database.run(
            lambda db: db.execute("SELECT cancel_requested FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        )
        return bool(row and row[0])


def _working(db: Link, partition: str) -> int:
    return int(
        db.execute("SELECT count(*) FROM tasks WHERE partition = ? AND status = ?", (partition, WORKING)).fetchone()[0]
    )
