"""An access token checked: whose it is and what it may do, or one sentence saying why it is refused.

**JWT access tokens** (RFC 9068; what Keycloak, Okta, Entra ID, Auth0 and `oidc-provider` issue for a resource) are
checked here with PyJWT against the provider's published keys (`issuer.KeySet`): the signature (asymmetric
algorithms only), `iss` (the provider's), `aud` (this resource, RFC 8707), `exp` and `nbf` with `LEEWAY_S` of clock
skew, and the claim naming the user. A token whose `iss` is not our provider's is refused before any key is looked
up, so it cannot make us read the key set again.

**Opaque tokens** are asked about at the provider's introspection endpoint (RFC 7662) when the server has client
credentials for it: the answer must say `active`, name our provider (when it names one) and name this resource in
`aud`. At most `INTROSPECTIONS_AT_ONCE` are asked at a time, so a flood of made-up tokens reaches the provider at
that pace and no faster.

**A token that passed is remembered** (by a hash, never the token itself), up to `CACHE_SIZE` of them, until it
expires (an introspected one for at most `INTROSPECTION_CACHE_S`): a client sends the same token for an hour, and
checking it again on every call would cost a signature verification each time. What was checked with a key set is
forgotten when the set changes, so a key the provider withdraws stops being trusted with it.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import anyio
import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)
from pydantic import SecretStr

from fal_mcp.web.oauth.fetch import ProviderClient, ProviderError
from fal_mcp.web.oauth.issuer import ALGORITHMS, KeySet, ProviderUnavailable, UnknownKey

LEEWAY_S = 30.0
"""Clock skew allowed between the provider and this server, on `exp`, `nbf` and `iat`."""
CACHE_SIZE = 10_000
"""Tokens remembered as valid (the least recently used forgotten first)."""
INTROSPECTION_CACHE_S = 30.0
"""How long an introspection's answer is trusted: a token revoked at the provider is refused after at most this."""
INTROSPECTIONS_AT_ONCE = 8


