"""Reaching a real fal-mcp the three ways a user's client does: in memory, over stdio, over streamable HTTP.

stdio spawns the installed `fal-mcp` console script; HTTP spawns `fal-mcp --transport http --port 0` and reads
the announced URL from its stderr. Both get their fal URLs and key through the environment, exactly like a
client config would set them, and write their stderr to a file the tests can read (the log-leak test does).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from fal_mcp.sandbox import SANDBOX_KEY, SandboxServer
from fal_mcp.server.build import create_server
from tests.conftest import env_for, settings_for

TRANSPORTS = ("memory", "stdio", "http")
_ANNOUNCED = re.compile(r"streamable HTTP on (http://[^\s\"]+/mcp)")

CONTRACT_HINTS = {  # the contract's five core tools: readOnly, destructive, idempotent, openWorld
    "run-model": (False, False, False, True),
    "submit": (False, False, False, True),
    "get-status": (True, False, True, True),
    "get-result": (True, False, True, True),
    "cancel": (False, True, True, True),
}
CORE_TOOLS = frozenset(CONTRACT_HINTS)
TOOL_HINTS = {  # every tool the server lists, with its hints
    **CONTRACT_HINTS,
    "search-models": (True, False, True, True),
    "get-model-schema": (True, False, True, True),
    "upload-file": (False, False, False, True),
    "list-requests": (True, False, True, False),
}


def fal_mcp_command() -> str:
    """The console script installed next to this interpreter (what a client config launches)."""
    found = shutil.which("fal-mcp", path=str(Path(sys.executable).parent)) or shutil.which("fal-mcp")
    if found is None:
        raise RuntimeError("the fal-mcp console script is not installed: pip install -e '.[test]'")
    return found


@dataclass
class HttpServer:
    """A spawned `fal-mcp --transport http`, alive until `stop()`."""

    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def base(self) -> str:
        """`http://host:port` of the server, reached over loopback even when it bound every address."""
        return self.url.removesuffix("/mcp").replace("://0.0.0.0:", "://127.0.0.1:")

    def stop(self) -> None:
        terminate(self.process)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we spawned: SIGTERM, then SIGKILL if it is still there after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_http_server(
    env: dict[str, str], workdir: Path, *args: str, preexec_fn: Callable[[], None] | None = None
) -> HttpServer:
    """Spawn the server; `preexec_fn` runs in the child before it starts (to set a resource limit, say)."""
    stderr_path = workdir / f"http-{time.monotonic_ns()}.stderr"
    with stderr_path.open("wb") as sink:
        process = subprocess.Popen(
            [fal_mcp_command(), "--transport", "http", "--port", "0", *args],
            env={**base_env(), **env},
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            preexec_fn=preexec_fn,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = stderr_path.read_text(errors="replace")
        announced = _ANNOUNCED.search(text)  # a plain line, or inside a JSON one with --log-format json
        if announced is not None:
            return HttpServer(process=process, url=announced.group(1), stderr_path=stderr_path)
        if process.poll() is not None:
            raise RuntimeError(f"fal-mcp exited with {process.returncode}: {text}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("fal-mcp did not announce its HTTP address in time")


@contextmanager
def http_server(env: dict[str, str], workdir: Path, *args: str) -> Iterator[HttpServer]:
    server = start_http_server(env, workdir, *args)
    try:
        yield server
    finally:
        server.stop()


def base_env() -> dict[str, str]:
    """What a spawned server inherits: enough to run Python, none of the developer's FAL_* variables
    (the state directory is the test session's own, set by conftest)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR", "VIRTUAL_ENV", "FAL_MCP_STATE_DIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


@asynccontextmanager
async def bearer_client(url: str, bearer: str | None, *, mode: Any = "auto", **options: Any) -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP that sends `Authorization: Bearer <bearer>` (as a client config would);
    `options` go to the `Client` (e.g. `extensions`)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,
    ):
        yield client


