"""The identity provider as the resource server knows it: its metadata and the keys it signs tokens with.

**Discovery.** From the configured issuer, the metadata is read at the RFC 8414 address first
(`/.well-known/oauth-authorization-server`, inserted before the issuer's path), then at OpenID Connect's
(`/.well-known/openid-configuration`, inserted, then appended: Keycloak, Entra ID and Okta serve the appended form).
The document must name the configured issuer (RFC 8414 §3.3; a trailing slash aside), else it is someone else's;
its own spelling of the issuer is then what tokens' `iss` must equal. Its `jwks_uri` must be https (or loopback).

**Keys and rotation.** The key set is loaded at start and read again every `MAX_AGE_S`, so a key the provider
withdraws stops being trusted. A token signed with a key we do not know (a `kid` not in the set: the provider has
just rotated) makes the set be read again at once, but at most once per `REFETCH_S`: a new key is accepted within
seconds of its first token, and a flood of tokens naming made-up keys costs the provider one request per
`REFETCH_S` however large it is. Concurrent requests share one fetch. A provider that cannot be read keeps the keys
we have; before any were ever loaded, callers are told to retry (`ProviderUnavailable`), still at most one attempt
per `REFETCH_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from fal_mcp.web.oauth.fetch import ProviderError, url_problem

logger = logging.getLogger(__name__)

REFETCH_S = 10.0
"""The least time between two reads of the key set (or two tries at discovery)."""
MAX_AGE_S = 300.0
"""How long a key set is trusted before it is read again."""

_KEY_TYPES = {  # algorithm -> (kty, crv); only asymmetric ones: a shared secret would let any holder sign
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), ("RSA", None)),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
ALGORITHMS = frozenset(_KEY_TYPES)
"""The signature algorithms accepted: RSA, RSA-PSS, ECDSA and EdDSA. Never `none`, never HMAC."""

Fetch = Callable[[str], Awaitable[dict[str, Any]]]


class ProviderUnavailable(Exception):
    """The provider's keys have never been read, and cannot be now: nothing can be checked."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownKey(Exception):
    """The token names a key the provider does not publish (or names none, and the choice is not obvious)."""


@dataclass(frozen=True, slots=True)
class IssuerMetadata:
    issuer: str
    """The issuer as the provider spells it: what tokens' `iss` must equal."""
    jwks_uri: str
    introspection_endpoint: str | None


def discovery_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be, in the order the MCP authorization spec has clients try them."""
    parts = urlsplit(issuer.rstrip("/"))
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path
    urls = [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
    ]
    if path:
        urls.append(f"{origin}{path}/.well-known/openid-configuration")
    return urls


async def discover(issuer: str, fetch: Fetch) -> IssuerMetadata:
    """The issuer's metadata, from the first discovery address that has it; `ProviderError` if none does."""
    failures: list[str] = []
    for url in discovery_urls(issuer):
        try:
            document = await fetch(url)
        except ProviderError as exc:
            failures.append(str(exc))
            if exc.status == 404:
                continue  # not published here: try the next form
            raise ProviderError(f"the identity provider's metadata could not be read: {exc}") from None
        named = document.get("issuer")
        if not isinstance(named, str) or named.rstrip("/") != issuer.rstrip("/"):
            raise ProviderError(f"{url} names the issuer {named!r}, not {issuer!r}: it is another provider's metadata")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ProviderError(f"{url} names no jwks_uri, so its tokens' keys cannot be found")
        problem = url_problem(jwks_uri, "its jwks_uri")
        if problem is not None:
            raise ProviderError(f"{url}: {problem}")
        introspection = document.get("introspection_endpoint")
        return IssuerMetadata(named, jwks_uri, introspection if isinstance(introspection, str) else None)
    raise ProviderError(f"the identity provider publishes no metadata ({'; '.join(failures)})")


def _usable(jwk: Mapping[str, Any]) -> bool:
    """A public signing key of a type we accept (encryption keys and shared secrets are skipped)."""
    return jwk.get("use", "sig") == "sig" and jwk.get("kty") in ("RSA", "EC", "OKP")


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """Whether `jwk` can verify a signature made with `alg` (its own `alg`, when it names one, must be that)."""
    kty, crv = _KEY_TYPES[alg]
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    return jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv)


