"""The fal client against the fake fal over loopback: every operation, every header, every retry rule."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from pydantic import SecretStr

from fal_mcp import __version__
from fal_mcp.fal.client import ALREADY_COMPLETED, CANCELLATION_REQUESTED, FalClient, RequestOptions
from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.fal.errors import (
    FalAuthError,
    FalNotFoundError,
    FalRateLimitError,
    FalServerError,
    FalTransportError,
    MissingKeyError,
)
from fal_mcp.fal.network import ProxyRoutes
from fal_mcp.jobs.waiting import follow
from fal_mcp.media.fetch import fetch_media
from fal_mcp.sandbox import LOCKED_KEY, NGINX_503, SANDBOX_KEY, FakeFal, Fault, SandboxServer
from fal_mcp.server.build import create_server
from fal_mcp.settings import Settings
from tests.conftest import OTHER_KEY, settings_for
from tests.corporate import Proxy, TlsFront, connect_proxy, tls_front

pytestmark = pytest.mark.anyio

FLUX = EndpointId.parse("fal-ai/flux/schnell")
VIDEO = EndpointId.parse("fal-ai/kling-video/v2/master/text-to-video")
ECHO = EndpointId.parse("workflows/sandbox/echo/v2")
PROMPT = {"prompt": "a red fox in snow"}


class FailingConnects(httpx.AsyncBaseTransport):
    """Refuses the first `count` connection attempts, as a network blip would, then behaves."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.remaining > 0:
            self.remaining -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def fal(sandbox: SandboxServer, fake: FakeFal) -> AsyncIterator[FalClient]:
    async with FalClient.open(settings_for(sandbox, request_timeout_s=2.0)) as client:
        yield client


def fake_cdn(fal: FalClient) -> str:
    return fal.urls.queue_base.replace("/queue", "/cdn")


def _paths(fake: FakeFal, route: str) -> list[str]:
    return [r.path for r in fake.requests_for(route)]


async def test_queue_round_trip(fal: FalClient, fake: FakeFal) -> None:
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    assert submitted.status == "IN_QUEUE"
    assert submitted.status_url is not None and "/fal-ai/flux/requests/" in submitted.status_url
    status = await follow(fal, FLUX, submitted.request_id, budget_s=10)
    assert status.status == "COMPLETED" and status.error is None
    assert status.metrics is not None and "inference_time" in status.metrics
    output = await fal.result(FLUX, submitted.request_id)
    assert output["images"][0]["content_type"] == "image/png"
    # status and result went to the base app id, without the endpoint's sub-path
    assert all(p.startswith("/queue/fal-ai/flux/requests/") for p in _paths(fake, "status") + _paths(fake, "result"))
    sent = fake.requests_for("submit")[0]
    assert sent.headers["authorization"] == f"Key {SANDBOX_KEY}"
    assert sent.headers["user-agent"] == f"fal-mcp/{__version__}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.path == "/queue/fal-ai/flux/schnell"


async def test_workflow_ids_keep_three_segments(fal: FalClient, fake: FakeFal) -> None:
    submitted = await fal.submit(ECHO, {"x": 1}, RequestOptions())
    await follow(fal, ECHO, submitted.request_id, budget_s=10)
    assert await fal.result(ECHO, submitted.request_id) == {"echo": {"x": 1}}
    assert _paths(fake, "submit") == ["/queue/workflows/sandbox/echo/v2"]
    assert _paths(fake, "result") == [f"/queue/workflows/sandbox/echo/requests/{submitted.request_id}"]


async def test_request_options_reach_fal(fal: FalClient, fake: FakeFal) -> None:
    options = RequestOptions(priority="low", hint="session-42", start_timeout_s=30)
    await fal.submit(FLUX, PROMPT, options, webhook_url="https://hooks.example/fal?x=1&y=2")
    sent = fake.requests_for("submit")[0]
    assert sent.headers["x-fal-queue-priority"] == "low"
    assert sent.headers["x-fal-runner-hint"] == "session-42"
    assert float(sent.headers["x-fal-request-timeout"]) == 30
    assert sent.query["fal_webhook"] == "https://hooks.example/fal?x=1&y=2"


