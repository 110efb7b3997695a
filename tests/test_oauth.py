"""`--auth oauth`: sign-in through a real OpenID provider nobody here wrote, against spawned `fal-mcp` servers.

The provider is `oidc-provider` (npm) in a Node process (`tests/oidc_provider.py`); tokens come from its own
authorization code flow with PKCE, driven through its login and consent pages over HTTP, or from the MCP SDK's own
OAuth client. The server under test is the real `fal-mcp --transport http`, reached only over loopback HTTP, as a
remote client would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import env_for
from tests.harness import HttpServer, base_env, bearer_client, fal_mcp_command, start_http_server
from tests.oidc_provider import (
    OPAQUE_CLIENT_ID,
    REDIRECT_URI,
    RESOURCE_CLIENT,
    USERS,
    OpenIdProvider,
    SigningKey,
    approve,
    free_port,
)
from tests.tasks_client import CancelTask, GetTask, TaskIdParams, TasksClient
from tests.test_auth import ACCEPT, INITIALIZE, run_cli
from tests.test_tools import structured, text_of

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
OTHER_RESOURCE = "https://other.example/mcp"
SCOPE = "fal:use"


@dataclass
class Deployment:
    """A provider and a fal-mcp that trusts it, both on loopback."""

    provider: OpenIdProvider
    server: HttpServer
    resource: str

    @property
    def base(self) -> str:
        return self.resource.removesuffix("/mcp")

    async def token(self, user: str = "alice", **options: Any) -> str:
        tokens = await self.provider.sign_in(user, resource=options.pop("resource", self.resource), **options)
        return str(tokens["access_token"])


def deploy(sandbox: SandboxServer, workdir: Path, *args: str, **env: str) -> Deployment:
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    provider = OpenIdProvider(workdir, [resource, OTHER_RESOURCE], [SigningKey.new("key-1")])
    try:
        settings = env_for(
            sandbox,
            FAL_MCP_AUTH="oauth",
            FAL_MCP_OAUTH_ISSUER=provider.issuer,
            FAL_MCP_PUBLIC_URL=f"http://127.0.0.1:{port}",
            FAL_MCP_OAUTH_SCOPES=SCOPE,
            **env,
        )
        server = start_http_server(settings, workdir, "--port", str(port), *args)
    except BaseException:
        provider.stop()
        raise
    return Deployment(provider, server, resource)


@pytest.fixture(scope="module")
def deployment(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    client_id, secret = RESOURCE_CLIENT  # so that opaque tokens can be introspected
    running = deploy(
        sandbox,
        tmp_path_factory.mktemp("oauth"),
        "--rest",
        "-vv",
        FAL_MCP_OAUTH_CLIENT_ID=client_id,
        FAL_MCP_OAUTH_CLIENT_SECRET=secret,
    )
    yield running
    running.server.stop()
    running.provider.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge_of(response: httpx.Response) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer k="v", ...` challenge."""
    value = response.headers["www-authenticate"]
    scheme, _, params = value.partition(" ")
    assert scheme == "Bearer"
    found: dict[str, str] = {}
    for part in params.split('", '):
        name, _, quoted = part.partition("=")
        found[name.strip()] = quoted.strip().strip('"')
    return found


# -- the resource server's face: metadata and challenges --------------------------------------------------------


