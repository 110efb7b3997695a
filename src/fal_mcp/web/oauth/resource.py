"""fal-mcp as an OAuth 2.1 resource server (`--auth oauth`): what it publishes, how it refuses, whom it lets in.

- The resource is `<FAL_MCP_PUBLIC_URL>/mcp`. Its Protected Resource Metadata (RFC 9728) is served at
  `/.well-known/oauth-protected-resource/mcp` (the path-suffixed form the spec has clients try first) and at
  `/.well-known/oauth-protected-resource`, to anyone (it is public, like a health check), naming the issuer as its
  one authorization server and `FAL_MCP_OAUTH_SCOPES` as the scopes.
- A request without a token gets `401` with `WWW-Authenticate: Bearer resource_metadata="…"` (and `scope="…"`, which
  tells a client what to ask for); a refused token gets the same with `error="invalid_token"` and one sentence why;
  a valid token without every required scope gets `403` with `error="insufficient_scope"` (a client then asks the
  user for more). When the provider's keys were never read and cannot be now, `503` with `Retry-After`.
- Tokens are checked by `tokens.TokenChecker` for the audience `FAL_MCP_OAUTH_AUDIENCE` (by default the resource).
- Each user (the `FAL_MCP_OAUTH_USER_CLAIM` claim, `sub` by default, of one issuer) is a caller of their own: an
  `Identity` with its own partition (history, tasks, limits, budget) and its own MCP sessions; the server's key pays.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import anyio

from fal_mcp.jobs.state import Identity
from fal_mcp.logs import redactor
from fal_mcp.settings import Settings
from fal_mcp.web.auth import Denied
from fal_mcp.web.oauth.fetch import ProviderClient, url_problem
from fal_mcp.web.oauth.issuer import REFETCH_S, KeySet, ProviderUnavailable
from fal_mcp.web.oauth.tokens import InvalidToken, TokenChecker
from fal_mcp.web.serving import MCP_PATH

logger = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-protected-resource"
_QUOTED_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def resource_of(settings: Settings) -> str:
    """The resource's URL: what clients connect to, and what tokens are issued for by default."""
    return (settings.public_url or "").rstrip("/") + MCP_PATH


def required_scopes(settings: Settings) -> tuple[str, ...]:
    """`FAL_MCP_OAUTH_SCOPES`, separated by commas or spaces."""
    return tuple(dict.fromkeys(settings.oauth_scopes.replace(",", " ").split()))


def startup_problem(settings: Settings) -> str | None:
    """Why `--auth oauth` must not start with this configuration (one sentence), or None."""
    if settings.transport != "http":
        return "FAL_MCP_AUTH=oauth needs --transport http: over stdio there is nobody to sign in."
    needed = (
        (
            "FAL_MCP_OAUTH_ISSUER",
            settings.oauth_issuer,
            "your identity provider's issuer URL (e.g. https://login.example.com/realms/team)",
        ),
        (
            "FAL_MCP_PUBLIC_URL",
            settings.public_url,
            "the https URL clients reach this server at (e.g. "
            "https://mcp.example.com): sign-in names <it>/mcp as the resource tokens are issued for",
        ),
    )
    for variable, value, meaning in needed:
        if not value:
            return f"FAL_MCP_AUTH=oauth needs {variable}, {meaning}."
        problem = url_problem(value, variable, identifier=True)
        if problem is not None:
            return problem + "."
    if settings.oauth_audience is not None and not settings.oauth_audience.strip():
        return "FAL_MCP_OAUTH_AUDIENCE is empty: unset it to use <FAL_MCP_PUBLIC_URL>/mcp, or name the audience."
    if (settings.oauth_client_id is None) != (settings.oauth_client_secret is None):
        return (
            "FAL_MCP_OAUTH_CLIENT_ID and FAL_MCP_OAUTH_CLIENT_SECRET go together (they introspect opaque tokens): "
            "set both, or neither."
        )
    return None


def _quoted(text: str) -> str:
    """`text` safe inside a quoted header parameter."""
    return _QUOTED_UNSAFE.sub("'", text)


