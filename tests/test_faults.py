"""Every fault fal (or the network in front of it) can throw, against every operation it can hit.

For each: the call ends within its budget in a result or one clear error; status, result and cancel retry as
the contract says (connection errors, 429 with Retry-After, ingress 502/503/504) and nothing else; a submit or
run is never sent twice; and the server serves the next call normally.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from fal_mcp.sandbox import NGINX_503, FakeFal, Fault, SandboxServer
from fal_mcp.server.build import create_server
from tests.conftest import settings_for

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
CALL_BUDGET_S = 20  # generous: a hang, not a slow machine, is what this catches

TRANSIENT = {
    "429-retry-after": lambda route: Fault(route=route, status=429, headers={"Retry-After": "0.3"}),
    "ingress-502": lambda route: Fault(route=route, status=502, body="<html>502 Bad Gateway nginx</html>"),
    "ingress-503": lambda route: Fault(route=route, status=503, body=NGINX_503),
    "ingress-504": lambda route: Fault(route=route, status=504, body="<html>504 Gateway Time-out nginx</html>"),
    "dropped-before": lambda route: Fault(route=route, drop="before"),
    "dropped-after": lambda route: Fault(route=route, drop="after"),
    "reset-before": lambda route: Fault(route=route, drop="reset"),
    "reset-after": lambda route: Fault(route=route, drop="reset-after"),
    "slow-past-timeout": lambda route: Fault(route=route, delay_s=1.5),
}
"""Faults a read may meet: each is retried, so the call still succeeds."""

FINAL = {
    "app-503": lambda route: Fault(route=route, status=503, headers={"x-fal-request-id": "r"}, times=9),
    "500": lambda route: Fault(
        route=route, status=500, body={"detail": "boom", "error_type": "internal_error"}, times=9
    ),
    "malformed-json": lambda route: Fault(route=route, status=200, body="{this is not json", times=9),
    "truncated-json": lambda route: Fault(
        route=route, status=200, body='{"status": "IN_QUE', headers={"content-type": "application/json"}, times=9
    ),
    "html-200": lambda route: Fault(route=route, status=200, body="<html>maintenance</html>", times=9),
}
"""Answers that are not retried: the call ends in one clear error."""


@pytest.fixture
async def client(sandbox: SandboxServer, fake: FakeFal) -> AsyncIterator[Client]:
    server = create_server(settings_for(sandbox, request_timeout_s=0.5, retries=3, wait_s=10))
    async with Client(server) as connected:
        yield connected


def text(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(CALL_BUDGET_S):
        return await client.call_tool(tool, arguments)


async def completed_request(client: Client) -> str:
    result = await call(client, "submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    rid = str(result.structured_content["request_id"])  # type: ignore[index]
    await call(client, "get-result", {"endpoint_id": FLUX, "request_id": rid, "wait_s": 10})
    return rid


async def healthy(client: Client, fake: FakeFal) -> None:
    fake.clear_faults()
    result = await call(client, "run-model", {"endpoint_id": FLUX, "input": {"prompt": "after the fault"}})
    assert not result.is_error and result.structured_content and result.structured_content["status"] == "COMPLETED"


READS = {
    "get-status": ("status", lambda rid: {"endpoint_id": FLUX, "request_id": rid}),
    "get-result": ("result", lambda rid: {"endpoint_id": FLUX, "request_id": rid}),
    "cancel": ("cancel", lambda rid: {"endpoint_id": FLUX, "request_id": rid}),
}


@pytest.mark.parametrize("fault", list(TRANSIENT), ids=list(TRANSIENT))
@pytest.mark.parametrize("tool", list(READS))
async def test_reads_ride_out_transient_faults(client: Client, fake: FakeFal, tool: str, fault: str) -> None:
    route, arguments = READS[tool]
    rid = await completed_request(client)
    before = len(fake.requests_for(route))
    fake.inject(TRANSIENT[fault](route))
    result = await call(client, tool, arguments(rid))
    assert not result.is_error, text(result)
    assert len(fake.requests_for(route)) - before == 2  # the faulty attempt, then the retry
    await healthy(client, fake)


@pytest.mark.parametrize("fault", list(FINAL), ids=list(FINAL))
@pytest.mark.parametrize("tool", list(READS))
async def test_reads_report_final_faults_once(client: Client, fake: FakeFal, tool: str, fault: str) -> None:
    route, arguments = READS[tool]
    rid = await completed_request(client)
    before = len(fake.requests_for(route))
    fake.inject(FINAL[fault](route))
    result = await call(client, tool, arguments(rid))
    assert result.is_error and text(result).startswith(tool), text(result)
    assert len(fake.requests_for(route)) - before == 1  # an answer, even a bad one, is not retried
    await healthy(client, fake)


BILLED = {
    "submit": ("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}}),
    "run-model": ("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}}),
    "run-model-sync": ("run", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "mode": "sync"}),
}


@pytest.mark.parametrize("fault", [*TRANSIENT, *FINAL])
@pytest.mark.parametrize("tool", list(BILLED))
async def test_billed_calls_are_never_sent_twice(client: Client, fake: FakeFal, tool: str, fault: str) -> None:
    route, arguments = BILLED[tool]
    faults = {**TRANSIENT, **FINAL}
    fake.inject(faults[fault](route))
    result = await call(client, tool.removesuffix("-sync"), arguments)
    assert len(fake.requests_for(route)) == 1, "a billed request reached fal more than once"
    if fault == "slow-past-timeout" and route == "submit":
        # the answer came too late to read, but fal did queue it: the caller must hear it may exist
        assert result.is_error and "may have received" in text(result)
    elif result.is_error:
        assert text(result).startswith("run-model" if tool.startswith("run-model") else tool), text(result)
    await healthy(client, fake)


@pytest.mark.parametrize("drop", ["reset", "reset-after"])
@pytest.mark.parametrize("tool", list(BILLED))
async def test_a_billed_call_whose_connection_is_reset(client: Client, fake: FakeFal, tool: str, drop: Any) -> None:
    # Reset before the fake handled it (nothing queued) or after (queued, answer lost): the server cannot tell
    # the two apart, so both must end the same way: reported as maybe received, kept in the history, not re-sent.
    route, arguments = BILLED[tool]
    prompt = f"reset {drop} {tool} {uuid.uuid4()}"
    fake.inject(Fault(route=route, drop=drop))
    result = await call(client, tool.removesuffix("-sync"), {**arguments, "input": {"prompt": prompt}})
    assert result.is_error and "may have received it" in text(result), text(result)
    assert len(fake.requests_for(route)) == 1, "a billed request reached fal more than once"
    assert len(fake.jobs) == (1 if drop == "reset-after" else 0)
    listed = await call(client, "list-requests", {"state": "UNKNOWN", "limit": 100})
    kept = [r for r in listed.structured_content["requests"] if r["input_summary"] == {"prompt": prompt}]  # type: ignore[index]
    assert len(kept) == 1 and kept[0].get("request_id") is None  # no id: fal's answer never came
    await healthy(client, fake)


@pytest.mark.parametrize("tool", list(BILLED))
async def test_a_billed_call_answered_2xx_with_unreadable_json(client: Client, fake: FakeFal, tool: str) -> None:
    # fal answered 2xx, so it took the request (a run even ran it); only its answer was cut off. Saying "try
    # again" would bill twice, and forgetting it would hide a job that may be running.
    route, arguments = BILLED[tool]
    prompt = f"truncated {tool} {uuid.uuid4()}"
    fake.inject(Fault(route=route, truncate=True))
    result = await call(client, tool.removesuffix("-sync"), {**arguments, "input": {"prompt": prompt}})
    assert result.is_error and "not re-sent" in text(result) and "Try again" not in text(result), text(result)
    assert len(fake.requests_for(route)) == 1 and len(fake.jobs) == 1
    listed = await call(client, "list-requests", {"state": "UNKNOWN", "limit": 100})
    kept = [r for r in listed.structured_content["requests"] if r["input_summary"] == {"prompt": prompt}]  # type: ignore[index]
    assert len(kept) == 1
    await healthy(client, fake)


@pytest.mark.parametrize("tool", list(BILLED))
@pytest.mark.parametrize("answer", ["ingress", "app"])
async def test_a_billed_call_answered_5xx(client: Client, fake: FakeFal, tool: str, answer: str) -> None:
    # An ingress 503 (no x-fal-request-id): no fal app saw the request, nothing exists at fal, and the history
    # keeps nothing, for a run as for a submit. A 503 from fal's app: a run did happen (and failed), and is kept.
    route, arguments = BILLED[tool]
    prompt, rid = f"503 {answer} {tool} {uuid.uuid4()}", str(uuid.uuid4())
    from_app = Fault(route=route, status=503, headers={"x-fal-request-id": rid})
    fake.inject(TRANSIENT["ingress-503"](route) if answer == "ingress" else from_app)
    result = await call(client, tool.removesuffix("-sync"), {**arguments, "input": {"prompt": prompt}})
    assert result.is_error and "fal answered 503" in text(result), text(result)
    listed = await call(client, "list-requests", {"limit": 100})
    kept = [r for r in listed.structured_content["requests"] if r["input_summary"] == {"prompt": prompt}]  # type: ignore[index]
    if answer == "app" and route == "run":
        assert [(r["state"], r["request_id"]) for r in kept] == [("FAILED", rid)]
    else:
        assert kept == []
    await healthy(client, fake)


@pytest.mark.parametrize("fault", list(TRANSIENT), ids=list(TRANSIENT))
async def test_following_a_run_rides_out_faults_on_the_stream_and_status(
    client: Client, fake: FakeFal, fault: str
) -> None:
    fake.inject(TRANSIENT[fault]("stream"))
    fake.inject(TRANSIENT[fault]("status"))
    fake.inject(TRANSIENT[fault]("result"))
    result = await call(client, "run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    assert not result.is_error, text(result)
    assert len(fake.requests_for("submit")) == 1
    await healthy(client, fake)


@pytest.mark.parametrize("events", [0, 1])
async def test_a_stream_that_stops_midway(client: Client, fake: FakeFal, events: int) -> None:
    fake.inject(Fault(route="stream", events=events, drop="after"))
    result = await call(
        client, "run-model", {"endpoint_id": "fal-ai/kling-video/v2/master/text-to-video", "input": {"prompt": "x"}}
    )
    assert not result.is_error and result.structured_content["status"] == "COMPLETED"  # type: ignore[index]
    assert fake.requests_for("status")  # polling finished the job
    await healthy(client, fake)
