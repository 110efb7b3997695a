"""A real OpenID provider for the OAuth tests: `oidc-provider` (npm, pinned in tests/oidc) in a Node process.

The tests make the provider's signing keys (RSA, as most providers use) and hand them to it in a file, so they can
also sign tokens with exactly the provider's key where a real flow cannot produce the case (an expired token, a
token with a missing claim). Everything else comes from the provider itself: discovery, the key set, the login and
consent pages, the authorization code flow with PKCE, resource-bound JWT access tokens, introspection, dynamic
client registration. `sign_in` drives the login and consent forms over HTTP, as a browser would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import terminate

OIDC = Path(__file__).resolve().parent / "oidc"
CLIENT_ID = "fal-mcp-test"
OPAQUE_CLIENT_ID = "fal-mcp-opaque"
RESOURCE_CLIENT = ("fal-mcp-resource", "fal-mcp-resource-secret-0123456789")
REDIRECT_URI = "http://127.0.0.1:9/callback"
USERS = {"alice": "alice-password", "bob": "bob-password"}


def node_or_skip() -> str:
    """The `node` to run the provider with; skips (saying why) where Node or the pinned package is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node is not installed: the OAuth tests run a real OpenID provider on it (bash scripts/test)")
    if not (OIDC / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("the pinned oidc-provider is not installed: npm ci --prefix tests/oidc (bash scripts/test does)")
    return node


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SigningKey:
    """An RSA key with its id: the provider signs with it, and so can a test."""

    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def new(cls, kid: str) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        """The private JWK, as the provider's configuration takes it."""
        key: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private))
        return {**key, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, alg: str = "RS256") -> str:
        headers = {"kid": kid or self.kid, "typ": "at+jwt"}
        return jwt.encode(claims, self.private, algorithm=alg, headers=headers)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def approve(authorization_url: str, user: str, password: str) -> dict[str, str]:
    """Follow an authorization request through the provider's login and consent forms, as a browser would; the
    query of the final redirect to `REDIRECT_URI` (code, state, iss), or the provider's error there."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        response = await browser.get(authorization_url)
        for _ in range(12):
            location = response.headers.get("location")
            if response.is_redirect and location:
                url = urljoin(str(response.url), location)
                if url.startswith(REDIRECT_URI):
                    return dict(parse_qsl(urlsplit(url).query))
                response = await browser.get(url)
            elif response.status_code == 200 and (form := re.search(r'action="([^"]+)"', response.text)):
                fields = {"login": user, "password": password} if form.group(1).endswith("/login") else {}
                response = await browser.post(urljoin(str(response.url), form.group(1)), data=fields)
            else:
                raise RuntimeError(f"sign-in stopped at HTTP {response.status_code}: {response.text[:300]}")
    raise RuntimeError("sign-in did not finish")


class OpenIdProvider:
    """`tests/oidc/provider.mjs` on a loopback port of its own, until `stop()`."""

    def __init__(self, workdir: Path, resources: list[str], keys: list[SigningKey]) -> None:
        self.node = node_or_skip()
        self.workdir = workdir
        self.resources = resources
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start(keys)

    def start(self, keys: list[SigningKey]) -> None:
        """Start it, signing with the first of `keys` and publishing them all (a restart is how keys rotate)."""
        self.keys = keys
        jwks = self.workdir / f"jwks-{time.monotonic_ns()}.json"
        jwks.write_text(json.dumps({"keys": [key.jwk() for key in keys]}))
        env = {
            "PATH": os.environ["PATH"],
            "OIDC_PORT": str(self.port),
            "OIDC_JWKS": str(jwks),
            "OIDC_RESOURCES": ",".join(self.resources),
        }
        with (self.workdir / "oidc-provider.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.node, str(OIDC / "provider.mjs")], cwd=OIDC, env=env, stdout=subprocess.PIPE, stderr=log
            )
        assert self.process.stdout is not None
        announced = self.process.stdout.readline()
        self.process.stdout.close()  # it says nothing more
        if not announced:
            raise RuntimeError(f"the OpenID provider did not start: {(self.workdir / 'oidc-provider.log').read_text()}")
        assert json.loads(announced)["issuer"] == self.issuer

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None

    def restart(self, keys: list[SigningKey]) -> None:
        self.stop()
        self.start(keys)

    def requests(self) -> dict[str, Any]:
        """What the provider was asked since it started: `counts` per path, and `authorization` headers that
        reached its metadata and key set."""
        answer: dict[str, Any] = httpx.get(f"{self.issuer}/test/requests", timeout=5).json()
        return answer

    def jwks_fetches(self) -> int:
        return int(self.requests()["counts"].get("/jwks", 0))

    def authorization_url(self, *, resource: str, scope: str, client_id: str, challenge: str, state: str) -> str:
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "resource": resource,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
        return f"{self.issuer}/auth?{urlencode(query)}"

    async def sign_in(
        self, user: str, *, resource: str, scope: str = "openid fal:use", client_id: str = CLIENT_ID
    ) -> dict[str, Any]:
        """The authorization code flow with PKCE, as `user`: the provider's token response (with `access_token`)."""
        verifier, challenge = pkce()
        state = secrets.token_urlsafe(16)
        url = self.authorization_url(
            resource=resource, scope=scope, client_id=client_id, challenge=challenge, state=state
        )
        redirect = await approve(url, user, USERS[user])
        assert redirect.get("state") == state and "code" in redirect, redirect
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"{self.issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": redirect["code"],
                    "redirect_uri": REDIRECT_URI,
                    "client_id": client_id,
                    "code_verifier": verifier,
                    "resource": resource,
                },
            )
        assert answer.status_code == 200, answer.text
        tokens: dict[str, Any] = answer.json()
        return tokens
