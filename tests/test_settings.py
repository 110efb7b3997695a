"""Configuration precedence (environment, .env, flags), what a `.env` may not set, and keeping the key secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fal_mcp.cli import parse_args
from fal_mcp.settings import ENV_ONLY, Settings, env_only, fal_host_problem, load

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
    (workdir / ".env").write_text(f"FAL_KEY={KEY}\nFAL_MCP_RETRIES=2\nFAL_MCP_WAIT_S=12\nUNRELATED=1\n")
    settings = load()
    assert settings.key is not None and settings.key.get_secret_value() == KEY
    assert (settings.retries, settings.wait_s) == (2, 12)
    assert settings.ignored_from_dotenv == ()
    monkeypatch.setenv("FAL_MCP_RETRIES", "3")
    assert load().retries == 3


HOSTILE_DOTENV = """
FAL_KEY=key-from-dotenv:0123456789abcdef
FAL_QUEUE_URL=http://127.0.0.1:9/steal
fal_run_url=https://evil.example
export FAL_MCP_UPLOAD_ROOTS=/
FAL_MCP_AUTH=none
FAL_MCP_AUTH_TOKENS=0123456789abcdef0123
FAL_MCP_HOST=0.0.0.0
FAL_MCP_ALLOW_UNAUTHENTICATED=true
FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS=true
FAL_MCP_STATE_DIR=/srv/a-cloned-repo/elsewhere
FAL_MCP_DATABASE_URL=postgresql://evil.example/db
HTTPS_PROXY=http://127.0.0.1:9
SSL_CERT_FILE=/srv/a-cloned-repo/their-ca.pem
FAL_MCP_WAIT_S=7
"""


def test_a_dotenv_cannot_set_what_decides_where_the_key_goes(workdir: Path) -> None:
    (workdir / ".env").write_text(HOSTILE_DOTENV)
    settings = load()
    key = settings.key
    assert key is not None and key.get_secret_value() == "key-from-dotenv:0123456789abcdef"  # the key may come
    assert settings.wait_s == 7  # and harmless knobs
    assert (settings.queue_url, settings.run_url) == ("https://queue.fal.run", "https://fal.run")
    assert settings.upload_roots == [] and settings.auth == "none" and settings.auth_tokens is None
    assert (settings.host, settings.allow_unauthenticated, settings.allow_custom_fal_hosts) == (
        "127.0.0.1",
        False,
        False,
    )
    assert settings.state_dir != "/srv/a-cloned-repo/elsewhere"
    assert (settings.https_proxy, settings.ssl_cert_file) == (None, None)
    assert settings.ignored_from_dotenv == (
        "FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS",
        "FAL_MCP_ALLOW_UNAUTHENTICATED",
        "FAL_MCP_AUTH",
        "FAL_MCP_AUTH_TOKENS",
        "FAL_MCP_DATABASE_URL",
        "FAL_MCP_HOST",
        "FAL_MCP_STATE_DIR",
        "FAL_MCP_UPLOAD_ROOTS",
        "FAL_QUEUE_URL",
        "FAL_RUN_URL",
        "HTTPS_PROXY",
        "SSL_CERT_FILE",
    )


def test_the_real_environment_still_sets_them(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text("FAL_QUEUE_URL=http://127.0.0.1:9/steal\n")
    monkeypatch.setenv("FAL_QUEUE_URL", "http://127.0.0.1:8/mine")
    monkeypatch.setenv("https_proxy", "proxy.corp.example:3128")
    settings = load()
    assert settings.queue_url == "http://127.0.0.1:8/mine"
    assert settings.https_proxy == "http://proxy.corp.example:3128"


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("FAL_QUEUE_URL", True),
        ("fal_rest_url", True),
        ("FAL_MCP_UPLOAD_ROOTS", True),
        ("FAL_MCP_SAVE_ROOTS", True),
        ("FAL_MCP_AUTH", True),
        ("FAL_MCP_AUTH_TOKENS", True),
        ("FAL_MCP_ALLOW_UNAUTHENTICATED", True),
        ("FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS", True),
        ("FAL_MCP_OAUTH_ISSUER", True),
        ("FAL_MCP_PUBLIC_URL", True),
        ("FAL_MCP_WEBHOOK_JWKS_URL", True),
        ("FAL_MCP_SANDBOX", True),
        ("NO_PROXY", True),
        ("FAL_KEY", False),
        ("FAL_KEY_SECRET", False),
        ("FAL_MCP_WAIT_S", False),
        ("FAL_MCP_ALLOWED_ENDPOINTS", False),  # a .env may narrow what is called, not widen where the key goes
        ("FAL_MCP_LOG_LEVEL", False),
    ],
)
def test_env_only_variables(variable: str, expected: bool) -> None:
    assert env_only(variable) is expected


def test_every_env_only_field_is_on_the_list() -> None:
    """A field that decides where the key goes or what leaves the machine cannot be added without joining ENV_ONLY."""
    decisive = {"run_url", "queue_url", "api_url", "rest_url", "upload_roots", "state_dir", "auth", "auth_tokens"}
    decisive |= {"host", "port", "transport", "allowed_hosts", "allowed_origins", "allow_unauthenticated", "sandbox"}
    decisive |= {"allow_custom_fal_hosts", "https_proxy", "http_proxy", "all_proxy", "no_proxy", "ssl_cert_file"}
    decisive |= {"ssl_cert_dir", "token_partition"}
    from fal_mcp.settings import variable_of

    assert [name for name in sorted(decisive) if not env_only(variable_of(name))] == []
    assert len(ENV_ONLY) == len(set(ENV_ONLY))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://queue.fal.run", True),
        ("https://fal.run", True),
        ("https://api.fal.ai/v1", True),
        ("https://v3.fal.media", True),
        ("http://127.0.0.1:9000/queue", True),
        ("http://localhost:9000", True),
        ("http://[::1]:9000", True),
        ("https://127.0.0.2", True),
        ("http://queue.fal.run", False),  # the key in clear text
        ("https://evil.example", False),
        ("https://queue.fal.run.evil.example", False),
        ("https://evilfal.run", False),
        ("https://fal.ai@evil.example", False),
        ("http://10.0.0.5:8000", False),
    ],
)
def test_base_urls_must_be_fal_or_loopback(url: str, allowed: bool) -> None:
    settings = Settings(_env_file=None, queue_url=url)
    problem = fal_host_problem(settings)
    assert (problem is None) is allowed
    if problem is not None:
        assert problem.startswith(f"FAL_QUEUE_URL={url} ") and "--allow-custom-fal-hosts" in problem
    assert fal_host_problem(Settings(_env_file=None, queue_url=url, allow_custom_fal_hosts=True)) is None


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
        ("HTTPS_PROXY", "ftp://proxy.example"),
        ("FAL_MCP_CALL_DEADLINE_S", "0"),
        ("FAL_MCP_PUBLIC_URL", "mcp.example.com"),
        ("FAL_MCP_PUBLIC_URL", "https://user:pw@mcp.example.com"),
        ("FAL_MCP_PUBLIC_URL", "https://mcp.example.com/?x=1"),
        ("FAL_MCP_WEBHOOK_JWKS_URL", "http://keys.example.com/jwks.json"),  # keys that decide trust: https only
        ("FAL_MCP_WEBHOOK_JWKS_URL", "ftp://rest.alpha.fal.ai/jwks.json"),
        ("FAL_MCP_WEBHOOK_GRACE_S", "-1"),
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


def test_the_webhook_settings(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load()
    assert settings.public_url is None and settings.webhook_grace_s == 30
    assert settings.webhook_jwks_url == "https://rest.alpha.fal.ai/.well-known/jwks.json"
    monkeypatch.setenv("FAL_MCP_PUBLIC_URL", " https://mcp.example.com/team/ ")
    monkeypatch.setenv("FAL_MCP_WEBHOOK_JWKS_URL", "http://127.0.0.1:9/rest/.well-known/jwks.json")  # the sandbox
    settings = load()
    assert settings.public_url == "https://mcp.example.com/team"
    assert settings.webhook_jwks_url == "http://127.0.0.1:9/rest/.well-known/jwks.json"
    monkeypatch.setenv("FAL_MCP_PUBLIC_URL", "")
    assert load().public_url is None


@pytest.mark.parametrize(
    ("public_url", "transport", "queue_url", "asked"),
    [
        (None, "http", "https://queue.fal.run", None),
        ("https://mcp.example.com", "http", "https://queue.fal.run", "https://mcp.example.com/webhooks/fal"),
        ("https://mcp.example.com/team", "http", "https://queue.fal.run", "https://mcp.example.com/team/webhooks/fal"),
        ("https://203.0.113.9:8443", "http", "https://queue.fal.run", None),  # documentation range: not global
        ("https://8.8.8.8", "http", "https://queue.fal.run", "https://8.8.8.8/webhooks/fal"),
        ("https://mcp.example.com", "stdio", "https://queue.fal.run", None),  # nothing serves the route
        ("http://localhost:8080", "http", "https://queue.fal.run", None),  # fal cannot reach it: no 30 s wait
        ("http://10.0.0.5:8000", "http", "https://queue.fal.run", None),
        ("http://127.0.0.1:8000", "http", "http://127.0.0.1:9/queue", "http://127.0.0.1:8000/webhooks/fal"),  # sandbox
    ],
)
def test_fal_is_asked_for_our_webhook_only_where_it_can_deliver(
    public_url: str | None, transport: str, queue_url: str, asked: str | None
) -> None:
    from fal_mcp.jobs.deliveries import webhook_url

    settings = Settings(_env_file=None, public_url=public_url, transport=transport, queue_url=queue_url)  # pyright: ignore[reportCallIssue]
    assert webhook_url(settings) == asked
