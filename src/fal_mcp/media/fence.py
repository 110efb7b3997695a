"""Which local files may leave this machine for fal's public CDN, and which never may.

An upload puts a file on a public URL, and the request to upload it comes from a model that may have read
a prompt injection. So a file is only sent when all of this holds: it lies under an allowed root (the
folders in `FAL_MCP_UPLOAD_ROOTS`, plus the client's MCP roots over stdio), both as written and after every
symlink is resolved; its path has no `..`; no part of it below the root is hidden (`.env`, `.ssh/`, `.git/`,
...), and no part of its real path at all; it is not under `/proc`, `/sys` or `/dev`; its name does not look
like a key or a secret (`id_rsa`, `*.pem`, `credentials`, `environ`, ...); it is a regular file with no other
hard link, no larger than the cap. A path may be given plainly, with `~`, as a `file://` URI, or Windows-style.

What is read is what was checked: the real path is opened component by component without following any
symlink (`no_follow`), so a folder swapped for a symlink between the check and the read fails the read. The
file is opened without blocking (a named pipe would block an ordinary open forever) and must be a regular file
by the descriptor's own `fstat` before a byte is read.

`local_path`, `sensitive_reason` and `system_reason` are pure (tested by table); `Fence.admit` checks a path
against the disk and reads it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlsplit

from fal_mcp.media.no_follow import WALKS, PathChanged, open_folder, open_in

KEY_LIKE_NAMES = (
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.ppk",
    "*.gpg",
    "*.ovpn",
    "*.env",
    "*.tfstate",
    "*.tfvars",
    "credentials*",
    "secrets.*",
    "known_hosts",
    "authorized_keys",
    "kubeconfig",
    "mcp.json",
    "claude_desktop_config.json",
    "service-account*.json",
    "environ",
)
"""Names that hold keys or secrets (matched case-insensitively); the server never uploads them."""

SYSTEM_FOLDERS = ("proc", "sys", "dev")
"""Top-level folders that hold the system's live state (a process's environment, devices), not files."""
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
_TOO_LONG = (
    f"the path is too long (at most {MAX_PATH_BYTES} bytes, {MAX_NAME_BYTES} per name); give the file's own path"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_URI_DRIVE = re.compile(r"^/[A-Za-z]:/")


class UploadRefused(Exception):
    """A path the fence will not let through, with the reason worded for the model."""


def local_path(reference: str, *, windows: bool = os.name == "nt", home: str | None = None) -> PurePath:
    """The path a caller means by `reference`: a plain path, `~/...`, a `file://` URI or a Windows path."""
    text = reference.strip()
    if not text:
        raise UploadRefused("the path is empty")
    if len(text) > 3 * MAX_PATH_BYTES:  # even %-escaped, no real path is this long
        raise UploadRefused(_TOO_LONG)
    _refuse_unreadable(text)
    if text.lower().startswith("file:"):
        try:
            parts = urlsplit(text)
        except ValueError:
            raise UploadRefused("the file URI is malformed; give file:///absolute/path") from None
        if parts.netloc not in ("", "localhost"):
            raise UploadRefused(f"the file URI names another machine ({parts.netloc!r}); only local files upload")
        try:
            text = unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            raise UploadRefused("the file URI has %-escapes that are not UTF-8 text") from None
        _refuse_unreadable(text, escaped=True)
        if _URI_DRIVE.match(text):
            text = text[1:]  # file:///D:/Data/... -> D:/Data/...
    looks_windows = bool(_WINDOWS_DRIVE.match(text)) or text.startswith("\\\\")
    if looks_windows and not windows:
        raise UploadRefused(f"{reference!r} is a Windows path, but this server does not run on Windows")
    if text == "~" or text.startswith(("~/", "~\\")):
        if home is None:
            raise UploadRefused("cannot expand '~': the server has no home directory")
        text = home + text[1:]
    path = PureWindowsPath(text) if windows else PurePosixPath(text)
    if not path.is_absolute():
        raise UploadRefused(f"{reference!r} is not an absolute path; give the full path (or ~/...)")
    if ".." in path.parts:
        raise UploadRefused(f"{reference!r} contains '..'; give the file's own path")
    if len(os.fsencode(str(path))) > MAX_PATH_BYTES or any(len(os.fsencode(p)) > MAX_NAME_BYTES for p in path.parts):
        raise UploadRefused(_TOO_LONG)
    return path


def _refuse_unreadable(text: str, *, escaped: bool = False) -> None:
    """Refuse control characters (NUL, newline, ...) and text that is not valid Unicode: no file is named so."""
    found = _CONTROL.search(text)
    if found is not None:
        code = ord(found.group())
        what = "a NUL character" if code == 0 else f"a control character (U+{code:04X})"
        how = f" (%{code:02X} in the URI)" if escaped else ""
        raise UploadRefused(f"the path contains {what}{how}; no file name holds one")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UploadRefused("the path is not valid Unicode text") from None


def sensitive_reason(parts: Iterable[str]) -> str | None:
    """Why a path (its parts below the root) must never be uploaded, or None when it may be."""
    for part in parts:
        if part.startswith("."):
            return f"'{part}' is hidden; dotfiles and dot-folders (.env, .ssh, .git, ...) are never uploaded"
        lowered = part.lower()
        for pattern in KEY_LIKE_NAMES:
            if fnmatch.fnmatchcase(lowered, pattern):
                return f"'{part}' looks like a key or secret ({pattern}); such files are never uploaded"
    return None


def system_reason(real: PurePath) -> str | None:
    """Why a file's real (resolved, absolute) path must never be uploaded, wherever the roots are, or None."""
    parts = real.parts[1:]
    if parts and parts[0] in SYSTEM_FOLDERS and isinstance(real, PurePosixPath):
        return f"'/{parts[0]}' holds the system's live state, not files; nothing under it is uploaded"
    for part in parts:
        if part.startswith("."):
            return (
                f"its real path goes through '{part}', which is hidden; nothing in a dot-folder is uploaded, "
                "wherever the allowed folder is"
            )
    return None


