"""The sandbox signs its webhooks as fal does: its own Ed25519 key, published as a JWKS, and fal's four headers.

Reference 8.1: each delivery carries `X-Fal-Webhook-Request-Id`, `X-Fal-Webhook-User-Id`, `X-Fal-Webhook-Timestamp`
(Unix seconds) and `X-Fal-Webhook-Signature`, the hex Ed25519 signature of
f"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(body).hexdigest()}"; the public keys are a JWKS (`kty` OKP, `crv`
Ed25519, `x` the raw key in base64url, a `kid`), which the sandbox serves at `<rest url>/.well-known/jwks.json`.

A key is made when the fake is (`reset()` goes back to it alone); `rotate()` makes the next one and publishes it
beside the earlier ones (as a key rotation at fal would), or, with `publish=False`, signs with a key the JWKS does
not hold (what a receiver sees of a key it cannot know). `sign` also serves tests that need a delivery signed at
another time (a replay).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fal_mcp.sandbox.models.inputs import Json, JsonObject

JWKS_PATH = "/.well-known/jwks.json"
"""Where the sandbox serves its keys, under its REST URL (fal's are at rest.alpha.fal.ai)."""


def user_id_of(key: str) -> str:
    """The user id the sandbox gives the owner of `key` (fal's headers name the account, never the key)."""
    return "sandbox-user-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class WebhookSigner:
    """The fake's signing keys: the one it signs with (`kid`), and those it publishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._published: dict[str, Ed25519PrivateKey] = {}
        self.kid, self._key = self._first = self._make(publish=True)

    def _make(self, *, publish: bool) -> tuple[str, Ed25519PrivateKey]:
        key = Ed25519PrivateKey.generate()
        kid = f"sandbox-webhook-{next(self._numbers)}"
        if publish:
            self._published[kid] = key
        return kid, key

    def rotate(self, *, publish: bool = True) -> str:
        """Sign with a new key from now on, published (newest first) unless `publish` is False; its `kid`."""
        with self._lock:
            self.kid, self._key = self._make(publish=publish)
            return self.kid

    def reset(self) -> None:
        """Back to the first key, the only one published."""
        with self._lock:
            self.kid, self._key = self._first
            self._published = {self.kid: self._key}

    def jwks(self) -> JsonObject:
        """The published keys as a JWKS document, the newest first."""
        with self._lock:
            published = list(self._published.items())[::-1]
        keys: list[Json] = []
        for kid, key in published:
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            keys.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"})
        return {"keys": keys}

    def sign(self, request_id: str, user_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """fal's four headers for a delivery of `body` about `request_id`, signed now (or at `timestamp`)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        with self._lock:
            signature = self._key.sign(message)
        return {
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": user_id,
            "x-fal-webhook-timestamp": stamp,
            "x-fal-webhook-signature": signature.hex(),
        }
