"""Configuration precedence (environment, .env, flags) and keeping the key secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fal_mcp.cli import parse_args
from fal_mcp.settings import Settings, load

KEY = "0123abcd-key-id:0123456789abcdef-secret"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults(workdir: Path) -> None:
    settings = load()
    assert settings.key is None
    assert settings.queue_url == "https://queue.fal.run"
    assert settings.run_url == "https://fal.run"
    assert settings.api_url == "https://api.fal.ai"
    assert settings.rest_url == "https://rest.fal.ai"
    assert (settings.transport, settings.host, settings.port, settings.stateless) == ("stdio", "127.0.0.1", 8000, False)


def test_dotenv_is_read_and_environment_wins(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text(f"FAL_KEY={KEY}\nFAL_MCP_PORT=9001\nFAL_MCP_WAIT_S=12\nUNRELATED=1\n")
    settings = load()
    assert settings.key is not None and settings.key.get_secret_value() == KEY
    assert (settings.port, settings.wait_s) == (9001, 12)
    monkeypatch.setenv("FAL_MCP_PORT", "9002")
    assert load().port == 9002


def test_flags_win_over_everything(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text("FAL_MCP_TRANSPORT=stdio\nFAL_MCP_PORT=9001\n")
    monkeypatch.setenv("FAL_MCP_HOST", "127.0.0.2")
    args = parse_args(["--transport", "http", "--port", "7000", "--host", "::1", "--stateless"])
    settings = load(transport=args.transport, port=args.port, host=args.host, stateless=args.stateless)
    assert (settings.transport, settings.port, settings.host, settings.stateless) == ("http", 7000, "::1", True)


def test_unset_flags_do_not_override(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_MCP_STATELESS", "true")
    args = parse_args([])
    assert load(stateless=args.stateless, sandbox=args.sandbox).stateless is True


def test_key_id_and_secret(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY_ID", "the-key-id")
    monkeypatch.setenv("FAL_KEY_SECRET", "the-key-secret")
    key = load().key
    assert key is not None and key.get_secret_value() == "the-key-id:the-key-secret"
    monkeypatch.setenv("FAL_KEY", KEY)  # FAL_KEY comes first, as in fal's own client
    key = load().key
    assert key is not None and key.get_secret_value() == KEY


def test_blank_key_means_no_key(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "  ")
    assert load().key is None


def test_key_never_prints(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", KEY)
    settings = load()
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert KEY not in text
        assert "0123456789abcdef-secret" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FAL_QUEUE_URL", "ftp://x"),
        ("FAL_RUN_URL", "queue.fal.run"),
        ("FAL_MCP_PORT", "99999"),
        ("FAL_MCP_WAIT_S", "-1"),
    ],
)
def test_invalid_values_are_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load()


def test_base_urls_keep_their_path_prefix(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_QUEUE_URL", "http://127.0.0.1:9000/queue/")
    assert load().queue_url == "http://127.0.0.1:9000/queue"


def test_constructor_keywords_for_tests() -> None:
    settings = Settings(_env_file=None, fal_key=KEY, queue_url="http://127.0.0.1:1/q")  # pyright: ignore[reportCallIssue]
    assert settings.key is not None and settings.queue_url == "http://127.0.0.1:1/q"