class KeySet:
    """The provider's metadata and signing keys, read when needed and no more often than the rules above."""

    def __init__(self, issuer: str, *, fetch: Fetch, clock: Callable[[], float] = time.monotonic) -> None:
        self.configured_issuer = issuer
        self._fetch = fetch
        self._clock = clock
        self._lock = anyio.Lock()
        self.metadata: IssuerMetadata | None = None
        self._keys: list[dict[str, Any]] | None = None
        self._parsed: dict[tuple[str | None, str], PyJWK] = {}
        self._attempted_at: float | None = None
        self._loaded_at: float | None = None
        self.version = 0
        """Goes up each time the set of keys changes (what was checked with an old key may be checked again)."""
        self._failing = False

    @property
    def issuer(self) -> str:
        """What tokens' `iss` must be: the provider's own spelling once its metadata is read."""
        return self.metadata.issuer if self.metadata is not None else self.configured_issuer

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    def due(self) -> bool:
        """Whether the set should be read again now: never loaded, or older than `MAX_AGE_S` (and not tried in
        the last `REFETCH_S` either way)."""
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < REFETCH_S:
            return False
        return self._loaded_at is None or now - self._loaded_at >= MAX_AGE_S

    async def refresh(self) -> bool:
        """Read the metadata (until it is known) and the key set now, unless another task just did or it was tried
        less than `REFETCH_S` ago. True when a read was made and succeeded."""
        async with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < REFETCH_S:
                return False
            self._attempted_at = now
            try:
                if self.metadata is None:
                    self.metadata = await discover(self.configured_issuer, self._fetch)
                document = await self._fetch(self.metadata.jwks_uri)
            except ProviderError as exc:
                self._failed(str(exc))
                return False
            keys = document.get("keys")
            if not isinstance(keys, list):
                self._failed("its key set has no 'keys' list")
                return False
            if self._failing:
                logger.warning("identity provider %s: its keys could be read again", self.configured_issuer)
                self._failing = False
            usable = [cast(dict[str, Any], key) for key in cast(list[Any], keys) if isinstance(key, dict)]
            usable = [key for key in usable if _usable(key)]
            if usable != self._keys:
                if self._keys is not None:
                    logger.info("identity provider %s: its signing keys changed", self.configured_issuer)
                self._keys = usable
                self._parsed.clear()
                self.version += 1
            self._loaded_at = self._clock()
            return True

    def _failed(self, reason: str) -> None:
        """Say it once per outage (the reads go on every `REFETCH_S`); the keys we have are kept meanwhile."""
        kept = "; keeping the keys read before" if self._keys is not None else ""
        level = logging.DEBUG if self._failing else logging.WARNING
        logger.log(level, "identity provider %s: %s%s", self.configured_issuer, reason, kept)
        self._failing = True

    async def key_for(self, kid: str | None, alg: str) -> PyJWK:
        """The key that verifies a token whose header names `kid` and `alg` (alg one of `ALGORITHMS`).

        Raises `UnknownKey` when the provider publishes no such key (after reading the set again, if the rules let
        us), and `ProviderUnavailable` when no key set was ever read and none can be now.
        """
        found = self._lookup(kid, alg)
        if found is None:
            await self.refresh()  # a no-op within REFETCH_S of the last read: the burst rule
            found = self._lookup(kid, alg)
        if found is not None:
            return found
        if self._keys is None:
            raise self._unavailable()
        raise UnknownKey("the token is signed with a key the identity provider does not publish")

    async def ensure_loaded(self) -> None:
        """Read the metadata and keys if they never were; `ProviderUnavailable` if they cannot be now."""
        if self._keys is None:
            await self.refresh()
            if self._keys is None:
                raise self._unavailable()

    def _unavailable(self) -> ProviderUnavailable:
        waited = self._clock() - (self._attempted_at or 0.0)
        return ProviderUnavailable(
            f"the identity provider {self.configured_issuer} cannot be reached to check the token",
            max(1, round(REFETCH_S - waited)),
        )

    def _lookup(self, kid: str | None, alg: str) -> PyJWK | None:
        if self._keys is None:
            return None
        cached = self._parsed.get((kid, alg))
        if cached is not None:
            return cached
        if kid is not None:
            candidates = [key for key in self._keys if key.get("kid") == kid and _fits(key, alg)]
        else:  # no kid: only when exactly one published key could have signed it
            candidates = [key for key in self._keys if _fits(key, alg)]
        if len(candidates) != 1:
            return None
        try:
            parsed = PyJWK(candidates[0], algorithm=alg)
        except PyJWTError:
            return None
        self._parsed[(kid, alg)] = parsed
        return parsed
