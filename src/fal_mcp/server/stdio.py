"""Serving MCP over stdio: the SDK's transport, plus an answer for every request it could not read.

The SDK's stdio reader hands the server an exception instead of a message when a line does not parse, and the
server drops it. For a request that is the wrong outcome: the client waits for an answer that never comes. The
line that meets this in practice is valid JSON nested deeper than the parser's recursion limit (about 200 levels:
a model input pasted with runaway nesting). Such a line still names its `id` and `method` near the top, so a
shallow scan finds them, and the request gets an answer: a tool call a tool error a model can act on, anything else
a JSON-RPC error. Lines with no recognisable request in them (noise, a notification) are left to the SDK as before.
"""

from __future__ import annotations

import contextvars
import re
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    JSONRPCResponse,
    TextContent,
)
from pydantic import ValidationError

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null')
"""JSON's tokens: strings (escapes included), structure, numbers and literals; whitespace falls between them."""
_ENVELOPE_KEYS = frozenset({"id", "method"})


class _Sends(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


class _Receives(Protocol):
    async def receive(self) -> SessionMessage | Exception: ...
    async def aclose(self) -> None: ...


def serve_stdio(server: MCPServer[Any]) -> None:
    """Serve `server` on stdin/stdout until the client closes them (what desktop clients and IDE agents launch)."""
    anyio.run(_serve, server)


async def _serve(server: MCPServer[Any]) -> None:
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]  # the SDK's own stdio loop uses it
    async with stdio_server() as (read_stream, write_stream):
        readable = AnsweringUnreadable(read_stream, write_stream)
        await lowlevel.run(readable, write_stream, lowlevel.create_initialization_options())


class AnsweringUnreadable:
    """The SDK's read stream, minus the requests whose line did not parse: those are answered on the write stream.

    A filter on the reader's own `receive`, not a task relaying to another stream: a relay would cost every message a
    hop through the event loop.
    """

    def __init__(self, read_stream: _Receives, write_stream: _Sends) -> None:
        self._read = read_stream
        self._write = write_stream

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._read.receive()
            answer = unreadable_answer(item) if isinstance(item, ValidationError) else None
            if answer is None:
                return item
            await self._write.send(SessionMessage(answer))

    @property
    def last_context(self) -> contextvars.Context | None:
        """The context the reader received the last message in, which the SDK handles that message in."""
        return getattr(self._read, "last_context", None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._read.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


def unreadable_answer(error: ValidationError) -> JSONRPCResponse | JSONRPCError | None:
    """The answer for the line `error` was raised on, when that line is a request we can name; else None."""
    problems = error.errors(include_url=False)
    line = problems[0].get("input") if problems else None
    if not isinstance(line, str):
        return None
    envelope = request_envelope(line)
    if envelope is None:
        return None
    request_id, method = envelope
    too_deep = any("recursion limit" in str(problem.get("msg", "")) for problem in problems)
    if too_deep:
        from fal_mcp.jobs.guards import MAX_INPUT_DEPTH  # the guards import the fal client: not at every start

        reason = (
            f"the request is nested too deeply to be read (a model input may nest at most {MAX_INPUT_DEPTH} "
            "levels); nothing was sent to fal. Flatten the input and call again."
        )
    else:
        reason = "the request is not valid JSON-RPC and could not be read; nothing was sent to fal."
    if method == "tools/call":
        result = CallToolResult(content=[TextContent(type="text", text=reason)], is_error=True)
        return JSONRPCResponse(
            jsonrpc="2.0", id=request_id, result=result.model_dump(by_alias=True, exclude_none=True, mode="json")
        )
    code = INVALID_REQUEST if too_deep else PARSE_ERROR
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=reason))


def request_envelope(line: str) -> tuple[str | int, str] | None:
    """`(id, method)` of the JSON-RPC request on `line`, read from its top level only; None if it names neither.

    A shallow scan, never a parse: the line may be too deep (or too broken) for any parser. It stops as soon as
    both keys were seen, which for a client's request is within its first hundred characters.
    """
    found: dict[str, Any] = {}
    depth = 0
    key: str | None = None
    expecting_value = False
    for match in _TOKEN.finditer(line):
        token = match.group()
        if token in "{[":
            if depth == 1 and expecting_value:
                key, expecting_value = None, False  # a nested value (params): not an envelope field
            depth += 1
        elif token in "}]":
            depth -= 1
            if depth <= 0:
                break
        elif depth != 1:
            continue
        elif token == ":":
            expecting_value = key is not None
        elif token == ",":
            key, expecting_value = None, False
        elif expecting_value:
            found[key or ""] = token
            key, expecting_value = None, False
        elif token.startswith('"'):
            key = _text(token)
            if key not in _ENVELOPE_KEYS:
                key = None
        if found.keys() >= _ENVELOPE_KEYS:
            break
    return _envelope(found)


def _envelope(found: dict[str, Any]) -> tuple[str | int, str] | None:
    raw_id, raw_method = found.get("id"), found.get("method")
    if raw_id is None or raw_method is None or not raw_method.startswith('"'):
        return None
    if raw_id.startswith('"'):
        return _text(raw_id), _text(raw_method)
    if re.fullmatch(r"-?\d+", raw_id):
        return int(raw_id), _text(raw_method)
    return None


def _text(token: str) -> str:
    """A JSON string token's value (escapes kept simple: an id or method name has none worth decoding)."""
    return token[1:-1].replace('\\"', '"').replace("\\\\", "\\")
