"""The upload fence's pure parts, by table: what a path means, and which names never leave the machine."""

from __future__ import annotations

from pathlib import PurePath, PurePosixPath, PureWindowsPath

import pytest

from fal_mcp.media.fence import UploadRefused, local_path, sensitive_reason

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
