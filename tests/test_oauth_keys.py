"""The resource server's rules about the provider, each checked on its own: where metadata is looked for, when the
key set is read again, what a withdrawn key means for tokens already seen, and how reading the provider is bounded.

The provider here is a table of documents (or, for the bounds, a raw socket on loopback) and the clock is ours, so
"at most once per 10 s" is checked exactly rather than by waiting. The same rules against the real provider are in
`tests/test_oauth.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from pydantic import SecretStr

from fal_mcp.settings import Settings
from fal_mcp.web.oauth import fetch
from fal_mcp.web.oauth.fetch import ProviderClient, ProviderError
from fal_mcp.web.oauth.issuer import MAX_AGE_S, REFETCH_S, KeySet, ProviderUnavailable, discover, discovery_urls
from fal_mcp.web.oauth.tokens import InvalidToken, TokenChecker
from tests.oidc_provider import SigningKey

pytestmark = pytest.mark.anyio

ISSUER = "https://login.example.com/realms/team"
JWKS = "https://login.example.com/realms/team/protocol/openid-connect/certs"
AUDIENCE = "https://mcp.example.com/mcp"


class FakeProvider:
    """Documents by URL (a missing one answers 404), counting what was asked; `down` makes every read fail."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.asked: list[str] = []
        self.down = False
        self.documents: dict[str, dict[str, Any]] = {
            f"{ISSUER}/.well-known/openid-configuration": {"issuer": ISSUER, "jwks_uri": JWKS},
        }
        self.publish(keys)

    def publish(self, keys: list[SigningKey]) -> None:
        self.documents[JWKS] = {"keys": [public(key) for key in keys]}

    async def __call__(self, url: str) -> dict[str, Any]:
        self.asked.append(url)
        if self.down:
            raise ProviderError(f"{url} could not be reached (ConnectError)")
        if url not in self.documents:
            raise ProviderError(f"{url} answered HTTP 404", 404)
        return self.documents[url]

    def jwks_reads(self) -> int:
        return self.asked.count(JWKS)


def public(key: SigningKey) -> dict[str, Any]:
    return {name: value for name, value in key.jwk().items() if name in ("kty", "n", "e", "kid", "alg", "use")}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_for(key: SigningKey, **claims: Any) -> str:
    now = int(time.time())
    return key.sign({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 600, "scope": "fal:use", **claims})


# -- discovery ------------------------------------------------------------------------------------------------


def test_metadata_is_looked_for_where_rfc_8414_then_openid_put_it() -> None:
    assert discovery_urls(ISSUER) == [
        "https://login.example.com/.well-known/oauth-authorization-server/realms/team",
        "https://login.example.com/.well-known/openid-configuration/realms/team",
        f"{ISSUER}/.well-known/openid-configuration",
    ]
    assert discovery_urls("https://tenant.auth0.com/") == [
        "https://tenant.auth0.com/.well-known/oauth-authorization-server",
        "https://tenant.auth0.com/.well-known/openid-configuration",
    ]


async def test_discovery_takes_the_first_document_and_checks_it_is_the_issuers() -> None:
    provider = FakeProvider([])
    metadata = await discover(ISSUER, provider)
    assert metadata.jwks_uri == JWKS and len(provider.asked) == 3  # two 404s, then the appended OpenID form
    rfc8414 = discovery_urls(ISSUER)[0]
    provider.documents[rfc8414] = {"issuer": ISSUER, "jwks_uri": JWKS + "?from=8414"}
    assert (await discover(ISSUER, provider)).jwks_uri == JWKS + "?from=8414"  # RFC 8414 wins when both exist
    provider.documents[rfc8414] = {"issuer": "https://evil.example.com", "jwks_uri": JWKS}
    with pytest.raises(ProviderError, match="another provider's metadata"):
        await discover(ISSUER, provider)
    provider.documents[rfc8414] = {"issuer": ISSUER, "jwks_uri": "http://login.example.com/certs"}
    with pytest.raises(ProviderError, match="plain http"):
        await discover(ISSUER, provider)


