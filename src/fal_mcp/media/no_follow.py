"""Opening a folder or a file by a path that was checked, one component at a time, never following a symlink.

A path checked and then opened by name can change in between: a folder inside an allowed root swapped for a
symlink to `/etc` after the check turns an upload into a leak (and a save into a write anywhere). So nothing
here opens a whole path. The walk starts at the filesystem's root and opens each component relative to the
descriptor of the folder before it (`os.open(name, ..., dir_fd=...)`) with `O_NOFOLLOW`: a component that became
a symlink, or stopped being a folder, fails the walk with `PathChanged`, and what is opened is exactly the path
that was checked. The path given must be absolute and real (symlinks resolved), as the fence's checks see it.

Used by the upload fence to read (`open_folder` + `open_in`); a fence for writing outputs into a folder uses the
same two functions, with `create=True` to make missing folders on the way and `os.O_CREAT | os.O_EXCL` to never
replace a file.

Where the platform cannot open relative to a descriptor (Windows), `WALKS` is False and the callers fall back to
opening the whole path and comparing the descriptor's identity with the checked path's.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import PurePath

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_FOLDER_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
_CHANGED = {errno.ELOOP, errno.ENOTDIR, errno.EMLINK}
"""What `open` says about a symlink under `O_NOFOLLOW` (EMLINK on FreeBSD), or a file where a folder was."""

WALKS = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
"""Whether this platform can open component by component (POSIX yes, Windows no)."""


class PathChanged(OSError):
    """A component of the path is a symlink, or not a folder, now: the path is not the one that was checked."""


def open_folder(real: PurePath, *, create: bool = False, mode: int = 0o700) -> int:
    """A descriptor of the folder at `real`, opened component by component from the root (`create`: make them).

    The caller closes it. `PathChanged` when a component is a symlink or not a folder; `OSError` otherwise.
    """
    if not real.is_absolute():
        raise ValueError(f"{str(real)!r} is not an absolute path")
    descriptor = os.open(real.anchor, _FOLDER_FLAGS)
    try:
        for name in real.parts[1:]:
            parent, descriptor = descriptor, -1
            try:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, mode, dir_fd=parent)
                descriptor = os.open(name, _FOLDER_FLAGS, dir_fd=parent)
            except OSError as exc:
                raise _changed(exc, real) from None
            finally:
                os.close(parent)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        raise
    return descriptor


def open_in(folder: int, name: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """Open `name` inside the open `folder`: never through a symlink, never blocking (a FIFO opens at once)."""
    try:
        return os.open(name, flags | _NOFOLLOW | _NONBLOCK | _NOCTTY | _CLOEXEC, mode, dir_fd=folder)
    except OSError as exc:
        raise _changed(exc, PurePath(name)) from None


def _changed(exc: OSError, path: PurePath) -> OSError:
    if exc.errno in _CHANGED:
        return PathChanged(exc.errno, "a folder on the way is a symlink or not a folder now", str(path))
    return exc