async def test_sync_run(fal: FalClient, fake: FakeFal) -> None:
    ran = await fal.run(FLUX, PROMPT, RequestOptions(hint="h1"))
    assert ran.output["images"][0]["url"].startswith("http://127.0.0.1:")
    assert ran.request_id
    assert _paths(fake, "run") == ["/run/fal-ai/flux/schnell"]


async def test_status_logs_on_request(fal: FalClient, fake: FakeFal) -> None:
    fake.time_scale = 0.1
    submitted = await fal.submit(VIDEO, {"prompt": "waves"}, RequestOptions())
    seen = await follow(fal, VIDEO, submitted.request_id, budget_s=20, logs=True)
    assert seen.status == "COMPLETED"
    assert seen.logs and any("frame" in line.message.lower() for line in seen.logs)
    assert [r.query.get("logs") for r in fake.requests_for("stream")] == ["1"]
    quiet = await fal.status(VIDEO, submitted.request_id)
    assert quiet.logs is None


async def test_cancel_outcomes(fal: FalClient, fake: FakeFal) -> None:
    submitted = await fal.submit(VIDEO, {"prompt": "slow"}, RequestOptions())
    assert await fal.cancel(VIDEO, submitted.request_id) == CANCELLATION_REQUESTED
    assert fake.jobs[submitted.request_id].cancelled
    assert await fal.cancel(VIDEO, submitted.request_id) == ALREADY_COMPLETED
    with pytest.raises(FalNotFoundError):
        await fal.cancel(VIDEO, "0000-unknown-request")
    put = fake.requests_for("cancel")[0]
    assert put.method == "PUT" and put.body == b""


async def test_unknown_endpoint_and_request(fal: FalClient) -> None:
    with pytest.raises(FalNotFoundError):
        await fal.submit(EndpointId.parse("fal-ai/no-such-model"), PROMPT, RequestOptions())
    with pytest.raises(FalNotFoundError):
        await fal.status(FLUX, "0000-unknown-request")


async def test_missing_key_sends_nothing(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with FalClient.open(settings_for(sandbox, key=None)) as keyless:
        with pytest.raises(MissingKeyError, match="FAL_KEY"):
            await keyless.submit(FLUX, PROMPT, RequestOptions())
    assert fake.requests == []


@pytest.mark.parametrize(("key", "status"), [("unknown-key-id:unknown-secret", 401), (LOCKED_KEY, 403)])
async def test_bad_and_locked_keys(fal: FalClient, key: str, status: int) -> None:
    with pytest.raises(FalAuthError) as caught:
        await fal.with_key(SecretStr(key)).submit(FLUX, PROMPT, RequestOptions())
    assert caught.value.status_code == status


async def test_key_views_share_one_pool(fal: FalClient, fake: FakeFal) -> None:
    other = fal.with_key(SecretStr(OTHER_KEY))
    assert other._http is fal._http  # pyright: ignore[reportPrivateUsage]
    mine = await fal.submit(FLUX, PROMPT, RequestOptions())
    theirs = await other.submit(FLUX, PROMPT, RequestOptions())
    keys = [r.headers["authorization"] for r in fake.requests_for("submit")]
    assert keys == [f"Key {SANDBOX_KEY}", f"Key {OTHER_KEY}"]
    with pytest.raises(FalNotFoundError):  # a request is only visible to the key that made it
        await other.status(FLUX, mine.request_id)
    assert (await other.status(FLUX, theirs.request_id)).status


async def test_a_cookie_fal_sets_travels_with_no_later_request(fal: FalClient, fake: FakeFal) -> None:
    """Every key's view shares one pool: a cookie kept from one caller's answer would ride on the next caller's
    requests (and on a retry of the same one). fal's APIs need no cookie, so none is kept."""
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    cookie = {"Retry-After": "0", "Set-Cookie": "session=mine; Path=/"}
    fake.inject(Fault(route="status", status=429, headers=cookie))
    assert (await fal.status(FLUX, submitted.request_id)).status  # answered on the retry
    await fal.with_key(SecretStr(OTHER_KEY)).submit(FLUX, PROMPT, RequestOptions())
    assert [r.route for r in fake.requests] == ["submit", "status", "status", "submit"]
    assert [r.headers.get("cookie") for r in fake.requests] == [None] * 4


# -- retries of the idempotent operations -------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(route="status", status=503, body=NGINX_503, times=2),
        Fault(route="status", status=502, times=2),
        Fault(route="status", status=504, times=2),
        Fault(route="status", status=429, headers={"Retry-After": "0.2"}, times=2),
        Fault(route="status", drop="before", times=2),
        Fault(route="status", drop="after", times=2),
    ],
    ids=["ingress-503", "ingress-502", "ingress-504", "429-retry-after", "dropped-before", "dropped-after"],
)
async def test_status_retries_transient_failures(fal: FalClient, fake: FakeFal, fault: Fault) -> None:
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    fake.inject(fault)
    status = await fal.status(FLUX, submitted.request_id)
    assert status.request_id == submitted.request_id
    assert len(fake.requests_for("status")) == 3


