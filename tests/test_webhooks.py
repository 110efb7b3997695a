"""fal pushes the result to us: a real `fal-mcp --transport http` with a public URL, and the sandbox as fal.

The sandbox signs its webhooks as fal does and serves its keys at its own JWKS URL, which the server is pointed at.
What a user relies on: a job that ends within the grace period costs fal one request (the submit) and its output
comes from the webhook; `get-result` answers from the delivery; a delivery that is not provably fal's (forged,
replayed, unsigned, about another request) gets 401 and changes nothing, nor does a repeat or one for a request the
server never sent; fal's keys are fetched once, again once for a key it does not know, and a rotation is accepted;
without a delivery the call follows the job at fal after the grace period and still completes; and while it waits,
progress and the heartbeat go on, and a cancelled run still stops its job at fal.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client

from fal_mcp.fal.webhooks import REFETCH_AFTER_S, signed_message
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer, default_models
from fal_mcp.sandbox.webhooks.signing import user_id_of
from tests.conftest import env_for
from tests.harness import HttpServer, bearer_client, start_http_server
from tests.test_tools import error_text, structured

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
FAL_ROUTES_OF_A_JOB = ("submit", "status", "stream", "result", "cancel")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pushed_server(sandbox: SandboxServer, home: Path, *, public_port: int | None = None, **env: str) -> HttpServer:
    """A server whose public URL is itself (or `public_port`, where nothing may listen), trusting the sandbox's keys."""
    port = free_port()
    settings = {
        "FAL_MCP_PUBLIC_URL": f"http://127.0.0.1:{public_port or port}",
        "FAL_MCP_WEBHOOK_JWKS_URL": sandbox.jwks_url,
        "FAL_MCP_SUBMITS_PER_MINUTE": "0",
        "FAL_MCP_HEARTBEAT_S": "0.3",
        **env,
    }
    return start_http_server(env_for(sandbox, **settings), home, "--port", str(port), "--rest", "-v")


@pytest.fixture(scope="module")
def server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    running = pushed_server(sandbox, tmp_path_factory.mktemp("pushed"))
    yield running
    running.stop()


def fal_requests(fake: FakeFal, since: int) -> list[str]:
    """The requests to fal since `since` (media fetched from the CDN, and the signing keys, are not fal calls)."""
    return [r.route for r in fake.requests[since:] if r.route not in ("cdn", "jwks")]


async def delivered(fake: FakeFal, request_id: str, status_code: int = 200) -> Any:
    """The sandbox's delivery attempt for `request_id` that the server answered `status_code`, once made."""
    with anyio.fail_after(20):
        while True:
            for attempt in fake.webhook_deliveries:
                if attempt.body.get("request_id") == request_id and attempt.status_code == status_code:
                    return attempt
            await anyio.sleep(0.02)


async def record_of(client: Client, request_id: str) -> dict[str, Any]:
    listed = structured(await client.call_tool("list-requests", {"limit": 20}))["requests"]
    return next(r for r in listed if r["request_id"] == request_id)


async def test_a_job_costs_fal_one_request_and_its_output_comes_from_the_webhook(
    server: HttpServer, fake: FakeFal
) -> None:
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with bearer_client(server.url, None) as client:
        await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "warm-up"}})  # schema, price
        mark = len(fake.requests)
        result = structured(
            await client.call_tool(
                "run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}}, progress_callback=on_progress
            )
        )
        record = await record_of(client, result["request_id"])
    assert result["status"] == "COMPLETED" and result["output"]["images"][0]["url"]
    assert fal_requests(fake, mark) == ["submit"]
    (submit,) = fake.requests_for("submit")[-1:]
    assert submit.query["fal_webhook"] == f"{server.base}/webhooks/fal"
    attempt = await delivered(fake, result["request_id"])
    assert attempt.body["payload"] == result["output"]  # the output at the client is the one fal pushed
    assert "waiting for fal to report" in progress
    assert record["state"] == "COMPLETED" and record["media_urls"] == [result["output"]["images"][0]["url"]]


