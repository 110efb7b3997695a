"""`/healthz` and `/readyz`: for load balancers and orchestrators, with no auth and nothing secret in them.

- `/healthz` (liveness): 200 while the process serves HTTP at all.
- `/readyz` (readiness): 200 once the lifespan has opened the fal connection pool, while the server has a key to
  pay with (its own, or `--auth fal-key` where callers bring theirs), its store answers (with PostgreSQL, the
  database at `FAL_MCP_DATABASE_URL`, asked with a `SELECT 1`) and it is not shutting down; else 503, with the
  failing check named (and, for the store, why). It never calls fal: a slow fal must not take every replica out of
  rotation. With `--auth oauth` it also waits for the identity provider's keys to have been read once (until
  then no token can be checked); once read they are kept, so a provider outage later does not take replicas out.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from fal_mcp import __version__
from fal_mcp.calls import calls
from fal_mcp.jobs.state import StateSlot
from fal_mcp.settings import Settings
from fal_mcp.web.auth import AuthPolicy

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


async def health(path: str, slot: StateSlot, settings: Settings, policy: AuthPolicy | None = None) -> JSONResponse:
    if path == "/healthz":
        return JSONResponse({"status": "ok", "version": __version__})
    state = slot.state
    store_problem = await state.store.database.ping() if state is not None else None
    checks = {
        "pool_open": state is not None,
        "key_configured": settings.auth == "fal-key" or settings.key is not None,
        "store_reachable": state is not None and store_problem is None,
        "accepting_calls": not calls.draining,
    }
    if policy is not None and policy.resource_server is not None:
        checks["sign_in_keys_loaded"] = policy.resource_server.keys.loaded
    ready = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    if store_problem is not None:
        body["store"] = store_problem
    return JSONResponse(body, 200 if ready else 503)
