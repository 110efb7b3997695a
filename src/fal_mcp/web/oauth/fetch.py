"""Reading the identity provider's documents: bounded in time and size, and never with anything of ours.

What the resource server reads from the provider is public (its metadata, its key set), so those requests carry no
credential at all: `ProviderClient` is a client of its own, never the fal connection pool's (whose requests carry
the key), with no Authorization header, a cookie jar that keeps nothing, and no redirect followed (a redirect could
lead anywhere). Introspection (RFC 7662) is the one exception: it sends the resource server's own client
credentials, which belong to that provider, to the endpoint the provider's metadata names. Every answer must arrive
within `TIMEOUT_S` and stay under `MAX_BYTES`, so a slow or endless answer costs a bounded wait and bounded memory.
Its connections go the way fal's do (`fal.network.Network`): the environment's proxy (`HTTPS_PROXY`, `NO_PROXY`)
and CA bundle (`SSL_CERT_FILE`) apply, read from the real environment only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import httpx

from fal_mcp import __version__
from fal_mcp.fal.network import Network
from fal_mcp.settings import Settings
from fal_mcp.web.auth import is_loopback

MAX_BYTES = 512 * 1024
"""The largest answer read from the provider (a key set is a few kilobytes)."""
TIMEOUT_S = 5.0
"""The longest one request to the provider may take, from connecting to the last byte."""


class ProviderError(Exception):
    """The provider could not be read: unreachable, too slow, an error status, not a JSON object, too large."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def url_problem(url: str, what: str, *, identifier: bool = False) -> str | None:
    """Why `url` must not be used to reach the provider (one sentence naming `what` it is), or None.

    https only; plain http only to a loopback address (a provider on this machine): keys read over http anywhere
    else could be swapped on the way, and then anyone could sign tokens this server accepts. An `identifier` (an
    issuer, a resource) has no query or fragment either (RFC 8414 §2, RFC 9728 §2).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{what} {url!r} is not a URL"
    if not host or parts.scheme not in ("http", "https"):
        return f"{what} {url!r} is not an https URL"
    if parts.scheme == "http" and not is_loopback(host):
        return f"{what} {url} is plain http: use https (plain http is allowed only to a loopback address)"
    if parts.username is not None:
        return f"{what} {url} must have no user name"
    if identifier and (parts.query or parts.fragment):
        return f"{what} {url} must have no query or fragment"
    return None


class ProviderClient:
    """The one client the resource server reads the provider with, for the life of the server."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else Network(settings),
            timeout=TIMEOUT_S,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": f"fal-mcp/{__version__}"},
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # a cookie the provider sets is dropped
        )

    async def json(
        self, url: str, *, form: Mapping[str, str] | None = None, client_auth: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """GET `url` (POST `form` when given, with `client_auth` as HTTP Basic) and return its JSON object."""
        problem = url_problem(url, "the provider's URL")
        if problem is not None:
            raise ProviderError(problem)
        try:
            with anyio.fail_after(TIMEOUT_S):
                async with self._http.stream(
                    "POST" if form is not None else "GET",
                    url,
                    data=dict(form) if form is not None else None,
                    auth=client_auth,
                ) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BYTES:
                            raise ProviderError(
                                f"{url} answered more than {MAX_BYTES // 1024} KiB", response.status_code
                            )
                    status = response.status_code
        except TimeoutError:
            raise ProviderError(f"{url} did not answer within {TIMEOUT_S:g} s") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{url} could not be reached ({type(exc).__name__})") from None
        if status != 200:
            raise ProviderError(f"{url} answered HTTP {status}", status)
        try:
            document = json.loads(body)
        except ValueError:
            raise ProviderError(f"{url} did not answer JSON", status) from None
        if not isinstance(document, dict):
            raise ProviderError(f"{url} did not answer a JSON object", status)
        return cast(dict[str, Any], document)

    async def aclose(self) -> None:
        await self._http.aclose()
