"""The ASGI app `fal-mcp --transport http` serves: health, then a gate, then the REST surface or MCP.

    /healthz, /readyz        no checks (an orchestrator's probe sends whatever Host it likes)
    /.well-known/oauth-protected-resource[/mcp]
                             with --auth oauth: the Protected Resource Metadata, public (`web.oauth`)
    /openapi.json            with --rest; public, it describes and holds nothing
    /webhooks/fal            with FAL_MCP_PUBLIC_URL: the gate's Host and Origin check, but no credentials (fal
                             proves itself with its signature, `web.webhooks`)
    everything else          the gate: Host and Origin against the allow-lists (421 / 403), then credentials
                             (401 with a `WWW-Authenticate: Bearer` challenge), then
        /v1/models/...       the REST surface (with --rest)
        /mcp                 streamable HTTP (the SDK, which checks Host and Origin again), after the per-caller
                             session quota (`web.sessions`) for a request that would open a session

Anything but HTTP (a websocket, whatever a server in front might pass on) is refused before it reaches anything.
The gate is plain ASGI, not a `BaseHTTPMiddleware`, so SSE streams pass through untouched. Every refusal has the
REST surface's JSON error body. Everything served for a caller runs with its credential registered for scrubbing
(`redactor.protecting`), so even a key fal has not accepted yet never reaches a log line or an answer. The app
also takes part in shutdown: once the drain begins, an open standalone MCP stream (GET /mcp) is ended cleanly,
so the server can stop as soon as the calls in flight are done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fal_mcp.calls import calls
from fal_mcp.jobs.deliveries import WEBHOOK_PATH
from fal_mcp.jobs.state import IDENTITY_SCOPE_KEY, AppState, Identity, StateSlot
from fal_mcp.logs import redactor
from fal_mcp.server.build import create_server
from fal_mcp.settings import Settings
from fal_mcp.web.auth import AuthPolicy, Denied, bearer
from fal_mcp.web.health import HEALTH_PATHS, health
from fal_mcp.web.openapi import openapi_document
from fal_mcp.web.rest import PREFIX, RestApi, error_response
from fal_mcp.web.serving import MCP_PATH, transport_security
from fal_mcp.web.sessions import SessionQuota
from fal_mcp.web.webhooks import WebhookRoute

logger = logging.getLogger(__name__)


def _matches(value: str, patterns: list[str]) -> bool:
    """The SDK's rule: an exact value, or `name:*` for that name with any port."""
    return any(value == pattern or (pattern.endswith(":*") and value.startswith(pattern[:-1])) for pattern in patterns)


def screen(headers: Mapping[str, str], security: TransportSecuritySettings) -> Response | None:
    """Refuse a request whose Host or Origin is not this server's (DNS rebinding, cross-site requests)."""
    host = headers.get("host")
    if not host or not _matches(host, security.allowed_hosts):
        logger.warning("refused a request for Host %r (add it to FAL_MCP_ALLOWED_HOSTS if it is yours)", host)
        return error_response(
            421, "this server does not answer to that Host (FAL_MCP_ALLOWED_HOSTS)", error_type="invalid_host"
        )
    origin = headers.get("origin")
    if origin and not _matches(origin, security.allowed_origins):
        logger.warning("refused a request from Origin %r (FAL_MCP_ALLOWED_ORIGINS)", origin)
        return error_response(
            403, "requests from that Origin are not allowed (FAL_MCP_ALLOWED_ORIGINS)", error_type="invalid_origin"
        )
    return None


def _authenticated(scope: Scope, identity: Identity) -> Scope:
    """The scope with our identity, plus the SDK's user (its sessions then belong to this principal alone)."""
    token = AccessToken(token=identity.principal, client_id=identity.principal, scopes=[])
    return {**scope, IDENTITY_SCOPE_KEY: identity, "user": AuthenticatedUser(token), "auth": AuthCredentials([])}


