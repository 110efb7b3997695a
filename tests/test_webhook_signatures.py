"""fal's webhook signatures (`fal.webhooks`) and what a delivery says (`jobs.deliveries.pushed`), without a server.

Tables for the pure parts (the headers, the replay window, the signed message, the body, the JWKS), then the key
cache against a JWKS served by `httpx.MockTransport` (cached, refetched once for an unknown key and no more often
than its pause allows, bounded in time and size, never sent a credential nor redirected), and against the
sandbox's real JWKS route, whose signatures it must accept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fal_mcp.fal import webhooks
from fal_mcp.fal.client import FalClient
from fal_mcp.fal.errors import FalNotFoundError, FalValidationError
from fal_mcp.fal.queue_status import QueueStatus
from fal_mcp.fal.webhooks import (
    KeysUnavailable,
    MalformedDelivery,
    Signed,
    SigningKeys,
    Unverified,
    WebhookBody,
    read_jwks,
    signed_message,
)
from fal_mcp.jobs.deliveries import pushed, pushed_or_followed
from fal_mcp.jobs.state import AppState
from fal_mcp.jobs.waiting import history_state
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.sandbox.webhooks.signing import WebhookSigner, user_id_of
from fal_mcp.settings import Settings
from fal_mcp.store.deliveries import Awaited, Delivery
from fal_mcp.store.opening import open_file_store
from tests.conftest import settings_for

RID = "4d7b8f0e-1c2a-4b3c-9d8e-0f1a2b3c4d5e"
NOW = 1_800_000_000


def jwk(key: Ed25519PrivateKey, kid: str | None = "k1", **extra: Any) -> dict[str, Any]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    entry = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), **extra}
    if kid is not None:
        entry["kid"] = kid
    return entry


def headers_for(
    key: Ed25519PrivateKey, body: bytes, *, rid: str = RID, user: str = "u-1", at: int = NOW
) -> dict[str, str]:
    signature = key.sign(signed_message(rid, user, str(at), body))
    return {
        "x-fal-webhook-request-id": rid,
        "x-fal-webhook-user-id": user,
        "x-fal-webhook-timestamp": str(at),
        "x-fal-webhook-signature": signature.hex(),
    }


# -- the headers, the window, the message ------------------------------------------------------------------------

GOOD = {
    "x-fal-webhook-request-id": RID,
    "x-fal-webhook-user-id": "user-1",
    "x-fal-webhook-timestamp": str(NOW),
    "x-fal-webhook-signature": "ab" * 64,
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({}, None),
        ({"x-fal-webhook-signature": None}, "unsigned: no x-fal-webhook-signature header"),
        ({"x-fal-webhook-request-id": None, "x-fal-webhook-timestamp": ""}, "no x-fal-webhook-request-id, x-fal-web"),
        ({"x-fal-webhook-request-id": "../../etc"}, "not a request id"),
        ({"x-fal-webhook-user-id": "a\nb"}, "not a user id"),
        ({"x-fal-webhook-user-id": "u" * 257}, "not a user id"),
        ({"x-fal-webhook-timestamp": "1.5e9"}, "not Unix seconds"),
        ({"x-fal-webhook-timestamp": "-5"}, "not Unix seconds"),
        ({"x-fal-webhook-signature": "ab" * 63}, "not a hex Ed25519 signature"),
        ({"x-fal-webhook-signature": "zz" * 64}, "not a hex Ed25519 signature"),
    ],
)
def test_the_signature_headers_must_all_be_there_in_their_form(change: dict[str, str | None], says: str | None) -> None:
    headers = {name: value for name, value in {**GOOD, **change}.items() if value is not None}
    if says is None:
        signed = Signed.from_headers(headers)
        assert (signed.request_id, signed.user_id, signed.timestamp) == (RID, "user-1", str(NOW))
        assert signed.signature == bytes.fromhex("ab" * 64)
    else:
        with pytest.raises(Unverified, match=says.replace(".", r"\.")):
            Signed.from_headers(headers)


@pytest.mark.parametrize(("offset", "fresh"), [(0, True), (299, True), (-299, True), (301, False), (-301, False)])
def test_a_delivery_signed_more_than_300_s_away_is_a_replay(offset: int, fresh: bool) -> None:
    signed = Signed.from_headers(GOOD)
    if fresh:
        signed.check_fresh(NOW + offset)
    else:
        with pytest.raises(Unverified, match="outside the 300s window"):
            signed.check_fresh(NOW + offset)


def test_the_signed_message_is_fals_four_lines() -> None:
    body = b'{"request_id":"x"}'
    assert signed_message("r", "u", "17", body) == f"r\nu\n17\n{hashlib.sha256(body).hexdigest()}".encode()


# -- the body, and what a waiting call makes of it ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"request_id": RID, "status": "OK", "payload": {"images": []}}, (True, {"images": []}, None, None)),
        (
            {"request_id": RID, "status": "ERROR", "error": "Invalid status code: 422", "payload": {"detail": []}},
            (False, {"detail": []}, "Invalid status code: 422", None),
        ),
        (
            {"request_id": RID, "status": "OK", "payload": None, "payload_error": "not JSON serializable"},
            (True, None, None, "not JSON serializable"),
        ),
    ],
)
def test_a_webhook_body_is_read_as_fal_sends_it(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    read = WebhookBody.parse(json.dumps(body).encode())
    assert (read.ok, read.payload, read.error, read.payload_error) == expected
    assert read.request_id == RID
    assert WebhookBody.from_outcome(RID, read.outcome()) == read  # kept in the store and read back alike


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"status": "OK"}', b'{"request_id": 5, "status": "OK"}'])
def test_a_body_that_is_not_fals_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDelivery):
        WebhookBody.parse(body)


def delivery(outcome: dict[str, Any]) -> Delivery:
    return Delivery(RID, outcome, time.time())


def test_a_delivered_output_answers_a_waiting_call() -> None:
    got = pushed(delivery({"status": "OK", "payload": {"images": [{"url": "https://v3.fal.media/a.png"}]}}))
    assert got.has_output and got.failure is None and got.output["images"][0]["url"].endswith("a.png")
    assert got.status.status == "COMPLETED" and not got.status.failed and history_state(got.status) == "COMPLETED"


def test_a_delivered_422_fails_the_call_with_the_fields_fal_named() -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
    got = pushed(delivery({"status": "ERROR", "error": "Invalid status code: 422", "payload": {"detail": detail}}))
    assert got.failure is not None and not got.has_output and history_state(got.status) == "FAILED"
    assert isinstance(got.failure.cause, FalValidationError)
    assert [str(field) for field in got.failure.cause.field_errors] == ["prompt: field required"]
    assert got.failure.error == "Invalid status code: 422"


def test_a_delivered_cancellation_is_a_cancelled_request() -> None:
    payload = {"detail": "Request was cancelled", "error_type": "client_cancelled"}
    got = pushed(delivery({"status": "ERROR", "error": "Invalid status code: 499", "payload": payload}))
    assert got.failure is not None and got.failure.error_type == "client_cancelled"
    assert history_state(got.status) == "CANCELLED"


def test_an_output_fal_could_not_deliver_is_fetched_from_fal() -> None:
    got = pushed(delivery({"status": "OK", "payload": None, "payload_error": "not JSON serializable"}))
    assert not got.has_output and got.failure is None and history_state(got.status) == "COMPLETED"


@pytest.mark.anyio
async def test_after_the_grace_period_a_failure_of_following_the_job_is_raised_as_itself() -> None:
    """No delivery came and fal no longer knows the request: the caller gets fal's error, not an exception group."""
    store = open_file_store(None)
    state = AppState(Settings(_env_file=None, webhook_grace_s=0.05), store=store)  # pyright: ignore[reportCallIssue]

    async def following(left_s: float) -> QueueStatus:
        raise FalNotFoundError(404, "Request not found")

    awaited = Awaited(RID, "partition", "fal-ai/flux/schnell", time.time())
    try:
        with anyio.fail_after(5), pytest.raises(FalNotFoundError):
            await pushed_or_followed(state, awaited, 3, following)
        await store.deliveries.record(RID, {"status": "OK", "payload": {"images": []}})

        async def slow(left_s: float) -> QueueStatus:
            await anyio.sleep(left_s)
            return QueueStatus(status="IN_PROGRESS")

        with anyio.fail_after(2):
            got = await pushed_or_followed(state, awaited, 30, slow)  # the delivery ends a follow under way
        assert not isinstance(got, QueueStatus) and got is not None and got.output == {"images": []}
    finally:
        store.close()


