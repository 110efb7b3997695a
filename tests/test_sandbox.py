"""The sandbox fake fal, over real loopback sockets, checked against reference/fal-api.md."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import struct
import subprocess
import sys
import threading
import time
import wave
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fal_mcp.sandbox import LOCKED_KEY, NGINX_503, SANDBOX_KEY, Chaos, FakeFal, Fault, SandboxServer
from fal_mcp.sandbox.models.inputs import Field, parse_body, validate
from fal_mcp.sandbox.models.png import encode_png, picture
from fal_mcp.sandbox.routing import Target, base_app_id, classify
from fal_mcp.sandbox.webhooks.delivery import refusal

OTHER_KEY = "other-key-id:other-key-secret"
FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
FAILS = "fal-ai/sandbox/always-fails"
SCALE = 0.02


class ManualClock:
    """A monotonic clock that only moves when told, for step-by-step job timelines."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(FakeFal(keys=(SANDBOX_KEY, OTHER_KEY))) as running:
        yield running


@pytest.fixture
def fake(server: SandboxServer) -> Iterator[FakeFal]:
    server.fake.reset()
    server.fake.time_scale = SCALE
    server.fake.clock = time.monotonic
    server.fake.sse_ping_s = 5.0
    yield server.fake
    server.fake.reset()


@pytest.fixture
def clock(fake: FakeFal) -> ManualClock:
    manual = ManualClock()
    fake.clock = manual
    fake.time_scale = 1.0
    return manual


@pytest.fixture(scope="module")
def anonymous() -> Iterator[httpx.Client]:
    """A client without a key (one per module: each new httpx client builds an SSL context)."""
    with httpx.Client(timeout=5.0) as http:
        yield http