# -- the key set: rotation, bursts, outages -------------------------------------------------------------------


async def test_unknown_key_ids_make_at_most_one_read_per_refetch_period() -> None:
    first, second = SigningKey.new("k1"), SigningKey.new("k2")
    provider, clock = FakeProvider([first]), Clock()
    keys = KeySet(ISSUER, fetch=provider, clock=clock)
    checker = TokenChecker(keys, audience=AUDIENCE)
    assert (await checker.check(token_for(first))).user == "alice"
    assert provider.jwks_reads() == 1

    attacker = SigningKey.new("x")
    for n in range(200):  # a burst of made-up key ids within one period: nothing more is read
        with pytest.raises(InvalidToken, match="does not publish"):
            await checker.check(
                attacker.sign({"iss": ISSUER, "aud": AUDIENCE, "sub": "a", "exp": 2**40}, kid=f"made-up-{n}")
            )
    assert provider.jwks_reads() == 1

    provider.publish([second, first])  # the provider rotates
    rotated = token_for(second)
    with pytest.raises(InvalidToken):  # still within the period of the last read
        await checker.check(rotated)
    clock.now += REFETCH_S
    assert (await checker.check(rotated)).user == "alice"  # one period later the new key is read and trusted
    assert provider.jwks_reads() == 2


async def test_a_withdrawn_key_stops_being_trusted_even_for_tokens_already_checked() -> None:
    old, new = SigningKey.new("old"), SigningKey.new("new")
    provider, clock = FakeProvider([old, new]), Clock()
    keys = KeySet(ISSUER, fetch=provider, clock=clock)
    checker = TokenChecker(keys, audience=AUDIENCE)
    token = token_for(old)
    await checker.check(token)
    await checker.check(token)
    assert provider.jwks_reads() == 1  # the second check was remembered
    provider.publish([new])
    clock.now += MAX_AGE_S
    assert keys.due()
    await keys.refresh()  # what the server's background task does every MAX_AGE_S
    with pytest.raises(InvalidToken, match="does not publish"):
        await checker.check(token)


async def test_a_provider_down_before_its_keys_were_read_is_asked_once_per_period() -> None:
    key = SigningKey.new("k1")
    provider, clock = FakeProvider([key]), Clock()
    provider.down = True
    keys = KeySet(ISSUER, fetch=provider, clock=clock)
    checker = TokenChecker(keys, audience=AUDIENCE)
    for _ in range(50):
        with pytest.raises(ProviderUnavailable) as caught:
            await checker.check(token_for(key))
        assert 1 <= caught.value.retry_after_s <= REFETCH_S
    assert len(provider.asked) == 1
    provider.down = False
    clock.now += REFETCH_S
    assert (await checker.check(token_for(key))).user == "alice"
    provider.down = True  # once read, the keys are kept through an outage
    clock.now += MAX_AGE_S
    await keys.refresh()
    assert (await checker.check(token_for(key, jti="another"))).user == "alice"


async def test_scopes_come_from_scope_or_scp_and_the_user_from_the_configured_claim() -> None:
    key = SigningKey.new("k1")
    keys = KeySet(ISSUER, fetch=FakeProvider([key]), clock=Clock())
    checker = TokenChecker(keys, audience=AUDIENCE, user_claim="email")
    okta = await checker.check(token_for(key, scope=None, scp=["fal:use", "openid"], email="a@example.com"))
    entra = await checker.check(token_for(key, scope=None, scp="fal:use profile", email="b@example.com"))
    assert (okta.user, okta.scopes) == ("a@example.com", frozenset({"fal:use", "openid"}))
    assert (entra.user, entra.scopes) == ("b@example.com", frozenset({"fal:use", "profile"}))
    with pytest.raises(InvalidToken, match="no 'email' claim"):
        await checker.check(token_for(key))