@dataclass(frozen=True)
class LocalFile:
    """A file the fence admitted: its real path and its bytes, read from the descriptor that was checked."""

    path: Path
    data: bytes


@dataclass(frozen=True)
class Root:
    """An allowed folder: as configured (normalised) and with its symlinks resolved."""

    given: Path
    real: Path

    @classmethod
    def of(cls, folder: str | PurePath) -> Root | None:
        path = Path(os.path.normpath(Path(folder).expanduser()))
        try:
            real = path.resolve(strict=True)
        except OSError:
            return None
        return cls(given=path, real=real) if real.is_dir() else None

    def below(self, path: Path, *, resolved: bool) -> tuple[str, ...] | None:
        """The parts of `path` below this root, or None when it is not inside."""
        for base in (self.real,) if resolved else (self.given, self.real):
            if path == base or path.is_relative_to(base):
                return path.relative_to(base).parts
        return None


def roots_from(folders: Iterable[str | PurePath]) -> tuple[Root, ...]:
    """The allowed roots among `folders` (missing or non-directory ones are left out)."""
    found = (Root.of(folder) for folder in folders)
    return tuple(dict.fromkeys(root for root in found if root is not None))


@dataclass(frozen=True)
class Fence:
    """The allowed roots and the size cap: `check` admits one file or refuses it, `read` reads it."""

    roots: Sequence[Root]
    max_bytes: int

    def check(self, reference: str) -> Path:
        """The real path of the file `reference` names, if it may be uploaded; else `UploadRefused`."""
        if not self.roots:
            raise UploadRefused(
                "uploads are off: no allowed folder. Set FAL_MCP_UPLOAD_ROOTS to the folders whose files may be "
                "uploaded (or use a client that shares its roots over stdio)"
            )
        path = Path(local_path(reference, home=os.path.expanduser("~")))
        path = Path(os.path.normpath(path))
        if not any(root.below(path, resolved=False) is not None for root in self.roots):
            raise UploadRefused(f"{str(path)!r} is outside the allowed folders: {self._listed()}")
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise UploadRefused(f"{str(path)!r} does not exist (or cannot be read)") from None
        for candidate, resolved in ((path, False), (real, True)):
            parts = next(
                (p for root in self.roots if (p := root.below(candidate, resolved=resolved)) is not None), None
            )
            if parts is None:
                raise UploadRefused(f"{str(path)!r} leads outside the allowed folders (through a symlink)")
            reason = sensitive_reason(parts)
            if reason is not None:
                raise UploadRefused(f"{str(path)!r} refused: {reason}")
        reason = system_reason(path) or system_reason(real)
        if reason is not None:
            raise UploadRefused(f"{str(path)!r} refused: {reason}")
        return real

    def admit(self, reference: str) -> LocalFile:
        """Check `reference` and read the file it names, or raise `UploadRefused`. Blocking: run it in a thread."""
        real = self.check(reference)
        return LocalFile(real, self._read(real))

    def _read(self, real: Path) -> bytes:
        """Read the checked file: opened without following a symlink anywhere, a regular file with one link."""
        try:
            descriptor = self._open(real)
        except PathChanged:
            raise UploadRefused(
                f"{str(real)!r} changed while it was being opened (a folder became a symlink)"
            ) from None
        except OSError as exc:
            raise UploadRefused(f"{str(real)!r} cannot be opened ({exc.strerror or exc})") from None
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UploadRefused(f"{str(real)!r} is not a regular file (a pipe, device or socket is never read)")
            if info.st_nlink > 1:
                raise UploadRefused(
                    f"{str(real)!r} has {info.st_nlink - 1} other hard link(s); a hard link can bring in a file "
                    "from outside the allowed folders, so such files are never uploaded"
                )
            if info.st_size > self.max_bytes:
                raise UploadRefused(self._too_large(real, info.st_size))
            data = handle.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise UploadRefused(self._too_large(real, len(data)))
        return data

    @staticmethod
    def _open(real: Path) -> int:
        if WALKS:
            folder = open_folder(real.parent)
            try:
                before = os.stat(real.name, dir_fd=folder, follow_symlinks=False)
                if not stat.S_ISREG(before.st_mode):  # not even opened: a device may act on open
                    raise UploadRefused(f"{str(real)!r} is not a regular file (a pipe, device or socket is never read)")
                return open_in(folder, real.name)
            finally:
                os.close(folder)
        # No descriptor-relative opens here (Windows): open the path, then make sure it is still the checked file.
        descriptor = os.open(real, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        opened, named = os.fstat(descriptor), os.stat(real, follow_symlinks=False)
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino) or real.resolve(strict=True) != real:
            os.close(descriptor)
            raise PathChanged(0, "the file changed while it was being opened", str(real))
        return descriptor

    def _too_large(self, path: Path, size: int) -> str:
        return (
            f"{str(path)!r} is {size / 1_000_000:.1f} MB; the upload limit is {self.max_bytes / 1_000_000:g} MB "
            "(FAL_MCP_UPLOAD_MAX_MB)"
        )

    def _listed(self) -> str:
        return ", ".join(repr(str(root.given)) for root in self.roots)