async def test_get_result_by_request_id_answers_from_the_delivery(server: HttpServer, fake: FakeFal) -> None:
    async with bearer_client(server.url, None) as client:
        sent = structured(await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "later"}}))
        rid = sent["request_id"]
        attempt = await delivered(fake, rid)
        record = await record_of(client, rid)  # the delivery alone completed the history's row
        mark = len(fake.requests)
        result = structured(await client.call_tool("get-result", {"request_id": rid}))
        again = structured(await client.call_tool("get-result", {"request_id": rid, "wait_s": 5}))
    assert record["state"] == "COMPLETED" and record["media_urls"] == [attempt.body["payload"]["images"][0]["url"]]
    assert result["status"] == again["status"] == "COMPLETED"
    assert result["output"] == again["output"] == attempt.body["payload"]
    assert fal_requests(fake, mark) == []  # fal was not asked


async def test_rest_submits_carry_the_webhook_and_a_callers_own_webhook_wins(server: HttpServer, fake: FakeFal) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        answer = await http.post(f"{server.base}/v1/models/{FLUX}/requests", json={"prompt": "rest"})
    assert answer.status_code == 200
    assert fake.requests_for("submit")[-1].query["fal_webhook"] == f"{server.base}/webhooks/fal"
    own = f"{server.base}/healthz"  # a receiver of the caller's that answers 200
    async with bearer_client(server.url, None) as client:
        sent = structured(
            await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "own"}, "webhook_url": own})
        )
        mark = len(fake.requests)
        result = structured(await client.call_tool("get-result", {"request_id": sent["request_id"], "wait_s": 10}))
    assert fake.requests_for("submit")[-1].query["fal_webhook"] == own  # fal takes one webhook: the caller's
    assert result["status"] == "COMPLETED" and result["output"]["images"]
    assert "result" in fal_requests(fake, mark)  # followed at fal, as without a public URL


async def post(server: HttpServer, body: bytes, headers: dict[str, str], **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as http:
        return await http.post(
            f"{server.base}/webhooks/fal", content=body, headers={"content-type": "application/json", **headers}
        )


def outcome(request_id: str, **fields: Any) -> bytes:
    body = {"request_id": request_id, "gateway_request_id": request_id, "status": "OK", **fields}
    body.setdefault("payload", {"images": [{"url": "https://evil.example/forged.png"}]})
    return json.dumps(body).encode()


async def test_forged_replayed_unsigned_or_mismatched_deliveries_get_401_and_change_nothing(
    server: HttpServer, fake: FakeFal
) -> None:
    fake.time_scale = 1.0  # the video stays queued for the whole test: no genuine delivery comes
    async with bearer_client(server.url, None) as client:
        rid = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))[
            "request_id"
        ]
        other = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "y"}}))[
            "request_id"
        ]
        signer, user, now = fake.webhook_signer, user_id_of(SANDBOX_KEY), int(time.time())
        body = outcome(rid)
        forger = Ed25519PrivateKey.generate()
        forged = {
            **signer.sign(rid, user, body),
            "x-fal-webhook-signature": forger.sign(signed_message(rid, user, str(now), body)).hex(),
        }
        cases = {
            "unsigned": (body, {}),
            "forged": (body, forged),
            "tampered": (outcome(rid, payload={"images": []}), signer.sign(rid, user, body)),
            "replayed": (body, signer.sign(rid, user, body, timestamp=now - 400)),
            "from the future": (body, signer.sign(rid, user, body, timestamp=now + 400)),
            "another request": (outcome(other), signer.sign(rid, user, outcome(other))),
        }
        answers = {name: await post(server, content, headers) for name, (content, headers) in cases.items()}
        record = await record_of(client, rid)
        mark = len(fake.requests)
        still = structured(await client.call_tool("get-result", {"request_id": rid}))
        await client.call_tool("cancel", {"request_id": rid})
        await client.call_tool("cancel", {"request_id": other})
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(cases, 401)
    assert answers["unsigned"].json()["error"]["message"].startswith("not a verified fal webhook: unsigned")
    assert "outside the 300s window" in answers["replayed"].json()["error"]["message"]
    assert "request_id is not the one signed" in answers["another request"].json()["error"]["message"]
    assert record["state"] in ("IN_QUEUE", "IN_PROGRESS") and record["media_urls"] == []
    assert still["status"] != "COMPLETED" and "output" not in still
    assert fal_requests(fake, mark)[:1] == ["status"]  # no delivery stood in for fal: it was asked
    assert "evil.example" not in server.stderr()