class HttpApp:
    """The whole HTTP surface of one server process."""

    def __init__(self, settings: Settings, server: MCPServer[AppState], slot: StateSlot) -> None:
        self.settings = settings
        self.slot = slot
        self.policy = AuthPolicy.from_settings(settings)
        self.security = transport_security(settings)
        self.mcp: ASGIApp = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=settings.stateless,
            json_response=False,  # SSE, so progress reaches the client
            transport_security=self.security,
            host=settings.host,
            max_request_body_size=settings.max_body_bytes,
            max_sessions=settings.max_sessions,
            session_idle_timeout=settings.session_idle_s,
        )
        self.sessions = (
            None
            if settings.stateless
            else SessionQuota(
                total=settings.max_sessions,
                per_caller=settings.max_sessions_per_caller,
                idle_s=settings.session_idle_s,
            )
        )
        for token in settings.tokens if settings.auth == "token" else ():
            redactor.add(token)
        self.rest = (
            RestApi(slot, max_body_bytes=settings.max_body_bytes, sandbox=settings.sandbox) if settings.rest else None
        )
        self._openapi: dict[str, Any] | None = None
        self.webhooks = WebhookRoute(slot, settings) if settings.public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await refuse_other(scope, receive, send)
            return
        path: str = scope["path"]
        if path in HEALTH_PATHS:
            await (await health(path, self.slot, self.settings, self.policy))(scope, receive, send)
            return
        resource_server = self.policy.resource_server
        if resource_server is not None and path in resource_server.metadata_paths:
            await protected_resource_metadata(scope["method"], resource_server.metadata())(scope, receive, send)
            return
        if path == "/openapi.json" and self.rest is not None:
            if self._openapi is None:
                self._openapi = openapi_document(self.settings)
            await JSONResponse(self._openapi)(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = screen(headers, self.security)
        if refusal is None and path == WEBHOOK_PATH and self.webhooks is not None:
            await self.webhooks(scope, receive, send)
            return
        identity: Identity | None = None
        if refusal is None:
            authenticated = await self.policy.authenticate(headers)
            if isinstance(authenticated, Denied):
                refusal = error_response(
                    authenticated.status,
                    authenticated.message,
                    error_type=authenticated.error_type,
                    headers=authenticated.headers(),
                )
            elif authenticated is not None:
                identity = authenticated
                scope = _authenticated(scope, identity)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        # The credential it came with (a key, a token, an access token) is scrubbed from all it is answered.
        with redactor.protecting(bearer(headers.get("authorization")) if identity is not None else None):
            if self.rest is not None and path.startswith(PREFIX):
                await self.rest(scope, receive, send)
            elif self.sessions is not None and path == MCP_PATH:
                await self._counted(scope, receive, send, headers, identity)
            else:
                await self._mcp(scope, receive, send)

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and scope["path"] == MCP_PATH:
            await self._stream(scope, receive, send)
        else:
            await self.mcp(scope, receive, send)

    async def _counted(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, identity: Identity | None
    ) -> None:
        """An MCP request of a stateful server, counted against its caller's sessions (`web.sessions`)."""
        assert self.sessions is not None
        quota = self.sessions
        session_id = headers.get(MCP_SESSION_ID_HEADER)
        owner = self._session_owner(scope, identity)
        answer: dict[str, Any] = {}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["session"] = Headers(raw=message.get("headers", [])).get(MCP_SESSION_ID_HEADER)
                if session_id is None and answer["session"] and answer["status"] < 400:
                    quota.opened(answer["session"], *owner)  # counted from the moment the client holds it
                    quota.begin(answer["session"])
            await send(message)

        if session_id is not None:
            quota.begin(session_id)
            try:
                await self._mcp(scope, receive, watched)
            finally:
                quota.end(session_id)
                status = answer.get("status")
                if status == 404 or (scope["method"] == "DELETE" and status is not None and status < 300):
                    quota.closed(session_id)
            return
        if scope["method"] != "POST" or not _may_open_session(headers):
            await self._mcp(scope, receive, send)
            return
        refused = quota.admit(*owner)
        if refused is not None:
            logger.warning("refused an MCP session: %s", refused.message)
            await refused.response()(scope, receive, send)
            return
        try:
            await self._mcp(scope, receive, watched)
        finally:
            opened = answer.get("session") if answer.get("status", 500) < 400 else None
            if opened is None:
                quota.abandoned(*owner)
            else:
                quota.end(opened)

    def _session_owner(self, scope: Scope, identity: Identity | None) -> tuple[str, str | None]:
        """Whose session this would be, and the client address it also counts against (made-up keys)."""
        client = scope.get("client")
        address = f"address:{client[0] if client else 'unknown'}"
        if identity is None:
            return address, None  # --auth none: the address is all there is
        if identity.key is not None and not redactor.accepted(identity.key.get_secret_value()):
            return identity.principal, address
        return identity.principal, None

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A standalone MCP stream, ended cleanly (an empty last chunk) when the drain begins."""
        state = {"started": False, "ended": False}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await send(message)

        with calls.interruptible_wait() as wait:
            await self.mcp(scope, receive, tracking_send)
        if wait.cancelled_caught and state["started"] and not state["ended"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK's lifespan, beside (with --auth oauth) the task that keeps the provider's keys fresh."""
        resource_server = self.policy.resource_server
        if resource_server is None:
            await self.mcp(scope, self._watch_shutdown(receive), send)
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(resource_server.keep_keys_fresh)
            await self.mcp(scope, self._watch_shutdown(receive), send)
            tasks.cancel_scope.cancel()

    def _watch_shutdown(self, receive: Receive) -> Receive:
        async def watched() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and calls.in_flight:
                logger.warning("grace period over: cancelling %d call(s) still in flight", calls.in_flight)
            return message

        return watched


def _may_open_session(headers: Headers) -> bool:
    """A legacy-era request (no version header, or a handshake version); 2026-07-28 requests have no sessions."""
    version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
    return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS


def protected_resource_metadata(method: str, document: dict[str, Any]) -> Response:
    """RFC 9728 metadata, readable from any origin (a browser-based client discovers sign-in with it)."""
    cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, OPTIONS"}
    if method == "OPTIONS":
        return Response(status_code=204, headers={**cors, "Access-Control-Allow-Headers": "*"})
    if method not in ("GET", "HEAD"):
        return error_response(405, "the resource metadata is read with GET", headers={"Allow": "GET, OPTIONS"})
    return JSONResponse(document, headers={**cors, "Cache-Control": "public, max-age=3600"})


async def refuse_other(scope: Scope, receive: Receive, send: Send) -> None:
    """Anything but HTTP skips no gate: it is refused (a websocket is closed before it opens: 403 on the wire)."""
    logger.warning("refused a %r connection: this server speaks HTTP only", scope["type"])
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})


def create_http_app(settings: Settings) -> HttpApp:
    slot = StateSlot()
    return HttpApp(settings, create_server(settings, slot=slot), slot)
