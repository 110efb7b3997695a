"""How many MCP sessions each caller may hold open, so that no one caller can lock the others out.

The SDK's limits are process-wide (by default 10,000 sessions, each closed after 30 idle minutes): one caller
that sends nothing but `initialize` could take them all, and everyone else would be refused until they expired.
Here, in front of the SDK, every request that could open a session (a legacy-era POST without a session id;
2026-07-28 requests and `--stateless` open none) is admitted against:

- `FAL_MCP_MAX_SESSIONS_PER_CALLER` per caller: per token with `--auth token`, per key with `--auth fal-key`,
  per client address with `--auth none` (where there is no other identity);
- with `--auth fal-key`, a key fal has not accepted yet is anybody's to make up, so its sessions also count
  against its client address, under the same cap;
- `FAL_MCP_MAX_SESSIONS` in all, of which the last tenth (at least one caller's worth) is kept for callers that
  hold none and are known (a token, an address, a key fal has accepted): a greedy caller, or a flood of made-up
  keys, cannot take the room the next legitimate caller needs.

A refusal is 429 (503 when the server is simply full) with one JSON-RPC error sentence naming the setting. The
count follows the sessions' lives as seen from here: opened when the SDK answers with a session id, ended by a
DELETE, by a 404 for that id (the SDK no longer knows it), or by `FAL_MCP_SESSION_IDLE_S` without a request in
flight, the same idle limit the SDK is given.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import Response

RESERVE_FRACTION = 0.1
_REAP_EVERY_S = 1.0


@dataclass
class _Session:
    owners: tuple[str, ...]
    """The caller, and the client address too when the caller's key is not known to be real."""
    in_flight: int = 0
    idle_since: float = 0.0


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    retry_after_s: int

    def response(self) -> Response:
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": self.message}}
        headers = {"Retry-After": str(self.retry_after_s)}
        return Response(json.dumps(body), self.status, headers=headers, media_type="application/json")


def _owners(caller: str, address: str | None) -> tuple[str, ...]:
    return (caller,) if address is None else (caller, address)


class SessionQuota:
    """The sessions open per caller, and who may open another."""

    def __init__(
        self, *, total: int, per_caller: int, idle_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = total
        self.per_caller = per_caller
        self.idle_s = idle_s
        self.reserve = min(total - 1, max(per_caller, round(total * RESERVE_FRACTION)))
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._held: Counter[str] = Counter()
        self._pending = 0
        self._reaped_at = 0.0

    def open_count(self, owner: str) -> int:
        return self._held[owner]

    def admit(self, caller: str, address: str | None) -> Refusal | None:
        """May `caller` open one more session? `address` is given when the caller's identity proves nothing.

        On None, one slot is held for it (and counted as its own) until `opened()` or `abandoned()` is called.
        """
        self._reap()
        retry = max(1, round(self.idle_s))
        if self._held[caller] >= self.per_caller:
            return Refusal(
                429,
                f"this caller already has {self.per_caller} MCP sessions open (FAL_MCP_MAX_SESSIONS_PER_CALLER): "
                f"reuse one, or end one you no longer need with HTTP DELETE; idle ones close after {retry} s",
                retry,
            )
        if address is not None and self._held[address] >= self.per_caller:
            return Refusal(
                429,
                f"{self.per_caller} MCP sessions are already open from this address with keys fal has not accepted "
                "yet (FAL_MCP_MAX_SESSIONS_PER_CALLER): make a call with your key first, or reuse a session",
                retry,
            )
        room = self.total - len(self._sessions) - self._pending
        if room <= 0:
            return Refusal(
                503, "the server has no room for another MCP session now (FAL_MCP_MAX_SESSIONS); retry shortly", 5
            )
        if room <= self.reserve and (self._held[caller] > 0 or address is not None):
            return Refusal(
                429,
                "the last MCP sessions are kept for callers that have none (FAL_MCP_MAX_SESSIONS): reuse a session "
                "you already have",
                retry,
            )
        self._pending += 1
        self._held.update(_owners(caller, address))  # counted at once: concurrent requests cannot all slip in
        return None

    def opened(self, session_id: str, caller: str, address: str | None) -> None:
        """The SDK opened `session_id` for an admitted request."""
        self._pending -= 1
        self._sessions[session_id] = _Session(_owners(caller, address), idle_since=self._clock())

    def abandoned(self, caller: str, address: str | None) -> None:
        """An admitted request opened no session after all (refused, failed, or a client that went away)."""
        self._pending -= 1
        self._release(_owners(caller, address))

    def begin(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.in_flight += 1

    def end(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.in_flight -= 1
            session.idle_since = self._clock()

    def closed(self, session_id: str) -> None:
        """`session_id` ended (DELETE, or the SDK answered 404 for it)."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._release(session.owners)

    def _release(self, owners: tuple[str, ...]) -> None:
        self._held.subtract(owners)
        for owner in owners:
            if self._held[owner] <= 0:
                del self._held[owner]

    def _reap(self) -> None:
        """Forget sessions idle for longer than the SDK lets them live (it has closed them)."""
        now = self._clock()
        if now - self._reaped_at < _REAP_EVERY_S:
            return
        self._reaped_at = now
        expired = [
            session_id
            for session_id, session in self._sessions.items()
            if session.in_flight <= 0 and now - session.idle_since > self.idle_s
        ]
        for session_id in expired:
            self.closed(session_id)