@pytest.fixture
def client(server: SandboxServer, fake: FakeFal) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Key {SANDBOX_KEY}"}, timeout=5.0) as http:
        yield http


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def submit(client: httpx.Client, server: SandboxServer, endpoint: str, body: Any, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"{server.queue_url}/{endpoint}", json=body, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def settle(fake: FakeFal, request_id: str) -> None:
    wait_until(lambda: fake.jobs[request_id].state == "COMPLETED")


def png_size(data: bytes) -> tuple[int, int]:
    """Walk every chunk (checking CRCs), inflate IDAT, and return the IHDR size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc
        chunks[kind] = chunks.get(kind, b"") + payload
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == (width * 3 + 1) * height
    assert b"IEND" in chunks
    return width, height


# -- pure parts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("fal-ai/fast-sdxl", "fal-ai/fast-sdxl"),
        ("fal-ai/flux/schnell", "fal-ai/flux"),
        (VIDEO, "fal-ai/kling-video"),
        ("workflows/me/wf/sub", "workflows/me/wf"),
        ("comfy/me/flow", "comfy/me/flow"),
    ],
)
def test_base_app_id_strips_the_subpath(endpoint: str, base: str) -> None:
    assert base_app_id(endpoint) == base


@pytest.mark.parametrize(
    ("method", "path", "target"),
    [
        ("POST", "/run/fal-ai/flux/dev", Target("run", endpoint_id="fal-ai/flux/dev")),
        ("POST", "/queue/fal-ai/flux/dev", Target("submit", endpoint_id="fal-ai/flux/dev")),
        ("GET", "/queue/fal-ai/flux/requests/r1/status", Target("status", "fal-ai/flux", "r1")),
        ("GET", "/queue/fal-ai/flux/requests/r1/status/stream", Target("stream", "fal-ai/flux", "r1")),
        ("GET", "/queue/fal-ai/flux/requests/r1", Target("result", "fal-ai/flux", "r1")),
        ("PUT", "/queue/fal-ai/flux/requests/r1/cancel", Target("cancel", "fal-ai/flux", "r1")),
        ("GET", "/queue/workflows/a/b/requests/r1", Target("result", "workflows/a/b", "r1")),
        ("GET", "/cdn/files/x.png", Target("cdn", file_name="x.png")),
        ("GET", "/run/fal-ai/flux/dev", Target("other")),
        ("PUT", "/queue/fal-ai/flux/requests/r1/status", Target("other")),
        ("GET", "/", Target("other")),
        ("GET", "/api/v2/models", Target("other")),
        ("GET", "/api/v1/models", Target("models")),
        ("GET", "/api/v1/models/pricing", Target("pricing")),
        ("POST", "/api/v1/models/pricing/estimate", Target("pricing-estimate")),
        ("GET", "/api/v1/models/billing-events", Target("billing-events")),
        ("GET", "/api/v1/models/pricing/estimate", Target("other")),
        ("POST", "/rest/storage/auth/token", Target("cdn-token")),
        ("POST", "/rest/storage/upload/initiate", Target("upload-initiate")),
        ("POST", "/cdn/files/upload", Target("cdn-upload")),
        ("PUT", "/signed/abc", Target("signed-upload", file_name="abc")),
        ("GET", "/signed/abc", Target("other")),
    ],
)
def test_classify(method: str, path: str, target: Target) -> None:
    assert classify(method, path) == target


def test_validation_coerces_like_pydantic_v1() -> None:
    fields = (
        Field("n", "int", default=1, ge=1, le=4),
        Field("b", "bool", default=True),
        Field("s", "str", required=True),
        Field("e", "enum", default="a", choices=("a", "b")),
        Field("o", "int", nullable=True),
    )
    cleaned, problems = validate(fields, {"n": "3", "b": "no", "s": 7, "o": None, "extra": 1})
    assert problems == []
    assert cleaned == {"n": 3, "b": False, "s": "7", "e": "a", "o": None}
    _, problems = validate(fields, {"n": 0, "b": "maybe", "e": "c", "o": "x"})
    assert [(p["loc"], p["type"]) for p in problems] == [
        (["body", "n"], "value_error.number.not_ge"),
        (["body", "b"], "type_error.bool"),
        (["body", "s"], "value_error.missing"),
        (["body", "e"], "type_error.enum"),
        (["body", "o"], "type_error.integer"),
    ]
    assert problems[2]["msg"] == "field required"
    assert problems[3]["msg"] == "value is not a valid enumeration member; permitted: 'a', 'b'"


@pytest.mark.parametrize("body", [b"", b"[1]", b"{nope", b'"text"'])
def test_body_must_be_a_json_object(body: bytes) -> None:
    problems = parse_body(body)
    assert isinstance(problems, list)
    assert problems[0]["loc"] == ["body"]


def test_png_encoder_is_deterministic_and_valid() -> None:
    assert picture(20, 10, 5) == picture(20, 10, 5) != picture(20, 10, 6)
    assert png_size(picture(20, 10, 5)) == (20, 10)
    assert png_size(encode_png(1, 1, b"\x00\x00\x00")) == (1, 1)
    with pytest.raises(ValueError, match="RGB"):
        encode_png(2, 2, b"")


# -- queue happy path ---------------------------------------------------------------------------


def test_submit_status_result_and_png(
    anonymous: httpx.Client, client: httpx.Client, server: SandboxServer, fake: FakeFal, clock: ManualClock
) -> None:
    answer = client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "a red fox", "image_size": "portrait_16_9"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    submitted = answer.json()
    rid = submitted["request_id"]
    assert answer.headers["x-fal-request-id"] == rid == submitted["gateway_request_id"]
    base = f"{server.queue_url}/fal-ai/flux/requests/{rid}"
    assert submitted == {
        "status": "IN_QUEUE",
        "request_id": rid,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": 0,
        "gateway_request_id": rid,
    }

    queued = client.get(submitted["status_url"])
    assert queued.status_code == 202
    assert queued.headers["x-fal-request-id"] == rid
    assert queued.json()["status"] == "IN_QUEUE" and queued.json()["queue_position"] == 0
    assert client.get(submitted["response_url"]).json() == {"detail": "Request is still in progress"}
    assert client.get(submitted["response_url"]).status_code == 400

    clock.advance(0.2)  # queue 0.05 s, then 4 steps logged over the 0.3 s run
    for flag in ("1", "true"):
        running = client.get(submitted["status_url"], params={"logs": flag})
        assert running.status_code == 202
        body = running.json()
        assert body["status"] == "IN_PROGRESS"
        assert [line["message"] for line in body["logs"]][:2] == ["Loading model weights", "Denoising step 1/4"]
        assert {line["source"] for line in body["logs"]} == {"USER"}
        assert body["logs"][0]["timestamp"].endswith("Z")
    for params in ({}, {"logs": "0"}, {"logs": "false"}):
        assert client.get(submitted["status_url"], params=params).json()["logs"] is None

    clock.advance(0.2)
    done = client.get(submitted["status_url"])
    assert done.status_code == 200
    assert done.json()["status"] == "COMPLETED"
    assert done.json()["logs"] is None
    assert done.json()["metrics"] == {"inference_time": pytest.approx(0.3)}
    assert "error" not in done.json()
    assert done.json()["response_url"] == base

    result = client.get(submitted["response_url"])
    assert result.status_code == 200 and result.headers["x-fal-request-id"] == rid
    output = result.json()
    assert output["prompt"] == "a red fox" and output["has_nsfw_concepts"] == [False]
    image = output["images"][0]
    assert image["file_name"] == f"{rid}-0.png"
    assert image["url"] == f"{server.cdn_url}/files/{rid}-0.png"

    media = anonymous.get(image["url"])  # public: no key
    assert media.status_code == 200
    assert media.headers["content-type"] == "image/png"
    assert len(media.content) == image["file_size"] < 20_000
    assert png_size(media.content) == (image["width"], image["height"]) == (36, 64)


def test_video_counts_down_the_queue_and_logs_batches(
    anonymous: httpx.Client, client: httpx.Client, server: SandboxServer, fake: FakeFal, clock: ManualClock
) -> None:
    submitted = submit(client, server, VIDEO, {"prompt": "waves", "duration": "10"})
    assert submitted["queue_position"] == 3
    assert "/queue/fal-ai/kling-video/requests/" in submitted["status_url"]
    positions = []
    for _ in range(4):
        positions.append(client.get(submitted["status_url"]).json()["queue_position"])
        clock.advance(1.5)
    assert positions == [3, 2, 1, 0]
    clock.advance(0.05)  # t = 6.05: the runner started
    assert client.get(submitted["status_url"], params={"logs": 1}).json()["logs"][0]["message"] == (
        "Generating frame batch 1/12"
    )
    clock.advance(5.0)
    assert len(client.get(submitted["status_url"], params={"logs": 1}).json()["logs"]) == 6
    clock.advance(7.0)
    assert client.get(submitted["status_url"]).status_code == 200
    video = client.get(submitted["response_url"]).json()["video"]
    assert video["content_type"] == "video/mp4"
    media = anonymous.get(video["url"])
    assert media.headers["content-type"] == "video/mp4" and len(media.content) == video["file_size"]


def test_workflow_ids_keep_three_segments(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    submitted = submit(client, server, "workflows/sandbox/echo/v2", {"anything": [1, {"x": None}]})
    rid = submitted["request_id"]
    assert submitted["response_url"] == f"{server.queue_url}/workflows/sandbox/echo/requests/{rid}"
    settle(fake, rid)
    assert client.get(submitted["response_url"]).json() == {"echo": {"anything": [1, {"x": None}]}}
    assert fake.jobs[rid].endpoint_id == "workflows/sandbox/echo/v2"


def test_text_model_answers_deterministically(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    answer = client.post(f"{server.run_url}/fal-ai/any-llm", json={"prompt": "hello"})
    assert answer.status_code == 200
    assert answer.json() == {"output": "[sandbox/echo-llm] You said: hello", "partial": False, "error": None}


def test_audio_model_answers_a_playable_wav(
    client: httpx.Client, anonymous: httpx.Client, server: SandboxServer, fake: FakeFal
) -> None:
    answer = client.post(f"{server.run_url}/fal-ai/stable-audio", json={"prompt": "rain", "seconds_total": 2})
    assert answer.status_code == 200
    entry = answer.json()["audio_file"]
    media = anonymous.get(entry["url"])
    assert media.headers["content-type"] == "audio/wav" and len(media.content) == entry["file_size"]
    with wave.open(io.BytesIO(media.content)) as wav:
        assert wav.getnchannels() == 1 and wav.getnframes() == 2 * wav.getframerate()


def test_sync_run_waits_and_answers_the_output(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    answer = client.post(f"{server.run_url}/fal-ai/fast-sdxl", json={"prompt": "x", "num_images": 2, "seed": 9})
    assert answer.status_code == 200
    rid = answer.headers["x-fal-request-id"]
    assert answer.json()["seed"] == 9 and len(answer.json()["images"]) == 2
    assert fake.jobs[rid].state == "COMPLETED"
    # A run is not a queue request: its id is unknown to the queue routes.
    assert client.get(f"{server.queue_url}/fal-ai/fast-sdxl/requests/{rid}/status").status_code == 404


def test_sync_client_hanging_up_stops_the_job(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{server.run_url}/{VIDEO}", json={"prompt": "long"}, timeout=0.05)
    (job,) = fake.jobs.values()
    wait_until(lambda: job.state == "COMPLETED", timeout=1.0)
    assert job.error == "Client disconnected" and job.error_type == "client_disconnected"
    assert not job.cancelled


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Key nope:nope", f"Bearer {SANDBOX_KEY}", "Key", SANDBOX_KEY])
def test_bad_keys_get_401(
    anonymous: httpx.Client, server: SandboxServer, fake: FakeFal, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("POST", f"/queue/{FLUX}"),
        ("POST", f"/run/{FLUX}"),
        ("GET", "/queue/fal-ai/flux/requests/x"),
    ]:
        answer = anonymous.request(method, server.url + path, json={"prompt": "x"}, headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"detail": "No user found for Key ID and Secret"}
        assert "x-fal-request-id" in answer.headers
    assert fake.jobs == {}


def test_locked_key_gets_403_on_run_and_submit(anonymous: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    headers = {"Authorization": f"Key {LOCKED_KEY}"}
    for base in (server.queue_url, server.run_url):
        answer = anonymous.post(f"{base}/{FLUX}", json={"prompt": "x"}, headers=headers)
        assert answer.status_code == 403
        assert answer.json()["detail"].startswith("User is locked. Reason: Exhausted balance.")
    # Reading still works for a locked user (here: nothing of theirs exists).
    assert anonymous.get(f"{server.queue_url}/fal-ai/flux/requests/x/status", headers=headers).status_code == 404


def test_jobs_are_private_to_their_key(
    anonymous: httpx.Client, client: httpx.Client, server: SandboxServer, fake: FakeFal
) -> None:
    submitted = submit(client, server, FLUX, {"prompt": "mine"})
    other = {"Authorization": f"Key {OTHER_KEY}"}
    for method, url in [
        ("GET", submitted["status_url"]),
        ("GET", submitted["response_url"]),
        ("PUT", submitted["cancel_url"]),
        ("GET", submitted["status_url"] + "/stream"),
    ]:
        assert anonymous.request(method, url, headers=other).status_code == 404
    assert fake.jobs[submitted["request_id"]].cancel_requests == 0


# -- errors -------------------------------------------------------------------------------------


def test_run_rejects_invalid_input_with_field_list(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    answer = client.post(f"{server.run_url}/{FLUX}", json={"num_images": 9, "image_size": "huge", "seed": "s"})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [item["loc"] for item in detail] == [
        ["body", "prompt"],
        ["body", "image_size"],
        ["body", "num_images"],
        ["body", "seed"],
    ]
    assert detail[0] == {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}
    assert detail[2]["msg"] == "ensure this value is less than or equal to 4"
    not_object = client.post(f"{server.run_url}/{FLUX}", content=b"[1, 2]")
    assert not_object.status_code == 422 and not_object.json()["detail"][0]["loc"] == ["body"]
    assert client.post(f"{server.queue_url}/{FLUX}", content=b"nope").status_code == 422


def test_unknown_endpoint_is_404(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    for base in (server.run_url, server.queue_url):
        answer = client.post(f"{base}/fal-ai/no-such-model", json={})
        assert answer.status_code == 404 and "not found" in answer.json()["detail"]


def test_queue_runs_invalid_input_and_fails_with_422(
    client: httpx.Client, server: SandboxServer, fake: FakeFal
) -> None:
    submitted = submit(client, server, FLUX, {"num_images": 0})
    settle(fake, submitted["request_id"])
    status = client.get(submitted["status_url"]).json()
    assert status["status"] == "COMPLETED"
    assert status["error"] == "Invalid status code: 422"
    assert "error_type" not in status
    result = client.get(submitted["response_url"])
    assert result.status_code == 422
    assert {tuple(item["loc"]) for item in result.json()["detail"]} == {("body", "prompt"), ("body", "num_images")}


def test_always_fails_model(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    submitted = submit(client, server, FAILS, {"prompt": "x"})
    settle(fake, submitted["request_id"])
    status = client.get(submitted["status_url"], params={"logs": "1"}).json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "runner_server_error"
    assert status["error"] == "Runner crashed while generating (sandbox model that always fails)"
    assert status["logs"][-1]["level"] == "ERROR"
    for answer in (client.get(submitted["response_url"]), client.post(f"{server.run_url}/{FAILS}", json={})):
        assert answer.status_code == 500
        assert answer.headers["x-fal-error-type"] == "runner_server_error"
        assert answer.json() == {"detail": status["error"], "error_type": "runner_server_error"}


def test_unknown_request_ids_are_404(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    base = f"{server.queue_url}/fal-ai/flux/requests/does-not-exist"
    assert client.get(base + "/status").json() == {"detail": "Request not found"}
    assert client.get(base + "/status").status_code == 404
    assert client.get(base).status_code == 404
    assert client.get(base + "/status/stream").status_code == 404
    cancel = client.put(base + "/cancel")
    assert cancel.status_code == 404 and cancel.json() == {"status": "NOT_FOUND"}
    # A real id under the full endpoint id (not the base app id) is not found either.
    rid = submit(client, server, FLUX, {"prompt": "x"})["request_id"]
    assert client.get(f"{server.queue_url}/{FLUX}/requests/{rid}/status").status_code == 404


def test_other_paths_are_404_and_recorded(
    anonymous: httpx.Client, client: httpx.Client, server: SandboxServer, fake: FakeFal
) -> None:
    for method, path in [("GET", "/"), ("GET", "/api/v2/models"), ("GET", f"/run/{FLUX}"), ("DELETE", "/queue/x")]:
        answer = client.request(method, server.url + path)
        assert answer.status_code == 404 and answer.json() == {"detail": "Not Found"}
    assert [recorded.path for recorded in fake.requests_for("other")] == [
        "/",
        "/api/v2/models",
        f"/run/{FLUX}",
        "/queue/x",
    ]
    assert anonymous.get(f"{server.cdn_url}/files/unknown.png").status_code == 404


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_while_queued(client: httpx.Client, server: SandboxServer, fake: FakeFal, clock: ManualClock) -> None:
    submitted = submit(client, server, VIDEO, {"prompt": "x"})
    answer = client.put(submitted["cancel_url"])
    assert answer.status_code == 202 and answer.json() == {"status": "CANCELLATION_REQUESTED"}
    status = client.get(submitted["status_url"])
    assert status.status_code == 200
    assert status.json()["status"] == "COMPLETED"
    assert status.json()["error"] == "Request was cancelled"
    assert status.json()["error_type"] == "client_cancelled"
    job = fake.jobs[submitted["request_id"]]
    assert job.cancelled and job.cancel_requests == 1
    result = client.get(submitted["response_url"])
    assert result.status_code == 499 and result.json()["error_type"] == "client_cancelled"


def test_cancel_while_running(client: httpx.Client, server: SandboxServer, fake: FakeFal, clock: ManualClock) -> None:
    submitted = submit(client, server, VIDEO, {"prompt": "x"})
    clock.advance(8.5)
    assert client.get(submitted["status_url"]).json()["status"] == "IN_PROGRESS"
    assert client.put(submitted["cancel_url"]).status_code == 202
    clock.advance(10.0)
    status = client.get(submitted["status_url"], params={"logs": "1"}).json()
    assert status["error_type"] == "client_cancelled"
    assert len(status["logs"]) == 3  # batches logged at 0, 1 and 2 s into the run; none after the cancel
    assert fake.jobs[submitted["request_id"]].cancelled


def test_cancel_after_completion(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    submitted = submit(client, server, "fal-ai/any-llm", {"prompt": "x"})
    settle(fake, submitted["request_id"])
    answer = client.put(submitted["cancel_url"])
    assert answer.status_code == 400 and answer.json() == {"status": "ALREADY_COMPLETED"}
    job = fake.jobs[submitted["request_id"]]
    assert job.cancel_requests == 1 and not job.cancelled and job.error is None
    assert client.get(submitted["response_url"]).status_code == 200


# -- status stream ------------------------------------------------------------------------------


def read_events(client: httpx.Client, url: str, **params: str) -> tuple[httpx.Headers, list[str]]:
    with client.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        return response.headers, [line for line in response.iter_lines() if line]


def test_status_stream_sends_each_change_until_completed(
    client: httpx.Client, server: SandboxServer, fake: FakeFal
) -> None:
    submitted = submit(client, server, VIDEO, {"prompt": "x"})
    headers, lines = read_events(client, submitted["status_url"] + "/stream", logs="1")
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-fal-request-id"] == submitted["request_id"]
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    order = {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 2}
    ranks = [order[event["status"]] for event in events]
    assert ranks == sorted(ranks) and ranks[0] == 0 and ranks[-1] == 2 and 1 in ranks
    positions = [event["queue_position"] for event in events if event["status"] == "IN_QUEUE"]
    assert positions == sorted(positions, reverse=True) and positions[-1] == 0
    log_counts = [len(event["logs"]) for event in events if event["status"] != "IN_QUEUE"]
    assert log_counts == sorted(log_counts) and log_counts[-1] == 12
    assert events[-1]["metrics"]["inference_time"] > 0
    assert all(before != after for before, after in itertools.pairwise(events))


def test_status_stream_pings_when_quiet(
    client: httpx.Client, server: SandboxServer, fake: FakeFal, clock: ManualClock
) -> None:
    fake.sse_ping_s = 0.05
    submitted = submit(client, server, VIDEO, {"prompt": "x"})
    seen: list[str] = []
    with client.stream("GET", submitted["status_url"] + "/stream") as response:
        for line in response.iter_lines():
            if line:
                seen.append(line)
            if line == ": ping":
                clock.advance(60.0)
    assert seen[0].startswith("data: ") and ": ping" in seen
    assert json.loads(seen[-1].removeprefix("data: "))["status"] == "COMPLETED"


# -- start deadline and webhook -----------------------------------------------------------------


def test_start_deadline_expires_in_queue(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    timeout = {"X-Fal-Request-Timeout": "0.05"}  # the video waits 6 s x 0.02 = 0.12 s in queue
    submitted = submit(client, server, VIDEO, {"prompt": "x"}, headers=timeout)
    settle(fake, submitted["request_id"])
    status = client.get(submitted["status_url"]).json()
    assert (status["error"], status["error_type"]) == ("Request timed out", "request_timeout")
    for answer in (
        client.get(submitted["response_url"]),
        client.post(f"{server.run_url}/{VIDEO}", json={"prompt": "x"}, headers=timeout),
    ):
        assert answer.status_code == 504
        assert answer.headers["x-fal-request-timeout-type"] == "user"
        assert answer.headers["x-fal-error-type"] == "request_timeout"
    # A deadline the queue meets does not matter once the runner started.
    quick = submit(client, server, FLUX, {"prompt": "x"}, headers={"X-Fal-Request-Timeout": "5.0"})
    settle(fake, quick["request_id"])
    assert client.get(quick["response_url"]).status_code == 200
    bad = client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"}, headers={"X-Fal-Request-Timeout": "soon"})
    assert bad.status_code == 400 and bad.json()["error_type"] == "bad_request"


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    failing: ClassVar[int] = 0
    """Answer 500 to this many deliveries first (-1: to every one)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(({name.lower(): value for name, value in self.headers.items()}, body))
        failing = type(self).failing
        if failing:
            type(self).failing = failing - 1 if failing > 0 else failing
        self.send_response(500 if failing else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    _Receiver.received = []
    _Receiver.failing = 0
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/hook?x=1", _Receiver.received
    finally:
        http.shutdown()
        http.server_close()
        thread.join()


def test_webhook_is_posted_without_authorization(
    client: httpx.Client, server: SandboxServer, fake: FakeFal, receiver: tuple[str, list[Any]]
) -> None:
    url, received = receiver
    ok = submit(client, server, FLUX, {"prompt": "x"}, params={"fal_webhook": url})
    failed = submit(client, server, FLUX, {}, params={"fal_webhook": url})
    assert fake.jobs[ok["request_id"]].webhook_url == url
    wait_until(lambda: len(received) == 2)
    bodies = {body["request_id"]: (headers, body) for headers, body in ((h, json.loads(b)) for h, b in received)}
    headers, body = bodies[ok["request_id"]]
    assert "authorization" not in headers
    assert body["status"] == "OK" and body["gateway_request_id"] == ok["request_id"]
    assert body["payload"]["images"][0]["content_type"] == "image/png"
    _, error = bodies[failed["request_id"]]
    assert error["status"] == "ERROR" and error["error"] == "Invalid status code: 422"
    assert error["payload"]["detail"][0]["loc"] == ["body", "prompt"]
    wait_until(lambda: len(fake.webhook_deliveries) == 2)  # recorded once the receiver has answered
    assert {delivery.status_code for delivery in fake.webhook_deliveries} == {200}


def verify_as_the_reference_says(jwks: dict[str, Any], headers: dict[str, str], body: bytes) -> str:
    """The `kid` of the published key that signed this delivery (reference 8.1), checked from first principles."""
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    ).encode()
    for key in jwks["keys"]:
        assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4)))
        try:
            public.verify(bytes.fromhex(headers["x-fal-webhook-signature"]), message)
        except InvalidSignature:
            continue
        return key["kid"]
    raise AssertionError("no published key signed this delivery")


