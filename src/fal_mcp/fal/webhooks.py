"""fal's webhooks: whether a delivery really comes from fal, and what it says.

A request submitted with `?fal_webhook=<url>` is POSTed to that URL once it ends (reference 3.7 and 8.1), with the
body `{"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload", ["error"], ["payload_error"]}` and
four headers that sign it:

    X-Fal-Webhook-Request-Id   the request's id (the body's `request_id` must be the same)
    X-Fal-Webhook-User-Id      fal's id of the account that submitted it
    X-Fal-Webhook-Timestamp    when fal signed it, Unix seconds (refused more than `TOLERANCE_S` away from now)
    X-Fal-Webhook-Signature    hex Ed25519 signature of f"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(body)}"

The public keys are a JWKS at `FAL_MCP_WEBHOOK_JWKS_URL` (`SigningKeys`): fetched on first use and kept
`KEYS_TTL_S`; a signature none of them verifies makes one refetch (fal rotated its keys), at most one every
`REFETCH_AFTER_S` whatever the number of forged deliveries, so a flood of them cannot turn into a flood of
fetches. A fetch is bounded in time (`FETCH_TIMEOUT_S`) and size (`MAX_JWKS_BYTES`), follows no redirect and carries
no credential (no key, no cookie). The signature is checked with `cryptography`'s Ed25519 (imported on first
use: a start that never receives a webhook never loads it). Nothing here knows where a delivery goes next.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx

from fal_mcp.fal.endpoint import InvalidIdError, check_request_id
from fal_mcp.fal.errors import json_field

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-fal-webhook-request-id"
USER_ID_HEADER = "x-fal-webhook-user-id"
TIMESTAMP_HEADER = "x-fal-webhook-timestamp"
SIGNATURE_HEADER = "x-fal-webhook-signature"

TOLERANCE_S = 300.0
"""A delivery signed further than this from now is a replay (or a clock far off): refused."""
KEYS_TTL_S = 6 * 3600.0
"""How long fetched keys are trusted before they are fetched again."""
REFETCH_AFTER_S = 2.0
"""The least time between two fetches of the keys, however many unknown signatures arrive."""
FETCH_TIMEOUT_S = 10.0
MAX_JWKS_BYTES = 65536
MAX_KEYS = 16
MAX_USER_ID_CHARS = 256
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")
_STATUS_CODE = re.compile(r"\b([1-5][0-9]{2})\b")


class Unverified(Exception):
    """A delivery that does not prove it is fal's (unsigned, badly signed, too old, about another request)."""


class KeysUnavailable(Exception):
    """fal's signing keys could not be fetched, so no delivery can be checked now (fal retries later)."""


class MalformedDelivery(Exception):
    """A signed delivery whose body is not the webhook body fal sends."""


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs: four lines, the last the SHA-256 of the exact body bytes."""
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


@dataclass(frozen=True, slots=True)
class Signed:
    """The signature headers of one delivery, read but not yet checked."""

    request_id: str
    user_id: str
    timestamp: str
    signature: bytes

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Signed:
        """The four headers, each in its form; `Unverified` saying which is missing or malformed."""
        values = {name: headers.get(name) for name in (REQUEST_ID_HEADER, USER_ID_HEADER, TIMESTAMP_HEADER)}
        signature = headers.get(SIGNATURE_HEADER)
        missing = [name for name, value in {**values, SIGNATURE_HEADER: signature}.items() if not value]
        if missing:
            raise Unverified(f"unsigned: no {', '.join(missing)} header")
        request_id, user_id, timestamp = (cast(str, values[name]) for name in values)
        assert signature is not None
        try:
            check_request_id(request_id)
        except InvalidIdError:
            raise Unverified("the request id header is not a request id") from None
        if len(user_id) > MAX_USER_ID_CHARS or not user_id.isprintable():
            raise Unverified("the user id header is not a user id")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise Unverified("the timestamp header is not Unix seconds")
        if not _SIGNATURE.fullmatch(signature):
            raise Unverified("the signature header is not a hex Ed25519 signature")
        return cls(request_id, user_id, timestamp, bytes.fromhex(signature))

    def check_fresh(self, now: float, tolerance_s: float = TOLERANCE_S) -> None:
        """`Unverified` when the delivery was signed more than `tolerance_s` away from `now` (a replay)."""
        offset = now - int(self.timestamp)
        if abs(offset) > tolerance_s:
            raise Unverified(f"signed {offset:.0f}s from now, outside the {tolerance_s:g}s window")

    def message(self, body: bytes) -> bytes:
        return signed_message(self.request_id, self.user_id, self.timestamp, body)


@dataclass(frozen=True, slots=True)
class WebhookBody:
    """What a delivery says about its request."""

    request_id: str
    ok: bool
    payload: Any
    error: str | None = None
    payload_error: str | None = None
    """fal ran the request but could not put its output in the webhook (too large, not JSON): fetch it."""

    @classmethod
    def parse(cls, body: bytes) -> WebhookBody:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise MalformedDelivery("the body is not JSON") from None
        request_id, status = json_field(data, "request_id"), json_field(data, "status")
        if not isinstance(request_id, str) or not isinstance(status, str):
            raise MalformedDelivery("the body has no request_id and status")
        return cls._of(request_id, data)

    @classmethod
    def _of(cls, request_id: str, data: Mapping[str, Any]) -> WebhookBody:
        error, payload_error = data.get("error"), data.get("payload_error")
        return cls(
            request_id=request_id,
            ok=str(data.get("status")).upper() == "OK",
            payload=data.get("payload"),
            error=error if isinstance(error, str) else None,
            payload_error=payload_error if isinstance(payload_error, str) else None,
        )

    def outcome(self) -> dict[str, Any]:
        """What the store keeps of it (the request id is the store's key)."""
        kept: dict[str, Any] = {"status": "OK" if self.ok else "ERROR", "payload": self.payload}
        if self.error is not None:
            kept["error"] = self.error
        if self.payload_error is not None:
            kept["payload_error"] = self.payload_error
        return kept

    @classmethod
    def from_outcome(cls, request_id: str, outcome: Mapping[str, Any]) -> WebhookBody:
        return cls._of(request_id, outcome)

    @property
    def status_code(self) -> int | None:
        """The HTTP status fal's error names ("Invalid status code: 422"), if any."""
        found = _STATUS_CODE.search(self.error or "")
        return int(found.group(1)) if found is not None else None


def read_jwks(data: bytes) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document, by `kid` (a key without one is named by its position); other keys
    (RSA, EC, ...) are skipped. `ValueError` when the document holds none."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ValueError("the JWKS is not JSON") from None
    entries = json_field(document, "keys")
    keys: dict[str, Ed25519PublicKey] = {}
    for position, entry in enumerate(cast(list[Any], entries) if isinstance(entries, list) else []):
        fields = {name: json_field(entry, name) for name in ("kty", "crv", "use", "x", "kid")}
        if (fields["kty"], fields["crv"]) != ("OKP", "Ed25519") or fields["use"] not in (None, "sig"):
            continue
        x = fields["x"]
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) != 32:
            continue
        kid = fields["kid"]
        keys[kid if isinstance(kid, str) and kid else f"key-{position}"] = Ed25519PublicKey.from_public_bytes(raw)
        if len(keys) >= MAX_KEYS:
            break
    if not keys:
        raise ValueError("the JWKS holds no Ed25519 key")
    return keys