# -- the JWKS -----------------------------------------------------------------------------------------------------


def test_a_jwks_gives_its_ed25519_keys_by_kid_and_skips_the_rest() -> None:
    one, two = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    document = {
        "keys": [
            {"kty": "RSA", "n": "abc", "e": "AQAB", "kid": "rsa"},
            jwk(one, "k1"),
            jwk(two, None),
            {**jwk(one, "short"), "x": "AAAA"},
            {**jwk(one, "enc"), "use": "enc"},
            {"kty": "OKP", "crv": "X25519", "x": jwk(one)["x"], "kid": "x25519"},
        ]
    }
    keys = read_jwks(json.dumps(document).encode())
    assert list(keys) == ["k1", "key-2"]
    message = b"m"
    assert webhooks.verified_by(keys, message, two.sign(message)) == "key-2"
    assert webhooks.verified_by(keys, message, Ed25519PrivateKey.generate().sign(message)) is None


@pytest.mark.parametrize("document", [b"<html>", b'{"keys": []}', b'{"keys": [{"kty": "RSA"}]}', b"[]"])
def test_a_jwks_without_an_ed25519_key_is_refused(document: bytes) -> None:
    with pytest.raises(ValueError):
        read_jwks(document)


# -- the key cache ---------------------------------------------------------------------------------------------------