async def test_retry_after_is_waited(fal: FalClient, fake: FakeFal) -> None:
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    fake.inject(Fault(route="result", status=429, headers={"Retry-After": "0.6"}))
    await follow(fal, FLUX, submitted.request_id, budget_s=10)
    started = time.monotonic()
    await fal.result(FLUX, submitted.request_id)
    assert time.monotonic() - started >= 0.55
    assert len(fake.requests_for("result")) == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(route="status", status=503, headers={"x-fal-request-id": "r"}, times=5), FalServerError),
        (Fault(route="status", status=500, body={"detail": "boom"}, times=5), FalServerError),
        (Fault(route="status", status=504, headers={"X-Fal-Request-Timeout-Type": "user"}, times=5), FalServerError),
        (Fault(route="status", status=429, headers={"Retry-After": "600"}, times=5), FalRateLimitError),
    ],
    ids=["app-503", "500", "504-user-timeout", "429-too-long-to-wait"],
)
async def test_status_does_not_retry_real_answers(fal: FalClient, fake: FakeFal, fault: Fault, error: type) -> None:
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    fake.inject(fault)
    with pytest.raises(error):
        await fal.status(FLUX, submitted.request_id)
    assert len(fake.requests_for("status")) == 1


async def test_retries_are_bounded(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with FalClient.open(settings_for(sandbox, retries=2)) as fal:
        submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
        fake.inject(Fault(route="status", status=503, body=NGINX_503, times=10))
        with pytest.raises(FalServerError):
            await fal.status(FLUX, submitted.request_id)
    assert len(fake.requests_for("status")) == 3


@pytest.mark.parametrize("route", ["result", "cancel"])
async def test_result_and_cancel_retry_dropped_connections(fal: FalClient, fake: FakeFal, route: str) -> None:
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    await follow(fal, FLUX, submitted.request_id, budget_s=10)
    fake.inject(Fault(route=route, drop="before"))
    if route == "result":
        assert "images" in await fal.result(FLUX, submitted.request_id)
    else:
        assert await fal.cancel(FLUX, submitted.request_id) == ALREADY_COMPLETED
    assert len(fake.requests_for(route)) == 2


# -- run and submit are never sent twice -------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(route="submit", drop="after"),
        Fault(route="submit", drop="before"),
        Fault(route="submit", status=503, body=NGINX_503),
        Fault(route="submit", status=502),
        Fault(route="submit", status=429, headers={"Retry-After": "0"}),
    ],
    ids=["dropped-after-fal-queued-it", "dropped-on-arrival", "ingress-503", "ingress-502", "429"],
)
async def test_submit_is_never_resent_once_it_may_have_arrived(fal: FalClient, fake: FakeFal, fault: Fault) -> None:
    fake.inject(fault)
    with pytest.raises((FalTransportError, FalServerError, FalRateLimitError)) as caught:
        await fal.submit(FLUX, PROMPT, RequestOptions())
    if isinstance(caught.value, FalTransportError):
        assert caught.value.maybe_sent
    assert len(fake.requests_for("submit")) == 1
    if fault.drop == "after":
        assert len(fake.jobs) == 1  # fal did queue it: a resend would have billed a second generation