async def test_protected_resource_metadata_names_the_provider_and_the_scopes(deployment: Deployment) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        suffixed = await http.get(f"{deployment.base}/.well-known/oauth-protected-resource/mcp")
        root = await http.get(f"{deployment.base}/.well-known/oauth-protected-resource")
        preflight = await http.options(
            f"{deployment.base}/.well-known/oauth-protected-resource/mcp",
            headers={"Origin": "https://claude.ai", "Access-Control-Request-Method": "GET"},
        )
        described = (await http.get(f"{deployment.base}/openapi.json")).json()["components"]["securitySchemes"]
    for answer in (suffixed, root):
        assert answer.status_code == 200
        assert answer.json() == {
            "resource": deployment.resource,
            "authorization_servers": [deployment.provider.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "fal-mcp",
            "scopes_supported": [SCOPE],
        }
        assert answer.headers["access-control-allow-origin"] == "*"  # browser-based clients discover with it
    assert preflight.status_code == 204
    assert deployment.provider.issuer in described["bearer"]["description"]  # the REST surface says who signs tokens


async def test_no_token_gets_a_challenge_naming_the_metadata_and_scope(deployment: Deployment) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        mcp = await http.post(deployment.resource, json=INITIALIZE, headers=ACCEPT)
        rest = await http.get(f"{deployment.base}/v1/models/fal-ai/flux/requests/abc/status")
        other_scheme = await http.post(deployment.resource, json=INITIALIZE, headers={**ACCEPT, "Authorization": "x"})
    for answer in (mcp, rest, other_scheme):
        assert answer.status_code == 401
        assert challenge_of(answer) == {
            "resource_metadata": f"{deployment.base}/.well-known/oauth-protected-resource/mcp",
            "scope": SCOPE,
        }
        assert "sign-in required" in answer.json()["error"]["message"]


# -- real tokens in, wrong tokens out ---------------------------------------------------------------------------


async def test_a_signed_in_user_runs_models_over_mcp_and_rest_paid_by_the_server_key(
    deployment: Deployment, fake: FakeFal
) -> None:
    token = await deployment.token("alice")
    async with bearer_client(deployment.resource, token) as client:
        ran = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}}))
        pasted = {"endpoint_id": FLUX, "input": {"prompt": f"my token is {token}"}}
        echoed = text_of(await client.call_tool("submit", pasted))
        listed = text_of(await client.call_tool("list-requests", {}))
    assert ran["status"] == "COMPLETED"
    assert "my token is [REDACTED]" in listed  # the access token being served is scrubbed like a key
    for part in token.split("."):
        assert part not in listed and part not in echoed
    async with httpx.AsyncClient(timeout=10) as http:
        submitted = await http.post(
            f"{deployment.base}/v1/models/{FLUX}/requests", json={"prompt": "a fox"}, headers=bearer(token)
        )
    assert submitted.status_code == 200, submitted.text
    to_fal = [r for r in fake.requests if r.route != "cdn"]
    assert to_fal and {r.headers.get("authorization") for r in to_fal} == {f"Key {SANDBOX_KEY}"}
    logs = deployment.server.stderr()
    assert "DEBUG" in logs  # verbose enough that a leak would show
    for part in token.split("."):
        assert part not in logs


async def test_an_opaque_token_is_checked_by_introspection(deployment: Deployment) -> None:
    token = await deployment.token("bob", client_id=OPAQUE_CLIENT_ID)
    assert token.count(".") == 0  # the provider issued an opaque one
    async with bearer_client(deployment.resource, token) as client:
        assert "run-model" in {tool.name for tool in (await client.list_tools()).tools}
    async with httpx.AsyncClient(timeout=10) as http:
        made_up = await http.post(deployment.resource, json=INITIALIZE, headers={**ACCEPT, **bearer("not-a-token")})
    assert made_up.status_code == 401 and challenge_of(made_up)["error"] == "invalid_token"
    assert "not active" in challenge_of(made_up)["error_description"]


def _tampered(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


async def test_wrong_tokens_get_401_invalid_token_and_a_missing_scope_403(
    deployment: Deployment, sandbox: SandboxServer, tmp_path: Path
) -> None:
    provider = deployment.provider
    good = await deployment.token("alice")
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    signer = provider.keys[0]  # the provider's own signing key: these tokens differ from a real one only as named
    stranger = OpenIdProvider(tmp_path, [deployment.resource], [SigningKey.new("stranger-key")])
    try:
        from_another_issuer = (await stranger.sign_in("alice", resource=deployment.resource))["access_token"]
    finally:
        stranger.stop()
    cases = {
        "another audience": (await deployment.token("alice", resource=OTHER_RESOURCE), "another resource"),
        "another issuer": (from_another_issuer, "another provider"),
        "expired": (signer.sign({**claims, "iat": now - 7200, "exp": now - 3600}), "expired"),
        "not yet valid": (signer.sign({**claims, "nbf": now + 3600}), "not valid yet"),
        "tampered": (_tampered(good, sub="bob"), "signature does not verify"),
        "unknown key": (SigningKey.new("made-up").sign(claims), "does not publish"),
        "no user": (signer.sign({k: v for k, v in claims.items() if k != "sub"}), "names no user"),
        "no expiry": (signer.sign({k: v for k, v in claims.items() if k != "exp"}), "no 'exp' claim"),
        "hmac with the public key": (
            jwt.encode(claims, "a shared secret of 32 characters!", algorithm="HS256", headers={"kid": signer.kid}),
            "does not accept",
        ),
        "unsigned": (jwt.encode(claims, None, algorithm="none"), "does not accept"),
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for case, (token, says) in cases.items():
            answer = await http.post(deployment.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(token)})
            assert answer.status_code == 401, case
            challenge = challenge_of(answer)
            assert challenge["error"] == "invalid_token", case
            assert says in challenge["error_description"], (case, challenge)
            assert challenge["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp"), case
        lacking = await deployment.token("bob", scope="openid fal:extra")
        forbidden = await http.post(deployment.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(lacking)})
        rest = await http.get(f"{deployment.base}/v1/models/fal-ai/flux/requests/abc/status", headers=bearer(lacking))
        within_skew = signer.sign({**claims, "exp": now - 5})  # 5 s late: within the clock-skew leeway
        tolerated = await http.post(deployment.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(within_skew)})
    for answer in (forbidden, rest):
        assert answer.status_code == 403
        assert challenge_of(answer)["error"] == "insufficient_scope"
        assert challenge_of(answer)["scope"] == SCOPE
    assert tolerated.status_code == 200


