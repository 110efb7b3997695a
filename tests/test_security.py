"""The key never shows: not in a tool result, not in a log line, not in a request to anything but fal."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from fal_mcp.logs import REDACTED, SecretRedactor, redactor
from fal_mcp.sandbox import SANDBOX_ADMIN_KEY, SANDBOX_KEY, FakeFal, Fault, SandboxServer
from fal_mcp.server.redaction import scrubbed_answer
from tests.conftest import OTHER_KEY, env_for
from tests.harness import bearer_client, connect, fal_mcp_command, http_server

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


@pytest.mark.parametrize(
    "value",
    [
        {"text": f"line one\nline two {OTHER_KEY}\t"},  # escaped characters beside the key
        {"deep": [[{"logs": [{"message": f'said "{KEY_SECRET}"'}]}]]},  # quotes around a half
        {f"a key as a field name {KEY_ID}": 1},
        [1, 2.5, None, True, {"x": f"{KEY_ID}3A{KEY_SECRET}"}],  # a percent-encoded colon without its %
        {"long": "x" * 70_000, "key": OTHER_KEY},  # past the length where runs are looked for in one text
    ],
)
@pytest.mark.parametrize("own", ["", 'a "quoted" token \\ of ours'])
@pytest.mark.parametrize("known", ["own", "accepted"])
def test_answers_are_scrubbed_whatever_their_shape(value: Any, own: str, known: str) -> None:
    """Answers are judged clean from their JSON text at a glance, and walked otherwise: a key is found either way."""
    redactor = SecretRedactor()
    if known == "own":
        redactor.add(OTHER_KEY)
    else:
        redactor.accept(OTHER_KEY)
    if own:
        redactor.add(own)
    scrubbed = json.dumps(redactor.scrub_data(value))
    assert KEY_ID not in scrubbed and KEY_SECRET not in scrubbed and REDACTED in scrubbed
    if own:
        assert own not in json.loads(json.dumps(redactor.scrub_data({"echo": [f"you said {own}"]})))["echo"][0]
    clean = {"status": "COMPLETED", "logs": [{"message": "step 1 of 4\n"}], "n": [1, None]}
    assert redactor.scrub_data(clean) == clean


def test_a_results_text_is_scrubbed_and_its_preview_bytes_pass_as_they_are() -> None:
    """Previews are JPEGs the server encoded (no text from anywhere in them): set aside, not scanned, and put back
    exactly; every other string of the result is scrubbed as always."""
    redactor.accept(OTHER_KEY)
    picture = base64.b64encode(b"\xff\xd8" + bytes(range(256)) * 40).decode()
    result = {
        "content": [
            {"type": "text", "text": f"echoed {OTHER_KEY}"},
            {"type": "image", "data": picture, "mimeType": "image/jpeg"},
            {"type": "image", "data": picture, "mimeType": "image/jpeg", "_meta": {"note": KEY_SECRET}},
        ],
        "structuredContent": {"output": {"prompt": OTHER_KEY}},
    }
    answer = scrubbed_answer(result)
    text = json.dumps(answer)
    assert KEY_ID not in text and KEY_SECRET not in text
    assert [block.get("data") for block in answer["content"]] == [None, picture, picture]
    assert result["content"][1]["data"] == picture  # the answer is a copy: what the tool made is unchanged


KEY_CHARS = "abcdef0123456789-_XYZ"
_runs = st.text(KEY_CHARS, min_size=8, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.tuples(_runs, st.one_of(st.none(), _runs)), min_size=1, max_size=6),
    pieces=st.lists(st.one_of(st.text(KEY_CHARS + " :%/.", max_size=30), st.integers(0, 11)), max_size=12),
)
def test_no_accepted_key_part_survives_scrubbing_however_it_is_glued(
    keys: list[tuple[str, str | None]], pieces: list[str | int]
) -> None:
    """Text made of key characters with accepted keys' parts glued in anywhere: none of the keys still remembered
    (the last three here: the others were forgotten to make room) is left whole."""
    redactor = SecretRedactor(max_accepted=3)
    accepted = [f"{key_id}:{secret}" if secret else key_id for key_id, secret in keys]
    for key in accepted:
        redactor.accept(key)
    parts = [part for key in accepted for part in key.split(":")]
    text = "".join(parts[piece % len(parts)] if isinstance(piece, int) else piece for piece in pieces)
    scrubbed = redactor.scrub(text)
    remembered = [part for key in accepted[-3:] for part in key.split(":")]
    assert not [part for part in remembered if part in scrubbed], (text, scrubbed)


# -- a key pasted anywhere is never echoed back, nor stored ------------------------------------------------------

FAL_SHAPED = "3f2a1b4c-1111-4222-8333-444455556666:0123456789abcdef0123456789abcdef"
"""Shaped like a real fal key (`<uuid>:<32 hex>`) and registered nowhere: scrubbed for its shape alone."""


def pasting(key: str) -> list[tuple[str, dict[str, Any]]]:
    """Tool calls that put `key` where the SDK's argument checks refuse it (and, so, would quote it)."""
    run = {"endpoint_id": FLUX, "input": {"prompt": "x"}}
    return [
        ("submit", {**run, "hint": key + " with a space"}),
        ("submit", {**run, "priority": key}),
        ("run-model", {**run, "mode": key}),
        ("submit", {**run, "webhook_url": key}),
        ("run-model", {"endpoint_id": FLUX, "input": key}),
        ("list-requests", {"state": key}),
        ("list-requests", {"limit": key}),
        ("get-status", {"endpoint_id": FLUX, "request_id": key}),
    ]