async def test_the_route_keeps_the_hosts_and_the_body_limit_of_the_rest(server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        foreign = await http.post(f"{server.base}/webhooks/fal", content=b"{}", headers={"host": "evil.example"})
        read = await http.get(f"{server.base}/webhooks/fal")
        huge = await http.post(
            f"{server.base}/webhooks/fal",
            content=b" " * (4 * 1024 * 1024 + 1),
            headers=signed_headers_for_nothing(),
        )
    assert (foreign.status_code, read.status_code, huge.status_code) == (421, 405, 413)


def signed_headers_for_nothing() -> dict[str, str]:
    """Well-formed signature headers (checked before the body is read), signing nothing in particular."""
    return {
        "x-fal-webhook-request-id": str(uuid.uuid4()),
        "x-fal-webhook-user-id": "u",
        "x-fal-webhook-timestamp": str(int(time.time())),
        "x-fal-webhook-signature": "00" * 64,
    }


async def test_a_repeated_delivery_is_a_duplicate_and_changes_nothing(server: HttpServer, fake: FakeFal) -> None:
    async with bearer_client(server.url, None) as client:
        first = structured(await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "once"}}))
        rid = first["request_id"]
        attempt = await delivered(fake, rid)
        before = await record_of(client, rid)
        again = await post(server, attempt.content, dict(attempt.headers))  # fal retrying, or a replay in the window
        failed = outcome(rid, status="ERROR", error="Invalid status code: 500", payload={"detail": "boom"})
        other = await post(server, failed, fake.webhook_signer.sign(rid, user_id_of(SANDBOX_KEY), failed))
        after = await record_of(client, rid)
        result = structured(await client.call_tool("get-result", {"request_id": rid}))
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert (other.status_code, other.json()) == (200, {"status": "duplicate"})
    assert after == before and after["state"] == "COMPLETED"
    assert result["output"] == first["output"]


async def test_a_delivery_for_a_request_this_server_never_sent_gets_404_and_changes_nothing(
    server: HttpServer, fake: FakeFal
) -> None:
    stranger = str(uuid.uuid4())
    body = outcome(stranger)
    answer = await post(server, body, fake.webhook_signer.sign(stranger, user_id_of(SANDBOX_KEY), body))
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "this server did not submit that request"
    async with bearer_client(server.url, None) as client:
        refused = error_text(await client.call_tool("get-result", {"request_id": stranger}))
    assert "not in this server's request history" in refused