class InvalidToken(Exception):
    """The token is refused; the message says why, in words a client can show (it never quotes the token)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid access token says: the user it was issued to, its scopes, and when it stops being valid."""

    user: str
    scopes: frozenset[str]
    valid_until: float
    """Unix time after which it must be checked again (its `exp` plus the leeway, or sooner)."""


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """A token's scopes: `scope` (space-separated, RFC 9068 and RFC 7662), or `scp` (Okta's list, Entra ID's
    space-separated string)."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(item for item in cast(list[Any], value) if isinstance(item, str))
    return frozenset()


def _names(value: Any, wanted: str) -> bool:
    """Whether an `aud` value (a string or a list of them) names `wanted`, a trailing slash aside."""
    values = [value] if isinstance(value, str) else cast(list[Any], value) if isinstance(value, list) else []
    return any(isinstance(item, str) and item.rstrip("/") == wanted.rstrip("/") for item in values)


class TokenChecker:
    """Checks access tokens for one resource (`audience`) against one provider (`keys`)."""

    def __init__(
        self,
        keys: KeySet,
        *,
        audience: str,
        user_claim: str = "sub",
        introspection_client: tuple[str, SecretStr] | None = None,
        provider: ProviderClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`provider` reads the introspection endpoint; it is needed with an `introspection_client`."""
        self.keys = keys
        self.audience = audience
        self.user_claim = user_claim
        self._audiences = list(dict.fromkeys((audience, audience.rstrip("/"), audience.rstrip("/") + "/")))
        self._introspection_client = introspection_client
        self._provider = provider
        self._introspecting = anyio.CapacityLimiter(INTROSPECTIONS_AT_ONCE)
        self._clock = clock
        self._valid: OrderedDict[bytes, Grant] = OrderedDict()
        self._keys_version = keys.version

    async def check(self, token: str) -> Grant:
        """The token's grant; raises `InvalidToken` (refuse it) or `ProviderUnavailable` (cannot tell now)."""
        digest = hashlib.sha256(token.encode()).digest()
        if self._keys_version != self.keys.version:
            self._valid.clear()
            self._keys_version = self.keys.version
        known = self._valid.get(digest)
        if known is not None:
            if self._clock() <= known.valid_until:
                self._valid.move_to_end(digest)
                return known
            del self._valid[digest]
        if token.count(".") == 2:
            grant = await self._check_jwt(token)
        elif self._introspection_client is not None:
            grant = await self._introspect(token, *self._introspection_client)
        else:
            raise InvalidToken("the access token is not a JWT, and this server accepts JWT access tokens only")
        self._valid[digest] = grant
        while len(self._valid) > CACHE_SIZE:
            self._valid.popitem(last=False)
        return grant

    def _grant(self, claims: Mapping[str, Any], valid_until: float) -> Grant:
        user = claims.get(self.user_claim)
        if isinstance(user, int | float) and not isinstance(user, bool):
            user = str(user)
        if not isinstance(user, str) or not user:
            raise InvalidToken(f"the access token names no user (it has no '{self.user_claim}' claim)")
        return Grant(user=user, scopes=scopes_of(claims), valid_until=valid_until)

    async def _check_jwt(self, token: str) -> Grant:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except PyJWTError:
            raise InvalidToken("the access token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"the access token is signed with {alg!r}, an algorithm this server does not accept")
        await self.keys.ensure_loaded()
        issuer = self.keys.issuer
        if unverified.get("iss") != issuer:
            raise InvalidToken(f"the access token was issued by another provider (its iss is not {issuer})")
        kid = header.get("kid")
        try:
            key = await self.keys.key_for(kid if isinstance(kid, str) else None, cast(str, alg))
        except UnknownKey as exc:
            raise InvalidToken(str(exc)) from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[cast(str, alg)],
                audience=self._audiences,
                issuer=issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except ExpiredSignatureError:
            raise InvalidToken("the access token has expired: sign in again") from None
        except ImmatureSignatureError:
            raise InvalidToken("the access token is not valid yet (check the clocks)") from None
        except InvalidAudienceError:
            raise InvalidToken(
                f"the access token was issued for another resource (its aud is not {self.audience})"
            ) from None
        except InvalidIssuerError:
            raise InvalidToken(f"the access token was issued by another provider (its iss is not {issuer})") from None
        except InvalidSignatureError:
            raise InvalidToken("the access token's signature does not verify") from None
        except MissingRequiredClaimError as exc:
            raise InvalidToken(f"the access token has no '{exc.claim}' claim") from None
        except PyJWTError:
            raise InvalidToken("the access token is not a valid JWT") from None
        return self._grant(claims, float(claims["exp"]) + LEEWAY_S)

    async def _introspect(self, token: str, client_id: str, secret: SecretStr) -> Grant:
        await self.keys.ensure_loaded()
        metadata = self.keys.metadata
        assert metadata is not None  # read before the keys
        if metadata.introspection_endpoint is None or self._provider is None:
            raise InvalidToken("the access token is not a JWT, and the identity provider offers no introspection")
        try:
            async with self._introspecting:
                answer = await self._provider.json(
                    metadata.introspection_endpoint,
                    form={"token": token, "token_type_hint": "access_token"},
                    client_auth=(client_id, secret.get_secret_value()),
                )
        except ProviderError:
            raise ProviderUnavailable(
                f"the identity provider {metadata.issuer} cannot be reached to check the token", 5
            ) from None
        now = self._clock()
        if answer.get("active") is not True:
            raise InvalidToken("the access token is not active (expired, revoked, or never issued)")
        if answer.get("token_type") not in (None, "Bearer", "bearer", "access_token"):
            raise InvalidToken("the token is not an access token")
        if "iss" in answer and answer["iss"] != metadata.issuer:
            raise InvalidToken(f"the access token was issued by another provider (its iss is not {metadata.issuer})")
        if not _names(answer.get("aud"), self.audience):
            raise InvalidToken(f"the access token was issued for another resource (its aud is not {self.audience})")
        expires = answer.get("exp")
        valid_until = now + INTROSPECTION_CACHE_S
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            if expires + LEEWAY_S < now:
                raise InvalidToken("the access token has expired: sign in again")
            valid_until = min(valid_until, float(expires) + LEEWAY_S)
        return self._grant(answer, valid_until)
