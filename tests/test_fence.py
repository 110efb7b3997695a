"""The upload fence: its pure parts by table (what a path means, which names never leave the machine), then
through the real server: a folder swapped for a symlink mid-upload, named pipes, hard links, system folders,
dot-folders in the real path, and paths no file has.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

import anyio
import pytest
from mcp.types import CallToolResult

from fal_mcp.jobs import uploads
from fal_mcp.media import fence as fence_module
from fal_mcp.media.fence import (
    Fence,
    LocalFile,
    UploadRefused,
    local_path,
    roots_from,
    sensitive_reason,
    system_reason,
)
from fal_mcp.media.no_follow import PathChanged, open_folder, open_in
from fal_mcp.sandbox import FakeFal, SandboxServer
from fal_mcp.sandbox.models.png import picture
from tests.harness import connect
from tests.test_tools import structured, text_of

HOME = "/srv/me"


@pytest.mark.parametrize(
    ("reference", "windows", "expected"),
    [
        ("/srv/me/cat.png", False, PurePosixPath("/srv/me/cat.png")),
        ("  /srv/me/cat.png\n", False, PurePosixPath("/srv/me/cat.png")),
        ("~/cat.png", False, PurePosixPath("/srv/me/cat.png")),
        ("~", False, PurePosixPath("/srv/me")),
        ("file:///srv/me/my%20cat.png", False, PurePosixPath("/srv/me/my cat.png")),
        ("file://localhost/srv/me/cat.png", False, PurePosixPath("/srv/me/cat.png")),
        ("FILE:///srv/me/cat.png", False, PurePosixPath("/srv/me/cat.png")),
        (r"D:\Data\me\cat.png", True, PureWindowsPath(r"D:\Data\me\cat.png")),
        ("D:/Data/me/cat.png", True, PureWindowsPath(r"D:\Data\me\cat.png")),
        ("file:///D:/Data/me/cat.png", True, PureWindowsPath(r"D:\Data\me\cat.png")),
        (r"\\server\share\cat.png", True, PureWindowsPath(r"\\server\share\cat.png")),
        (r"~\cat.png", True, PureWindowsPath(r"D:\Data\me\cat.png")),
    ],
)
def test_local_path_understands_every_way_of_naming_a_file(reference: str, windows: bool, expected: PurePath) -> None:
    home = r"D:\Data\me" if windows else HOME
    assert local_path(reference, windows=windows, home=home) == expected


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("", "empty"),
        ("cat.png", "not an absolute path"),
        ("./cat.png", "not an absolute path"),
        ("/srv/me/../etc/passwd", "'..'"),
        ("file:///srv/me/a/../../etc/shadow", "'..'"),
        ("file://evil.example/share/cat.png", "another machine"),
        (r"D:\Data\me\cat.png", "Windows path"),
        ("/srv/me/cat\x00.png", "NUL"),
    ],
)
def test_local_path_refuses(reference: str, reason: str) -> None:
    with pytest.raises(UploadRefused, match=reason):
        local_path(reference, windows=False, home=HOME)


@pytest.mark.parametrize(
    ("parts", "refused"),
    [
        (("pictures", "cat.png"), False),
        (("secretary-desk.jpg",), False),
        (("keys-of-the-piano.wav",), False),
        ((".ssh", "id_rsa"), True),
        ((".env",), True),
        ((".git", "config"), True),
        (("keys", "id_ed25519.pub"), True),
        (("server.PEM",), True),
        (("tls.key",), True),
        (("prod.env",), True),
        (("aws", "credentials"), True),
        (("secrets.yaml",), True),
        (("claude_desktop_config.json",), True),
        (("service-account-prod.json",), True),
        (("main.tfstate",), True),
    ],
)
def test_sensitive_names(parts: tuple[str, ...], refused: bool) -> None:
    assert (sensitive_reason(parts) is not None) == refused


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("file:///srv/me/cat%00.png", "NUL character (%00 in the URI)"),
        ("file:///srv/me/cat%0A.png", "control character (U+000A) (%0A in the URI)"),
        ("file:///srv/me/cat%1b.png", "control character (U+001B)"),
        ("file:///srv/me/cat%7F.png", "control character (U+007F)"),
        ("/srv/me/ca\tt.png", "control character (U+0009)"),
        ("file:///srv/me/cat%FF.png", "not UTF-8"),
        ("/srv/me/cat\ud800.png", "not valid Unicode"),
        ("file://[::1/srv/me/cat.png", "malformed"),
        ("/srv/me/" + "a" * 256, "too long"),
        ("/srv/me/" + "é" * 128, "too long"),  # 256 bytes in UTF-8
        ("/srv/" + "me/" * 1400 + "cat.png", "too long"),
        ("file:///srv/" + "%41" * 20_000, "too long"),
    ],
)
def test_local_path_refuses_what_names_no_file(reference: str, reason: str) -> None:
    with pytest.raises(UploadRefused, match=re.escape(reason)) as refused:
        local_path(reference, windows=False, home=HOME)
    assert len(str(refused.value)) < 300  # a refusal is one sentence, not the input echoed back


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/srv/me/cat.png", None),
        ("/proc/self/environ", "/proc"),
        ("/proc/1234/root/etc/passwd", "/proc"),
        ("/sys/kernel/notes", "/sys"),
        ("/dev/zero", "/dev"),
        ("/srv/.hidden/me/cat.png", "'.hidden'"),
        ("/srv/me/.config/app/cat.png", "'.config'"),
        ("/srv/procedures/cat.png", None),
        ("/srv/dev/cat.png", None),
    ],
)
def test_system_reason(path: str, refused: str | None) -> None:
    reason = system_reason(PurePosixPath(path))
    assert (reason is None) if refused is None else (reason is not None and refused in reason)


def test_a_file_named_environ_is_never_uploaded() -> None:
    assert sensitive_reason(("exports", "environ")) is not None
    assert sensitive_reason(("exports", "ENVIRON")) is not None
    assert sensitive_reason(("exports", "environment.png")) is None


# -- opening without following ------------------------------------------------------------------------------


def test_open_folder_walks_real_folders_and_refuses_a_symlink_anywhere_on_the_way(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("inside")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f.txt").write_text("outside")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    folder = open_folder(tmp_path / "a" / "b")
    try:
        with os.fdopen(open_in(folder, "f.txt"), "rb") as handle:
            assert handle.read() == b"inside"
    finally:
        os.close(folder)
    with pytest.raises(PathChanged):
        open_folder(tmp_path / "link" / "b")
    with pytest.raises(PathChanged):
        open_folder(tmp_path / "a" / "b" / "f.txt")  # a file where a folder should be
    (tmp_path / "a" / "b" / "shortcut.txt").symlink_to(tmp_path / "elsewhere" / "f.txt")
    folder = open_folder(tmp_path / "a" / "b")
    try:
        with pytest.raises(PathChanged):
            open_in(folder, "shortcut.txt")
    finally:
        os.close(folder)


def test_open_folder_can_make_the_folders_a_save_needs(tmp_path: Path) -> None:
    folder = open_folder(tmp_path / "out" / "2026" / "renders", create=True)
    try:
        written = open_in(folder, "a.png", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(written, b"png")
        os.close(written)
        with pytest.raises(FileExistsError):
            open_in(folder, "a.png", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    finally:
        os.close(folder)
    assert (tmp_path / "out" / "2026" / "renders" / "a.png").read_bytes() == b"png"
    (tmp_path / "trap").symlink_to(tmp_path / "out")
    with pytest.raises(PathChanged):
        open_folder(tmp_path / "trap" / "new", create=True)
    assert not (tmp_path / "out" / "new").exists()


# -- through the real server --------------------------------------------------------------------------------

I2I = "fal-ai/flux/dev/image-to-image"
INSIDE = picture(16, 16, 1)
SECRET = b"root:x:0:0:the file outside the allowed folder\n"
RACE_S = 3.0
HANG_GUARD_S = 60.0
"""Not a speed target: how long a call may take before the test calls it hung."""


@dataclass(frozen=True)
class Tree:
    """An allowed folder with `inside/photo.png`, and a folder outside it with a `photo.png` of its own."""

    root: Path
    outside: Path

    @property
    def photo(self) -> Path:
        return self.root / "inside" / "photo.png"


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    (root / "inside").mkdir(parents=True)
    outside.mkdir()
    (root / "inside" / "photo.png").write_bytes(INSIDE)
    (outside / "photo.png").write_bytes(SECRET)
    return Tree(root, outside)


def refusal(result: CallToolResult, tool: str) -> str:
    assert result.is_error, f"expected a refusal, got {text_of(result)[:300]}"
    text = text_of(result)
    assert text.startswith(f"{tool}:") and "unexpected" not in text and "Traceback" not in text, text
    return text


FLIPPER = """
import os, sys, time
root, outside = sys.argv[1], sys.argv[2]
inside, held = os.path.join(root, "inside"), os.path.join(root, "held")
flips = 0
print("swapping", flush=True)
try:
    while True:
        os.rename(inside, held)
        os.symlink(outside, inside)
        time.sleep(0.0005)
        os.unlink(inside)
        os.rename(held, inside)
        time.sleep(0.0005)
        flips += 1
