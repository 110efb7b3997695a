"""`save_to` on run-model and get-result: each media file of a completed output, downloaded into a folder the user
allowed, and the paths it was saved at.

The folder is checked before anything runs (a refused folder costs nothing), against `FAL_MCP_SAVE_ROOTS` plus, over
stdio, the roots the client shares: over HTTP a client's roots name folders on *its* disk, not ours, so only the
setting counts there, and without it saving is off. Each file is downloaded like a preview's source (https from
public hosts or the configured fal origins only, no credential, no redirect) within `FAL_MCP_SAVE_MAX_MB` and
`FAL_MCP_SAVE_TIMEOUT_S`, and written by `fal_mcp.media.saving` (new files only, never through a link). A file
that cannot be saved costs only itself: the result still comes back, saying which and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from fal_mcp.jobs.failures import ToolFailure
from fal_mcp.jobs.state import AppState
from fal_mcp.jobs.uploads import RootsSource
from fal_mcp.media.fence import roots_from
from fal_mcp.media.fetch import FetchRefused, inline_bytes, stream_media
from fal_mcp.media.refs import MediaRef, find_media
from fal_mcp.media.saving import OpenFolder, SaveFolder, SaveRefused, safe_name, save_folder


@dataclass
class SaveReport:
    """What a save wrote, and what it could not."""

    saved: list[str] = field(default_factory=list[str])
    failed: list[str] = field(default_factory=list[str])

    def note(self) -> str:
        parts: list[str] = []
        if self.saved:
            parts.append(f"saved {len(self.saved)} file(s): {', '.join(self.saved)}")
        if self.failed:
            parts.append(f"not saved: {'; '.join(self.failed)}")
        return f" ({'; '.join(parts)}.)" if parts else " (save_to: the output holds no media file to save.)"


def _name_of(ref: MediaRef) -> str | None:
    if ref.file_name:
        return ref.file_name
    if ref.inline:
        return None
    return unquote(PurePath(urlsplit(ref.url).path).name) or None


class _Sink:
    """Writes a download into a new file, created on the first byte (a refused download leaves nothing)."""

    def __init__(self, opened: OpenFolder, name: str) -> None:
        self._opened = opened
        self._wanted = name
        self.name: str | None = None
        self._file: BinaryIO | None = None

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            self.name, fd = self._opened.create(self._wanted)
            self._file = os.fdopen(fd, "wb")
        self._file.write(chunk)

    def close(self, *, keep: bool) -> None:
        if self._file is not None:
            self._file.close()
        if not keep and self.name is not None:
            self._opened.remove(self.name)


@dataclass(frozen=True)
class Saver:
    """Saving for one call: the settings' roots, and over stdio the client's."""

    state: AppState
    client_roots: RootsSource | None = None

    async def folder(self, reference: str) -> SaveFolder:
        """The folder `reference` names, if outputs may be saved there; else a worded `ToolFailure`."""
        settings = self.state.settings
        folders: list[str | PurePath] = list(settings.save_roots)
        if settings.transport != "http" and self.client_roots is not None:
            folders += await self.client_roots()
        try:
            folder = save_folder(reference, roots_from(folders))
            with OpenFolder(folder):  # made now, and any link on the way refused, before anything is paid for
                pass
        except SaveRefused as refused:
            raise ToolFailure(f"save_to refused: {refused}. Nothing was sent to fal.") from None
        return folder

    async def save(self, output: Any, folder: SaveFolder) -> SaveReport:
        """Download each media file of `output` into `folder`."""
        report = SaveReport()
        refs = find_media(output)
        if not refs:
            return report
        try:
            with OpenFolder(folder) as opened:
                for number, ref in enumerate(refs, start=1):
                    name = safe_name(_name_of(ref), ref.content_type, f"{ref.kind}-{number}")
                    try:
                        report.saved.append(opened.shown(await self._one(opened, ref, name)))
                    except (FetchRefused, SaveRefused) as failure:
                        report.failed.append(f"{ref.where} ({failure})")
        except SaveRefused as refused:
            report.failed.append(str(refused))
        return report

    async def _one(self, opened: OpenFolder, ref: MediaRef, name: str) -> str:
        settings = self.state.settings
        max_bytes = int(settings.save_max_mb * 1_000_000)
        sink = _Sink(opened, name)
        kept = False
        try:
            if ref.inline:
                sink.write(inline_bytes(ref.url, max_bytes))
            else:
                fal = self.state.fal
                await stream_media(
                    fal.public_http,
                    ref.url,
                    sink.write,
                    fal_urls=fal.urls,
                    max_bytes=max_bytes,
                    timeout_s=settings.save_timeout_s,
                )
                if sink.name is None:
                    sink.write(b"")  # an empty file is still the file
            kept = True
        finally:
            sink.close(keep=kept)
        assert sink.name is not None
        return sink.name