def verified_by(keys: Mapping[str, Ed25519PublicKey], message: bytes, signature: bytes) -> str | None:
    """The `kid` of the key that signed `message`, or None (every key is tried: fal's headers name none)."""
    from cryptography.exceptions import InvalidSignature

    for kid, key in keys.items():
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return kid
    return None


class SigningKeys:
    """fal's webhook public keys, fetched from `url` through `http` (a pool that holds no credential), cached."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        ttl_s: float = KEYS_TTL_S,
        refetch_after_s: float = REFETCH_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._ttl_s = ttl_s
        self._refetch_after_s = refetch_after_s
        self._clock = clock
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -math.inf
        self._expires_at = -math.inf
        self._lock: anyio.Lock | None = None
        self.fetches = 0

    async def verify(self, message: bytes, signature: bytes) -> str:
        """The `kid` of the key that signed `message`; `Unverified` when none did (after at most one refetch),
        `KeysUnavailable` when there are no keys to check against."""
        if self._clock() >= self._expires_at:
            await self._refresh(stale_ok=True)
        fetches = self.fetches
        kid = verified_by(self._keys, message, signature)
        if kid is None:  # fal may have rotated its keys: fetch them again, once
            await self._refresh(stale_ok=True, unless_fetched_since=fetches)
            kid = verified_by(self._keys, message, signature)
        if kid is None:
            raise Unverified("the signature matches none of fal's published keys")
        return kid

    async def _refresh(self, *, stale_ok: bool, unless_fetched_since: int | None = None) -> None:
        """Fetch the keys again, once for every caller waiting at the same time, and not sooner than
        `refetch_after_s` after the last fetch; with keys already held a failed fetch keeps them."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if unless_fetched_since is not None and self.fetches != unless_fetched_since:
                return  # another caller fetched them meanwhile
            if self._clock() - self._fetched_at < self._refetch_after_s:
                if not self._keys:
                    raise KeysUnavailable(f"{self.url} could not be fetched a moment ago")
                return
            self._fetched_at = self._clock()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except KeysUnavailable as exc:
                if not (stale_ok and self._keys):
                    raise
                logger.warning("fal webhook keys: %s; checking against the keys fetched before", exc)
                return
            self._keys = keys
            self._expires_at = self._clock() + self._ttl_s
            logger.info("fal webhook keys: fetched %d key(s) from %s (%s)", len(keys), self.url, ", ".join(keys))

    async def _fetch(self) -> dict[str, Ed25519PublicKey]:
        request = self._http.build_request("GET", self.url, headers={"Accept": "application/json"})
        for name in ("authorization", "cookie"):  # whatever the pool would add: the keys' host gets no credential
            request.headers.pop(name, None)
        try:
            with anyio.fail_after(FETCH_TIMEOUT_S):
                response = await self._http.send(request, stream=True, follow_redirects=False)
                try:
                    if response.status_code != 200:
                        raise KeysUnavailable(f"{self.url} answered {response.status_code}")
                    data = bytearray()
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > MAX_JWKS_BYTES:
                            raise KeysUnavailable(f"{self.url} sent more than {MAX_JWKS_BYTES} bytes")
                finally:
                    await response.aclose()
        except TimeoutError:
            raise KeysUnavailable(f"{self.url} did not answer within {FETCH_TIMEOUT_S:g}s") from None
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"{self.url} could not be reached ({type(exc).__name__})") from None
        try:
            return read_jwks(bytes(data))
        except ValueError as exc:
            raise KeysUnavailable(f"{self.url}: {exc}") from None