except KeyboardInterrupt:
    if not os.path.isdir(inside) or os.path.islink(inside):
        if os.path.lexists(inside):
            os.unlink(inside)
        os.rename(held, inside)
print(flips)
"""
"""Swaps `inside/` for a symlink to the outside folder and back until interrupted; prints how many times."""


def uploaded(fake: FakeFal) -> list[bytes]:
    return [stored.data for stored in fake.storage.files.values()]


@pytest.mark.anyio
async def test_a_folder_swapped_for_a_symlink_mid_upload_never_leaks_a_file(
    sandbox: SandboxServer, fake: FakeFal, tree: Tree, tmp_path: Path
) -> None:
    """Another process keeps swapping `inside/` for a symlink to the outside folder while the server uploads in a
    loop, through upload-file and through a file:// URI in run-model: not one outside byte may reach the CDN."""
    results: list[CallToolResult] = []
    deadline = 0.0

    async with connect("stdio", sandbox, tmp_path, upload_roots=str(tree.root)) as client:

        async def upload_files() -> None:
            while time.monotonic() < deadline:
                results.append(await client.call_tool("upload-file", {"path": str(tree.photo)}))

        async def run_models() -> None:
            arguments = {"prompt": "x", "image_url": tree.photo.as_uri()}
            while time.monotonic() < deadline:
                results.append(await client.call_tool("run-model", {"endpoint_id": I2I, "input": arguments}))

        # a process of its own: it swaps as fast as the disk allows, whatever this process's threads do
        async with await anyio.open_process(
            [sys.executable, "-c", FLIPPER, str(tree.root), str(tree.outside)]
        ) as flipper:
            assert flipper.stdout is not None
            output = await flipper.stdout.receive()  # "swapping": it runs
            deadline = time.monotonic() + RACE_S
            try:
                with anyio.fail_after(RACE_S + HANG_GUARD_S):
                    async with anyio.create_task_group() as group:
                        for _ in range(3):
                            group.start_soon(upload_files)
                        group.start_soon(run_models)
            finally:
                flipper.send_signal(signal.SIGINT)
                with anyio.fail_after(HANG_GUARD_S):
                    async for chunk in flipper.stdout:
                        output += chunk
    flips = int(output.decode().split()[-1])
    assert flips > 200, "the folder was hardly swapped: the race was not run"
    assert SECRET not in uploaded(fake), "a file from outside the allowed folder reached the public CDN"
    assert INSIDE in uploaded(fake), "no upload got through at all: the race proves nothing"
    for result in results:
        if result.is_error:
            text = text_of(result)
            assert "unexpected" not in text and any(
                reason in text for reason in ("changed while", "outside the allowed", "does not exist", "cannot be")
            ), text


