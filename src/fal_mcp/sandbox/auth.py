"""Who is calling: `Authorization: Key <id:secret>` checked against the fake's known keys.

The sandbox ships three well-known keys so nobody needs a real one: `SANDBOX_KEY` behaves like a
funded account, `LOCKED_KEY` like an account whose balance ran out (it may still read its jobs,
but runs and submits answer 403, as fal does for a locked user), and `SANDBOX_ADMIN_KEY` like an
admin key of the account, the only kind fal lets read billing events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fal_mcp.sandbox.models.inputs import JsonObject

SANDBOX_KEY = "sandbox-key-id:sandbox-key-secret"
LOCKED_KEY = "locked-key-id:locked-key-secret"
SANDBOX_ADMIN_KEY = "sandbox-admin"

NO_USER: JsonObject = {"detail": "No user found for Key ID and Secret"}
LOCKED: JsonObject = {
    "detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
}
ADMIN_ONLY: JsonObject = {"detail": "This endpoint requires an Admin API key"}


@dataclass(frozen=True)
class Caller:
    """An authenticated key."""

    key: str
    locked: bool
    admin: bool = False


class Keyring:
    """The keys a fake accepts, and which of them are locked."""

    def __init__(self, keys: Iterable[str], locked_keys: Iterable[str], admin_keys: Iterable[str] = ()) -> None:
        self._locked = frozenset(locked_keys)
        self._admin = frozenset(admin_keys)
        self._known = frozenset(keys) | self._locked | self._admin

    def identify(self, authorization: str | None) -> Caller | None:
        """The caller behind an Authorization header value, or None (answered 401)."""
        if authorization is None:
            return None
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "key" or key not in self._known:
            return None
        return Caller(key, key in self._locked, key in self._admin)
