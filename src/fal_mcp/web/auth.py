"""Who may call over HTTP, and whose fal key pays: the four `--auth` modes.

- `token`: the caller sends one of `FAL_MCP_AUTH_TOKENS` as `Authorization: Bearer <token>` (compared in constant
  time); the server's own `FAL_KEY` pays. Each token has a partition of its own (history, tasks, limits) unless
  `FAL_MCP_TOKEN_PARTITION=shared`.
- `fal-key` (bring your own key): the caller sends its fal key as `Authorization: Bearer <key>`, the convention of
  fal's hosted MCP server. The server holds no key; each call pays with the caller's, over the shared pool, and
  what we keep is partitioned by a hash of that key. A bearer is only checked for a key's shape here: whether it
  is a key is fal's to say, and until fal has accepted it (see `logs`) it is not registered anywhere.
- `oauth`: the caller sends an access token from the team's identity provider; `web.oauth` checks it and names the
  user, who gets a partition of their own; the server's own `FAL_KEY` pays.
- `none`: no check, the server's key pays. Only on a loopback bind, unless `--allow-unauthenticated`.

Each mode is one method of `AuthPolicy`, chosen by name in `authenticate`; another mode is another method. The HTTP
gate (`web.app`) authenticates each request and leaves an `Identity` in its ASGI scope; a tool reaches it
through the MCP request context (`server.context.caller_key`), a REST call through its own scope. Reading it per request (not from
a context variable) matters: a stateful MCP session serves every request in a task made by its first one. The
gate also sets the SDK's `scope["user"]`, so the SDK refuses a session id presented with another credential.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from fal_mcp.jobs.state import Identity
from fal_mcp.logs import KEY_CHARACTERS
from fal_mcp.settings import Settings

if TYPE_CHECKING:
    from fal_mcp.web.oauth.resource import ResourceServer

MIN_TOKEN_LENGTH = 16
MIN_KEY_LENGTH, MAX_KEY_LENGTH = 16, 512
_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request was not let in: 401 with a `WWW-Authenticate: Bearer` challenge, or what the mode says (403
    for a token without a needed scope, 503 when the identity provider cannot be asked)."""

    message: str
    invalid: bool
    """True when credentials were sent but are wrong (the challenge then carries `error="invalid_token"`)."""
    status: int = 401
    www_authenticate: str | None = None
    """The challenge, when the mode words its own (oauth); None: the plain one below."""
    retry_after_s: int | None = None
    error_type: str = "unauthorized"

    def challenge(self) -> str | None:
        if self.www_authenticate is not None or self.status != 401:
            return self.www_authenticate
        if not self.invalid:
            return 'Bearer realm="fal-mcp"'
        return f'Bearer realm="fal-mcp", error="invalid_token", error_description="{self.message}"'

    def headers(self) -> dict[str, str]:
        challenge = self.challenge()
        headers = {"WWW-Authenticate": challenge} if challenge is not None else {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, or None."""
    if authorization is None:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


class AuthPolicy:
    """Decides, from a request's headers, who is calling."""

    def __init__(
        self,
        mode: str,
        tokens: tuple[str, ...] = (),
        *,
        token_partitions: bool = True,
        resource_server: ResourceServer | None = None,
    ) -> None:
        self.mode = mode
        self._tokens = tuple(_digest(token) for token in tokens)
        self._token_partitions = token_partitions
        self.resource_server = resource_server
        """With `oauth`: the resource server that checks access tokens (`web.oauth`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthPolicy:
        resource_server = None
        if settings.auth == "oauth":
            from fal_mcp.web.oauth.resource import ResourceServer  # PyJWT and the rest load with this mode only

            resource_server = ResourceServer(settings)
        return cls(
            settings.auth,
            settings.tokens if settings.auth == "token" else (),
            token_partitions=settings.token_partition == "per-token",
            resource_server=resource_server,
        )

    @property
    def required(self) -> bool:
        return self.mode != "none"

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | Denied | None:
        """The caller's identity, a refusal, or None when this server asks for nothing (`none`)."""
        if self.mode == "none":
            return None
        credential = bearer(headers.get("authorization"))
        if self.resource_server is not None:
            return await self.resource_server.authenticate(credential)
        if credential is None:
            what = "your fal key" if self.mode == "fal-key" else "a token"
            return Denied(f"authentication required: send Authorization: Bearer <{what}>", invalid=False)
        if self.mode == "token":
            return self._token(credential)
        return self._fal_key(credential)

    def _token(self, credential: str) -> Identity | Denied:
        given = _digest(credential)
        matched = False
        for token in self._tokens:  # every token is compared, so timing says nothing about which one matched
            matched |= hmac.compare_digest(given, token)
        if not matched:
            return Denied("invalid token", invalid=True)
        partition = hashlib.sha256(b"fal-mcp:token:" + given).hexdigest()[:24] if self._token_partitions else None
        return Identity(principal="token:" + given.hex()[:16], partition=partition)

    def _fal_key(self, credential: str) -> Identity | Denied:
        if not (MIN_KEY_LENGTH <= len(credential) <= MAX_KEY_LENGTH and KEY_CHARACTERS.fullmatch(credential)):
            return Denied("the bearer credential is not a fal key", invalid=True)
        return Identity(principal="fal-key:" + _digest(credential).hex()[:24], key=SecretStr(credential))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_problem(settings: Settings) -> str | None:
    """Why this configuration must not start (said on stderr with exit code 2), or None."""
    mode = settings.auth
    if mode == "oauth":
        from fal_mcp.web.oauth.resource import startup_problem as oauth_problem

        return oauth_problem(settings)
    if mode == "fal-key" and settings.key is not None:
        return (
            "FAL_MCP_AUTH=fal-key: every caller pays with the fal key it sends, so the server must hold none. "
            "Unset FAL_KEY (and FAL_KEY_ID/FAL_KEY_SECRET), or use --auth token to let the server's key pay."
        )
    if settings.transport != "http":
        if mode == "fal-key":
            return "FAL_MCP_AUTH=fal-key needs --transport http: over stdio there is no caller key to pay with."
        return None
    if mode == "token":
        tokens = settings.tokens
        if not tokens:
            return (
                "FAL_MCP_AUTH=token needs FAL_MCP_AUTH_TOKENS: one or more comma-separated bearer tokens, e.g. "
                f"made with {_TOKEN_HINT}"
            )
        if any(len(token) < MIN_TOKEN_LENGTH for token in tokens):
            return (
                f"every token in FAL_MCP_AUTH_TOKENS must be at least {MIN_TOKEN_LENGTH} characters; "
                f"make one with {_TOKEN_HINT}"
            )
    if mode == "none" and not is_loopback(settings.host) and not settings.allow_unauthenticated:
        return (
            f"refusing to serve {settings.host} without authentication: anyone who can reach that address could "
            "spend the fal credits of this server's key. Use --auth token (with FAL_MCP_AUTH_TOKENS), or --auth "
            "fal-key so each caller brings its own fal key, or bind 127.0.0.1. On a network you trust, pass "
            "--allow-unauthenticated."
        )
    return None
