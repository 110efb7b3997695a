"""The key never shows: not in a tool result, not in a log line, not in a request to anything but fal."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from fal_mcp.logs import REDACTED, SecretRedactor
from fal_mcp.sandbox import SANDBOX_ADMIN_KEY, FakeFal, Fault, SandboxServer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import connect, fal_mcp_command, http_server

pytestmark = pytest.mark.anyio

KEY_ID, KEY_SECRET = OTHER_KEY.split(":")
FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"


class Trap(BaseHTTPRequestHandler):
    """Any non-fal host: records everything it is sent (webhook deliveries land here)."""

    seen: ClassVar[list[str]] = []

    def _record(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        Trap.seen.append(f"{self.command} {self.path}\n{self.headers}\n{body}")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _record

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def trap() -> Iterator[str]:
    Trap.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


async def exercise_every_tool(client: Client, trap: str, fake: FakeFal) -> list[str]:
    """Happy and failing calls of every tool; returns everything the client was shown."""
    shown: list[str] = []

    async def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(tool, arguments)
        shown.append(result.model_dump_json())
        return result.structured_content or {}

    shown.append((await client.list_tools()).model_dump_json())
    await call("search-models", {"query": "image"})
    await call("get-model-schema", {"endpoint_id": FLUX})
    await call("upload-file", {"path": "/etc/passwd"})  # refused: no allowed folder
    await call("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "logs": True})
    await call("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "mode": "sync"})
    await call("run-model", {"endpoint_id": FLUX, "input": {}})  # refused before sending
    await call("run-model", {"endpoint_id": FLUX, "input": {}, "validate": False})  # fal's 422
    await call("run-model", {"endpoint_id": "fal-ai/sandbox/always-fails", "input": {"prompt": "x"}})
    await call("run-model", {"endpoint_id": "fal-ai/../x", "input": {}})
    submitted = await call("submit", {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "webhook_url": f"{trap}/hook"})
    rid = submitted["request_id"]
    await call("get-status", {"endpoint_id": VIDEO, "request_id": rid, "logs": True})
    await call("get-result", {"endpoint_id": VIDEO, "request_id": rid})
    await call("get-result", {"endpoint_id": VIDEO, "request_id": rid, "wait_s": 20})
    await call("cancel", {"endpoint_id": VIDEO, "request_id": rid})
    await call("cancel", {"endpoint_id": VIDEO, "request_id": "0000-unknown"})
    fake.inject(Fault(route="submit", drop="after"))
    await call("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    fake.inject(Fault(route="status", status=401, body={"detail": "No user found for Key ID and Secret"}))
    await call("get-status", {"endpoint_id": VIDEO, "request_id": rid})
    return shown


def assert_no_key(texts: list[str], where: str) -> None:
    for text in texts:
        assert KEY_SECRET not in text, f"the key's secret leaked into {where}"
        assert KEY_ID not in text, f"the key's id leaked into {where}"


@pytest.mark.parametrize("transport", ["memory", "stdio", "http"])
async def test_key_appears_nowhere_but_in_requests_to_fal(
    transport: str, sandbox: SandboxServer, fake: FakeFal, trap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stderr = tmp_path / "server.stderr"
    if transport == "http":
        with http_server(env_for(sandbox, key=OTHER_KEY), tmp_path, "-vv") as server:
            async with connect("http", sandbox, tmp_path, http_url=server.url) as client:
                shown = await exercise_every_tool(client, trap, fake)
            logs = server.stderr()
    else:
        with stderr.open("w") as log:
            async with connect(transport, sandbox, tmp_path, key=OTHER_KEY, errlog=log, log_level="DEBUG") as client:
                shown = await exercise_every_tool(client, trap, fake)
        logs = stderr.read_text() + "\n".join(caplog.messages) + caplog.text
    assert_no_key(shown, "a tool result")
    assert_no_key([logs], "the server's logs")
    assert_no_key(Trap.seen, "a request to a non-fal host")
    assert any("/hook" in seen for seen in Trap.seen), "the webhook should have reached the trap (from fal)"
    to_fal = [r for r in fake.requests if r.route not in ("cdn", "other")]
    assert to_fal and all(r.headers.get("authorization") == f"Key {OTHER_KEY}" for r in to_fal)
    assert not any(OTHER_KEY in json.dumps(r.query) + r.path for r in fake.requests)
    if transport != "memory":
        assert "DEBUG" in logs  # the logs really were verbose: the absence of the key means something


def test_redactor_scrubs_keys_and_their_halves() -> None:
    redactor = SecretRedactor()
    redactor.add(OTHER_KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redactor)
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("header was Key %s", OTHER_KEY)
        logger.warning("id alone %s, secret alone %s", KEY_ID, KEY_SECRET)
        try:
            raise RuntimeError(f"boom with {OTHER_KEY}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert KEY_ID not in output and KEY_SECRET not in output
    assert output.count(REDACTED) >= 4


async def test_the_admin_key_goes_only_to_billing_events_and_never_shows(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    fake.billing_lag_s = 0.0
    env = env_for(sandbox, FAL_ADMIN_KEY=SANDBOX_ADMIN_KEY, FAL_MCP_LOG_LEVEL="DEBUG", FAL_MCP_STATE_DIR=str(tmp_path))
    params = StdioServerParameters(command=fal_mcp_command(), args=[], env=env, cwd=tmp_path)
    shown: list[str] = []
    stderr = tmp_path / "server.stderr"
    with stderr.open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            for tool, arguments in (
                ("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "mode": "sync"}),
                ("list-requests", {}),
                ("search-models", {"query": "image"}),
            ):
                shown.append((await client.call_tool(tool, arguments)).model_dump_json())
    logs = stderr.read_text()
    assert "DEBUG" in logs and "billing-events" in logs  # verbose, and the charge was looked up
    for where, texts in (("a tool result", shown), ("the server's logs", [logs])):
        assert not any(SANDBOX_ADMIN_KEY in text for text in texts), f"the admin key leaked into {where}"
    lookups = fake.requests_for("billing-events")
    assert lookups and all(r.headers["authorization"] == f"Key {SANDBOX_ADMIN_KEY}" for r in lookups)
    others = [r for r in fake.requests if r.route != "billing-events"]
    assert others and not any(SANDBOX_ADMIN_KEY in r.headers.get("authorization", "") for r in others)