def release_readers(fifo: Path) -> None:
    """Open the pipe for writing and close it, so a reader blocked on it (if any) gets end-of-file."""
    for _ in range(50):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody is reading; nothing to release
                raise
            return


@pytest.fixture
def fifo(tree: Tree) -> Iterator[Path]:
    path = tree.root / "inside" / "pipe.png"
    os.mkfifo(path)
    yield path
    release_readers(path)


@pytest.mark.anyio
async def test_named_pipes_are_refused_at_once_and_never_hang_the_server(
    sandbox: SandboxServer, fake: FakeFal, tree: Tree, fifo: Path, tmp_path: Path
) -> None:
    """More uploads of a named pipe at once than the server has worker threads; a normal call still answers."""
    pipes: list[CallToolResult] = []
    async with connect("stdio", sandbox, tmp_path, upload_roots=str(tree.root)) as client:

        async def upload_pipe(index: int) -> None:
            if index % 5:
                pipes.append(await client.call_tool("upload-file", {"path": str(fifo)}))
            else:
                arguments = {"endpoint_id": I2I, "input": {"prompt": "x", "image_url": fifo.as_uri()}}
                pipes.append(await client.call_tool("run-model", arguments))

        with anyio.fail_after(HANG_GUARD_S):
            async with anyio.create_task_group() as group:
                for index in range(50):
                    group.start_soon(upload_pipe, index)
                await anyio.sleep(0.5)  # let them all reach the server first
                normal = structured(await client.call_tool("upload-file", {"path": str(tree.photo)}))
                listed = structured(await client.call_tool("list-requests", {}))
    assert normal["size_bytes"] == len(INSIDE) and "requests" in listed
    assert len(pipes) == 50
    for result in pipes:
        text = text_of(result)
        assert result.is_error and text.startswith(("upload-file:", "run-model:")) and "not a regular file" in text
    assert uploaded(fake) == [INSIDE]


