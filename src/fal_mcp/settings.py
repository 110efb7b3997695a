"""Configuration: the environment, then `.env` in the working directory, then CLI flags (flags win).

fal's own variables keep their names (`FAL_KEY`, `FAL_KEY_ID` + `FAL_KEY_SECRET`, `FAL_RUN_URL`, ...); every knob
of ours carries the `FAL_MCP_` prefix. The key is a `SecretStr`, so printing the settings, a traceback or a
validation error shows `**********` instead of the key.

**A `.env` cannot redirect the key.** IDE clients start the server in the project folder, so a cloned
repository's `.env` is read too. What decides where a credential goes or what may leave the machine (the fal base
URLs, upload and save roots, the state directory and database, every auth, bind and public-URL setting, proxies and
CA bundles) is taken only from the real environment and flags: `ENV_ONLY` lists those variables, and a `.env` that
sets one is ignored for it (the CLI says so in one line). `.env` may still give the key and harmless knobs.

The sources are read here rather than by pydantic-settings: a stdio start pays for every import before its first
answer, and the rule above needs a say over each `.env` entry anyway.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator
from pydantic.fields import FieldInfo

Transport = Literal["stdio", "http"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AuthMode = Literal["token", "fal-key", "none", "oauth"]
LogFormat = Literal["text", "json"]

DEFAULT_RUN_URL = "https://fal.run"
DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_API_URL = "https://api.fal.ai"
DEFAULT_REST_URL = "https://rest.fal.ai"
DEFAULT_WEBHOOK_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
DOTENV = ".env"
PREFIX = "FAL_MCP_"

ENV_ONLY: tuple[str, ...] = (
    # where the key goes
    "FAL_RUN_URL",
    "FAL_QUEUE_URL",
    "FAL_API_URL",
    "FAL_REST_URL",
    "FAL_MCP_ALLOW_*",  # FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS, FAL_MCP_ALLOW_UNAUTHENTICATED, ...
    "FAL_MCP_SANDBOX",
    # what may leave the machine, and where state is kept
    "FAL_MCP_UPLOAD_ROOTS",
    "FAL_MCP_SAVE_ROOTS",
    "FAL_MCP_STATE_DIR",
    "FAL_MCP_DATABASE_URL",
    "FAL_MCP_STATE_SECRET",  # seals what replicas hand each other; a repository's .env must not choose it
    # who may call, where the server listens and is reached
    "FAL_MCP_AUTH*",
    "FAL_MCP_TOKEN_PARTITION",  # whether token holders see each other's requests
    "FAL_MCP_TRANSPORT",
    "FAL_MCP_HOST",
    "FAL_MCP_PORT",
    "FAL_MCP_ALLOWED_HOSTS",
    "FAL_MCP_ALLOWED_ORIGINS",
    "FAL_MCP_PUBLIC_URL",
    "FAL_MCP_OAUTH_*",
    "FAL_MCP_WEBHOOK_JWKS_URL",
    # the network path to fal
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
"""Variables read only from the real environment (and flags), never from `.env`: names, or `fnmatch` patterns.
A setting that decides where a credential goes or what may leave the machine joins this list."""

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
FAL_DOMAINS = ("fal.run", "fal.ai", "fal.media")
"""Hosts the key may be sent to: these and their subdomains (and loopback, where the sandbox runs)."""


def env_only(variable: str) -> bool:
    """Whether `variable` (any case) may come only from the real environment."""
    name = variable.upper()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in ENV_ONLY)


def read_dotenv(path: str | Path | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """`.env`'s entries (names upper-cased) without the env-only ones, and the env-only names it tried to set."""
    if path is None or not Path(path).is_file():
        return {}, ()
    from dotenv import dotenv_values  # only when there is a file to read

    allowed: dict[str, str] = {}
    refused: list[str] = []
    for name, value in dotenv_values(path, encoding="utf-8").items():
        if value is None:
            continue
        if env_only(name):
            refused.append(name.upper())
        else:
            allowed[name.upper()] = value
    return allowed, tuple(sorted(set(refused)))


def _fal_var(name: str) -> AliasChoices:
    """A variable without our prefix (fal's own, or a standard one such as `HTTPS_PROXY`); the field name still
    works as a constructor keyword."""
    return AliasChoices(name)