class ResourceServer:
    """Everything `--auth oauth` adds to the HTTP app."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oauth_issuer is not None and settings.public_url is not None  # `startup_problem` said so
        self.resource = resource_of(settings)
        parts = urlsplit(self.resource)
        self.metadata_url = f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path}"
        self.metadata_paths = frozenset({METADATA_PATH, METADATA_PATH + parts.path})
        self.audience = (settings.oauth_audience or "").strip() or self.resource
        self.scopes = required_scopes(settings)
        self.provider = ProviderClient(settings)
        self.keys = KeySet(settings.oauth_issuer, fetch=self.provider.json)
        client = None
        if settings.oauth_client_id is not None and settings.oauth_client_secret is not None:
            client = (settings.oauth_client_id, settings.oauth_client_secret)
            redactor.add(settings.oauth_client_secret.get_secret_value())
        self.checker = TokenChecker(
            self.keys,
            audience=self.audience,
            user_claim=settings.oauth_user_claim,
            introspection_client=client,
            provider=self.provider,
        )

    def metadata(self) -> dict[str, Any]:
        """The Protected Resource Metadata document (RFC 9728 §2)."""
        document: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": [self.keys.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "fal-mcp",
        }
        if self.scopes:
            document["scopes_supported"] = list(self.scopes)
        return document

    def challenge(self, error: str | None = None, description: str | None = None) -> str:
        """A `WWW-Authenticate` value: where the metadata is, the scopes to ask for, and the error if any."""
        parts: list[str] = []
        if error is not None:
            parts.append(f'error="{error}"')
            if description:
                parts.append(f'error_description="{_quoted(description)}"')
        parts.append(f'resource_metadata="{self.metadata_url}"')
        if self.scopes:
            parts.append(f'scope="{" ".join(self.scopes)}"')
        return "Bearer " + ", ".join(parts)

    async def authenticate(self, credential: str | None) -> Identity | Denied:
        """Who sends `credential` (an `Authorization: Bearer` token), or why they are not let in."""
        if credential is None:
            return Denied(
                "sign-in required: send Authorization: Bearer <an access token from the identity provider>",
                invalid=False,
                www_authenticate=self.challenge(),
            )
        try:
            grant = await self.checker.check(credential)
        except InvalidToken as exc:
            logger.info("refused an access token: %s", exc)
            return Denied(
                str(exc),
                invalid=True,
                www_authenticate=self.challenge("invalid_token", str(exc)),
                error_type="invalid_token",
            )
        except ProviderUnavailable as exc:
            return Denied(
                f"{exc}; retry shortly",
                invalid=False,
                status=503,
                retry_after_s=exc.retry_after_s,
                error_type="identity_provider_unavailable",
            )
        missing = [scope for scope in self.scopes if scope not in grant.scopes]
        if missing:
            message = f"the access token lacks the scope {' '.join(missing)}: sign in again and grant it"
            return Denied(
                message,
                invalid=True,
                status=403,
                www_authenticate=self.challenge("insufficient_scope", message),
                error_type="insufficient_scope",
            )
        return self.identity(grant.user)

    def identity(self, user: str) -> Identity:
        """The caller a user is: named by a hash of issuer and user (never the user's name), in a partition of its
        own, paid for by the server's key."""
        who = f"{self.keys.issuer}\x00{user}".encode()
        return Identity(
            principal="oauth:" + hashlib.sha256(b"fal-mcp:oauth-principal:" + who).hexdigest()[:24],
            partition=hashlib.sha256(b"fal-mcp:oauth:" + who).hexdigest()[:24],
        )

    async def keep_keys_fresh(self) -> None:
        """Runs for the life of the server: read the keys at start, then again whenever they are due; closes the
        provider's connections when it is cancelled (the server stopping)."""
        try:
            while True:
                if self.keys.due():
                    await self.keys.refresh()
                await anyio.sleep(REFETCH_S)
        finally:
            with anyio.CancelScope(shield=True):
                await self.provider.aclose()
