"""Writing an output's media files into a folder the user allowed, without ever writing anywhere else.

The folder comes from a model's tool call, which a prompt injection may shape, so it is fenced like an upload:
it must lie under an allowed root (`FAL_MCP_SAVE_ROOTS`, plus the client's MCP roots over stdio), with no `..` and
no hidden part below the root (`.git/`, `.ssh/`, ...). The write side does not trust the path after checking it:
the root is opened once, then each folder below it is opened (created when missing) relative to the one above
with `O_NOFOLLOW`, so a symlink planted anywhere below the root, even after the check, is refused rather than
followed. Each file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` in that folder: an existing file is never
overwritten (the new one gets a unique name beside it), and a name that is a symlink is never written through.
Where the platform cannot open relative to a folder (Windows), the resolved path is checked against the root
before each step instead.
"""

from __future__ import annotations

import contextlib
import errno
import mimetypes
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from fal_mcp.media.fence import Root, UploadRefused, local_path

MAX_NAME_CHARS = 120
MAX_TWINS = 1000
"""How many `name-N.ext` a folder may already hold before a save gives up finding a free name."""

_EXTENSIONS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "image/jpeg": "jpg", "video/mp4": "mp4"}
"""Extensions for the types fal answers most, before asking `mimetypes` (whose table differs per platform)."""
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_FLAGS_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FLAGS_NEW = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_RELATIVE = os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd


class SaveRefused(Exception):
    """The folder or a file may not be written; the message says why, worded for the model."""


@dataclass(frozen=True)
class SaveFolder:
    """A folder admitted for saving: its root and its parts below the root (created when missing)."""

    root: Root
    parts: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.root.given.joinpath(*self.parts)


def save_folder(reference: str, roots: Sequence[Root]) -> SaveFolder:
    """The folder `reference` names, if files may be saved there; else `SaveRefused`. Pure but for `~`."""
    if not roots:
        raise SaveRefused(
            "saving is off: no allowed folder. Set FAL_MCP_SAVE_ROOTS to the folders outputs may be saved in "
            "(or use a client that shares its roots over stdio)"
        )
    try:
        path = Path(os.path.normpath(local_path(reference, home=os.path.expanduser("~"))))
    except UploadRefused as refused:
        raise SaveRefused(str(refused)) from None
    for root in roots:
        parts = root.below(path, resolved=False)
        if parts is None:
            continue
        hidden = next((part for part in parts if part.startswith(".")), None)
        if hidden is not None:
            raise SaveRefused(f"'{hidden}' is hidden; outputs are never saved into dot-folders")
        return SaveFolder(root=root, parts=parts)
    listed = ", ".join(repr(str(root.given)) for root in roots)
    raise SaveRefused(f"{str(path)!r} is outside the folders outputs may be saved in: {listed}")


def safe_name(name: str | None, content_type: str | None, fallback: str) -> str:
    """A plain file name for a saved output: no folders, no hidden name, an extension, at most 120 characters."""
    base = PurePath((name or "").replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).strip(" .") or fallback
    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    if not extension and content_type:
        media_type = content_type.split(";")[0].strip().lower()
        extension = _EXTENSIONS.get(media_type) or (mimetypes.guess_extension(media_type) or "").lstrip(".")
    stem = stem[: MAX_NAME_CHARS - len(extension) - 1] or fallback
    return f"{stem}.{extension}" if extension else stem


def _twins(name: str) -> Iterator[str]:
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    yield name
    for number in range(1, MAX_TWINS):
        yield f"{stem}-{number}.{extension}" if extension else f"{stem}-{number}"


class OpenFolder:
    """A saving folder opened for writing: new files only, each under a name nobody has taken."""

    def __init__(self, folder: SaveFolder) -> None:
        self.folder = folder
        self._fd: int | None = None

    def __enter__(self) -> OpenFolder:
        if _RELATIVE:
            self._fd = self._open_relative()
        else:
            self._open_by_path()
        return self

    def __exit__(self, *_: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_relative(self) -> int:
        try:
            fd = os.open(self.folder.root.real, _FLAGS_DIR & ~getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise SaveRefused(f"{str(self.folder.root.given)!r} cannot be opened ({exc.strerror})") from None
        try:
            for part in self.folder.parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    inner = os.open(part, _FLAGS_DIR, dir_fd=fd)
                except OSError as exc:
                    raise self._refused(part, exc) from None
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_by_path(self) -> None:
        current = self.folder.root.real
        for part in self.folder.parts:
            current = current / part
            try:
                current.mkdir(mode=0o755, exist_ok=True)
            except OSError as exc:
                raise self._refused(part, exc) from None
            if current.is_symlink() or not current.resolve().is_relative_to(self.folder.root.real):
                raise SaveRefused(f"'{part}' is a link leading out of the allowed folder; nothing was saved")

    def _refused(self, part: str, exc: OSError) -> SaveRefused:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", -1)):
            return SaveRefused(
                f"'{part}' in {str(self.folder.path)!r} is a link or a file, not a folder; nothing was saved"
            )
        return SaveRefused(f"{str(self.folder.path)!r} cannot be created or opened ({exc.strerror})")

    def create(self, name: str) -> tuple[str, int]:
        """Create a new file named `name`, or `name-1`, `name-2`, ... beside an existing one: (its name, an fd)."""
        for candidate in _twins(name):
            try:
                if self._fd is not None:
                    return candidate, os.open(candidate, _FLAGS_NEW, 0o644, dir_fd=self._fd)
                return candidate, os.open(
                    self.folder.root.real.joinpath(*self.folder.parts, candidate), _FLAGS_NEW, 0o644
                )
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue  # a symlink already holds that name: never written through, pick another
                raise SaveRefused(f"{name!r} cannot be created in {str(self.folder.path)!r} ({exc.strerror})") from None
        raise SaveRefused(f"{str(self.folder.path)!r} already holds {MAX_TWINS} files named like {name!r}")

    def remove(self, name: str) -> None:
        """Take back a file this save created (a download that failed half-way)."""
        try:
            if self._fd is not None:
                os.unlink(name, dir_fd=self._fd)
            else:
                os.unlink(self.folder.root.real.joinpath(*self.folder.parts, name))
        except OSError:
            pass

    def shown(self, name: str) -> str:
        """The saved file's path as the caller named the folder."""
        return str(self.folder.path / name)