async def test_the_provider_is_asked_without_any_credential(deployment: Deployment) -> None:
    seen = deployment.provider.requests()
    assert seen["counts"].get("/jwks", 0) >= 1
    assert seen["authorization"] == []  # discovery and the key set never got an Authorization header


# -- each user a caller of their own ----------------------------------------------------------------------------


async def test_users_see_and_cancel_only_their_own_requests_and_have_their_own_limits_and_budget(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    fake.time_scale = 1.0  # the video stays queued or running for the whole test
    running = deploy(
        sandbox,
        tmp_path,
        "--rest",
        FAL_MCP_SUBMITS_PER_MINUTE="3",
        FAL_MCP_DAILY_BUDGET_USD="3",  # the video model costs $1.40 a call
        FAL_MCP_STATE_DIR=str(tmp_path / "state"),
    )
    try:
        alice_token, bob_token = await running.token("alice"), await running.token("bob")
        async with (
            bearer_client(running.resource, alice_token) as alice,
            bearer_client(running.resource, bob_token) as bob,
        ):
            secret_prompt = "the private prompt of alice"
            mine = structured(
                await alice.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": secret_prompt}})
            )
            rid = mine["request_id"]
            listed = await bob.call_tool("list-requests", {})
            by_id = await bob.call_tool("get-status", {"request_id": rid})
            status = await bob.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": rid})
            result = await bob.call_tool("get-result", {"endpoint_id": VIDEO, "request_id": rid})
            cancel = await bob.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": rid})
            own = structured(await alice.call_tool("list-requests", {}))
            still = structured(await alice.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": rid}))

            structured(await alice.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "two"}}))
            over_budget = await alice.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "three"}})
            structured(await alice.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "cheap"}}))
            too_many = await alice.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "one more"}})
            bobs = structured(await bob.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "bob's"}}))
        async with httpx.AsyncClient(timeout=10) as http:
            rest_peek = await http.get(
                f"{running.base}/v1/models/{VIDEO}/requests/{rid}/status", headers=bearer(bob_token)
            )
            rest_cancel = await http.put(
                f"{running.base}/v1/models/{VIDEO}/requests/{rid}/cancel", headers=bearer(bob_token)
            )
            rest_own = await http.get(
                f"{running.base}/v1/models/{VIDEO}/requests/{rid}/status", headers=bearer(alice_token)
            )
    finally:
        running.server.stop()
        running.provider.stop()
    assert [r["request_id"] for r in own["requests"]] == [rid]
    assert rid not in text_of(listed) and secret_prompt not in text_of(listed)
    for refused in (by_id, status, result, cancel):
        assert refused.is_error, text_of(refused)
        assert secret_prompt not in text_of(refused)
    assert "no request" in text_of(status) and "of yours" in text_of(status)
    assert not fake.jobs[rid].cancelled and still["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert rest_peek.status_code == 404 and rest_cancel.status_code == 404
    assert rest_own.status_code == 202
    assert over_budget.is_error and "FAL_MCP_DAILY_BUDGET_USD" in text_of(over_budget)  # alice's own budget...
    assert too_many.is_error and "FAL_MCP_SUBMITS_PER_MINUTE" in text_of(too_many)  # ...and limits...
    assert bobs["request_id"]  # ...are not bob's


async def test_a_users_mcp_tasks_are_their_own(deployment: Deployment, fake: FakeFal) -> None:
    alice_tasks = TasksClient()
    alice, bob = await deployment.token("alice"), await deployment.token("bob")
    async with bearer_client(deployment.resource, alice, extensions=[alice_tasks]) as client:
        ran = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}}))
    assert ran["status"] == "COMPLETED" and alice_tasks.created  # it ran as a task
    task = TaskIdParams(taskId=alice_tasks.created[0].task_id)
    async with bearer_client(deployment.resource, bob, extensions=[TasksClient()]) as client:
        with pytest.raises(MCPError, match="not found"):
            await client.session.send_request(GetTask(params=task), TypeAdapter(dict[str, Any]))
        with pytest.raises(MCPError, match="not found"):
            await client.session.send_request(CancelTask(params=task), TypeAdapter(dict[str, Any]))
    async with bearer_client(deployment.resource, await deployment.token("alice"), extensions=[TasksClient()]) as again:
        mine = await again.session.send_request(GetTask(params=task), TypeAdapter(dict[str, Any]))
    assert mine["status"] == "completed"  # the same user, with a new token


