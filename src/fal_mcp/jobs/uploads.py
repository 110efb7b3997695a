"""Local files to fal CDN URLs: the upload-file tool, and `file://` URIs inside a run's input.

Every file passes the `Fence` first (allowed roots, no dotfiles or key-like names, size cap), then goes to
fal's storage (`FalStorage`). The allowed roots are `FAL_MCP_UPLOAD_ROOTS` plus, over stdio, the roots the
client shares: over HTTP a client's roots name folders on *its* disk, not ours, so only configured roots
count there, and with none configured uploads are off.

Reading a local file is bounded in time and kept off the shared worker threads: at most `READS_AT_ONCE` run
at once on their own limiter, each gives up after `READ_TIMEOUT_S` (a file on a hung network or FUSE mount
can block a read forever), and while `MAX_STUCK_READS` given-up reads are still blocked in their threads, new
uploads are refused instead of piling up more.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, cast

import anyio

from fal_mcp.fal.storage import Upload
from fal_mcp.jobs.results import UploadResult
from fal_mcp.jobs.state import AppState, Caller
from fal_mcp.media.fence import Fence, LocalFile, UploadRefused, roots_from

RootsSource = Callable[[], Awaitable[Sequence[PurePath]]]
"""Asks the MCP client for its roots (only called when a file is about to be uploaded)."""

MAX_FILES_PER_INPUT = 20
READ_TIMEOUT_S = 30.0
READS_AT_ONCE = 4
MAX_STUCK_READS = 8
_READING = anyio.CapacityLimiter(READS_AT_ONCE)


class _Blocked:
    """How many file reads are in their threads right now, including those the caller gave up on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def enter(self) -> None:
        with self._lock:
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


_IN_THREADS = _Blocked()


def blocked_reads() -> int:
    """How many local file reads are in their threads now (abandoned ones included)."""
    return _IN_THREADS.count


async def read_local(fence: Fence, reference: str) -> LocalFile:
    """`fence.admit(reference)` in a thread of its own limiter, within `READ_TIMEOUT_S`."""
    if _IN_THREADS.count >= READS_AT_ONCE + MAX_STUCK_READS:
        raise UploadRefused(
            f"{_IN_THREADS.count} local file reads are still blocked (a hung disk or network mount?); try again later"
        )

    def admitted() -> LocalFile:
        _IN_THREADS.enter()
        try:
            return fence.admit(reference)
        finally:
            _IN_THREADS.leave()

    try:
        with anyio.fail_after(READ_TIMEOUT_S):
            return await anyio.to_thread.run_sync(admitted, abandon_on_cancel=True, limiter=_READING)
    except TimeoutError:
        raise UploadRefused(f"reading {reference!r} took longer than {READ_TIMEOUT_S:g}s; it was abandoned") from None


def file_references(value: Any, where: str = "input") -> list[tuple[str, str]]:
    """Every `file://` string inside an input, with where it sits (`input.image_urls[0]`)."""
    if isinstance(value, str):
        return [(where, value)] if value[:7].lower() == "file://" else []
    if isinstance(value, Mapping):
        mapping = cast(Mapping[str, Any], value)
        return [found for key, item in mapping.items() for found in file_references(item, f"{where}.{key}")]
    if isinstance(value, list):
        items = cast(list[Any], value)
        return [found for index, item in enumerate(items) for found in file_references(item, f"{where}[{index}]")]
    return []


def _replaced(value: Any, urls: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return urls.get(value, value)
    if isinstance(value, Mapping):
        return {key: _replaced(item, urls) for key, item in cast(Mapping[str, Any], value).items()}
    if isinstance(value, list):
        return [_replaced(item, urls) for item in cast(list[Any], value)]
    return value


def with_file_uris_replaced(payload: Mapping[str, Any], urls: Mapping[str, str]) -> Mapping[str, Any]:
    """`payload` with each `file://` URI that `urls` maps replaced by its URL (a copy; `payload` is kept)."""
    return cast(Mapping[str, Any], _replaced(payload, urls)) if urls else payload


@dataclass(frozen=True)
class Uploader:
    """Uploads for one caller: its fal key pays, its client's roots (over stdio) widen the fence."""

    state: AppState
    caller: Caller
    client_roots: RootsSource | None = None

    async def fence(self) -> Fence:
        settings = self.state.settings
        folders: list[str | PurePath] = list(settings.upload_roots)
        if settings.transport != "http" and self.client_roots is not None:
            folders += await self.client_roots()
        return Fence(roots=roots_from(folders), max_bytes=int(settings.upload_max_mb * 1_000_000))

    async def upload(self, reference: str, fence: Fence | None = None) -> UploadResult:
        """Check, read and upload one local file."""
        fence = fence if fence is not None else await self.fence()
        local = await read_local(fence, reference)
        real, data = local.path, local.data
        content_type = mimetypes.guess_type(real.name)[0] or "application/octet-stream"
        upload = Upload(data=data, content_type=content_type, file_name=real.name)
        url = await self.state.storage.upload(self.caller.fal, self.caller.partition, upload)
        return UploadResult(url=url, file_name=real.name, content_type=content_type, size_bytes=len(data))

    async def replace_file_uris(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """`payload` with every `file://` URI uploaded and replaced by its CDN URL (the same file once)."""
        references = file_references(payload)
        if not references:
            return payload
        distinct = list(dict.fromkeys(reference for _, reference in references))
        if len(distinct) > MAX_FILES_PER_INPUT:
            raise UploadRefused(
                f"the input names {len(distinct)} local files; at most {MAX_FILES_PER_INPUT} upload per call"
            )
        fence = await self.fence()
        urls: dict[str, str] = {}
        for where, reference in references:
            if reference in urls:
                continue
            try:
                urls[reference] = (await self.upload(reference, fence)).url
            except UploadRefused as refused:
                raise UploadRefused(f"{where}: {refused}") from None
        return with_file_uris_replaced(payload, urls)