async def test_a_pasted_key_is_never_echoed_back_nor_stored(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """The server's key, and anything shaped like a fal key, pasted into any argument, an input, a resource URI or
    a REST path: no tool result, error, resource error, REST body, log line or history row shows it."""
    state = tmp_path / "state"
    env = env_for(sandbox, key=OTHER_KEY, FAL_MCP_STATE_DIR=str(state))
    shown: list[str] = []
    with http_server(env, tmp_path, "--rest", "-vv") as server:
        async with connect("http", sandbox, tmp_path, http_url=server.url) as client:
            for pasted in (OTHER_KEY, FAL_SHAPED):
                for tool, arguments in pasting(pasted):
                    result = await client.call_tool(tool, arguments)
                    assert result.is_error, (tool, arguments)
                    shown.append(result.model_dump_json())
                with pytest.raises(Exception) as refused:
                    await client.read_resource(f"fal://requests/{pasted}")
                shown.append(str(refused.value))
                ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": pasted}})
                assert not ran.is_error and ran.structured_content is not None
                assert ran.structured_content["output"]["prompt"] == REDACTED  # the model echoes its prompt
                shown.append(ran.model_dump_json())
            listed = await client.call_tool("list-requests", {"limit": 10})
            shown.append(listed.model_dump_json())
            assert listed.structured_content is not None
            summaries = [r["input_summary"] for r in listed.structured_content["requests"]]
            assert {"prompt": REDACTED} in summaries
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            for pasted in (OTHER_KEY, FAL_SHAPED):
                status = await http.get(f"/v1/models/fal-ai/flux/requests/{pasted}/status")
                submitted = await http.post(f"/v1/models/{FLUX}/requests", json={"prompt": pasted})
                assert status.status_code == 400 and submitted.status_code == 200
                result = await poll_rest(http, submitted.json()["response_url"])
                assert result.json()["output"]["prompt"] == REDACTED
                shown += [status.text, submitted.text, result.text]
        logs = server.stderr()
    stored = b"".join(path.read_bytes() for path in state.iterdir() if path.name.startswith("history"))
    for key in (OTHER_KEY, FAL_SHAPED):
        for where, text in (
            ("an answer", "\n".join(shown)),
            ("a log line", logs),
            ("the history", stored.decode("latin-1")),
        ):
            for part in key.split(":"):
                assert part not in text, f"{part[:6]}... reached {where}"
    assert sum(REDACTED in text for text in shown) >= 10  # the answers did quote what was pasted, scrubbed
    assert "DEBUG" in logs


async def poll_rest(http: httpx.AsyncClient, url: str) -> httpx.Response:
    for _ in range(200):
        response = await http.get(url)
        if response.status_code == 200:
            return response
        await anyio.sleep(0.05)
    raise AssertionError(f"{url} did not complete")


# -- made-up bearers register nothing; a key counts once fal has accepted it --------------------------------------


async def test_made_up_bearers_register_nothing_and_blank_no_words(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """`--auth fal-key`: bearers fal never accepted, shaped to blank chosen words, change nothing in later logs."""
    env = env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key")
    with http_server(env, tmp_path, "--rest", "-v") as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            for n in range(300):  # each a new "caller", whose call fal refuses with 401
                bearer = {"Authorization": f"Bearer chosen-{n:04d}:run-model"}
                refused = await http.get(f"/v1/models/fal-ai/flux/requests/{n:04d}/status", headers=bearer)
                assert refused.status_code == 401
        async with bearer_client(server.url, SANDBOX_KEY) as client:
            ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
        logs = server.stderr()
    assert not ran.is_error
    assert "run-model ok in" in logs, logs[-2000:]  # the words the bearers named are still there
    assert "chosen-" not in logs
    assert SANDBOX_KEY.split(":")[1] not in logs


async def test_a_key_fal_has_not_accepted_never_reaches_a_log_line_or_an_answer(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A caller whose key fal refuses (so it is never registered) pastes it everywhere: it still shows nowhere."""
    wrong = "wrong-key-id-0001:wrong-key-secret-0123456789"
    env = env_for(sandbox, key=None, FAL_MCP_AUTH="fal-key")
    shown: list[str] = []
    with http_server(env, tmp_path, "--rest", "-vv") as server:
        async with bearer_client(server.url, wrong) as client:
            for tool, arguments in pasting(wrong):
                shown.append((await client.call_tool(tool, arguments)).model_dump_json())
            submitted = await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": wrong}})
            shown.append(submitted.model_dump_json())
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            auth = {"Authorization": f"Bearer {wrong}"}
            rest = await http.get(f"/v1/models/fal-ai/flux/requests/{wrong}/status", headers=auth)
            shown.append(rest.text)
        logs = server.stderr()
    assert "401" in submitted.model_dump_json()  # fal refused the key: it was never accepted
    for part in wrong.split(":"):
        assert part not in logs and part not in "\n".join(shown)
    assert "DEBUG" in logs and REDACTED in logs


def test_accepted_keys_are_bounded_and_scrubbing_still_finds_them() -> None:
    redactor = SecretRedactor(max_accepted=100)
    keys = [f"caller-{n:05d}-id:caller-{n:05d}-secret-0123456789" for n in range(1000)]
    for key in keys:
        redactor.accept(key)
    assert redactor.accepted_count == 100
    assert not redactor.accepted(keys[0]) and redactor.accepted(keys[-1])
    line = f"seen {keys[-1]}, glued 3A{keys[-2].split(':')[1]}, forgotten {keys[0]}"
    assert redactor.scrub(line) == f"seen {REDACTED}:{REDACTED}, glued 3A{REDACTED}, forgotten {keys[0]}"
    assert redactor.scrub(f"real-shaped {FAL_SHAPED}") == f"real-shaped {REDACTED}"  # its shape alone
    assert redactor.scrub("fal-ai/flux/schnell run-model ok") == "fal-ai/flux/schnell run-model ok"


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


async def test_sandbox_key_is_redacted_like_any_key(tmp_path: Path) -> None:
    """`fal-mcp --sandbox`: the sandbox's key, pasted into an argument, shows in no log line and no answer."""
    with http_server({}, tmp_path, "--sandbox", "-vv") as server:
        async with bearer_client(server.url, None) as client:
            pasted = await client.call_tool("get-status", {"endpoint_id": FLUX, "request_id": SANDBOX_KEY})
            ran = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": SANDBOX_KEY}})
        logs = server.stderr()
    assert pasted.is_error and not ran.is_error
    for part in SANDBOX_KEY.split(":"):
        for text in (logs, pasted.model_dump_json(), ran.model_dump_json()):
            assert part not in text
    assert REDACTED in logs and REDACTED in pasted.model_dump_json()


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


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_key_in_a_runners_log_line_never_reaches_a_progress_notification(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path, transport: str
) -> None:
    """Progress is the one text that leaves outside an answer: a runner that prints its prompt (LLM runners do)
    must not carry a pasted key to the client through `notifications/progress`."""
    heard: list[str] = []

    async def on_progress(_progress: float, _total: float | None, message: str | None) -> None:
        heard.append(message or "")

    env = env_for(sandbox, key=OTHER_KEY)
    with contextlib.ExitStack() as servers:
        url = servers.enter_context(http_server(env, tmp_path)).url if transport == "http" else None
        async with connect(transport, sandbox, tmp_path, key=OTHER_KEY, http_url=url) as client:
            for pasted in (OTHER_KEY, FAL_SHAPED):
                result = await client.call_tool(
                    "run-model",
                    {"endpoint_id": "fal-ai/any-llm", "input": {"prompt": f"say {pasted}"}, "logs": True},
                    progress_callback=on_progress,
                )
                assert not result.is_error
    prompts = [line for line in heard if "Prompt: say" in line]
    assert len(prompts) == 2, heard  # the runner's line did reach the client, with the key blanked out
    assert all(REDACTED in line for line in prompts)
    assert not any(OTHER_KEY in line or FAL_SHAPED in line for line in heard)
