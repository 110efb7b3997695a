"""Two real `fal-mcp --transport http --stateless` replicas sharing one PostgreSQL database, the sandbox as fal.

What a team behind a round-robin balancer relies on: a request sent through one replica is listed and fetched
(by its id alone) on the other; a submits-per-minute limit holds for both together; an MCP task made on one is read
and cancelled on the other, and its fal job with it; a replica killed mid-wait loses nothing the other cannot give
back; and without the database the server says which setting to check, then recovers.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent
from pydantic import TypeAdapter

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.settings import Settings
from tests.conftest import OTHER_KEY, env_for
from tests.harness import HttpServer, bearer_client, start_http_server
from tests.postgres import Cluster, Relay
from tests.tasks_client import TASKS, CancelTask, CreatedTask, GetTask, TaskIdParams
from tests.test_auth import run_cli
from tests.test_tools import error_text, structured
from tests.test_webhooks import delivered, fal_requests, free_port, outcome, post

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
SECRET = "a-state-secret-of-at-least-32-characters-0123456789"


def replica_env(sandbox: SandboxServer, database_url: str, **extra: str) -> dict[str, str]:
    return env_for(
        sandbox,
        key=None,
        FAL_MCP_AUTH="fal-key",
        FAL_MCP_DATABASE_URL=database_url,
        FAL_MCP_STATE_SECRET=SECRET,
        **extra,
    )


def replica(env: dict[str, str], home: Path, *args: str) -> HttpServer:
    """A replica as a container runs it: its own folder (and state directory), only the database shared."""
    home = home / f"replica-{len(list(home.glob('replica-*')))}"
    home.mkdir()
    return start_http_server({**env, "FAL_MCP_STATE_DIR": str(home / "state")}, home, "--stateless", "--rest", *args)


@pytest.fixture(scope="module")
def pair(
    sandbox: SandboxServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HttpServer, HttpServer]]:
    env = replica_env(sandbox, database_url)
    a = replica(env, tmp_path_factory.mktemp("a"))
    b = replica(env, tmp_path_factory.mktemp("b"))
    yield a, b
    a.stop()
    b.stop()


async def test_a_request_sent_through_one_replica_is_listed_and_fetched_on_the_other(
    pair: tuple[HttpServer, HttpServer], fake: FakeFal
) -> None:
    a, b = pair
    async with bearer_client(a.url, SANDBOX_KEY) as on_a:
        sent = structured(await on_a.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "shared"}}))
    async with bearer_client(b.url, SANDBOX_KEY) as on_b:
        listed = structured(await on_b.call_tool("list-requests", {"limit": 5}))
        result = structured(await on_b.call_tool("get-result", {"request_id": sent["request_id"], "wait_s": 20}))
    assert listed["history"] == "on" and listed["requests"][0]["request_id"] == sent["request_id"]
    assert listed["requests"][0]["input_summary"] == {"prompt": "shared"}
    assert result["status"] == "COMPLETED" and result["endpoint_id"] == FLUX and result["output"]["images"]
    async with bearer_client(b.url, OTHER_KEY) as stranger:  # another key shares the database, not its rows
        assert structured(await stranger.call_tool("list-requests", {}))["requests"] == []


async def test_a_submits_per_minute_limit_holds_for_both_replicas_together(
    sandbox: SandboxServer, fake: FakeFal, cluster: Cluster, tmp_path: Path
) -> None:
    env = replica_env(sandbox, cluster.url(cluster.create_database()), FAL_MCP_SUBMITS_PER_MINUTE="3")
    a, b = replica(env, tmp_path), replica(env, tmp_path)
    try:
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=20, headers={"Authorization": f"Bearer {OTHER_KEY}"}) as http:
            for n in range(6):  # round robin: a, b, a, b, ...
                server = (a, b)[n % 2]
                answers.append(await http.post(f"{server.base}/v1/models/{FLUX}/requests", json={"prompt": str(n)}))
    finally:
        a.stop()
        b.stop()
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429, 429]
    assert "at most 3 requests per minute" in answers[3].json()["error"]["message"]
    assert len(fake.requests_for("submit")) == 3


class TaskHandles(ClientExtension):
    """A tasks-capable client that keeps the task handle instead of polling it (to poll it elsewhere)."""

    identifier = TASKS

    def __init__(self) -> None:
        self.created: list[CreatedTask] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._keep)]

    async def _keep(self, created: CreatedTask, cctx: ClaimContext) -> CallToolResult:
        self.created.append(created)
        # marked an error only so the client skips checking it against run-model's output schema
        return CallToolResult(content=[TextContent(type="text", text=created.task_id)], is_error=True)


async def task_call(client: Client, method: type[GetTask] | type[CancelTask], task_id: str) -> dict[str, Any]:
    return await client.session.send_request(method(params=TaskIdParams(taskId=task_id)), TypeAdapter(dict[str, Any]))


async def test_a_task_made_on_one_replica_is_read_and_cancelled_on_the_other(
    pair: tuple[HttpServer, HttpServer], fake: FakeFal
) -> None:
    a, b = pair
    fake.time_scale = 1.0  # the video stays queued and running for the whole test
    handles = TaskHandles()
    async with bearer_client(a.url, SANDBOX_KEY, extensions=[handles]) as on_a:
        await on_a.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})
    (created,) = handles.created
    async with bearer_client(b.url, SANDBOX_KEY, extensions=[TaskHandles()]) as on_b:
        seen = await task_call(on_b, GetTask, created.task_id)
        assert seen["status"] == "working" and seen["taskId"] == created.task_id
        async with bearer_client(b.url, OTHER_KEY, extensions=[TaskHandles()]) as stranger:
            with pytest.raises(Exception, match="not found"):
                await task_call(stranger, GetTask, created.task_id)
        await task_call(on_b, CancelTask, created.task_id)
        with anyio.fail_after(20):
            while (seen := await task_call(on_b, GetTask, created.task_id))["status"] == "working":
                await anyio.sleep(0.1)
    assert seen["status"] == "cancelled"
    (rid,) = fake.jobs
    assert fake.jobs[rid].cancelled  # the replica that ran it told fal


async def test_a_replica_killed_mid_wait_loses_nothing(
    sandbox: SandboxServer, fake: FakeFal, database_url: str, pair: tuple[HttpServer, HttpServer], tmp_path: Path
) -> None:
    """A is killed while its run-model waits: the request is in the shared history, and B gives its result; a task
    A was running is reported failed on B, naming its request so the caller can carry on."""
    _, b = pair
    fake.time_scale = 0.3  # the video takes a few seconds
    doomed = replica(replica_env(sandbox, database_url), tmp_path)
    handles = TaskHandles()
    try:
        async with bearer_client(doomed.url, SANDBOX_KEY, extensions=[handles]) as tasked:
            await tasked.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "as a task"}})

        async def waiting_run() -> None:
            try:
                async with bearer_client(doomed.url, SANDBOX_KEY) as on_a:
                    await on_a.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "waiting"}})
            except Exception:
                pass  # its server dies under it

        async with anyio.create_task_group() as group:
            group.start_soon(waiting_run)
            with anyio.fail_after(20):
                while len(fake.requests_for("submit")) < 2:
                    await anyio.sleep(0.02)
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait(timeout=10)
            group.cancel_scope.cancel()
    finally:
        doomed.stop()
    async with bearer_client(b.url, SANDBOX_KEY, extensions=[TaskHandles()]) as on_b:
        listed = structured(await on_b.call_tool("list-requests", {"limit": 2}))["requests"]
        waited = next(r for r in listed if r["input_summary"] == {"prompt": "waiting"})
        result = structured(await on_b.call_tool("get-result", {"request_id": waited["request_id"], "wait_s": 30}))
        (created,) = handles.created
        orphan = await task_call(on_b, GetTask, created.task_id)
    assert result["status"] == "COMPLETED" and result["output"]["video"]["url"]
    assert orphan["status"] == "failed" and "get-result (request_id='" in orphan["statusMessage"]


async def test_a_webhook_delivered_to_one_replica_completes_the_call_waiting_on_the_other(
    sandbox: SandboxServer, fake: FakeFal, cluster: Cluster, tmp_path: Path
) -> None:
    """Both replicas share the public URL, which (as a balancer might) sends fal's webhook to B while the run-model
    waits on A: A's call completes from it without asking fal how the job went. Replaying B's delivery to A is a
    duplicate (the store dedupes across replicas); a forged one and an old one are refused."""
    public_port = free_port()
    env = replica_env(
        sandbox,
        cluster.url(cluster.create_database()),
        FAL_MCP_PUBLIC_URL=f"http://127.0.0.1:{public_port}",
        FAL_MCP_WEBHOOK_JWKS_URL=sandbox.jwks_url,
    )
    a, b = replica(env, tmp_path, "-v"), replica(env, tmp_path, "--port", str(public_port), "-v")
    try:
        async with bearer_client(a.url, SANDBOX_KEY) as on_a:
            await on_a.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "warm-up"}})  # schema, price
            mark = len(fake.requests)
            result = structured(await on_a.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "pushed"}}))
        rid = result["request_id"]
        attempt = await delivered(fake, rid)
        replayed = await post(a, attempt.content, dict(attempt.headers))
        forged = await post(a, outcome(rid), dict(attempt.headers))
        stale = await post(a, attempt.content, {**attempt.headers, "x-fal-webhook-timestamp": "1700000000"})
    finally:
        a.stop()
        b.stop()
    assert result["status"] == "COMPLETED" and result["output"] == attempt.body["payload"]
    assert attempt.url == f"http://127.0.0.1:{public_port}/webhooks/fal"  # B's route took it
    assert fal_requests(fake, mark) == ["submit"]  # no status, stream nor result: zero status requests to fal
    assert (
        f"webhook delivery for {rid} accepted" in b.stderr()
        and f"webhook delivery for {rid} accepted" not in a.stderr()
    )
    assert (replayed.status_code, replayed.json()) == (200, {"status": "duplicate"})
    assert (forged.status_code, stale.status_code) == (401, 401)


async def test_without_its_database_a_replica_says_which_setting_and_recovers(
    sandbox: SandboxServer, fake: FakeFal, cluster: Cluster, tmp_path: Path
) -> None:
    name = cluster.create_database()
    relay = Relay(cluster.port)  # closed: the database is down when the server starts
    server = replica(replica_env(sandbox, cluster.url(name, port=relay.port)), tmp_path)
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            ready = await http.get(f"{server.base}/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["store_reachable"] is False
            assert "FAL_MCP_DATABASE_URL" in ready.json()["store"]
        async with bearer_client(server.url, SANDBOX_KEY) as client:
            refused = error_text(await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}}))
            listing = error_text(await client.call_tool("list-requests", {}))
        assert refused.startswith("submit: the database at FAL_MCP_DATABASE_URL cannot be used right now")
        assert (
            "Nothing was sent to fal" in refused and "Traceback" not in refused and "secret-in-the-url" not in refused
        )
        assert "FAL_MCP_DATABASE_URL" in listing
        assert not fake.requests_for("submit")
        relay.open()
        async with httpx.AsyncClient(timeout=20) as http:
            with anyio.fail_after(30):
                while (await http.get(f"{server.base}/readyz")).status_code != 200:
                    await anyio.sleep(0.2)
        async with bearer_client(server.url, SANDBOX_KEY) as client:
            sent = structured(await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "back"}}))
        assert sent["request_id"]
    finally:
        server.stop()
        relay.close()
    assert "secret-in-the-url" not in server.stderr() and "Traceback" not in server.stderr()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FAL_MCP_DATABASE_URL": "postgresql://fal:pw-in-url@127.0.0.1:1/db"}, "FAL_MCP_STATE_SECRET"),
        (
            {"FAL_MCP_DATABASE_URL": "mysql://fal:pw-in-url@127.0.0.1/db", "FAL_MCP_STATE_SECRET": SECRET},
            "PostgreSQL URL",
        ),
        ({"FAL_MCP_STATE_SECRET": "too-short"}, "FAL_MCP_STATE_SECRET"),
    ],
    ids=["database-without-secret", "not-postgres", "short-secret"],
)
def test_replica_settings_that_cannot_agree_refuse_to_start(tmp_path: Path, env: dict[str, str], says: str) -> None:
    done = run_cli(tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "pw-in-url" not in done.stderr and "streamable HTTP on" not in done.stderr


class RoundRobin(httpx2.AsyncBaseTransport):
    """What a round-robin balancer does: each HTTP request goes to the next replica in turn."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = [httpx2.URL(base) for base in bases]
        self.sent: list[int] = []
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        target = self.bases[len(self.sent) % len(self.bases)]
        self.sent.append(target.port or 0)
        request.url = request.url.copy_with(host=target.host, port=target.port)
        request.headers["host"] = f"{target.host}:{target.port}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Accepts:
    """A user who agrees to the cost question."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action="accept", content={})


async def confirm_across(a: HttpServer, b: HttpServer) -> tuple[CallToolResult, Accepts, RoundRobin]:
    """A 2026-07-28 client behind a round robin: the cost question comes from one replica, the retry carrying the
    user's answer (sealed request state) goes to the other."""
    user, balancer = Accepts(), RoundRobin([a.base, b.base])
    headers = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    async with (
        httpx2.AsyncClient(transport=balancer, headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(streamable_http_client(a.url, http_client=http), elicitation_callback=user) as client,
    ):
        result = await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})
    return result, user, balancer


