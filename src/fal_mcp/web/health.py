"""`/healthz` and `/readyz`: for load balancers and orchestrators, with no auth and nothing secret in them.

- `/healthz` (liveness): 200 while the process serves HTTP at all.
- `/readyz` (readiness): 200 once the lifespan has opened the fal connection pool, while the server has a key to
  pay with (its own, or `--auth fal-key` where callers bring theirs) and is not shutting down; else 503, with
  the failing check named. It never calls fal: a slow fal must not take every replica out of rotation. With
  `--auth oauth` it also waits for the identity provider's keys to have been read once (until then no token can be
  checked); once read they are kept, so a provider outage later does not take replicas out either.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from fal_mcp import __version__
from fal_mcp.calls import calls
from fal_mcp.jobs.state import StateSlot
from fal_mcp.settings import Settings
from fal_mcp.web.auth import AuthPolicy

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def health(path: str, slot: StateSlot, settings: Settings, policy: AuthPolicy | None = None) -> JSONResponse:
    if path == "/healthz":
        return JSONResponse({"status": "ok", "version": __version__})
    checks = {
        "pool_open": slot.state is not None,
        "key_configured": settings.auth == "fal-key" or settings.key is not None,
        "accepting_calls": not calls.draining,
    }
    if policy is not None and policy.resource_server is not None:
        checks["sign_in_keys_loaded"] = policy.resource_server.keys.loaded
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)