class Jwks:
    """A JWKS host: serves `document`, records every request; `answer` may replace the response."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.document: dict[str, Any] = {"keys": [jwk(key, f"k{n}") for n, key in enumerate(keys, 1)]}
        self.seen: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.answer is not None:
            return self.answer(request)
        return httpx.Response(200, json=self.document)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(jwks: Jwks, clock: Clock | None = None, **options: Any) -> SigningKeys:
    http = httpx.AsyncClient(transport=httpx.MockTransport(jwks.handle), headers={"Authorization": "Key do-not-send"})
    http.cookies.set("session", "do-not-send", domain="keys.example")
    return SigningKeys("https://keys.example/jwks.json", http, clock=clock or Clock(), **options)


def signature(key: Ed25519PrivateKey, message: bytes = b"delivery") -> tuple[bytes, bytes]:
    return message, key.sign(message)


@pytest.mark.anyio
async def test_the_keys_are_fetched_once_then_cached_for_hours_and_sent_no_credential() -> None:
    key = Ed25519PrivateKey.generate()
    jwks, clock = Jwks(key), Clock()
    keys = cache(jwks, clock)
    for _ in range(3):
        assert await keys.verify(*signature(key)) == "k1"
    assert len(jwks.seen) == 1
    sent = jwks.seen[0].headers
    assert "authorization" not in sent and "cookie" not in sent and "do-not-send" not in str(sent.raw)
    clock.now += webhooks.KEYS_TTL_S + 1  # hours later: fetched again
    assert await keys.verify(*signature(key)) == "k1"
    assert len(jwks.seen) == 2


@pytest.mark.anyio
async def test_a_rotated_key_is_fetched_once_and_accepted() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    jwks, clock = Jwks(old), Clock()
    keys = cache(jwks, clock)
    await keys.verify(*signature(old))
    jwks.document = {"keys": [jwk(new, "k2"), jwk(old, "k1")]}
    clock.now += webhooks.REFETCH_AFTER_S
    assert await keys.verify(*signature(new)) == "k2"
    assert len(jwks.seen) == 2


@pytest.mark.anyio
async def test_an_unknown_key_costs_one_refetch_then_none_until_the_pause_is_over() -> None:
    known, unknown = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    jwks, clock = Jwks(known), Clock()
    keys = cache(jwks, clock)
    await keys.verify(*signature(known))
    clock.now += webhooks.REFETCH_AFTER_S
    with pytest.raises(Unverified, match="matches none of fal's published keys"):
        await keys.verify(*signature(unknown))
    assert len(jwks.seen) == 2  # one refetch
    for _ in range(20):  # a flood of forgeries: no fetch more
        with pytest.raises(Unverified):
            await keys.verify(*signature(unknown))
    assert len(jwks.seen) == 2
    message, forged = signature(known)
    with pytest.raises(Unverified):  # a signature of another message
        await keys.verify(message + b"!", forged)


@pytest.mark.anyio
async def test_unfetchable_keys_are_said_and_earlier_keys_still_serve() -> None:
    key = Ed25519PrivateKey.generate()
    jwks, clock = Jwks(key), Clock()
    jwks.answer = lambda request: httpx.Response(503)
    keys = cache(jwks, clock)
    with pytest.raises(KeysUnavailable, match="answered 503"):
        await keys.verify(*signature(key))
    with pytest.raises(KeysUnavailable, match="a moment ago"):  # not asked again at once
        await keys.verify(*signature(key))
    assert len(jwks.seen) == 1
    jwks.answer = None
    clock.now += webhooks.REFETCH_AFTER_S
    await keys.verify(*signature(key))
    jwks.answer = lambda request: httpx.Response(500)
    clock.now += webhooks.KEYS_TTL_S + 1  # expired, and the host fails: the keys held still check
    assert await keys.verify(*signature(key)) == "k1"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (lambda request: httpx.Response(302, headers={"location": "https://elsewhere.example/jwks"}), "answered 302"),
        (lambda request: httpx.Response(200, content=b" " * (webhooks.MAX_JWKS_BYTES + 1)), "more than 65536 bytes"),
        (lambda request: httpx.Response(200, json={"keys": []}), "holds no Ed25519 key"),
    ],
    ids=["redirect", "too-large", "no-keys"],
)
async def test_a_jwks_that_redirects_or_is_too_large_or_empty_is_refused(
    answer: Callable[[httpx.Request], httpx.Response], says: str
) -> None:
    jwks = Jwks()
    jwks.answer = answer
    with pytest.raises(KeysUnavailable, match=says):
        await cache(jwks).verify(*signature(Ed25519PrivateKey.generate()))
    assert [str(request.url) for request in jwks.seen] == ["https://keys.example/jwks.json"]


@pytest.mark.anyio
async def test_a_jwks_host_that_never_answers_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "FETCH_TIMEOUT_S", 0.2)

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        raise AssertionError("not reached")

    keys = SigningKeys("https://keys.example/jwks.json", httpx.AsyncClient(transport=httpx.MockTransport(hang)))
    with anyio.fail_after(5), pytest.raises(KeysUnavailable, match=r"did not answer within 0\.2s"):
        await keys.verify(*signature(Ed25519PrivateKey.generate()))


@pytest.mark.anyio
async def test_the_sandboxs_signatures_check_out_against_its_jwks_through_the_fal_pool(
    sandbox: SandboxServer, fake: FakeFal
) -> None:
    """The sandbox signs as fal does and serves its keys as fal does: fal-mcp's checker accepts them."""
    signer: WebhookSigner = fake.webhook_signer
    body = json.dumps({"request_id": RID, "status": "OK", "payload": {}}).encode()
    headers = signer.sign(RID, user_id_of(SANDBOX_KEY), body)
    async with FalClient.open(settings_for(sandbox)) as fal:
        keys = SigningKeys(sandbox.jwks_url, fal.public_http)
        signed = Signed.from_headers(headers)
        signed.check_fresh(time.time())
        assert await keys.verify(signed.message(body), signed.signature) == signer.kid
        with pytest.raises(Unverified):
            await keys.verify(signed.message(body + b" "), signed.signature)
    jwks_requests = fake.requests_for("jwks")
    assert jwks_requests and "authorization" not in jwks_requests[-1].headers
