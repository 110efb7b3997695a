"""The REST surface (`--rest`) end to end: curl-equivalent requests to a spawned server, against the fake fal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from mcp import Client
from mcp.types import TextContent

from fal_mcp.sandbox import NGINX_503, SANDBOX_KEY, FakeFal, Fault, SandboxServer
from fal_mcp.server.build import create_server
from tests.conftest import env_for, settings_for
from tests.harness import HttpServer, start_http_server

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
FAILS = "fal-ai/sandbox/always-fails"
MAX_INPUT = 4096
MAX_BODY = 16384


@pytest.fixture(scope="module")
def server(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    env = env_for(
        sandbox,
        FAL_MCP_DENIED_ENDPOINTS="fal-ai/forbidden*, */*/nsfw",
        FAL_MCP_MAX_INPUT_BYTES=str(MAX_INPUT),
        FAL_MCP_MAX_BODY_BYTES=str(MAX_BODY),
    )
    running = start_http_server(env, tmp_path_factory.mktemp("rest"), "--rest")
    yield running
    running.stop()


@pytest.fixture
async def http(server: HttpServer) -> Any:
    async with httpx.AsyncClient(base_url=server.base, timeout=20) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    return error


async def poll(http: httpx.AsyncClient, url: str, *, until: int = 200, timeout_s: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await http.get(url)
        if response.status_code == until or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def test_submit_poll_fetch(http: httpx.AsyncClient, fake: FakeFal) -> None:
    submitted = await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "a red fox"})
    assert submitted.status_code == 200, submitted.text
    handle = submitted.json()
    rid = handle["request_id"]
    assert handle["status"] == "IN_QUEUE" and handle["endpoint_id"] == FLUX and "sandbox" not in handle
    assert handle["status_url"] == f"/v1/models/{FLUX}/requests/{rid}/status"  # the id it was submitted to
    assert handle["response_url"] == f"/v1/models/{FLUX}/requests/{rid}"
    assert submitted.headers["x-fal-mcp-call-id"]

    status = await poll(http, handle["status_url"])
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    result = await http.get(handle["response_url"])
    assert result.status_code == 200
    body = result.json()
    assert body["status"] == "COMPLETED" and body["request_id"] == rid
    assert body["output"]["images"][0]["content_type"] == "image/png"
    assert "inference_time" in body["metrics"]
    to_fal = [r for r in fake.requests if r.route != "cdn"]  # media files are public: fetched with no key
    assert [r.route for r in to_fal if r.route not in ("models", "pricing")][:1] == ["submit"]
    assert fake.jobs[rid].input == {"prompt": "a red fox"}
    assert {r.headers.get("authorization") for r in to_fal} == {f"Key {SANDBOX_KEY}"}

    already = await http.put(handle["cancel_url"])
    assert already.status_code == 200 and already.json()["status"] == "ALREADY_COMPLETED"


async def test_running_requests_answer_202_and_cancel(http: httpx.AsyncClient, fake: FakeFal) -> None:
    fake.time_scale = 1.0  # the 18 s video
    submitted = await http.post(
        f"/v1/models/{VIDEO}/requests",
        json={"prompt": "waves"},
        headers={"X-Fal-Queue-Priority": "low", "X-Fal-Runner-Hint": "r1", "X-Fal-Request-Timeout": "30"},
    )
    assert submitted.status_code == 200, submitted.text
    rid = submitted.json()["request_id"]
    job = fake.jobs[rid]
    assert (job.priority, job.runner_hint, job.start_timeout) == ("low", "r1", 30.0)

    status = await http.get(f"/v1/models/fal-ai/kling-video/requests/{rid}/status", params={"logs": "1"})
    assert status.status_code == 202 and status.json()["status"] in ("IN_QUEUE", "IN_PROGRESS")
    early = await http.get(f"/v1/models/fal-ai/kling-video/requests/{rid}", params={"wait_s": "0.2"})
    assert early.status_code == 202 and rid in early.json()["next_step"] and "output" not in early.json()

    cancelled = await http.put(f"/v1/models/fal-ai/kling-video/requests/{rid}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLATION_REQUESTED"
    assert fake.jobs[rid].cancelled


async def test_fal_failures_keep_their_meaning(http: httpx.AsyncClient, fake: FakeFal) -> None:
    refused = error_of(await http.post(f"/v1/models/{FLUX}/requests", json={"image_size": "huge"}), 422)
    assert "prompt" in refused["message"] and "image_size" in refused["message"]  # checked before fal saw it
    assert not fake.requests_for("submit")
    unchecked = await http.post(
        f"/v1/models/{FLUX}/requests", params={"validate": "false"}, json={"image_size": "huge"}
    )
    rid = unchecked.json()["request_id"]
    invalid = error_of(await http.get(f"/v1/models/fal-ai/flux/requests/{rid}", params={"wait_s": 10}), 422)
    assert invalid["fal_status"] == 422 and "prompt" in invalid["message"]
    assert {tuple(field["loc"]) for field in invalid["fields"]} >= {("prompt",), ("image_size",)}

    rid = (await http.post(f"/v1/models/{FAILS}/requests", json={"prompt": "x"})).json()["request_id"]
    crashed = error_of(await http.get(f"/v1/models/fal-ai/sandbox/requests/{rid}", params={"wait_s": 10}), 502)
    assert crashed["error_type"] == "runner_server_error" and "Runner crashed" in crashed["message"]

    unknown = error_of(await http.get("/v1/models/fal-ai/flux/requests/0000-none/status"), 404)
    assert unknown["fal_status"] == 404 and "0000-none" in unknown["message"]
    no_model = error_of(await http.post("/v1/models/fal-ai/no-such/requests", json={"prompt": "x"}), 404)
    assert "fal-ai/no-such" in no_model["message"]

    fake.inject(Fault(route="submit", status=429, headers={"Retry-After": "5"}))
    limited = await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "x"})
    assert error_of(limited, 429)["fal_status"] == 429 and limited.headers["retry-after"] == "5"
    fake.inject(Fault(route="submit", status=401, body={"detail": "No user found for Key ID and Secret"}))
    server_key = error_of(await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "x"}), 502)
    assert server_key["fal_status"] == 401  # the server's own key was refused: not the caller's doing
    fake.inject(Fault(route="submit", status=503, body=NGINX_503))
    assert error_of(await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "x"}), 502)["fal_status"] == 503


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "says"),
    [
        (
            "POST",
            f"/v1/models/{FLUX}/requests",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "not JSON",
        ),
        ("POST", f"/v1/models/{FLUX}/requests", {"json": ["a", "list"]}, 400, "JSON object"),
        ("POST", f"/v1/models/{FLUX}/requests", {"content": b"prompt=x"}, 415, "application/json"),
        (
            "POST",
            f"/v1/models/{FLUX}/requests",
            {"json": {}, "headers": {"X-Fal-Queue-Priority": "urgent"}},
            400,
            "X-Fal-Queue-Priority",
        ),
        (
            "POST",
            f"/v1/models/{FLUX}/requests",
            {"json": {}, "headers": {"X-Fal-Request-Timeout": "0.5"}},
            400,
            "X-Fal-Request-Timeout",
        ),
        (
            "POST",
            f"/v1/models/{FLUX}/requests",
            {"json": {}, "params": {"fal_webhook": "javascript:alert(1)"}},
            400,
            "fal_webhook",
        ),
        ("GET", "/v1/models/fal-ai/flux/requests/abc/status", {"params": {"logs": "yes"}}, 400, "logs"),
        ("GET", "/v1/models/fal-ai/flux/requests/abc", {"params": {"wait_s": "-1"}}, 400, "wait_s"),
        ("GET", "/v1/models/fal-ai/flux/requests/abc", {"params": {"wait_s": "99999"}}, 400, "wait_s"),
        ("GET", f"/v1/models/{FLUX}/requests", {}, 405, "POST"),
        ("DELETE", "/v1/models/fal-ai/flux/requests/abc", {}, 405, "GET"),
        ("GET", "/v1/models/fal-ai/flux", {}, 404, "openapi"),
    ],
)
async def test_bad_requests_are_clear_json_errors(
    http: httpx.AsyncClient, fake: FakeFal, method: str, path: str, kwargs: dict[str, Any], status: int, says: str
) -> None:
    response = await http.request(method, path, **kwargs)
    assert says in error_of(response, status)["message"]
    assert not fake.requests
    if status == 405:
        assert response.headers["allow"] == says


async def raw_request(server: HttpServer, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send the path byte for byte (`curl --path-as-is`): no client normalises `..` or escapes away."""
    host, port = server.base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    payload = rest.split(b"\r\n\r\n", 1)[1]
    return int(status_line.split()[1]), json.loads(payload) if payload else {}


