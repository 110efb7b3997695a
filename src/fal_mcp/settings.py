"""Configuration: the environment, then `.env` in the working directory, then CLI flags (flags win).

fal's own variables keep their names (`FAL_KEY`, `FAL_KEY_ID` + `FAL_KEY_SECRET`, `FAL_RUN_URL`, ...); every knob
of ours carries the `FAL_MCP_` prefix. The key is a `SecretStr`, so printing the settings, a traceback or a
validation error shows `**********` instead of the key.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Transport = Literal["stdio", "http"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AuthMode = Literal["token", "fal-key", "none", "oauth"]
LogFormat = Literal["text", "json"]

DEFAULT_RUN_URL = "https://fal.run"
DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_API_URL = "https://api.fal.ai"
DEFAULT_REST_URL = "https://rest.fal.ai"


def _fal_var(name: str) -> AliasChoices:
    """fal's own variable names carry no prefix; the field name still works as a constructor keyword."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every knob of the server. Construct with keyword arguments in tests; `load()` for the real thing."""

    model_config = SettingsConfigDict(
        env_prefix="FAL_MCP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # fal credentials and hosts (fal's variable names)
    fal_key: SecretStr | None = Field(default=None, validation_alias=_fal_var("FAL_KEY"))
    fal_key_id: SecretStr | None = Field(default=None, validation_alias=_fal_var("FAL_KEY_ID"))
    fal_key_secret: SecretStr | None = Field(default=None, validation_alias=_fal_var("FAL_KEY_SECRET"))
    run_url: str = Field(default=DEFAULT_RUN_URL, validation_alias=_fal_var("FAL_RUN_URL"))
    queue_url: str = Field(default=DEFAULT_QUEUE_URL, validation_alias=_fal_var("FAL_QUEUE_URL"))
    api_url: str = Field(default=DEFAULT_API_URL, validation_alias=_fal_var("FAL_API_URL"))
    rest_url: str = Field(default=DEFAULT_REST_URL, validation_alias=_fal_var("FAL_REST_URL"))

    # serving
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    stateless: bool = False
    sandbox: bool = False
    log_level: LogLevel = "WARNING"

    # waiting and timeouts (seconds)
    wait_s: float = Field(default=50.0, ge=0, description="default wait budget of run-model in queue mode")
    heartbeat_s: float = Field(default=4.0, gt=0, le=60, description="longest silence of a waiting call's progress")
    max_wait_s: float = Field(default=3600.0, gt=0, description="upper bound a caller may ask for in wait_s")
    run_timeout_s: float = Field(default=600.0, gt=0, description="how long a sync run may take to answer")
    request_timeout_s: float = Field(default=30.0, gt=0, description="read timeout of queue status/result/cancel")
    connect_timeout_s: float = Field(default=10.0, gt=0)

    # retries of status/result/cancel (never of run/submit once sent)
    retries: int = Field(default=4, ge=0, le=10, description="extra attempts after the first")
    max_retry_after_s: float = Field(default=10.0, ge=0, description="longest Retry-After honoured inside a call")

    # the request history
    state_dir: str | None = Field(default=None, description="where the request history lives; 'off' disables it")
    history_max_age_days: float = Field(default=30.0, ge=0, description="rows older than this go (0: kept forever)")
    history_max_rows: int = Field(
        default=100_000, ge=0, description="per key: the newest rows kept, active and UNKNOWN ones aside (0: all)"
    )

    @field_validator("run_url", "queue_url", "api_url", "rest_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")) or len(value) < 10:
            raise ValueError("must be an http(s) URL such as https://queue.fal.run")
        return value.rstrip("/")

    @field_validator(
        "fal_key",
        "fal_key_id",
        "fal_key_secret",
        "admin_key",
        "max_cost_per_call_usd",
        "daily_budget_usd",
        "confirm_above_usd",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An exported-but-empty `FAL_KEY=` means "no key", not a key made of nothing (and an empty limit, no limit)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def key(self) -> SecretStr | None:
        """The key to send: `FAL_KEY`, else `FAL_KEY_ID:FAL_KEY_SECRET` (fal's own order)."""
        if self.fal_key is not None:
            return SecretStr(self.fal_key.get_secret_value().strip())
        if self.fal_key_id is not None and self.fal_key_secret is not None:
            return SecretStr(
                f"{self.fal_key_id.get_secret_value().strip()}:{self.fal_key_secret.get_secret_value().strip()}"
            )
        return None

    # -- HTTP serving: auth, guards, REST --
    auth: AuthMode = Field(
        default="none", description="who may call over HTTP: token, fal-key (BYOK), oauth (sign-in) or none"
    )
    auth_tokens: SecretStr | None = Field(default=None, description="comma-separated bearer tokens for auth=token")
    allow_unauthenticated: bool = Field(default=False, description="serve auth=none on a non-loopback address")
    allowed_hosts: str = Field(default="", description="extra Host values accepted (comma-separated)")
    allowed_origins: str = Field(default="", description="extra Origin values accepted (comma-separated)")
    allowed_endpoints: str = Field(default="", description="glob patterns of endpoint ids that may be called")
    denied_endpoints: str = Field(default="", description="glob patterns of endpoint ids that may not be called")
    max_running_jobs: int = Field(default=20, ge=0, description="per key: jobs running at once (0: no limit)")
    submits_per_minute: int = Field(default=60, ge=0, description="per key: submits and runs a minute (0: no limit)")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="largest HTTP request body")
    max_input_bytes: int = Field(default=2 * 1024 * 1024, ge=2, description="largest model input JSON")
    rest: bool = Field(default=False, description="also serve the REST surface under /v1 and /openapi.json")
    log_format: LogFormat = "text"
    shutdown_grace_s: int = Field(
        default=10, ge=0, description="seconds in-flight HTTP calls get to finish at shutdown"
    )
    token_partition: Literal["per-token", "shared"] = Field(
        default="per-token", description="auth=token: each token's own history, tasks and limits, or one shared"
    )
    max_sessions: int = Field(default=1000, ge=1, description="MCP sessions open at once, all callers together")
    max_sessions_per_caller: int = Field(default=50, ge=1, description="MCP sessions one caller may hold open")
    session_idle_s: float = Field(default=300.0, gt=0, description="an MCP session unused this long is closed")
    max_connections: int = Field(default=1000, ge=8, description="HTTP connections open at once")
    request_read_timeout_s: float = Field(
        default=30.0, gt=0, description="time a client has to send a request's headers and body"
    )

    # -- sign-in through the team's OAuth 2.1 / OpenID provider (auth=oauth); only from the real environment --
    public_url: str | None = Field(default=None, description="the URL clients reach this server at (https)")
    oauth_issuer: str | None = Field(default=None, description="the identity provider's issuer URL")
    oauth_audience: str | None = Field(
        default=None, description="the audience access tokens must name (default: <public_url>/mcp)"
    )
    oauth_scopes: str = Field(default="", description="scopes every access token must carry (comma or space)")
    oauth_user_claim: str = Field(default="sub", min_length=1, description="the claim that names the user")
    oauth_client_id: str | None = Field(default=None, description="for introspecting opaque tokens (RFC 7662)")
    oauth_client_secret: SecretStr | None = Field(default=None, description="that client's secret")

    # -- models, uploads, previews --
    models_cache_ttl_s: float = Field(
        default=900.0, ge=0, description="how long model schemas and prices are cached in memory (0: not cached)"
    )
    validate_inputs: bool = Field(default=True, description="check run-model/submit input against the schema")
    upload_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list[str],
        description="directories whose files may be uploaded, separated like PATH (os.pathsep)",
    )
    upload_max_mb: float = Field(default=100.0, gt=0, le=100, description="largest file upload-file will send")
    previews: bool = Field(default=True, description="attach small previews of output images")
    preview_edge_px: int = Field(default=512, ge=32, le=2048, description="longest side of a preview")
    preview_max_kb: int = Field(default=100, ge=4, le=1024, description="largest encoded preview")
    preview_count: int = Field(default=4, ge=0, le=16, description="most previews in one result")
    preview_fetch_max_mb: float = Field(default=20.0, gt=0, description="largest image fetched to make a preview")
    preview_timeout_s: float = Field(default=10.0, gt=0, description="time allowed to fetch one preview")
    text_max_chars: int = Field(default=20_000, ge=1_000, description="cap on a result's text content")

    # -- saving outputs (save_to) --
    save_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list[str],
        description="directories output media may be saved in, separated like PATH (os.pathsep)",
    )
    save_max_mb: float = Field(default=500.0, gt=0, description="largest output file save_to downloads")
    save_timeout_s: float = Field(default=300.0, gt=0, description="time allowed to download one output file")

    # -- cost: caps, the daily budget, confirmation, the real charge --
    max_cost_per_call_usd: float | None = Field(
        default=None, ge=0, description="refuse a call whose estimate is higher (unset: no cap)"
    )
    daily_budget_usd: float | None = Field(
        default=None, ge=0, description="per key: refuse a call that would take the last 24 h's spend above it"
    )
    confirm_above_usd: float | None = Field(
        default=None, ge=0, description="above this estimate a call needs the user's confirmation"
    )
    admin_key: SecretStr | None = Field(
        default=None, validation_alias=_fal_var("FAL_ADMIN_KEY"), description="fal admin key: read actual charges"
    )

    @field_validator("upload_roots", "save_roots", mode="before")
    @classmethod
    def _path_list(cls, value: object) -> object:
        """`FAL_MCP_UPLOAD_ROOTS` and `FAL_MCP_SAVE_ROOTS` are one string each, separated like PATH: ':' on POSIX,
        ';' on Windows."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(os.pathsep) if part.strip()]
        return value

    @property
    def tokens(self) -> tuple[str, ...]:
        """The bearer tokens of auth=token (each stripped; empty entries dropped)."""
        return split_list(self.auth_tokens.get_secret_value()) if self.auth_tokens is not None else ()


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting as its entries, stripped, empty ones dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load(**overrides: object) -> Settings:
    """Read the environment and `.env`, then apply explicit overrides (CLI flags); `None` means "not given"."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given)  # pyright: ignore[reportArgumentType]