@asynccontextmanager
async def connect(
    transport: str,
    sandbox: SandboxServer,
    workdir: Path,
    *,
    key: str | None = SANDBOX_KEY,
    http_url: str | None = None,
    errlog: TextIO | None = None,
    **settings: Any,
) -> AsyncIterator[Client]:
    """An MCP client connected to a fal-mcp that talks to `sandbox` with `key`."""
    if transport == "memory":
        async with Client(create_server(settings_for(sandbox, key=key, **settings))) as client:
            yield client
    elif transport == "stdio":
        env = env_for(sandbox, key=key, **{f"FAL_MCP_{k.upper()}": str(v) for k, v in settings.items()})
        params = StdioServerParameters(command=fal_mcp_command(), args=[], env=env, cwd=workdir)
        log = errlog if errlog is not None else (workdir / "stdio.stderr").open("a")
        try:
            async with Client(stdio_client(params, errlog=log)) as client:
                yield client
        finally:
            if errlog is None:
                log.close()
    elif transport == "http":
        if http_url is None:
            raise ValueError("http needs a running server's URL")
        async with Client(http_url) as client:
            yield client
    else:
        raise ValueError(transport)


def initialize(capabilities: dict[str, Any] | None = None, *, version: str = "2025-11-25") -> list[dict[str, Any]]:
    """The legacy handshake a raw JSON-RPC client opens with (id 1), then `notifications/initialized`."""
    params = {
        "protocolVersion": version,
        "capabilities": capabilities or {},
        "clientInfo": {"name": "raw", "version": "0"},
    }
    return [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]


def raw_stdio_session(
    messages: list[dict[str, Any]], env: dict[str, str], workdir: Path, *args: str, answer_within_s: float = 60.0
) -> tuple[dict[int, Any], str]:
    """Speak JSON-RPC to a spawned `fal-mcp` by hand, one message at a time (waiting for each answer).

    Returns the answers by id and the server's stderr. Every stdout line must be a JSON-RPC message: anything
    else fails the `json.loads` here, which is how the tests prove stdout carries nothing but protocol. A request
    left unanswered for `answer_within_s` fails the test (the server is killed), rather than hanging it.
    """
    replies: dict[int, Any] = {}
    log_path = workdir / f"raw-{time.monotonic_ns()}.stderr"
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            [fal_mcp_command(), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**base_env(), **env},
            cwd=workdir,
            text=True,
        ) as process,
    ):
        assert process.stdin is not None and process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout

        def read_lines() -> None:  # a thread, so a request left unanswered fails the test instead of hanging it
            for line in iter(stdout.readline, ""):
                lines.put(line)
            lines.put("")  # end of stdout

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        try:
            _converse(process, messages, lines, replies, answer_within_s)
        finally:
            if process.poll() is None:  # a failed exchange: stop the server, or closing its stdout waits on the reader
                process.kill()
            reader.join(timeout=20)
        assert lines.get_nowait() == "" and lines.empty()  # nothing more after the last answer either
    return replies, log_path.read_text()


def _converse(
    process: subprocess.Popen[str],
    messages: list[dict[str, Any]],
    lines: queue.Queue[str],
    replies: dict[int, Any],
    answer_within_s: float,
) -> None:
    """Send each message, waiting for the answer of each request, then close stdin and let the server end."""
    assert process.stdin is not None
    for message in messages:
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()
        while "id" in message and message["id"] not in replies:
            try:
                line = lines.get(timeout=answer_within_s)
            except queue.Empty:
                raise AssertionError(f"no answer to request {message['id']} within {answer_within_s:g} s") from None
            assert line, "the server closed stdout"
            parsed = json.loads(line)
            assert parsed["jsonrpc"] == "2.0"
            if "id" in parsed:
                replies[parsed["id"]] = parsed
    process.stdin.close()
    process.wait(timeout=20)