async def tool_error(sandbox: SandboxServer, tool: str, arguments: dict[str, Any]) -> str:
    async with Client(create_server(settings_for(sandbox))) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.mark.parametrize(
    ("method", "path", "tool", "arguments"),
    [
        ("POST", "/v1/models/fal-ai/../../admin/requests", "submit", {"endpoint_id": "fal-ai/../../admin"}),
        ("POST", "/v1/models/fal-ai/flux%2F..%2Fx/requests", "submit", {"endpoint_id": "fal-ai/flux%2F..%2Fx"}),
        ("POST", "/v1/models/evil.example@fal-ai/flux/requests", "submit", {"endpoint_id": "evil.example@fal-ai/flux"}),
        (
            "GET",
            "/v1/models/fal-ai/..%2F..%2Fadmin/requests/abc/status",
            "get-status",
            {"endpoint_id": "fal-ai/..%2F..%2Fadmin"},
        ),
        (
            "GET",
            "/v1/models/fal-ai/flux/requests/a%2Fb",
            "get-result",
            {"endpoint_id": "fal-ai/flux", "request_id": "a%2Fb"},
        ),
        (
            "PUT",
            "/v1/models/fal-ai/flux/requests/a..b/cancel",
            "cancel",
            {"endpoint_id": "fal-ai/flux", "request_id": "a..b"},
        ),
        ("POST", "/v1/models/f%D0%B0l-ai/flux/requests", "submit", {"endpoint_id": "f%D0%B0l-ai/flux"}),
    ],
)
async def test_hostile_ids_are_refused_exactly_like_the_tools(
    server: HttpServer,
    sandbox: SandboxServer,
    fake: FakeFal,
    method: str,
    path: str,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    status, body = await raw_request(server, method, path, b'{"prompt": "x"}' if method == "POST" else b"")
    assert status == 400, body
    taken = {"input": {"prompt": "x"}} if tool == "submit" else {"request_id": "abc"}  # a tool refuses the others
    expected = await tool_error(sandbox, tool, {**taken, **arguments})
    assert body["error"]["message"] == expected
    assert not fake.requests


async def test_guards_apply_to_rest(http: httpx.AsyncClient, server: HttpServer, fake: FakeFal) -> None:
    denied = error_of(await http.post("/v1/models/fal-ai/forbidden-model/requests", json={"prompt": "x"}), 403)
    assert "FAL_MCP_DENIED_ENDPOINTS" in denied["message"] and denied["error_type"] == "refused"
    also = error_of(await http.get("/v1/models/fal-ai/forbidden/requests/abc/status"), 403)
    assert "not allowed" in also["message"]
    big_input = error_of(await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "x" * MAX_INPUT}), 413)
    assert "FAL_MCP_MAX_INPUT_BYTES" in big_input["message"]
    big_body = error_of(await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "x" * MAX_BODY}), 413)
    assert "FAL_MCP_MAX_BODY_BYTES" in big_body["message"]
    mcp_body = await http.post(
        "/mcp",
        content=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"x" * MAX_BODY + b'"}}',
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    assert mcp_body.status_code == 413
    assert not fake.requests


async def test_openapi_document_describes_the_surface(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    operations = {
        operation["operationId"]: (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    base = "/v1/models/{model_owner}/{model_name}/requests"
    sub = "/v1/models/{model_owner}/{model_name}/{subpath}/requests"  # where a submit's links point
    assert operations == {
        "submitrequest": ("post", base),
        "submitrequestsubpath": ("post", sub),
        "getstatus": ("get", base + "/{request_id}/status"),
        "getresult": ("get", base + "/{request_id}"),
        "cancel": ("put", base + "/{request_id}/cancel"),
        "getstatussubpath": ("get", sub + "/{request_id}/status"),
        "getresultsubpath": ("get", sub + "/{request_id}"),
        "cancelsubpath": ("put", sub + "/{request_id}/cancel"),
    }
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schemas
    assert "security" not in document  # this server asks for no credentials


async def test_links_a_submit_hands_out_work_under_an_allow_list(sandbox: SandboxServer, tmp_path_factory: Any) -> None:
    """`FAL_MCP_ALLOWED_ENDPOINTS='fal-ai/flux/*'` (the README's example): the status, result and cancel links of a
    submit answer; the allow-list still refuses an endpoint outside it, and a request addressed through one."""
    env = env_for(sandbox, FAL_MCP_ALLOWED_ENDPOINTS="fal-ai/flux/*")
    server = start_http_server(env, tmp_path_factory.mktemp("allowed"), "--rest")
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            submitted = await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": "a red fox"})
            handle = submitted.json()
            status = await poll(http, handle["status_url"])
            result = await http.get(handle["response_url"])
            cancel = await http.put(handle["cancel_url"])
            outside = await http.post(f"/v1/models/{VIDEO}/requests", json={"prompt": "x"})
            base_id = await http.get(f"/v1/models/fal-ai/flux/requests/{handle['request_id']}/status")
    finally:
        server.stop()
    assert submitted.status_code == 200
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    assert result.status_code == 200 and result.json()["output"]["images"]
    assert cancel.status_code == 200 and cancel.json()["status"] == "ALREADY_COMPLETED"
    assert error_of(outside, 403)["error_type"] == "refused"
    assert error_of(base_id, 403)["error_type"] == "refused"  # 'fal-ai/flux' itself is not on the list
