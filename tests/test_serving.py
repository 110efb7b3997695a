"""Running a server for others: health probes, logs (text or JSON lines, keys redacted), graceful shutdown."""

from __future__ import annotations

import io
import json
import logging
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fal_mcp.calls import calls
from fal_mcp.logs import REDACTED, CallIdFilter, JsonFormatter, SecretRedactor
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import HttpServer, base_env, bearer_client, fal_mcp_command, http_server, start_http_server
from tests.test_auth import ACCEPT, INITIALIZE
from tests.test_tools import text_of

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
KEY_ID, KEY_SECRET = OTHER_KEY.split(":")


def test_formats_redact_keys_and_carry_the_call_id() -> None:
    """The handler's two filters and either formatter, as `configure_logging` assembles them."""
    redactor = SecretRedactor()
    redactor.add(OTHER_KEY)
    logger = logging.getLogger("test.formats")
    logger.propagate = False
    outputs: dict[str, io.StringIO] = {}
    for name, formatter in (
        ("text", logging.Formatter("%(levelname)s%(call)s: %(message)s")),
        ("json", JsonFormatter()),
    ):
        outputs[name] = io.StringIO()
        handler = logging.StreamHandler(outputs[name])
        handler.setFormatter(formatter)
        handler.addFilter(CallIdFilter())
        handler.addFilter(redactor)
        logger.addHandler(handler)
    try:
        logger.warning("outside any call, key %s", OTHER_KEY)
        with calls.call("run-model") as call:
            logger.warning("inside, id %s and secret %s", KEY_ID, KEY_SECRET)
            try:
                raise RuntimeError(f"boom {OTHER_KEY}")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.handlers.clear()
    text, lines = outputs["text"].getvalue(), outputs["json"].getvalue().splitlines()
    for output in (text, *lines):
        assert KEY_ID not in output and KEY_SECRET not in output
    assert text.count(REDACTED) >= 4 and f"[call {call.id}]" in text
    entries = [json.loads(line) for line in lines]
    assert [entry.get("call_id") for entry in entries] == [None, call.id, call.id]
    assert entries[0]["message"] == f"outside any call, key {REDACTED}"
    assert REDACTED in entries[2]["exc"] and entries[2]["level"] == "ERROR"
    assert {"ts", "level", "logger", "message"} <= set(entries[0])


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_server_logs_redact_every_callers_key(
    log_format: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A BYOK caller pastes its own key into a request id: the log line that would show it shows [REDACTED]."""
    env = env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key", FAL_MCP_LOG_FORMAT=log_format)
    with http_server(env, tmp_path, "--rest", "-vv") as server:
        async with bearer_client(server.url, OTHER_KEY) as client:
            ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
            pasted = await client.call_tool("get-status", {"endpoint_id": FLUX, "request_id": OTHER_KEY})
        async with httpx.AsyncClient(timeout=10) as http:
            rest = await http.get(
                f"{server.base}/v1/models/fal-ai/flux/requests/{OTHER_KEY}/status",
                headers={"Authorization": f"Bearer {OTHER_KEY}"},
            )
        logs = server.stderr()
    assert not ran.is_error and pasted.is_error and rest.status_code == 400
    for shown in (logs, text_of(pasted), rest.text):
        assert KEY_ID not in shown and KEY_SECRET not in shown
    assert REDACTED in text_of(pasted) and REDACTED in rest.text
    failure_lines = [line for line in logs.splitlines() if "get-status failed:" in line]
    assert len(failure_lines) == 2 and all(REDACTED in line for line in failure_lines)
    if log_format == "json":
        entries = [json.loads(line) for line in logs.splitlines()]  # every line is one JSON object
        tool_lines = [e for e in entries if e.get("call_id")]
        assert {e["logger"] for e in tool_lines} >= {
            "httpx",
            "fal_mcp.calls",
            "fal_mcp.server.tools",
            "fal_mcp.web.rest",
        }
        closing = [e["message"] for e in tool_lines if e["logger"] == "fal_mcp.calls"]
        assert any(m.startswith("run-model ok in") for m in closing)
        assert any(m.startswith("get-status failed in") for m in closing)
        assert any(m.startswith("rest get-status failed (400) in") for m in closing)
        assert len({e["call_id"] for e in tool_lines}) == 3  # one id per call
    else:
        assert any("[call " in line and "HTTP Request: POST" in line for line in logs.splitlines())


async def test_health_and_readiness(sandbox: SandboxServer, tmp_path: Path) -> None:
    with http_server(env_for(sandbox, FAL_MCP_AUTH="token", FAL_MCP_AUTH_TOKENS="t" * 20), tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
            alive = await http.get("/healthz")
            ready = await http.get("/readyz", headers={"Host": "anything.example"})
            openapi = await http.get("/openapi.json", headers={"Authorization": "Bearer " + "t" * 20})
    assert alive.status_code == 200 and alive.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert SANDBOX_KEY not in alive.text + ready.text and "t" * 20 not in ready.text
    assert openapi.status_code == 404  # no REST surface unless --rest


async def wait_for(condition: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await anyio.sleep(0.05)


def stop_with_sigterm(server: HttpServer) -> float:
    """SIGTERM, then wait for the process to end; returns how long it took."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    return time.monotonic() - started


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sigterm_answers_waiting_calls_with_their_handle(
    mode: str, sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A run-model waiting on a long job returns its request handle at once; the job keeps running at fal."""
    fake.time_scale = 1.0
    outcome: dict[str, Any] = {}
    with http_server(env_for(sandbox), tmp_path) as server:
        async with bearer_client(server.url, None, mode=mode) as client:
            await client.list_tools()  # as clients do first (the SDK checks results against the listed schemas)

            async def call() -> None:
                arguments = {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "wait_s": 120}
                outcome["result"] = await client.call_tool("run-model", arguments)
                outcome["at"] = time.monotonic()

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await wait_for(lambda: fake.requests_for("stream") or fake.requests_for("status"))  # it is waiting
                took = await anyio.to_thread.run_sync(stop_with_sigterm, server)
        logs = server.stderr()
    result = outcome["result"]
    assert not result.is_error, text_of(result)
    handle = result.structured_content or {}
    assert handle["status"] in ("IN_QUEUE", "IN_PROGRESS") and handle["request_id"] in handle["next_step"]
    assert not fake.jobs[handle["request_id"]].cancelled  # still running at fal, to be fetched later
    assert took < 5, logs  # well inside the 10 s grace: nothing was left to wait for
    assert "shutting down: 1 call(s) in flight" in logs
    assert server.process.returncode in (0, -signal.SIGTERM)


async def test_sigterm_cancels_calls_still_running_after_the_grace_period(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A synchronous run cannot hand back a handle: after the grace period it is cancelled, and the server stops."""
    fake.time_scale = 1.0
    outcome: dict[str, Any] = {}
    with http_server(env_for(sandbox, FAL_MCP_SHUTDOWN_GRACE_S="1"), tmp_path) as server:
        try:
            async with bearer_client(server.url, None) as client, anyio.create_task_group() as group:
                arguments = {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "mode": "sync"}

                async def call() -> None:
                    outcome["result"] = await client.call_tool("run-model", arguments)

                group.start_soon(call)
                await wait_for(lambda: fake.requests_for("run"))
                outcome["took"] = await anyio.to_thread.run_sync(stop_with_sigterm, server)
        except BaseExceptionGroup as cut:  # the client sees its connection end without an answer
            outcome["error"] = cut
        logs = server.stderr()
    assert "result" not in outcome and "error" in outcome
    assert 1 <= outcome["took"] < 6, logs
    assert "cancelling 1 call(s) still in flight" in logs


# -- slow clients, ports, Host without a port ------------------------------------------------------------------


def small_file_limit() -> None:
    """In the server's child process: 512 open files, as a cramped host would allow (most allow 1,024)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))


async def test_slow_clients_cannot_hold_the_server(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    """700 sockets that send a request slowly, or nothing at all, more than the process has files for: health
    checks and calls are still served at once, and each slow socket is cut off when its time to send is up."""
    env = env_for(sandbox, FAL_MCP_REQUEST_READ_TIMEOUT_S="3")
    server = start_http_server(env, tmp_path, preexec_fn=small_file_limit)
    host, port = server.base.removeprefix("http://").split(":")
    slow: list[socket.socket] = []
    try:
        for n in range(700):
            sock = socket.create_connection((host, int(port)), timeout=5)
            if n % 2:  # half send the start of a request and stall; half send nothing
                sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
            slow.append(sock)
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:
            alive = await http.get("/healthz")
        async with bearer_client(server.url, None) as client:
            ran = await client.call_tool("get-model-schema", {"endpoint_id": FLUX})
        assert alive.status_code == 200 and not ran.is_error
        await anyio.sleep(4)  # past FAL_MCP_REQUEST_READ_TIMEOUT_S: the server has let go of every slow socket
        answers = [_drain(sock) for sock in slow[-20:]]
        assert all(answer is not None for answer in answers), answers
        assert any(answer.startswith(b"HTTP/1.1 408") for answer in answers if answer)
        logs = server.stderr()
    finally:
        for sock in slow:
            sock.close()
        server.stop()
    assert "FAL_MCP_MAX_CONNECTIONS lowered" in logs and "Traceback" not in logs


def _drain(sock: socket.socket) -> bytes | None:
    """What the server sent before closing the socket; None if it is still open."""
    sock.settimeout(0.5)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except OSError:  # reset: closed by the server too
        pass
    return received


async def test_loopback_host_without_a_port_is_served(sandbox: SandboxServer, tmp_path: Path) -> None:
    """What a client sends to a server on port 80 (or behind TLS on 443): `Host: localhost`, no port."""
    with http_server(env_for(sandbox), tmp_path) as server:
        async with httpx.AsyncClient(timeout=10) as http:
            answers = [
                await http.post(server.url, json=INITIALIZE, headers={**ACCEPT, **headers})
                for headers in (
                    {"Host": "localhost"},
                    {"Host": "127.0.0.1"},
                    {"Host": "[::1]"},
                    {"Host": "localhost", "Origin": "http://localhost"},
                )
            ]
            foreign = await http.post(server.url, json=INITIALIZE, headers={**ACCEPT, "Host": "evil.example"})
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
    assert foreign.status_code == 421


def test_a_busy_port_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [fal_mcp_command(), "--transport", "http", "--port", str(port)],
            capture_output=True,
            text=True,
            env=base_env(),
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    problem = [line for line in lines if "--port" in line]
    assert len(problem) == 1 and f"port {port}" in problem[0] and "in use" in problem[0], done.stderr