async def test_fals_keys_are_fetched_once_again_once_for_an_unknown_key_and_a_rotation_is_accepted(
    tmp_path: Path,
) -> None:
    with SandboxServer(FakeFal(time_scale=0.05)) as sandbox:
        fake = sandbox.fake
        running = pushed_server(sandbox, tmp_path)
        try:
            async with bearer_client(running.url, None) as client:
                await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "first"}})
                assert len(fake.requests_for("jwks")) == 1
                await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "cached"}})
                assert len(fake.requests_for("jwks")) == 1

                await anyio.sleep(REFETCH_AFTER_S)
                fake.webhook_signer.rotate()  # fal rotates: the new key signs, and is published
                mark = len(fake.requests)
                rotated = structured(
                    await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "rotated"}})
                )
                assert fal_requests(fake, mark) == ["submit"] and len(fake.requests_for("jwks")) == 2
                assert (await delivered(fake, rotated["request_id"])).attempt == 1  # accepted the first time

                await anyio.sleep(REFETCH_AFTER_S)
                fake.webhook_signer.rotate(publish=False)  # a key the JWKS does not hold
                fake.time_scale = 1.0
                rid = structured(await client.call_tool("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}))[
                    "request_id"
                ]
                body = outcome(rid)
                signed = fake.webhook_signer.sign(rid, user_id_of(SANDBOX_KEY), body)
                unknown = await post(running, body, signed)
                assert unknown.status_code == 401 and len(fake.requests_for("jwks")) == 3  # one refetch
                for _ in range(5):  # a flood of them costs no more fetches
                    assert (await post(running, body, signed)).status_code == 401
                assert len(fake.requests_for("jwks")) == 3
                record = await record_of(client, rid)
                assert record["state"] != "COMPLETED"
                await client.call_tool("cancel", {"request_id": rid})
        finally:
            running.stop()
    assert "matches none of fal's published keys" in running.stderr()


async def test_without_a_delivery_the_call_follows_the_job_at_fal_after_the_grace_period(tmp_path: Path) -> None:
    """fal cannot reach the public URL (nothing listens there): after the grace period the call streams the job's
    status from fal as before, and completes."""
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    with SandboxServer(FakeFal(time_scale=0.05)) as sandbox:
        fake = sandbox.fake
        running = pushed_server(sandbox, tmp_path, public_port=free_port(), FAL_MCP_WEBHOOK_GRACE_S="1")
        try:
            async with bearer_client(running.url, None) as client:
                mark = len(fake.requests)
                result = structured(
                    await client.call_tool(
                        "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}, progress_callback=on_progress
                    )
                )
        finally:
            running.stop()
        attempts = [d for d in fake.webhook_deliveries if d.body.get("request_id") == result["request_id"]]
    assert result["status"] == "COMPLETED" and result["output"]["images"]
    routes = [route for route in fal_requests(fake, mark) if route in FAL_ROUTES_OF_A_JOB]
    assert routes[0] == "submit" and "result" in routes and ("stream" in routes or "status" in routes)
    assert attempts and all(d.status_code is None for d in attempts)  # fal's webhook never got through
    assert progress.index("waiting for fal to report") < len(progress) - 1  # then it followed the job


def slow_video_models() -> list[Any]:
    return [replace(m, queue_s=60.0, run_s=120.0) if VIDEO in m.endpoint_ids else m for m in default_models()]


async def test_while_it_waits_for_fal_the_heartbeat_goes_on_and_a_cancelled_run_stops_its_job(tmp_path: Path) -> None:
    with SandboxServer(FakeFal(time_scale=0.05, models=slow_video_models())) as sandbox:
        fake = sandbox.fake
        running = pushed_server(sandbox, tmp_path)
        progress: list[str] = []
        beating = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")
            if (message or "").startswith("still waiting for fal to report"):
                beating.set()

        try:
            async with Client(running.url) as client, anyio.create_task_group() as group:

                async def call() -> None:
                    await client.call_tool(
                        "run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}}, progress_callback=on_progress
                    )

                group.start_soon(call)
                with anyio.fail_after(15):
                    await beating.wait()
                group.cancel_scope.cancel()  # the user pressed stop
            (rid,) = fake.jobs
            with anyio.fail_after(5):
                while not fake.jobs[rid].cancelled:
                    await anyio.sleep(0.02)
        finally:
            running.stop()
    assert progress[:2] == [f"submitted to {VIDEO} as {rid}", "waiting for fal to report"]
    assert [r.request_id for r in fake.requests_for("cancel")] == [rid]
    assert not fake.requests_for("status") and not fake.requests_for("stream")  # it never asked fal how it went


async def test_the_sandbox_with_a_public_url_pushes_signed_outcomes_to_the_server(tmp_path: Path) -> None:
    """`fal-mcp --sandbox` with a public URL: the fake pushes each outcome to the server's own route, signed with its
    own key, and the server checks it against the sandbox's JWKS (no FAL_MCP_WEBHOOK_JWKS_URL given)."""
    port = free_port()
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    running = start_http_server(
        {"FAL_MCP_PUBLIC_URL": f"http://127.0.0.1:{port}"}, tmp_path, "--sandbox", "--port", str(port), "-v"
    )
    try:
        async with Client(running.url) as client:
            result = structured(
                await client.call_tool(
                    "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}}, progress_callback=on_progress
                )
            )
    finally:
        running.stop()
    stderr = running.stderr()
    assert result["status"] == "COMPLETED" and result["output"]["images"] and result["sandbox"] is True
    assert "waiting for fal to report" in progress
    assert f"webhook delivery for {result['request_id']} accepted" in stderr
    assert "/.well-known/jwks.json" in stderr  # the keys were the sandbox's own