async def test_submit_read_timeout_is_not_resent(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with FalClient.open(settings_for(sandbox, request_timeout_s=0.3)) as fal:
        fake.inject(Fault(route="submit", delay_s=1.0))
        with pytest.raises(FalTransportError) as caught:
            await fal.submit(FLUX, PROMPT, RequestOptions())
    assert caught.value.maybe_sent and caught.value.timed_out
    assert len(fake.requests_for("submit")) == 1


@pytest.mark.parametrize("operation", ["submit", "run"])
async def test_failure_to_connect_is_retried_even_for_billed_calls(
    sandbox: SandboxServer, fake: FakeFal, operation: str
) -> None:
    async with FalClient.open(settings_for(sandbox), transport=FailingConnects(2)) as fal:
        if operation == "submit":
            await fal.submit(FLUX, PROMPT, RequestOptions())
        else:
            await fal.run(FLUX, PROMPT, RequestOptions())
    assert len(fake.requests_for(operation)) == 1


async def test_run_is_never_resent_after_a_drop(fal: FalClient, fake: FakeFal) -> None:
    fake.inject(Fault(route="run", drop="after"))
    with pytest.raises(FalTransportError):
        await fal.run(FLUX, PROMPT, RequestOptions())
    assert len(fake.requests_for("run")) == 1


async def test_redirects_are_not_followed(fal: FalClient, fake: FakeFal) -> None:
    """A redirect would carry the key to wherever it points; the client must stop at it."""
    submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
    fake.inject(Fault(route="status", status=307, headers={"Location": f"{fake_cdn(fal)}/steal"}))
    with pytest.raises(Exception, match="307"):
        await fal.status(FLUX, submitted.request_id)
    assert [r.route for r in fake.requests] == ["submit", "status"]  # nothing went to the Location


# -- one request is bounded in total, a wait the caller asked for is not ----------------------------------


async def test_a_request_is_bounded_in_total_retries_included(sandbox: SandboxServer, fake: FakeFal) -> None:
    """fal that never answers: with 4 retries of 0.4 s each (and backoff) a status call would take about 2.5 s; the
    1 s deadline ends it, says so, and leaves the remaining retries unsent."""
    settings = settings_for(sandbox, request_timeout_s=0.4, retries=4, call_deadline_s=1.0)
    async with FalClient.open(settings) as fal:
        submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
        fake.inject(Fault(route="status", delay_s=3.0, times=10))
        with pytest.raises(FalTransportError) as caught:
            await fal.status(FLUX, submitted.request_id)
    assert caught.value.timed_out
    assert "did not answer within 1s" in str(caught.value) and "FAL_MCP_CALL_DEADLINE_S" in str(caught.value)
    assert len(fake.requests_for("status")) < 5


async def test_a_submit_cut_by_the_deadline_says_it_may_have_arrived(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with FalClient.open(settings_for(sandbox, request_timeout_s=5, call_deadline_s=0.5)) as fal:
        fake.inject(Fault(route="submit", delay_s=2.0))
        with pytest.raises(FalTransportError) as caught:
            await fal.submit(FLUX, PROMPT, RequestOptions())
    assert caught.value.maybe_sent and "FAL_MCP_CALL_DEADLINE_S" in str(caught.value)
    assert len(fake.requests_for("submit")) == 1


async def test_the_deadline_reaches_the_tool_and_spares_waits(sandbox: SandboxServer, fake: FakeFal) -> None:
    """Through the real server: get-status against a silent fal fails within the deadline and says which setting
    bounds it; a job that runs longer than the deadline is still waited for (wait_s, run-model, a sync run)."""
    fake.time_scale = 0.15  # the video model: 18 s -> 2.7 s, beyond the 1 s deadline
    settings = settings_for(sandbox, request_timeout_s=0.4, retries=4, call_deadline_s=1.0, wait_s=30)
    video = {"endpoint_id": str(VIDEO), "input": {"prompt": "waves"}}
    async with Client(create_server(settings)) as client:
        submitted = await client.call_tool("submit", video)
        assert submitted.structured_content is not None
        request_id = submitted.structured_content["request_id"]
        fake.inject(Fault(route="status", delay_s=3.0, times=10))
        silent = await client.call_tool("get-status", {"request_id": request_id, "endpoint_id": str(VIDEO)})
        fake.clear_faults()
        waited = await client.call_tool(
            "get-result", {"request_id": request_id, "endpoint_id": str(VIDEO), "wait_s": 30}
        )
        ran = await client.call_tool("run-model", video)
        synced = await client.call_tool("run-model", {**video, "mode": "sync"})
    assert silent.is_error
    text = silent.content[0].text  # type: ignore[union-attr]
    assert "did not answer within 1s" in text and "FAL_MCP_CALL_DEADLINE_S" in text
    for result in (waited, ran, synced):
        assert not result.is_error, result.content
        assert result.structured_content is not None and result.structured_content["status"] == "COMPLETED"


# -- waiting calls never starve the short ones -----------------------------------------------------------


async def test_waiting_calls_do_not_starve_short_calls(sandbox: SandboxServer, fake: FakeFal) -> None:
    """One long job and 210 get-result calls waiting on it: once they held every pooled connection with a status
    stream each, and a submit queued behind them until their waits ended. Now streams have their own pool and slots
    (4 per key here), and waits on the same request share one follow: the submit is answered while every wait
    still waits, and each wait ends as asked, with the job's handle."""
    fake.time_scale = 3.0  # the video model: 18 s -> 54 s, longer than the waits
    settings = settings_for(sandbox, streams_per_key=4, max_streams=8, max_running_jobs=0)
    async with Client(create_server(settings)) as client:
        submitted = await client.call_tool("submit", {"endpoint_id": str(VIDEO), "input": {"prompt": "waves"}})
        assert submitted.structured_content is not None
        request_id = submitted.structured_content["request_id"]
        waiting = {"request_id": request_id, "endpoint_id": str(VIDEO), "wait_s": 20}
        results: list[Any] = []
        begun: set[int] = set()

        async def wait(n: int) -> None:
            async def heard(progress: float, total: float | None, message: str | None) -> None:
                begun.add(n)

            results.append(await client.call_tool("get-result", waiting, progress_callback=heard))

        async with anyio.create_task_group() as waits:
            for n in range(210):
                waits.start_soon(wait, n)
            with anyio.fail_after(60):  # until every wait has begun: each has told its caller the job's state
                while len(begun) < 210:
                    await anyio.sleep(0.05)
            other = await client.call_tool("submit", {"endpoint_id": str(FLUX), "input": PROMPT})
            ended_before_the_submit = len(results)
        await client.call_tool("cancel", {"request_id": request_id, "endpoint_id": str(VIDEO)})
    assert not other.is_error, other.content
    assert ended_before_the_submit == 0  # it did not wait for the waits (and their streams) to end
    assert len(results) == 210
    assert all(not r.is_error and r.structured_content["status"] in ("IN_QUEUE", "IN_PROGRESS") for r in results)
    assert 1 <= len(fake.requests_for("stream")) <= 4


# -- corporate networks: the proxy and CA of the environment -----------------------------------------------


@asynccontextmanager
async def behind_proxy(
    sandbox: SandboxServer, workdir: Path, **overrides: Any
) -> AsyncIterator[tuple[FalClient, TlsFront, Proxy]]:
    """A client whose fal URLs are a TLS front with a company CA (trusted through `ssl_cert_file` unless overridden),
    with a CONNECT proxy at hand; `https_proxy=True` (or `all_proxy=True`) points that setting at it."""
    async with tls_front(sandbox.url, workdir) as front, connect_proxy() as proxy:
        urls = {f"{name}_url": f"{front.origin}/{name}" for name in ("run", "queue", "api", "rest")}
        chosen = {name: proxy.url if value is True else value for name, value in overrides.items()}
        settings = Settings(
            _env_file=None, fal_key=SANDBOX_KEY, **{**urls, "ssl_cert_file": str(front.ca_file), **chosen}
        )
        async with FalClient.open(settings) as fal:
            yield fal, front, proxy


async def test_https_goes_through_the_proxy_to_a_host_signed_by_the_company_ca(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    async with behind_proxy(sandbox, tmp_path, https_proxy=True) as (fal, front, proxy):
        submitted = await fal.submit(FLUX, PROMPT, RequestOptions())
        await follow(fal, FLUX, submitted.request_id, budget_s=10)
        output = await fal.result(FLUX, submitted.request_id)
    assert output["images"]
    # a tunnel to fal's host (loopback here, which gets no exemption), and the key only inside TLS
    assert set(proxy.connects) == {front.origin.removeprefix("https://")}
    assert SANDBOX_KEY.encode() not in proxy.tunnelled and proxy.refused == []
    assert f"authorization: Key {SANDBOX_KEY}".lower().encode() in front.plaintext.lower()


async def test_no_proxy_decides_what_goes_direct(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    async with behind_proxy(sandbox, tmp_path, https_proxy=True, no_proxy="example.com, 127.0.0.1") as (fal, _, proxy):
        await fal.submit(FLUX, PROMPT, RequestOptions())
    assert proxy.connects == [] and fake.requests_for("submit")


async def test_all_proxy_serves_when_https_proxy_is_unset(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    async with behind_proxy(sandbox, tmp_path, all_proxy=True) as (fal, _, proxy):
        await fal.submit(FLUX, PROMPT, RequestOptions())
    assert len(proxy.connects) == 1


async def test_without_the_company_ca_the_certificate_is_refused(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    async with behind_proxy(sandbox, tmp_path, ssl_cert_file=None, retries=0) as (fal, front, _):
        with pytest.raises(FalTransportError, match="could not connect") as caught:
            await fal.submit(FLUX, PROMPT, RequestOptions())
    assert not caught.value.maybe_sent
    assert fake.requests_for("submit") == [] and SANDBOX_KEY.encode() not in front.plaintext


async def test_media_fetches_use_the_proxy_without_a_credential(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """Previews and media downloads travel like fal's calls (a corporate network lets nothing else out), and carry
    no key."""
    async with behind_proxy(sandbox, tmp_path, https_proxy=True) as (fal, front, proxy):
        ran = await fal.run(FLUX, PROMPT, RequestOptions())
        image = httpx.URL(ran.output["images"][0]["url"])
        url = f"{front.origin}{image.raw_path.decode()}"
        before = len(front.plaintext)
        fetched = await fetch_media(fal.public_http, url, fal_urls=fal.urls, max_bytes=10_000_000, timeout_s=10)
    assert fetched.data.startswith(b"\x89PNG")
    assert len(proxy.connects) >= 1
    assert b"authorization" not in bytes(front.plaintext[before:]).lower()


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("", "queue.fal.run", 443, False),
        ("*", "queue.fal.run", 443, True),
        ("fal.run", "queue.fal.run", 443, True),
        (".fal.run", "queue.fal.run", 443, True),
        ("fal.run", "fal.run", 443, True),
        ("fal.run", "evilfal.run", 443, False),
        ("example.com,fal.ai", "api.fal.ai", 443, True),
        ("127.0.0.1", "127.0.0.1", 8000, True),
        ("localhost", "127.0.0.1", 8000, False),  # names are not resolved: list the address
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("::1", "::1", 80, True),
        ("[::1]:8000", "::1", 8000, True),
        ("[::1]:8000", "::1", 9000, False),
        ("queue.fal.run:443", "queue.fal.run", 443, True),
        ("queue.fal.run:8443", "queue.fal.run", 443, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    routes = ProxyRoutes.from_settings(Settings(_env_file=None, https_proxy="proxy.example:3128", no_proxy=no_proxy))
    shown = f"[{host}]" if ":" in host else host
    expected = None if bypassed else "http://proxy.example:3128"
    assert routes.proxy_for(httpx.URL(f"https://{shown}:{port}/queue")) == expected