def test_webhooks_are_signed_with_a_key_the_sandbox_publishes(
    client: httpx.Client, anonymous: httpx.Client, server: SandboxServer, fake: FakeFal, receiver: tuple[str, Any]
) -> None:
    url, received = receiver
    jwks = anonymous.get(f"{server.rest_url}/.well-known/jwks.json")  # public, as fal's keys are
    assert jwks.status_code == 200 and len(jwks.json()["keys"]) == 1
    first = submit(client, server, FLUX, {"prompt": "x"}, params={"fal_webhook": url})
    wait_until(lambda: len(received) == 1)
    headers, body = received[0]
    assert headers["x-fal-webhook-request-id"] == first["request_id"] == json.loads(body)["request_id"]
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 10
    assert headers["x-fal-webhook-user-id"].startswith("sandbox-user-")
    assert verify_as_the_reference_says(jwks.json(), headers, body) == fake.webhook_signer.kid

    published = fake.webhook_signer.rotate()  # a rotation: the new key signs, both are published
    hidden_before = anonymous.get(f"{server.rest_url}/.well-known/jwks.json").json()
    assert [key["kid"] for key in hidden_before["keys"]] == [published, jwks.json()["keys"][0]["kid"]]
    fake.webhook_signer.rotate(publish=False)  # a key nobody can know
    second = submit(client, server, FLUX, {"prompt": "y"}, params={"fal_webhook": url})
    wait_until(lambda: len(received) == 2)
    headers, body = received[1]
    assert headers["x-fal-webhook-request-id"] == second["request_id"]
    with pytest.raises(AssertionError, match="no published key"):
        verify_as_the_reference_says(anonymous.get(f"{server.rest_url}/.well-known/jwks.json").json(), headers, body)
    fake.reset()  # back to the first key, alone
    assert anonymous.get(f"{server.rest_url}/.well-known/jwks.json").json() == jwks.json()


