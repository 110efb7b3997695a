"""What a result shows beside its text: a small preview of each output image and a link to every media file.

A user wants to see the picture, not a URL; a model's context cannot take megabytes of base64. So each
image gets an `ImageContent` preview (at most `FAL_MCP_PREVIEW_COUNT`, each within the edge and byte caps)
and every image, video and audio file with a URL gets a `ResourceLink`. None of it goes into
`structuredContent`, which keeps the model's output as fal sent it. Previews are fetched concurrently and
each failure only costs its own preview (the headline says which and why).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.types import ContentBlock, ImageContent, ResourceLink

from fal_mcp.jobs.state import AppState
from fal_mcp.media.fetch import FetchRefused, fetch_media, inline_bytes
from fal_mcp.media.previews import Preview, PreviewFailed, make_preview_bounded, source_key
from fal_mcp.media.refs import MediaRef, find_media
from fal_mcp.server.replies import counted

logger = logging.getLogger(__name__)

INLINE_DIGEST_IN_THREAD = 64 * 1024
"""Inline data longer than this is hashed (for the preview cache) in a worker thread, off the event loop."""


@dataclass
class Shown:
    """Content blocks to add after a result's text, and a note for its headline."""

    blocks: list[ContentBlock] = field(default_factory=list[ContentBlock])
    note: str = ""


def _link(ref: MediaRef, number: int) -> ResourceLink:
    details = [ref.content_type or ref.kind]
    if ref.width and ref.height:
        details.append(f"{ref.width}x{ref.height}")
    return ResourceLink(
        type="resource_link",
        uri=ref.url,
        name=ref.file_name or f"{ref.kind}-{number}",
        title=f"{ref.kind} at {ref.where}",
        description=f"fal output {ref.kind} ({', '.join(details)})",
        mime_type=ref.content_type,
        size=ref.size,
    )


class _Previewer:
    """Makes the previews of one result: cached ones at once, the others fetched in parallel, decoded bounded."""

    def __init__(self, state: AppState, request_id: str | None) -> None:
        self._state = state
        self._request_id = request_id
        settings = state.settings
        self._max_source = int(settings.preview_fetch_max_mb * 1_000_000)
        self._edge = settings.preview_edge_px
        self._max_bytes = settings.preview_max_kb * 1000

    async def preview(self, ref: MediaRef) -> Preview:
        cache = self._state.previews
        key = await self._key(ref)
        cached = cache.get(key)
        if cached is not None:
            return cached
        load = self._inline(ref.url) if ref.inline else await self._fetched(ref.url)
        made = await make_preview_bounded(load, edge_px=self._edge, max_bytes=self._max_bytes)
        cache.put(key, made)
        return made

    async def _key(self, ref: MediaRef) -> str:
        """A URL is its own key; inline data is keyed by its place in the request's output (a request's output never
        changes), or, with no request id, by a digest of the data (hashing megabytes happens off the event loop)."""
        if not ref.inline:
            return source_key(ref.url)
        if self._request_id:
            return f"request {self._request_id} {ref.where}"
        if len(ref.url) > INLINE_DIGEST_IN_THREAD:
            return await anyio.to_thread.run_sync(source_key, ref.url)
        return source_key(ref.url)

    def _inline(self, uri: str) -> Callable[[], bytes]:
        """Decoding base64 takes milliseconds per megabyte: it happens in the decoding thread, not here."""
        return lambda: inline_bytes(uri, self._max_source)

    async def _fetched(self, url: str) -> Callable[[], bytes]:
        fal = self._state.fal
        fetched = await fetch_media(
            fal.public_http,
            url,
            fal_urls=fal.urls,
            max_bytes=self._max_source,
            timeout_s=self._state.settings.preview_timeout_s,
        )
        return lambda: fetched.data


async def show_media(state: AppState, output: Any, *, previews: bool, request_id: str | None = None) -> Shown:
    """Previews of the output's images (when asked and allowed) and links to all its media files.

    `request_id` names whose output this is, so a later look at the same request reuses its previews.
    """
    refs = find_media(output)
    shown = Shown()
    if not refs:
        return shown
    settings = state.settings
    images = [ref for ref in refs if ref.kind == "image"]
    wanted = images[: settings.preview_count] if previews and settings.previews else []
    outcomes: list[Preview | str] = ["not made"] * len(wanted)
    previewer = _Previewer(state, request_id)

    async def make(index: int, ref: MediaRef) -> None:
        try:
            outcomes[index] = await previewer.preview(ref)
        except (FetchRefused, PreviewFailed) as failure:
            logger.info("no preview of %s: %s", ref.where, failure)
            outcomes[index] = str(failure)
        except Exception:  # a preview is a courtesy: no decoder bug may cost the user a paid result
            logger.warning("preview of %s failed unexpectedly", ref.where, exc_info=True)
            outcomes[index] = "the image could not be decoded"

    async with anyio.create_task_group() as group:
        for index, ref in enumerate(wanted):
            group.start_soon(make, index, ref)
    made = 0
    missing: list[str] = []
    for ref, outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, Preview):
            encoded = base64.b64encode(outcome.data).decode("ascii")
            shown.blocks.append(ImageContent(type="image", data=encoded, mime_type=outcome.mime_type))
            made += 1
        else:
            missing.append(f"{ref.where} ({outcome})")
    linked = [ref for ref in refs if not ref.inline]
    shown.blocks += [_link(ref, number) for number, ref in enumerate(linked, start=1)]
    shown.note = _note(made, len(images), missing, len(linked))
    return shown


def _note(made: int, images: int, missing: Sequence[str], linked: int) -> str:
    parts: list[str] = []
    if made:
        parts.append(f"{made} of {counted(images, 'image')} previewed below")
    if missing:
        parts.append(f"no preview for {'; '.join(missing)}")
    if linked:
        parts.append(f"{counted(linked, 'media file')} linked")
    return f" ({', '.join(parts)}.)" if parts else ""
