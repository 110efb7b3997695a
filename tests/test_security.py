"""The key never shows: not in a tool result, not in a log line, not in a request to anything but fal."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from mcp import Client

from fal_mcp.logs import REDACTED, SecretRedactor
from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, Fault, SandboxServer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import connect, http_server

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


# -- a key pasted anywhere is never echoed back, nor stored ------------------------------------------------------

"""Shaped like a real fal key (`<uuid>:<32 hex>`) and registered nowhere: scrubbed for its shape alone."""


# -- made-up bearers register nothing; a key counts once fal has accepted it --------------------------------------


# -- the sandbox: webhooks stay on the machine, what it records is bounded, its key is a key -----------------------


def test_sandbox_webhooks_reach_loopback_only(trap: str) -> None:
    """Metadata, private, public and non-http targets are refused, sending nothing; a loopback receiver gets its
    delivery; with `webhook_path` (callers may be remote) only that path on loopback is served."""
    refused_targets = [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[fd00::1]/hook",
        "https://example.com/hook",
        "file:///etc/passwd",
    ]
    for webhook_path in (None, "/webhooks/fal"):
        Trap.seen.clear()
        with SandboxServer(FakeFal(time_scale=0.01, webhook_path=webhook_path)) as sandbox:
            targets = [*refused_targets, f"{trap}/hook", f"{trap}/webhooks/fal"]
            with httpx.Client(headers={"Authorization": f"Key {SANDBOX_KEY}"}, timeout=10) as http:
                for target in targets:
                    submitted = http.post(f"{sandbox.queue_url}/{FLUX}", params={"fal_webhook": target}, json={})
                    assert submitted.status_code == 200
            deadline = time.monotonic() + 10
            while len(sandbox.fake.webhook_deliveries) < len(targets):
                assert time.monotonic() < deadline, sandbox.fake.webhook_deliveries
                time.sleep(0.05)
            outcome = {d.url: (d.status_code, d.error) for d in sandbox.fake.webhook_deliveries}
        for target in refused_targets:
            status, error = outcome[target]
            assert status is None and error is not None and error.startswith("refused")
        delivered = {seen.split("\n", 1)[0] for seen in Trap.seen}
        if webhook_path is None:
            assert delivered == {"POST /hook", "POST /webhooks/fal"}
        else:
            assert delivered == {"POST /webhooks/fal"}
            assert (
                outcome[f"{trap}/hook"][1]
                == "refused: this sandbox delivers webhooks only to /webhooks/fal on loopback"
            )


def test_sandbox_keeps_a_bounded_record() -> None:
    with (
        SandboxServer(FakeFal(time_scale=0.01, max_recorded=50, max_recorded_body=1000, max_jobs=40)) as sandbox,
        httpx.Client(headers={"Authorization": f"Key {SANDBOX_KEY}"}, timeout=10) as http,
    ):
        for n in range(200):
            submitted = http.post(f"{sandbox.queue_url}/{FLUX}", json={"prompt": f"{n:04d}" + "x" * 5000})
            assert submitted.status_code == 200
        fake = sandbox.fake
        assert 50 <= len(fake.requests) <= 55 and len(fake.jobs) == 40
        latest = fake.requests[-1]
        assert len(latest.body) == 1000 and latest.size > 5000 and latest.body.startswith(b'{"prompt":"0199')
        assert submitted.json()["request_id"] in fake.jobs