def test_a_webhook_is_retried_until_the_receiver_takes_it(
    client: httpx.Client, server: SandboxServer, fake: FakeFal, receiver: tuple[str, Any]
) -> None:
    url, received = receiver
    _Receiver.failing = 2
    submitted = submit(client, server, FLUX, {"prompt": "x"}, params={"fal_webhook": url})
    wait_until(lambda: len(fake.webhook_deliveries) == 3, timeout=10)  # 10 s and 20 s (x 0.02) later
    attempts = [(d.attempt, d.status_code) for d in fake.webhook_deliveries]
    assert attempts == [(1, 500), (2, 500), (3, 200)]
    assert {json.loads(body)["request_id"] for _, body in received} == {submitted["request_id"]}
    gaps = [later.sent_at - earlier.sent_at for earlier, later in itertools.pairwise(fake.webhook_deliveries)]
    assert gaps[0] >= 10 * SCALE * 0.9 and gaps[1] >= 20 * SCALE * 0.9  # fal's schedule, scaled
    delivered = fake.webhook_deliveries[-1]
    assert delivered.content == received[-1][1]  # the exact bytes, for a test to replay
    assert delivered.headers["x-fal-webhook-request-id"] == submitted["request_id"]


def test_a_webhook_nobody_takes_is_given_up_after_fals_ten_retries(
    client: httpx.Client, server: SandboxServer, fake: FakeFal, receiver: tuple[str, Any]
) -> None:
    url, received = receiver
    _Receiver.failing = -1
    fake.time_scale = 0.0005  # the two hours of retries in about three seconds
    submit(client, server, FLUX, {"prompt": "x"}, params={"fal_webhook": url})
    wait_until(lambda: len(fake.webhook_deliveries) == 11, timeout=20)
    time.sleep(1.0)
    assert [d.attempt for d in fake.webhook_deliveries] == list(range(1, 12))
    assert {d.status_code for d in fake.webhook_deliveries} == {500} and len(received) == 11


