"""Where a request to the fake lands: one pure function from (method, path) to a `Target`.

Kept apart from the handlers so the URL grammar of fal (see the reference notes, section 1) is
readable in one place: run and submit address the *full* endpoint id, while status, result and
cancel address only the base app id (owner/alias, or namespace/owner/alias). The platform API
(`/api/v1/models...`: listing, pricing, estimate, billing events), storage (`/rest/storage/...`), the CDN (`/cdn/files/...`), signed upload
URLs (`/signed/<token>`) and the webhook signing keys (`/rest/.well-known/jwks.json`) have fixed paths (reference
sections 6, 7 and 8.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Route = Literal[
    "run",
    "submit",
    "status",
    "stream",
    "result",
    "cancel",
    "cdn",
    "models",
    "pricing",
    "pricing-estimate",
    "billing-events",
    "cdn-token",
    "cdn-upload",
    "upload-initiate",
    "signed-upload",
    "jwks",
    "other",
]
ROUTES: tuple[Route, ...] = get_args(Route)
_FIXED: dict[tuple[str, str], Route] = {
    ("GET", "api/v1/models"): "models",
    ("GET", "api/v1/models/pricing"): "pricing",
    ("POST", "api/v1/models/pricing/estimate"): "pricing-estimate",
    ("GET", "api/v1/models/billing-events"): "billing-events",
    ("POST", "rest/storage/auth/token"): "cdn-token",
    ("POST", "rest/storage/upload/initiate"): "upload-initiate",
    ("POST", "cdn/files/upload"): "cdn-upload",
    ("GET", "rest/.well-known/jwks.json"): "jwks",
}

# Namespaces whose ids keep three segments in the base app id (fal_client `APP_NAMESPACES`).
NAMESPACES = ("workflows", "comfy")


@dataclass(frozen=True)
class Target:
    """What a request addresses, as far as the URL alone can tell."""

    route: Route
    endpoint_id: str | None = None
    """Full id for run/submit, base app id for status/stream/result/cancel."""
    request_id: str | None = None
    file_name: str | None = None
    """Only for `cdn` (the file's name) and `signed-upload` (the URL's token)."""


def base_app_id(endpoint_id: str) -> str:
    """Strip the endpoint subpath: keep 2 segments, or 3 for `workflows/` and `comfy/` ids."""
    parts = endpoint_id.split("/")
    keep = 3 if parts[0] in NAMESPACES else 2
    return "/".join(parts[:keep])


def classify(method: str, path: str) -> Target:
    """Map a request line onto a route; anything not recognised is `other` (answered 404)."""
    fixed = _FIXED.get((method, path.strip("/")))
    if fixed is not None:
        return Target(fixed)
    segments = path.strip("/").split("/")
    prefix, rest = segments[0], segments[1:]
    if not rest or "" in rest:
        return Target("other")
    if prefix == "run" and method == "POST":
        return Target("run", endpoint_id="/".join(rest))
    if prefix == "queue":
        queued = _classify_request_path(method, rest)
        if queued is not None:
            return queued
        if method == "POST":
            return Target("submit", endpoint_id="/".join(rest))
    if prefix == "cdn" and method == "GET" and len(rest) == 2 and rest[0] == "files":
        return Target("cdn", file_name=rest[1])
    if prefix == "signed" and method == "PUT" and len(rest) == 1:
        return Target("signed-upload", file_name=rest[0])
    return Target("other")


def _classify_request_path(method: str, rest: list[str]) -> Target | None:
    """`{base}/requests/{rid}[/status[/stream]|/cancel]`, or None when the path is not of that form."""
    if "requests" not in rest[2:]:
        return None
    at = rest.index("requests", 2)
    base, tail = "/".join(rest[:at]), rest[at + 1 :]
    if not tail:
        return None
    rid, suffix = tail[0], tail[1:]
    shapes: dict[tuple[str, tuple[str, ...]], Route] = {
        ("GET", ()): "result",
        ("GET", ("status",)): "status",
        ("GET", ("status", "stream")): "stream",
        ("PUT", ("cancel",)): "cancel",
    }
    route = shapes.get((method, tuple(suffix)))
    if route is None:
        return None
    return Target(route, endpoint_id=base, request_id=rid)
