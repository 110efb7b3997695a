"""Who may use a server over HTTP, and whose key pays: every --auth mode, against spawned `fal-mcp` servers.

A "second machine" is simulated on loopback: a client that knows only the URL (and, where required, a token or its
own fal key), exactly as a remote MCP client config would.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import HttpServer, base_env, bearer_client, fal_mcp_command, start_http_server
from tests.test_tools import structured, text_of

pytestmark = pytest.mark.anyio

VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
FLUX = "fal-ai/flux/schnell"
TOKEN = "tok-0123456789abcdef0123"
SECOND_TOKEN = "tok-fedcba9876543210fedc"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture(scope="module")
def token_server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    env = env_for(sandbox, FAL_MCP_AUTH="token", FAL_MCP_AUTH_TOKENS=f"{TOKEN}, {SECOND_TOKEN}")
    server = start_http_server(env, tmp_path_factory.mktemp("token"), "--rest")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def byok_server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """`--auth fal-key`: the server holds no key at all (no FAL_KEY in its environment)."""
    env = env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key")
    server = start_http_server(env, tmp_path_factory.mktemp("byok"), "--rest", "-vv")
    yield server
    server.stop()


# -- token ---------------------------------------------------------------------------------------------------


async def test_token_mode_refuses_missing_and_wrong_tokens(token_server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.post(token_server.url, json=INITIALIZE, headers=ACCEPT)
        wrong = await http.post(token_server.url, json=INITIALIZE, headers={**ACCEPT, **bearer(TOKEN + "x")})
        other_scheme = await http.post(token_server.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": TOKEN})
        rest = await http.get(f"{token_server.base}/v1/models/fal-ai/flux/requests/abc/status", headers=bearer("nope"))
        right = await http.post(token_server.url, json=INITIALIZE, headers={**ACCEPT, **bearer(SECOND_TOKEN)})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="fal-mcp"'
    assert missing.json()["error"]["status"] == 401 and "Bearer" in missing.json()["error"]["message"]
    for refused in (wrong, rest):
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert other_scheme.status_code == 401
    assert right.status_code == 200  # either configured token works


async def test_sdk_client_with_a_wrong_token_cannot_list_tools(token_server: HttpServer) -> None:
    with pytest.raises(BaseException) as caught:  # the SDK raises an MCPError inside an ExceptionGroup
        async with bearer_client(token_server.url, "tok-not-the-right-one-000") as client:
            await client.list_tools()
    assert "Server returned an error response" in repr(caught.value)


async def test_token_mode_serves_calls_paid_by_the_server_key(token_server: HttpServer, fake: FakeFal) -> None:
    async with bearer_client(token_server.url, TOKEN) as client:
        result = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
    assert result["status"] == "COMPLETED"
    to_fal = [r for r in fake.requests if r.route != "cdn"]  # media files are public: previews carry no key
    assert to_fal and {r.headers.get("authorization") for r in to_fal} == {f"Key {SANDBOX_KEY}"}
    assert TOKEN not in token_server.stderr()


async def test_a_session_belongs_to_the_credential_that_opened_it(token_server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(token_server.url, json=INITIALIZE, headers={**ACCEPT, **bearer(TOKEN)})
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        hijack = await http.post(token_server.url, json=listing, headers={**ACCEPT, **session, **bearer(SECOND_TOKEN)})
        owner = await http.post(token_server.url, json=listing, headers={**ACCEPT, **session, **bearer(TOKEN)})
    assert hijack.status_code == 404  # answered exactly as if the session did not exist
    assert owner.status_code == 200 and "run-model" in owner.text


# -- fal-key (bring your own key) ----------------------------------------------------------------------------


def keys_seen(fake: FakeFal, since: int) -> set[str | None]:
    return {recorded.headers.get("authorization") for recorded in fake.requests[since:]}


async def test_two_byok_callers_each_pay_with_their_own_key_and_see_only_their_own_requests(
    byok_server: HttpServer, fake: FakeFal
) -> None:
    fake.time_scale = 1.0  # the video stays queued or running for the whole test
    async with bearer_client(byok_server.url, SANDBOX_KEY) as alice, bearer_client(byok_server.url, OTHER_KEY) as bob:
        mark = len(fake.requests)
        mine = structured(await alice.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "a"}}))
        assert keys_seen(fake, mark) == {f"Key {SANDBOX_KEY}"}
        mark = len(fake.requests)
        theirs = structured(await bob.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "b"}}))
        assert keys_seen(fake, mark) == {f"Key {OTHER_KEY}"}

        mark = len(fake.requests)
        peek = await bob.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": mine["request_id"]})
        assert peek.is_error and "knows no request" in text_of(peek)
        assert keys_seen(fake, mark) == {f"Key {OTHER_KEY}"}
        mark = len(fake.requests)
        peek = await alice.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": theirs["request_id"]})
        assert peek.is_error and "knows no request" in text_of(peek)
        assert keys_seen(fake, mark) == {f"Key {SANDBOX_KEY}"}

        own = structured(await alice.call_tool("get-status", {"endpoint_id": VIDEO, "request_id": mine["request_id"]}))
        assert own["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert fake.jobs[mine["request_id"]].owner_key == SANDBOX_KEY
    assert fake.jobs[theirs["request_id"]].owner_key == OTHER_KEY
    assert not fake.jobs[theirs["request_id"]].cancelled
    logs = byok_server.stderr()
    assert "DEBUG" in logs  # verbose enough that a leak would have shown
    for secret in (*SANDBOX_KEY.split(":"), *OTHER_KEY.split(":")):
        assert secret not in logs


async def test_byok_rest_calls_pay_with_the_callers_key(byok_server: HttpServer, fake: FakeFal) -> None:
    base = f"{byok_server.base}/v1/models"
    async with httpx.AsyncClient(timeout=10) as http:
        submitted = await http.post(f"{base}/{FLUX}/requests", json={"prompt": "x"}, headers=bearer(OTHER_KEY))
        rid = submitted.json()["request_id"]
        stranger = await http.get(f"{base}/fal-ai/flux/requests/{rid}/status", headers=bearer(SANDBOX_KEY))
        owner = await http.get(f"{base}/fal-ai/flux/requests/{rid}/status", headers=bearer(OTHER_KEY))
        anonymous = await http.get(f"{base}/fal-ai/flux/requests/{rid}/status")
    assert submitted.status_code == 200 and fake.jobs[rid].owner_key == OTHER_KEY
    assert stranger.status_code == 404 and stranger.json()["error"]["fal_status"] == 404
    assert owner.status_code in (200, 202)
    assert anonymous.status_code == 401 and "fal key" in anonymous.json()["error"]["message"]
    submits = fake.requests_for("submit")
    assert [r.headers.get("authorization") for r in submits] == [f"Key {OTHER_KEY}"]


async def test_byok_refuses_calls_without_a_key_or_with_a_malformed_one(byok_server: HttpServer, fake: FakeFal) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.post(byok_server.url, json=INITIALIZE, headers=ACCEPT)
        short = await http.post(byok_server.url, json=INITIALIZE, headers={**ACCEPT, **bearer("abc")})
        spaced = await http.post(byok_server.url, json=INITIALIZE, headers={**ACCEPT, **bearer("key with spaces 0123")})
    assert missing.status_code == 401 and "your fal key" in missing.json()["error"]["message"]
    assert short.status_code == 401 and spaced.status_code == 401
    assert not fake.requests  # nothing reached fal


async def test_byok_session_cannot_be_used_with_another_key(byok_server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(byok_server.url, json=INITIALIZE, headers={**ACCEPT, **bearer(SANDBOX_KEY)})
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "submit", "arguments": {"endpoint_id": FLUX, "input": {"prompt": "x"}}},
        }
        hijack = await http.post(byok_server.url, json=call, headers={**ACCEPT, **session, **bearer(OTHER_KEY)})
        stream = await http.get(byok_server.url, headers={**ACCEPT, **session, **bearer(OTHER_KEY)})
    assert hijack.status_code == 404 and stream.status_code == 404


# -- refusing to start ---------------------------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fal_mcp_command(), "--transport", "http", "--port", "0", *args],
        capture_output=True,
        text=True,
        env={**base_env(), **env},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("--host", "0.0.0.0"), {"FAL_KEY": SANDBOX_KEY}, "--allow-unauthenticated"),
        (("--host", "0.0.0.0", "--auth", "token"), {}, "FAL_MCP_AUTH_TOKENS"),
        ((), {"FAL_MCP_AUTH": "token", "FAL_MCP_AUTH_TOKENS": "short"}, "at least 16 characters"),
        (("--auth", "fal-key"), {"FAL_KEY": SANDBOX_KEY}, "Unset FAL_KEY"),
    ],
    ids=["no-auth-on-every-address", "token-without-tokens", "short-token", "byok-with-a-server-key"],
)
def test_unsafe_configurations_refuse_to_start(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    done = run_cli(tmp_path, *args, **env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "streamable HTTP on" not in done.stderr and done.stdout == ""
    assert SANDBOX_KEY not in done.stderr


def test_allow_unauthenticated_serves_every_address_and_says_it_has_no_key(tmp_path: Path) -> None:
    server = start_http_server({}, tmp_path, "--host", "0.0.0.0", "--allow-unauthenticated")
    try:
        assert server.url.startswith("http://0.0.0.0:")
        ready = httpx.get(f"{server.base}/readyz", timeout=10)
        alive = httpx.get(f"{server.base}/healthz", timeout=10)
    finally:
        server.stop()
    assert alive.status_code == 200 and alive.json()["status"] == "ok"
    assert ready.status_code == 503  # no FAL_KEY: not ready, and it says which check failed
    assert ready.json()["checks"] == {
        "pool_open": True,
        "key_configured": False,
        "store_reachable": True,
        "accepting_calls": True,
    }


# -- Host and Origin ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """Bound to every address behind a reverse proxy that passes Host mcp.example.com."""
    env = env_for(
        sandbox,
        FAL_MCP_AUTH="token",
        FAL_MCP_AUTH_TOKENS=TOKEN,
        FAL_MCP_ALLOWED_HOSTS="mcp.example.com",
        FAL_MCP_ALLOWED_ORIGINS="https://app.example.com",
    )
    server = start_http_server(env, tmp_path_factory.mktemp("proxied"), "--host", "0.0.0.0", "--rest")
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 421),
        ({"Host": "evil.example:8000"}, 421),
        ({"Host": "mcp.example.com.evil.example"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "https://app.example.com.evil.example"}, 403),
        ({"Host": "mcp.example.com"}, 200),
        ({"Host": "mcp.example.com:443"}, 200),
        ({"Origin": "https://app.example.com"}, 200),
        ({"Origin": "http://localhost:3000"}, 200),
    ],
)
async def test_host_and_origin_are_checked_on_any_bind(
    proxied_server: HttpServer, headers: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        mcp = await http.post(
            proxied_server.url.replace("0.0.0.0", "127.0.0.1"),
            json=INITIALIZE,
            headers={**ACCEPT, **bearer(TOKEN), **headers},
        )
        rest = await http.get(
            f"{proxied_server.base}/v1/models/fal-ai/flux/requests/not-a-request/status",
            headers={**bearer(TOKEN), **headers},
        )
        health = await http.get(f"{proxied_server.base}/healthz", headers=headers)
    assert mcp.status_code == status
    if status == 200:
        assert rest.status_code == 404  # past the gate: fal knows no such request
    else:
        assert rest.status_code == status and rest.json()["error"]["status"] == status
    assert health.status_code == 200  # probes may send any Host


async def test_host_is_checked_before_credentials(proxied_server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            proxied_server.url.replace("0.0.0.0", "127.0.0.1"),
            json=INITIALIZE,
            headers={**ACCEPT, "Host": "evil.example"},
        )
    assert response.status_code == 421


async def test_byok_caller_with_a_key_fal_rejects_is_told_so(byok_server: HttpServer, fake: FakeFal) -> None:
    wrong = "wrong-key-id:wrong-key-secret-000000"
    async with bearer_client(byok_server.url, wrong) as client:
        refused = await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    async with httpx.AsyncClient(timeout=10) as http:
        rest = await http.post(
            f"{byok_server.base}/v1/models/{FLUX}/requests", json={"prompt": "x"}, headers=bearer(wrong)
        )
    assert refused.is_error and "401" in text_of(refused) and "Bearer credential" in text_of(refused)
    assert rest.status_code == 401 and rest.json()["error"]["fal_status"] == 401  # the caller's own key: its 401
    assert {r.headers.get("authorization") for r in fake.requests} == {f"Key {wrong}"}
    assert "wrong-key-secret" not in byok_server.stderr()


# -- sessions: one caller cannot lock the others out ---------------------------------------------------------


async def open_session(http: httpx.AsyncClient, url: str, credential: str | None) -> httpx.Response:
    headers = {**ACCEPT, **(bearer(credential) if credential else {})}
    return await http.post(url, json=INITIALIZE, headers=headers)


def from_address(address: str) -> httpx.AsyncClient:
    """A client whose connections come from `address` (another loopback address: another machine, to the server)."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=10)