def test_an_operators_webhook_url_is_delivered_to_whatever_its_host() -> None:
    """`webhook_urls` are fal-mcp's own public webhook, named by its operator, not chosen by a caller."""
    public = "https://mcp.example.com/webhooks/fal"
    assert refusal(public, "/webhooks/fal", {public}) is None
    assert refusal("https://mcp.example.com/other", "/webhooks/fal", {public}) is not None
    assert refusal(public, "/webhooks/fal") is not None


# -- faults -------------------------------------------------------------------------------------


def test_status_fault_with_retry_after(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(route="submit", status=429, headers={"Retry-After": "1"}))
    answer = client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert answer.json() == {"detail": "Too Many Requests"}
    assert "x-fal-request-id" not in answer.headers
    assert fake.jobs == {}
    assert client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"}).status_code == 200  # used up


def test_ingress_503_with_and_without_request_id(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(status=503, body=NGINX_503))
    fake.inject(Fault(status=503, body={"detail": "runner unavailable"}, headers={"x-fal-request-id": "r-1"}))
    ingress = client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    assert ingress.status_code == 503 and "nginx" in ingress.text
    assert ingress.headers["content-type"].startswith("text/html")
    assert "x-fal-request-id" not in ingress.headers
    from_fal = client.get(f"{server.queue_url}/fal-ai/flux/requests/r-1/status")
    assert from_fal.status_code == 503 and from_fal.headers["x-fal-request-id"] == "r-1"
    assert from_fal.json() == {"detail": "runner unavailable"}