async def test_an_elicitation_answered_on_the_other_replica_goes_through(
    pair: tuple[HttpServer, HttpServer], sandbox: SandboxServer, fake: FakeFal, database_url: str, tmp_path: Path
) -> None:
    env = replica_env(sandbox, database_url, FAL_MCP_CONFIRM_ABOVE_USD="0.5")
    a, b = replica(env, tmp_path), replica(env, tmp_path)
    try:
        result, user, balancer = await confirm_across(a, b)
    finally:
        a.stop()
        b.stop()
    assert not result.is_error, result.content
    assert len(user.asked) == 1 and "Run fal-ai/kling-video" in user.asked[0]
    assert len(set(balancer.sent)) == 2  # the question and the answer went to different replicas
    assert len(fake.requests_for("submit")) == 1


async def test_without_a_shared_secret_the_other_replica_cannot_read_the_answer(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """What the secret is for: replicas sharing only a file (no FAL_MCP_STATE_SECRET) each seal with a key of their
    own, so an answer reaching the other one is refused and nothing is sent."""
    env = env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key", FAL_MCP_CONFIRM_ABOVE_USD="0.5")
    a = start_http_server(env, tmp_path, "--stateless")
    b = start_http_server(env, tmp_path, "--stateless")
    try:
        with pytest.raises(BaseExceptionGroup) as refused:
            await confirm_across(a, b)
    finally:
        a.stop()
        b.stop()
    assert refused.group_contains(MCPError, match="Invalid or expired requestState", depth=None)
    assert not fake.requests_for("submit")


def test_the_database_url_and_the_secret_are_never_read_from_dotenv(tmp_path: Path) -> None:
    """A cloned repository's `.env` must not point the history (prompts, request ids) at someone else's database."""
    (tmp_path / ".env").write_text(
        "FAL_MCP_DATABASE_URL=postgresql://evil:pw@attacker.example/db\nFAL_MCP_STATE_SECRET=" + SECRET + "\n"
    )
    settings = Settings(_env_file=tmp_path / ".env")  # pyright: ignore[reportCallIssue]
    assert settings.database_url is None and settings.state_secret is None