def _variables(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The variables a field is read from: its alias choices, else `FAL_MCP_<NAME>`."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return (alias.upper(),)
    if isinstance(alias, AliasChoices):
        return tuple(choice.upper() for choice in alias.choices if isinstance(choice, str))
    return (PREFIX + name.upper(),)


def variable_of(name: str) -> str:
    """How the user writes a setting: `FAL_QUEUE_URL` for `queue_url`, `FAL_MCP_PORT` for `port`."""
    field = Settings.model_fields.get(name)
    return _variables(name, field)[0] if field is not None else name


def _input_key(name: str, field: FieldInfo) -> str:
    """The key a value is validated under: the variable for fal's own names (errors then name it), else the field."""
    return _variables(name, field)[0] if field.validation_alias is not None else name


class Settings(BaseModel):
    """Every knob of the server. Construct with keyword arguments in tests; `load()` for the real thing."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    _ignored_from_dotenv: tuple[str, ...] = PrivateAttr(default=())

    def __init__(self, _env_file: str | Path | None = DOTENV, **values: Any) -> None:
        """The environment, then `_env_file` (None: no file), under `values` (flags and test keywords)."""
        environ = {name.upper(): value for name, value in os.environ.items()}
        dotenv, refused = read_dotenv(_env_file)
        merged: dict[str, Any] = {}
        fields = type(self).model_fields
        for name, field in fields.items():
            variables = _variables(name, field)
            found = next((source[v] for source in (environ, dotenv) for v in variables if v in source), None)
            if found is not None:
                merged[_input_key(name, field)] = found
        for key, value in values.items():
            field = fields.get(key)
            merged[_input_key(key, field) if field is not None else key] = value
        super().__init__(**merged)
        self._ignored_from_dotenv = refused

    @property
    def ignored_from_dotenv(self) -> tuple[str, ...]:
        """The env-only variables the `.env` file tried to set (and did not)."""
        return self._ignored_from_dotenv

    # fal credentials and hosts (fal's variable names)
    fal_key: SecretStr | None = Field(default=None, validation_alias=_fal_var("FAL_KEY"))
    fal_key_id: SecretStr | None = Field(default=None, validation_alias=_fal_var("FAL_KEY_ID"))
    fal_key_secret: SecretStr | None = Field(default=None, validation_alias=_fal_var("FAL_KEY_SECRET"))
    run_url: str = Field(default=DEFAULT_RUN_URL, validation_alias=_fal_var("FAL_RUN_URL"))
    queue_url: str = Field(default=DEFAULT_QUEUE_URL, validation_alias=_fal_var("FAL_QUEUE_URL"))
    api_url: str = Field(default=DEFAULT_API_URL, validation_alias=_fal_var("FAL_API_URL"))
    rest_url: str = Field(default=DEFAULT_REST_URL, validation_alias=_fal_var("FAL_REST_URL"))
    allow_custom_fal_hosts: bool = Field(
        default=False, description="let the fal base URLs name hosts other than fal's (the key goes there)"
    )

    # the network path to fal: the standard variables, honoured like curl and httpx do (see `fal.network`)
    https_proxy: str | None = Field(default=None, validation_alias=_fal_var("HTTPS_PROXY"))
    http_proxy: str | None = Field(default=None, validation_alias=_fal_var("HTTP_PROXY"))
    all_proxy: str | None = Field(default=None, validation_alias=_fal_var("ALL_PROXY"))
    no_proxy: str = Field(default="", validation_alias=_fal_var("NO_PROXY"))
    ssl_cert_file: str | None = Field(default=None, validation_alias=_fal_var("SSL_CERT_FILE"))
    ssl_cert_dir: str | None = Field(default=None, validation_alias=_fal_var("SSL_CERT_DIR"))

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
    call_deadline_s: float = Field(
        default=45.0,
        gt=0,
        description="longest one request to fal may take, retries included (a wait the caller asked for is not one)",
    )

    # status streams: long-lived requests, kept apart from the short ones and capped; beyond the caps, waits poll
    max_streams: int = Field(default=64, ge=0, description="status streams open at once in this process")
    streams_per_key: int = Field(default=8, ge=0, description="status streams one key may hold at once")

    # retries of status/result/cancel (never of run/submit once sent)
    retries: int = Field(default=4, ge=0, le=10, description="extra attempts after the first")
    max_retry_after_s: float = Field(default=10.0, ge=0, description="longest Retry-After honoured inside a call")

    # the request history
    state_dir: str | None = Field(default=None, description="where the request history lives; 'off' disables it")
    history_max_age_days: float = Field(default=30.0, ge=0, description="rows older than this go (0: kept forever)")
    history_max_rows: int = Field(
        default=100_000, ge=0, description="per key: the newest rows kept, active and UNKNOWN ones aside (0: all)"
    )

    # the shared store of several replicas
    database_url: SecretStr | None = Field(
        default=None, description="postgresql://...: history, limits, tasks and deliveries shared by every replica"
    )
    state_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="seals multi-round-trip request state identically on every replica (at least 32 characters)",
    )

    @field_validator("database_url", "state_secret", mode="before")
    @classmethod
    def _blank_means_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("run_url", "queue_url", "api_url", "rest_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")) or len(value) < 10:
            raise ValueError("must be an http(s) URL such as https://queue.fal.run")
        return value.rstrip("/")

    @field_validator("https_proxy", "http_proxy", "all_proxy", "ssl_cert_file", "ssl_cert_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("https_proxy", "http_proxy", "all_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        """`proxy.corp:3128` means `http://proxy.corp:3128`, as for curl; other schemes than these are refused."""
        if value is None:
            return None
        value = value.strip()
        if "://" not in value:
            value = "http://" + value
        parts = urlsplit(value)
        if parts.scheme.lower() not in PROXY_SCHEMES or not parts.hostname:
            raise ValueError(f"must be a proxy URL such as http://proxy.example.com:3128 ({', '.join(PROXY_SCHEMES)})")
        if parts.scheme.lower().startswith("socks") and find_spec("socksio") is None:
            raise ValueError("a SOCKS proxy needs the socksio package: pip install 'httpx[socks]'")
        return value

    @field_validator("ssl_cert_file")
    @classmethod
    def _a_file(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("ssl_cert_dir")
    @classmethod
    def _a_folder(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isdir(value):
            raise ValueError(f"no such folder: {value}")
        return value

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

    # -- the URL clients (and fal's webhooks) reach this server at; only from the real environment --
    public_url: str | None = Field(default=None, description="the URL clients reach this server at (https)")

    # -- sign-in through the team's OAuth 2.1 / OpenID provider (auth=oauth); only from the real environment --
    oauth_issuer: str | None = Field(default=None, description="the identity provider's issuer URL")
    oauth_audience: str | None = Field(
        default=None, description="the audience access tokens must name (default: <public_url>/mcp)"
    )
    oauth_scopes: str = Field(default="", description="scopes every access token must carry (comma or space)")
    oauth_user_claim: str = Field(default="sub", min_length=1, description="the claim that names the user")
    oauth_client_id: str | None = Field(default=None, description="for introspecting opaque tokens (RFC 7662)")
    oauth_client_secret: SecretStr | None = Field(default=None, description="that client's secret")

    # -- webhooks: fal pushes a request's outcome to <public_url>/webhooks/fal instead of being polled --
    webhook_jwks_url: str = Field(
        default=DEFAULT_WEBHOOK_JWKS_URL, description="where fal publishes the keys its webhooks are signed with"
    )
    webhook_grace_s: float = Field(
        default=30.0, ge=0, description="how long a call waits for fal's webhook before it also asks fal"
    )

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url(cls, value: object) -> object:
        """An http(s) base URL, without credentials, query or fragment; blank means unset, a trailing / goes."""
        if not isinstance(value, str):
            return value
        value = value.strip().rstrip("/")
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the http(s) URL clients reach this server at, such as https://mcp.example.com")
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            raise ValueError("must be a plain base URL: no user:password@, no ?query, no #fragment")
        return value

    @field_validator("webhook_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        """The keys decide which deliveries are trusted: https, or loopback (the sandbox's)."""
        value = value.strip()
        parts = urlsplit(value)
        if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname or ""))):
            raise ValueError(f"must be an https URL such as {DEFAULT_WEBHOOK_JWKS_URL} (http only on loopback)")
        return value

    # -- models, uploads, previews --
    models_cache_ttl_s: float = Field(
        default=900.0, ge=0, description="how long model schemas and prices are cached in memory (0: not cached)"
    )
    validate_inputs: bool = Field(default=True, description="check run-model/submit input against the schema")
    upload_roots: list[str] = Field(
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
    save_roots: list[str] = Field(
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


def is_loopback_host(host: str) -> bool:
    """`localhost`, or an address in 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_fal_host(host: str) -> bool:
    """fal's own hosts: `fal.run`, `fal.ai`, `fal.media` and their subdomains."""
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in FAL_DOMAINS)


def fal_host_problem(settings: Settings) -> str | None:
    """Why the fal base URLs must not be used (one line: what and how), or None.

    The key is sent to every one of them, so each must be fal's over https, or loopback (the sandbox, a local
    test double), unless the operator allows custom hosts explicitly.
    """
    if settings.allow_custom_fal_hosts:
        return None
    for name in ("run_url", "queue_url", "api_url", "rest_url"):
        url: str = getattr(settings, name)
        parts = urlsplit(url)
        host = parts.hostname or ""
        if is_loopback_host(host) or (is_fal_host(host) and parts.scheme == "https"):
            continue
        why = (
            "is not https"
            if is_fal_host(host)
            else f"names {host!r}, which is not fal's ({', '.join(FAL_DOMAINS)}) nor loopback"
        )
        return (
            f"{variable_of(name)}={url} {why}, and the fal key is sent there. Unset it (the default is fal's), or, if "
            "fal really is reached through that host, pass --allow-custom-fal-hosts (or FAL_MCP_ALLOW_CUSTOM_FAL_HOSTS=true "
            "in the environment)."
        )
    return None


def split_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting as its entries, stripped, empty ones dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load(**overrides: Any) -> Settings:
    """Read the environment and `.env`, then apply explicit overrides (CLI flags); `None` means "not given"."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given)