async def test_an_opaque_token_without_introspection_is_refused_in_words() -> None:
    checker = TokenChecker(KeySet(ISSUER, fetch=FakeProvider([])), audience=AUDIENCE)
    with pytest.raises(InvalidToken, match="accepts JWT access tokens only"):
        await checker.check("an-opaque-token-0123456789")
    introspecting = TokenChecker(
        KeySet(ISSUER, fetch=FakeProvider([])), audience=AUDIENCE, introspection_client=("rs", SecretStr("s" * 16))
    )
    with pytest.raises(InvalidToken, match="offers no introspection"):  # the metadata names no endpoint
        await introspecting.check("an-opaque-token-0123456789")


# -- reading the provider is bounded ----------------------------------------------------------------------------


async def serve_once(answer: Callable[[bytes], bytes | None], seen: list[bytes]) -> tuple[str, Any]:
    """A loopback socket that records each request and answers with `answer(request)` (None: never answers)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            request = await stream.receive(65536)
            seen.append(request)
            reply = answer(request)
            if reply is None:
                await anyio.sleep(30)
                return
            await stream.send(reply)

    return f"http://127.0.0.1:{port}", (listener, handle)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n", "HTTP 302"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n" + b" " * 2_000_000,
            "more than 512 KiB",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", "not answer a JSON object"),
        (None, "did not answer within 0.5 s"),
    ],
    ids=["redirect-not-followed", "too-large", "not-an-object", "too-slow"],
)
async def test_reading_the_provider_is_bounded_and_carries_no_credential(
    reply: bytes | None, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "TIMEOUT_S", 0.5)
    monkeypatch.setenv("FAL_KEY", "never-sent-anywhere:0123456789abcdef")
    seen: list[bytes] = []
    url, (listener, handle) = await serve_once(lambda _request: reply, seen)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, handle)
        started = time.monotonic()
        provider = ProviderClient(Settings(_env_file=None))  # pyright: ignore[reportCallIssue]
        with pytest.raises(ProviderError, match=says):
            await provider.json(f"{url}/.well-known/openid-configuration")
        await provider.aclose()
        elapsed = time.monotonic() - started
        tasks.cancel_scope.cancel()
    await listener.aclose()
    assert elapsed < 3
    request = seen[0].lower()
    assert b"authorization:" not in request and b"cookie:" not in request and b"never-sent" not in request


async def test_the_provider_is_read_through_the_environments_proxy_like_fal() -> None:
    """The same network rules as fal's calls (`fal.network`): a company proxy is honoured for the provider too."""
    seen: list[bytes] = []
    proxy, (listener, handle) = await serve_once(
        lambda _r: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", seen
    )
    settings = Settings(_env_file=None, http_proxy=proxy)  # pyright: ignore[reportCallIssue]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, handle)
        provider = ProviderClient(settings)
        with pytest.raises(ProviderError, match="HTTP 404"):
            await provider.json("http://127.0.0.1:9/.well-known/openid-configuration")
        await provider.aclose()
        tasks.cancel_scope.cancel()
    await listener.aclose()
    assert seen[0].startswith(b"GET http://127.0.0.1:9/.well-known/openid-configuration HTTP/1.1")


def test_the_public_urls_host_and_origin_are_this_servers() -> None:
    """Behind a proxy clients send the public name as `Host` (and, from a browser, its origin): no need to list it
    again in FAL_MCP_ALLOWED_HOSTS; any other name is still refused (DNS rebinding)."""
    from fal_mcp.web.app import screen
    from fal_mcp.web.serving import transport_security

    security = transport_security(Settings(_env_file=None, public_url="https://mcp.example.com"))  # pyright: ignore[reportCallIssue]
    assert screen({"host": "mcp.example.com"}, security) is None
    assert screen({"host": "mcp.example.com:443", "origin": "https://mcp.example.com"}, security) is None
    refused = screen({"host": "evil.example.com"}, security)
    assert refused is not None and refused.status_code == 421
    cross_site = screen({"host": "mcp.example.com", "origin": "https://evil.example.com"}, security)
    assert cross_site is not None and cross_site.status_code == 403