def test_delay_fault_then_normal_answer(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(route="run", delay_s=0.3))
    started = time.monotonic()
    answer = client.post(f"{server.run_url}/fal-ai/any-llm", json={"prompt": "x"})
    assert answer.status_code == 200 and time.monotonic() - started >= 0.3


def test_drop_before_handling(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(route="submit", drop="before"))
    with pytest.raises(httpx.TransportError):
        client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    assert fake.jobs == {}
    assert len(fake.requests_for("submit")) == 1
    assert client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"}).status_code == 200


def test_drop_after_handling(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(route="submit", drop="after"))
    with pytest.raises(httpx.TransportError):
        client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    (job,) = fake.jobs.values()
    assert job.endpoint_id == FLUX


def reset_by_peer(error: BaseException) -> bool:
    """Whether a failed request's cause was a TCP RST (not a clean close)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionResetError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@pytest.mark.parametrize(("drop", "handled"), [("reset", False), ("reset-after", True)])
def test_reset_connections(
    client: httpx.Client, server: SandboxServer, fake: FakeFal, drop: Any, handled: bool
) -> None:
    fake.inject(Fault(route="submit", drop=drop))
    with pytest.raises(httpx.ReadError) as raised:
        client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    assert reset_by_peer(raised.value), repr(raised.value)
    assert len(fake.requests_for("submit")) == 1
    assert len(fake.jobs) == (1 if handled else 0)  # reset before the fake handled it, or after
    assert client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"}).status_code == 200


def test_a_dropped_connection_is_a_clean_close_not_a_reset(
    client: httpx.Client, server: SandboxServer, fake: FakeFal
) -> None:
    fake.inject(Fault(route="submit", drop="before"))
    with pytest.raises(httpx.RemoteProtocolError) as raised:
        client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    assert not reset_by_peer(raised.value)


def test_truncated_answers(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(route="submit", truncate=True))
    answer = client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        answer.json()
    (job,) = fake.jobs.values()  # handled: the job exists, only its answer was cut
    assert answer.text == json.dumps(job.submit_body(), separators=(",", ":"))[: len(answer.content)]
    fake.inject(Fault(route="stream", truncate=True))
    with client.stream("GET", f"{job.urls['status_url']}/stream") as stream:
        body = stream.read().decode()
    assert body.startswith("data: {") and not body.endswith("\n\n")  # the first event breaks off


def test_fault_times_order_and_filters(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    fake.inject(Fault(route="submit", endpoint_id="fal-ai/any-llm", status=502, times=2))
    fake.inject(Fault(route="submit", status=500))
    fake.inject(Fault(route="status", endpoint_id="fal-ai/flux", status=409))

    def post(endpoint: str) -> int:
        return client.post(f"{server.queue_url}/{endpoint}", json={"prompt": "x"}).status_code

    assert post("fal-ai/any-llm") == 502  # the first matching fault wins
    assert post(FLUX) == 500  # the endpoint filter let this one pass to the next fault
    assert post("fal-ai/any-llm") == 502
    assert post("fal-ai/any-llm") == 200  # times=2 used up
    rid = next(iter(fake.jobs))
    assert client.get(f"{server.queue_url}/fal-ai/any-llm/requests/{rid}/status").status_code != 409
    assert client.get(f"{server.queue_url}/fal-ai/flux/requests/{rid}/status").status_code == 409
    fake.inject(Fault(status=500))
    fake.clear_faults()
    assert post(FLUX) == 200
    with pytest.raises(ValueError, match="unknown route"):
        Fault(route="submitt")
    with pytest.raises(ValueError, match="drop must be"):
        Fault(drop="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="truncate"):
        Fault(truncate=True, drop="after")


# -- chaos --------------------------------------------------------------------------------------


def chaos_run(client: httpx.Client, server: SandboxServer, fake: FakeFal, seed: int, count: int) -> list[Any]:
    """`count` status requests (each answered 404 unless faulted) under 20 % chaos; the kinds hit, by index."""
    fake.reset()
    fake.chaos = chaos = Chaos(rate=0.2, seed=seed, kinds=("429", "ingress-502", "ingress-503", "malformed"))
    for n in range(count):
        client.get(f"{server.queue_url}/fal-ai/flux/requests/{n:04d}/status")
    client.get(f"{server.api_url}/v1/models")  # not a queue route: never drawn
    assert chaos.drawn == count and all(hit.request.route == "status" for hit in chaos.hits)
    return [(hit.request.request_id, hit.kind) for hit in chaos.hits]


def test_chaos_is_deterministic_from_its_seed(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    first = chaos_run(client, server, fake, seed=7, count=100)
    assert 8 <= len(first) <= 40  # about 20 of 100
    assert chaos_run(client, server, fake, seed=7, count=100) == first
    assert chaos_run(client, server, fake, seed=8, count=100) != first


def test_chaos_deals_every_kind_evenly(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    kinds = ("429", "ingress-502", "ingress-503", "ingress-504", "malformed")
    fake.chaos = chaos = Chaos(rate=1.0, seed=1, kinds=kinds)
    answers = [client.get(f"{server.queue_url}/fal-ai/flux/requests/r{n}/status") for n in range(10)]
    assert sorted(hit.kind for hit in chaos.hits) == sorted(kinds * 2)
    for hit, answer in zip(chaos.hits, answers, strict=True):
        assert hit.request.path == answer.request.url.path
        if hit.kind == "429":
            assert answer.status_code == 429 and answer.headers["retry-after"] == "0.1"
        elif hit.kind.startswith("ingress-"):
            assert answer.status_code == int(hit.kind[-3:]) and "nginx" in answer.text
            assert "x-fal-request-id" not in answer.headers
        else:  # a handled 404, cut in half
            assert answer.status_code == 404 and answer.text == '{"detail":"Request not found"}'[:15]
    fake.clear_faults()
    assert fake.chaos is None


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("drop-before", httpx.RemoteProtocolError),
        ("drop-after", httpx.RemoteProtocolError),
        ("reset-before", httpx.ReadError),
        ("reset-after", httpx.ReadError),
        ("slow", httpx.ReadTimeout),
    ],
)
def test_chaos_connection_faults_on_a_submit(
    server: SandboxServer, fake: FakeFal, kind: str, failure: type[Exception]
) -> None:
    fake.chaos = chaos = Chaos(rate=1.0, kinds=(kind,), slow_s=0.5)
    with httpx.Client(headers={"Authorization": f"Key {SANDBOX_KEY}"}, timeout=0.2) as client:
        with pytest.raises(failure) as raised:
            client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"})
        assert reset_by_peer(raised.value) is kind.startswith("reset")
    (hit,) = chaos.hits
    assert hit.kind == kind and hit.request.route == "submit" and json.loads(hit.request.body) == {"prompt": "x"}
    wait_until(lambda: len(fake.jobs) == int(hit.handled))  # a slow submit is handled once its delay is over
    assert hit.handled is (kind != "drop-before" and kind != "reset-before")


def test_chaos_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="rate"):
        Chaos(rate=1.5)
    with pytest.raises(ValueError, match="unknown"):
        Chaos(kinds=("gremlins",))
    with pytest.raises(ValueError, match="unknown"):
        Chaos(routes=("nowhere",))  # type: ignore[arg-type]


# -- recording ----------------------------------------------------------------------------------


def test_requests_are_recorded_with_headers(client: httpx.Client, server: SandboxServer, fake: FakeFal) -> None:
    headers = {
        "X-Fal-Runner-Hint": "warm-1",
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Request-Timeout": "30.0",
        "User-Agent": "fal-mcp-test/1",
    }
    submitted = submit(client, server, FLUX, {"prompt": "x"}, headers=headers, params={"fal_webhook": "http://h/x"})
    client.get(submitted["status_url"], params={"logs": "1"})
    (recorded,) = fake.requests_for("submit")
    assert recorded.method == "POST" and recorded.path == f"/queue/{FLUX}"
    assert recorded.endpoint_id == FLUX and recorded.request_id is None
    assert recorded.query == {"fal_webhook": "http://h/x"}
    assert recorded.headers["x-fal-runner-hint"] == "warm-1"
    assert recorded.headers["x-fal-queue-priority"] == "low"
    assert recorded.headers["x-fal-request-timeout"] == "30.0"
    assert recorded.headers["user-agent"] == "fal-mcp-test/1"
    assert recorded.headers["authorization"] == f"Key {SANDBOX_KEY}"
    assert json.loads(recorded.body) == {"prompt": "x"}
    job = fake.jobs[submitted["request_id"]]
    assert (job.runner_hint, job.priority, job.start_timeout) == ("warm-1", "low", 30.0)
    (status,) = fake.requests_for("status")
    assert status.endpoint_id == "fal-ai/flux" and status.request_id == submitted["request_id"]
    assert status.query == {"logs": "1"}
    assert [recorded.route for recorded in fake.requests] == ["submit", "status"]
    bad = client.post(f"{server.queue_url}/{FLUX}", json={"prompt": "x"}, headers={"X-Fal-Queue-Priority": "urgent"})
    assert bad.status_code == 400 and "X-Fal-Queue-Priority" in bad.json()["detail"]


# -- the server itself --------------------------------------------------------------------------


def test_server_lifecycle(
    anonymous: httpx.Client,
) -> None:
    sandbox = SandboxServer(FakeFal(time_scale=SCALE)).start()
    try:
        assert sandbox.url.startswith("http://127.0.0.1:") and sandbox.port > 0
        assert sandbox.queue_url == sandbox.url + "/queue" and sandbox.cdn_url == sandbox.url + "/cdn"
        assert (sandbox.run_url, sandbox.api_url, sandbox.rest_url) == (
            sandbox.url + "/run",
            sandbox.url + "/api",
            sandbox.url + "/rest",
        )
        assert anonymous.get(sandbox.url + "/").status_code == 404
    finally:
        sandbox.stop()
        sandbox.stop()
    with pytest.raises(httpx.ConnectError):
        anonymous.get(sandbox.url + "/")


def test_stop_ends_open_streams_promptly() -> None:
    with SandboxServer(FakeFal()) as sandbox, httpx.Client(headers={"Authorization": f"Key {SANDBOX_KEY}"}) as http:
        status_url = http.post(f"{sandbox.queue_url}/{VIDEO}", json={"prompt": "x"}).json()["status_url"]
        lines: list[str] = []

        def follow() -> None:
            with http.stream("GET", status_url + "/stream") as response:
                lines.extend(line for line in response.iter_lines() if line)

        reader = threading.Thread(target=follow)
        reader.start()
        wait_until(lambda: bool(lines))
        started = time.monotonic()
        sandbox.stop()
        reader.join(5)
        assert time.monotonic() - started < 2.0 and not reader.is_alive()


def test_module_entry_point_prints_urls(
    anonymous: httpx.Client,
) -> None:
    command = [sys.executable, "-m", "fal_mcp.sandbox", "--port", "0", "--time-scale", "0.01"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            info = json.loads(process.stdout.readline())
            assert info["key"] == SANDBOX_KEY and info["locked_key"] == LOCKED_KEY
            assert info["queue_url"] == info["url"] + "/queue"
            answer = anonymous.post(
                f"{info['run_url']}/fal-ai/any-llm",
                json={"prompt": "hi"},
                headers={"Authorization": f"Key {info['key']}"},
            )
            assert answer.json()["output"].endswith("You said: hi")
        finally:
            process.terminate()
            process.communicate(timeout=10)
        assert process.returncode == 0