@pytest.mark.anyio
async def test_hard_links_system_folders_and_hidden_real_paths_are_refused(
    sandbox: SandboxServer, fake: FakeFal, tree: Tree, tmp_path: Path
) -> None:
    os.link(tree.outside / "photo.png", tree.root / "inside" / "linked.png")
    (tree.root / "inside" / "environ").write_bytes(b"FAL_KEY=...")
    hidden = tmp_path / ".store" / "pictures"
    hidden.mkdir(parents=True)
    (hidden / "photo.png").write_bytes(INSIDE)
    (tmp_path / "pictures").symlink_to(hidden)  # an allowed folder named without a dot, really inside one
    roots = os.pathsep.join([str(tree.root), str(tmp_path / "pictures"), "/proc", "/dev", "/sys"])
    refused = {
        str(tree.root / "inside" / "linked.png"): "hard link",
        str(tree.root / "inside" / "environ"): "looks like a key or secret",
        str(tmp_path / "pictures" / "photo.png"): "'.store', which is hidden",
        "/proc/self/environ": "looks like a key or secret (environ)",
        "/proc/self/cmdline": "'/proc' holds the system's live state",
        "/dev/zero": "'/dev' holds the system's live state",
        "/sys/kernel/notes": "'/sys' holds the system's live state",
    }
    async with connect("memory", sandbox, tmp_path, upload_roots=roots) as client:
        for path, reason in refused.items():
            assert reason in refusal(await client.call_tool("upload-file", {"path": path}), "upload-file"), path
    assert uploaded(fake) == []


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["memory", "stdio"])
async def test_paths_no_file_has_get_a_clear_refusal(
    transport: str, sandbox: SandboxServer, fake: FakeFal, tree: Tree, tmp_path: Path
) -> None:
    uri = tree.photo.as_uri()
    refused = {
        uri.replace("photo", "pho%00to"): "NUL character (%00 in the URI)",
        uri.replace("photo", "pho%0Ato"): "control character (U+000A)",
        uri.replace("photo", "pho%C3to"): "not UTF-8",
        str(tree.root / ("x" * 300)): "too long",
        "file:///" + "%41" * 1300 + ".png": "too long",
    }
    beyond_the_argument_cap = "file:///" + "%2F" * 5000 + "x.png"  # upload-file's `path` takes 4,096 characters
    async with connect(transport, sandbox, tmp_path, upload_roots=str(tree.root)) as client:
        for path, reason in refused.items():
            assert reason in refusal(await client.call_tool("upload-file", {"path": path}), "upload-file"), path
        for path, reason in [*refused.items(), (beyond_the_argument_cap, "too long")]:
            if path.startswith("file:"):
                arguments = {"endpoint_id": I2I, "input": {"prompt": "x", "image_url": path}}
                assert reason in refusal(await client.call_tool("run-model", arguments), "run-model"), path
    assert uploaded(fake) == []


class _HungFence(Fence):
    """A fence whose reads hang, as a read from a dead network or FUSE mount does, until `released`."""

    released = threading.Event()

    def admit(self, reference: str) -> LocalFile:
        self.released.wait(30)
        return LocalFile(Path(reference), b"")


@pytest.mark.anyio
async def test_a_read_that_hangs_is_abandoned_and_stuck_reads_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "READ_TIMEOUT_S", 0.2)
    fence = _HungFence(roots=(), max_bytes=1)
    _HungFence.released.clear()
    try:
        refused: list[str] = []

        async def read(index: int) -> None:
            try:
                await uploads.read_local(fence, f"/mnt/dead/{index}.png")
            except UploadRefused as exc:
                refused.append(str(exc))

        with anyio.fail_after(HANG_GUARD_S):
            while uploads.blocked_reads() < uploads.READS_AT_ONCE + uploads.MAX_STUCK_READS:
                async with anyio.create_task_group() as group:  # a wave: as many reads as may run at once
                    for index in range(uploads.READS_AT_ONCE):
                        group.start_soon(read, len(refused) + index)
            with pytest.raises(UploadRefused, match="local file reads are still blocked"):
                await uploads.read_local(fence, "/mnt/dead/one-more.png")
        assert len(refused) == uploads.READS_AT_ONCE + uploads.MAX_STUCK_READS
        assert all("took longer than 0.2s; it was abandoned" in message for message in refused)
    finally:
        _HungFence.released.set()
    with anyio.fail_after(HANG_GUARD_S):
        while uploads.blocked_reads():
            await anyio.sleep(0.01)


def test_without_descriptor_relative_opens_the_opened_file_must_still_be_the_checked_one(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a platform cannot open folder by folder (Windows), the whole path is opened and then compared."""
    monkeypatch.setattr(fence_module, "WALKS", False)
    fence = Fence(roots=roots_from([tree.root]), max_bytes=1_000_000)
    assert fence.admit(str(tree.photo)).data == INSIDE
    real = fence.check(str(tree.photo))
    (tree.root / "inside").rename(tree.root / "held")
    (tree.root / "inside").symlink_to(tree.outside)  # swapped after the check
    with pytest.raises(UploadRefused, match="changed while it was being opened"):
        fence._read(real)  # pyright: ignore[reportPrivateUsage]