async def test_one_caller_cannot_take_every_session(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    """BYOK, where anyone can make up keys: sessions per key, per address for keys fal has not accepted, a reserve
    for callers that have none, and idle sessions reaped."""
    env = env_for(
        sandbox,
        key=None,
        FAL_MCP_AUTH="fal-key",
        FAL_MCP_MAX_SESSIONS="24",
        FAL_MCP_MAX_SESSIONS_PER_CALLER="4",
        FAL_MCP_SESSION_IDLE_S="2",
    )
    server = start_http_server(env, tmp_path, "--rest")
    try:
        url = server.url
        async with from_address("127.0.0.1") as alice:
            # Alice's key is known to be real: fal accepted it for a call.
            known = await alice.post(
                f"{server.base}/v1/models/{FLUX}/requests", json={"prompt": "x"}, **as_(SANDBOX_KEY)
            )
            assert known.status_code == 200

        statuses: dict[str, list[int]] = {}
        for n in range(2, 9):  # seven attacking machines, each with made-up keys
            async with from_address(f"127.0.0.{n}") as attacker:
                one_key = [await open_session(attacker, url, f"made-up-{n}-id:made-up-secret-000") for _ in range(6)]
                many_keys = [await open_session(attacker, url, f"made-up-{n}-{k}:made-up-secret-000") for k in range(6)]
            statuses[f"127.0.0.{n}"] = [r.status_code for r in one_key + many_keys]
            if n == 2:
                first_session = one_key[0].headers["mcp-session-id"]
            refused = [r for r in one_key + many_keys if r.status_code != 200]
            assert refused and all(r.status_code in (429, 503) for r in refused)
            message = refused[0].json()["error"]["message"]
            assert "FAL_MCP_MAX_SESSIONS" in message and "\n" not in message
            assert refused[0].headers["retry-after"].isdigit()
        # Per key then per address: 4 each at most, and never more than the room left outside the reserve.
        assert all(s.count(200) <= 4 for s in statuses.values()), statuses
        assert sum(s.count(200) for s in statuses.values()) <= 24 - 4, statuses

        async with from_address("127.0.0.1") as alice:
            mine = [await open_session(alice, url, SANDBOX_KEY) for _ in range(2)]
        assert mine[0].status_code == 200  # the reserve kept room for a known caller that had none
        assert mine[1].status_code == 429  # and only for those: the reserve is not anybody's second session
        assert "have none (FAL_MCP_MAX_SESSIONS)" in mine[1].json()["error"]["message"]

        await anyio.sleep(3.5)  # every session idle past FAL_MCP_SESSION_IDLE_S: closed, and room again
        async with from_address("127.0.0.2") as attacker:
            again = await open_session(attacker, url, "made-up-2-id:made-up-secret-000")
            session = {"mcp-session-id": first_session, "mcp-protocol-version": "2025-11-25"}
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            auth = bearer("made-up-2-id:made-up-secret-000")
            gone = await attacker.post(url, json=listing, headers={**ACCEPT, **auth, **session})
        async with from_address("127.0.0.1") as alice:
            mine = [await open_session(alice, url, SANDBOX_KEY) for _ in range(5)]
        assert again.status_code == 200 and gone.status_code == 404
        assert [r.status_code for r in mine] == [200, 200, 200, 200, 429]  # a caller's own cap
        assert "FAL_MCP_MAX_SESSIONS_PER_CALLER" in mine[-1].json()["error"]["message"]
    finally:
        server.stop()


def as_(key: str) -> dict[str, dict[str, str]]:
    return {"headers": bearer(key)}


async def test_without_auth_sessions_count_per_address(sandbox: SandboxServer, tmp_path: Path) -> None:
    """`--auth none` has no identity but the client address: the cap counts per address, and ending a session
    (DELETE) makes room at once."""
    env = env_for(sandbox, FAL_MCP_MAX_SESSIONS_PER_CALLER="3")
    server = start_http_server(env, tmp_path)
    try:
        async with from_address("127.0.0.1") as first, from_address("127.0.0.2") as second:
            greedy = [await open_session(first, server.url, None) for _ in range(4)]
            other = await open_session(second, server.url, None)
            session = {"mcp-session-id": greedy[0].headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            ended = await first.delete(server.url, headers={**ACCEPT, **session})
            after = await open_session(first, server.url, None)
        async with from_address("127.0.0.3") as burst:  # all at once: concurrent requests cannot slip past the cap
            answers: list[int] = []

            async def one() -> None:
                answers.append((await open_session(burst, server.url, None)).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(12):
                    group.start_soon(one)
    finally:
        server.stop()
    assert [r.status_code for r in greedy] == [200, 200, 200, 429] and other.status_code == 200
    assert ended.status_code == 200 and after.status_code == 200
    assert sorted(answers) == [200] * 3 + [429] * 9


# -- tokens: each its own partition, unless shared ------------------------------------------------------------


@pytest.mark.parametrize("partition", ["per-token", "shared"])
async def test_each_token_sees_only_its_own_requests(
    partition: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """Two token holders on one server key: by default neither lists, reads or addresses (by id alone, or with the
    model named, though fal would answer the shared key) the other's requests; `FAL_MCP_TOKEN_PARTITION=shared`
    puts them back in one partition."""
    fake.time_scale = 1.0  # the video stays queued or running
    env = env_for(
        sandbox,
        FAL_MCP_AUTH="token",
        FAL_MCP_AUTH_TOKENS=f"{TOKEN},{SECOND_TOKEN}",
        FAL_MCP_TOKEN_PARTITION=partition,
        FAL_MCP_STATE_DIR=str(tmp_path / "state"),
    )
    server = start_http_server(env, tmp_path)
    try:
        async with bearer_client(server.url, TOKEN) as alice, bearer_client(server.url, SECOND_TOKEN) as bob:
            secret_prompt = "the private prompt of alice"
            mine = structured(
                await alice.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": secret_prompt}})
            )
            rid = mine["request_id"]
            listed = await bob.call_tool("list-requests", {})
            by_id = await bob.call_tool("cancel", {"request_id": rid})  # the history resolves a bare id
            named = await bob.call_tool("cancel", {"endpoint_id": VIDEO, "request_id": rid})  # fal would take it
            own = structured(await alice.call_tool("list-requests", {}))
            try:
                read = str(await bob.read_resource(f"fal://requests/{rid}"))
            except Exception as exc:
                read = f"refused: {exc}"
    finally:
        server.stop()
    assert [r["request_id"] for r in own["requests"]] == [rid]
    if partition == "per-token":
        assert secret_prompt not in text_of(listed) and rid not in text_of(listed)
        assert read.startswith("refused") and secret_prompt not in read
        assert by_id.is_error and not fake.jobs[rid].cancelled
        assert named.is_error and "of yours" in text_of(named)
    else:
        assert secret_prompt in text_of(listed) and secret_prompt in read
        assert not by_id.is_error and fake.jobs[rid].cancelled
        assert not named.is_error


async def test_non_http_connections_are_refused_at_the_gate(sandbox: SandboxServer) -> None:
    """A websocket (or any scope but HTTP) never reaches MCP or REST past the Host and credential checks."""
    from fal_mcp.settings import Settings
    from fal_mcp.web.app import create_http_app

    settings = Settings(
        _env_file=None,  # pyright: ignore[reportCallIssue]
        transport="http",
        auth="token",
        auth_tokens=TOKEN,
        queue_url=sandbox.queue_url,
        run_url=sandbox.run_url,
    )
    app = create_http_app(settings)
    reached: list[str] = []

    async def inner(scope: dict[str, object], receive: object, send: object) -> None:
        reached.append(str(scope["type"]))

    app.mcp = inner  # what would serve the connection if the gate let it through
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/mcp", "headers": [(b"host", b"evil.example")], "query_string": b""}
    await app(scope, receive, send)
    assert reached == []
    assert sent == [{"type": "websocket.close", "code": 1008}]
