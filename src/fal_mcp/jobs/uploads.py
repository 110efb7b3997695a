"""Local files to fal CDN URLs: the upload-file tool, and `file://` URIs inside a run's input.

Every file passes the `Fence` first (allowed roots, no dotfiles or key-like names, size cap), then goes to
fal's storage (`FalStorage`). The allowed roots are `FAL_MCP_UPLOAD_ROOTS` plus, over stdio, the roots the
client shares: over HTTP a client's roots name folders on *its* disk, not ours, so only configured roots
count there, and with none configured uploads are off.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, cast

import anyio

from fal_mcp.fal.storage import Upload
from fal_mcp.jobs.results import UploadResult
from fal_mcp.jobs.state import AppState, Caller
from fal_mcp.media.fence import Fence, UploadRefused, roots_from

RootsSource = Callable[[], Awaitable[Sequence[PurePath]]]
"""Asks the MCP client for its roots (only called when a file is about to be uploaded)."""

MAX_FILES_PER_INPUT = 20


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

        def admitted() -> tuple[Path, bytes]:
            real = fence.check(reference)
            return real, fence.read(real)

        real, data = await anyio.to_thread.run_sync(admitted)
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
