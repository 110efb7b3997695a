"""Which process wrote a row, and whether that process still lives.

A row that belongs to a process while it runs (a submit on its way, a job it is counting, a task it is running)
names its owner: host, pid and start time. On this host a pid that no longer exists, or that a process started
since has taken (a restarted container's server is pid 1 again), is gone at once. Another host's process cannot
be asked: every process sharing a store beats a heartbeat into it (`replicas`), and one silent for `SILENT_S` is
taken for gone (`Liveness`).
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fal_mcp.store.database import Link

BEAT_S = 5.0
"""How often a process writes its heartbeat."""
SILENT_S = 30.0
"""A process of another host whose heartbeat is older than this is taken for gone."""


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


def beat(link: Link, now: float | None = None) -> None:
    """This process is alive: its heartbeat row says when it last said so."""
    link.execute(
        "INSERT INTO replicas (owner, beat_at) VALUES (?, ?) ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at",
        (owner(), time.time() if now is None else now),
    )


def stopped(link: Link) -> None:
    """This process is stopping cleanly: it is gone from now on (its heartbeat reads as long silent)."""
    link.execute("UPDATE replicas SET beat_at = 0 WHERE owner = ?", (owner(),))


def gone(link: Link, owners: Iterable[str | None], now: float | None = None) -> set[str]:
    """Of these owners, those known to be gone: on this host by asking the system, elsewhere by a heartbeat silent
    for `SILENT_S` (an owner without any heartbeat, from an older version, is not known to be gone)."""
    now = time.time() if now is None else now
    found: set[str] = set()
    for name in {o for o in owners if o}:
        if name == owner():
            continue
        if name.split(":", 1)[0] == socket.gethostname() and sys.platform != "win32":
            if owner_gone(name):  # this host's processes are asked directly, whatever their heartbeat says
                found.add(name)
            continue
        row = link.execute("SELECT beat_at FROM replicas WHERE owner = ?", (name,)).fetchone()
        if row is not None and row[0] < now - SILENT_S:
            found.add(name)
    return found