async def test_a_session_belongs_to_the_user_who_opened_it(deployment: Deployment) -> None:
    alice, bob = await deployment.token("alice"), await deployment.token("bob")
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(deployment.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(alice)})
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        hijack = await http.post(deployment.resource, json=listing, headers={**ACCEPT, **session, **bearer(bob)})
        again = await deployment.token("alice")  # a new token for the same user: the same caller
        owner = await http.post(deployment.resource, json=listing, headers={**ACCEPT, **session, **bearer(again)})
    assert hijack.status_code == 404
    assert owner.status_code == 200 and "run-model" in owner.text


# -- keys rotate ------------------------------------------------------------------------------------------------


async def test_a_new_signing_key_is_accepted_and_made_up_keys_cost_the_provider_one_fetch(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    running = deploy(sandbox, tmp_path)
    provider = running.provider
    try:
        before = await running.token("alice")
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.post(running.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(before)})).is_success
            new_key = SigningKey.new("key-2")
            provider.restart([new_key, *provider.keys])  # rotation: the new key signs, the old one is still published
            rotated = await running.token("alice")
            assert jwt.get_unverified_header(rotated)["kid"] == "key-2"
            published = time.monotonic()
            while True:  # the first try may fall within 10 s of the server's last read of the keys
                answer = await http.post(running.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(rotated)})
                if answer.is_success or time.monotonic() - published > 30:
                    break
                await anyio.sleep(1)
            accepted_after = time.monotonic() - published
            assert answer.is_success, answer.text
            assert accepted_after < 15  # one refetch period (10 s) and the time to ask

            fetched = provider.jwks_fetches()
            claims = jwt.decode(rotated, options={"verify_signature": False})
            attacker = SigningKey.new("attacker")

            async def bogus(n: int) -> int:
                token = attacker.sign(claims, kid=f"made-up-{n}")
                return (
                    await http.post(running.resource, json=INITIALIZE, headers={**ACCEPT, **bearer(token)})
                ).status_code

            statuses: list[int] = []
            started = time.monotonic()
            while time.monotonic() - started < 3:  # a burst of made-up key ids, 3 s long
                async with anyio.create_task_group() as burst:
                    for n in range(20):
                        burst.start_soon(lambda n=n: _collect(statuses, bogus(n)))
            burst_s = time.monotonic() - started
        assert statuses and set(statuses) == {401}
        assert len(statuses) >= 40
        assert provider.jwks_fetches() - fetched <= 1 + int(burst_s // 10)
    finally:
        running.server.stop()
        provider.stop()


async def _collect(into: list[int], status: Any) -> None:
    into.append(await status)


# -- the MCP SDK's own OAuth client -------------------------------------------------------------------------------


class MemoryTokens:
    """The SDK client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_the_sdk_oauth_client_discovers_registers_and_signs_in(deployment: Deployment, fake: FakeFal) -> None:
    """`mcp.client.auth` end to end, headless: the 401 challenge, the resource metadata, the provider's metadata,
    dynamic client registration, the browser step (login and consent driven over HTTP), PKCE, the token with our
    resource, then the call."""
    storage = MemoryTokens()
    redirect: dict[str, str] = {}

    async def open_browser(url: str) -> None:
        redirect.update(await approve(url, "alice", USERS["alice"]))

    async def callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=redirect["code"], state=redirect.get("state"), iss=redirect.get("iss"))

    metadata = OAuthClientMetadata(
        redirect_uris=[REDIRECT_URI],  # pyright: ignore[reportArgumentType]
        client_name="fal-mcp tests",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    auth = OAuthClientProvider(deployment.resource, metadata, storage, open_browser, callback)
    async with (
        httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(streamable_http_client(deployment.resource, http_client=http)) as client,
    ):
        ran = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}}))
    assert ran["status"] == "COMPLETED"
    assert storage.client is not None and storage.client.client_id not in ("fal-mcp-test", OPAQUE_CLIENT_ID)
    assert storage.tokens is not None
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    assert claims["aud"] == deployment.resource and SCOPE in claims["scope"].split()
    assert claims["sub"] == "alice"


# -- refusing to start --------------------------------------------------------------------------------------------

ISSUER = "https://login.example.com/realms/team"
PUBLIC = "https://mcp.example.com"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FAL_MCP_PUBLIC_URL": PUBLIC}, "needs FAL_MCP_OAUTH_ISSUER"),
        ({"FAL_MCP_OAUTH_ISSUER": ISSUER}, "needs FAL_MCP_PUBLIC_URL"),
        (
            {"FAL_MCP_OAUTH_ISSUER": "http://login.example.com", "FAL_MCP_PUBLIC_URL": PUBLIC},
            "FAL_MCP_OAUTH_ISSUER http://login.example.com is plain http",
        ),
        (
            {"FAL_MCP_OAUTH_ISSUER": f"{ISSUER}?tenant=1", "FAL_MCP_PUBLIC_URL": PUBLIC},
            "must have no query or fragment",
        ),
        (
            {"FAL_MCP_OAUTH_ISSUER": ISSUER, "FAL_MCP_PUBLIC_URL": "http://mcp.example.com"},
            "FAL_MCP_PUBLIC_URL http://mcp.example.com is plain http",
        ),
        (
            {"FAL_MCP_OAUTH_ISSUER": ISSUER, "FAL_MCP_PUBLIC_URL": PUBLIC, "FAL_MCP_OAUTH_CLIENT_SECRET": "s" * 20},
            "go together",
        ),
    ],
    ids=["no-issuer", "no-public-url", "http-issuer", "issuer-with-query", "http-public-url", "secret-alone"],
)
def test_unsafe_oauth_configurations_refuse_to_start(tmp_path: Path, env: dict[str, str], says: str) -> None:
    done = run_cli(tmp_path, "--auth", "oauth", FAL_KEY=SANDBOX_KEY, **env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "streamable HTTP on" not in done.stderr


def test_a_dotenv_cannot_choose_who_signs_tokens(tmp_path: Path) -> None:
    """A cloned repository's `.env` naming its own issuer (or audience, or public URL) is ignored: whoever controls
    the issuer decides who may spend the server's key."""
    (tmp_path / ".env").write_text(
        "FAL_MCP_OAUTH_ISSUER=https://attacker.example.com\nFAL_MCP_OAUTH_AUDIENCE=anything\n"
        "FAL_MCP_PUBLIC_URL=https://attacker.example.com\n"
    )
    done = run_cli(tmp_path, "--auth", "oauth", FAL_KEY=SANDBOX_KEY, FAL_MCP_PUBLIC_URL=PUBLIC)
    assert done.returncode == 2
    assert "ignored FAL_MCP_OAUTH_AUDIENCE, FAL_MCP_OAUTH_ISSUER, FAL_MCP_PUBLIC_URL in .env" in done.stderr
    assert "needs FAL_MCP_OAUTH_ISSUER" in done.stderr


def test_oauth_over_stdio_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [fal_mcp_command(), "--auth", "oauth"],
        capture_output=True,
        text=True,
        env={**base_env(), "FAL_MCP_OAUTH_ISSUER": ISSUER, "FAL_MCP_PUBLIC_URL": PUBLIC},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "needs --transport http" in done.stderr


async def test_an_unreachable_provider_makes_calls_wait_not_fail_open(sandbox: SandboxServer, tmp_path: Path) -> None:
    """A provider that is down at start: not ready, and a token cannot be checked (503, retry), never accepted."""
    port, dead = free_port(), free_port()
    env = env_for(
        sandbox,
        FAL_MCP_AUTH="oauth",
        FAL_MCP_OAUTH_ISSUER=f"http://127.0.0.1:{dead}",
        FAL_MCP_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    server = start_http_server(env, tmp_path, "--port", str(port))
    try:
        token = SigningKey.new("k").sign({"iss": f"http://127.0.0.1:{dead}", "aud": server.url, "sub": "a"})
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{server.base}/readyz")
            answer = await http.post(server.url, json=INITIALIZE, headers={**ACCEPT, **bearer(token)})
    finally:
        server.stop()
    assert ready.status_code == 503 and ready.json()["checks"]["sign_in_keys_loaded"] is False
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
    assert "cannot be reached" in answer.json()["error"]["message"]
    assert "identity provider" in server.stderr()  # said once at start, naming why
