"""The `fal-mcp` command: read the configuration, set up stderr logging, start the chosen transport."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from fal_mcp import __version__
from fal_mcp.logs import announce, configure_logging, redactor
from fal_mcp.settings import DOTENV, Settings, fal_host_problem, load, variable_of
from fal_mcp.web.auth import is_loopback, startup_problem

if TYPE_CHECKING:
    from mcp.server import MCPServer

logger = logging.getLogger("fal_mcp")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fal-mcp",
        description=(
            "MCP server for fal.ai. Reads FAL_KEY and FAL_MCP_* from the environment and .env (where fal URLs, roots, "
            "auth, bind, proxy and CA settings are ignored); flags win."
        ),
    )
    parser.add_argument("--transport", choices=["stdio", "http"], help="stdio (default) or streamable HTTP")
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--stateless", action="store_true", default=None, help="HTTP without sessions (any replica can answer)"
    )
    parser.add_argument(
        "--sandbox", action="store_true", default=None, help="use a built-in fake fal on loopback: no key, no cost"
    )
    parser.add_argument(
        "--auth", choices=["token", "fal-key", "oauth", "none"], help="who may call over HTTP (default none)"
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve --auth none on a non-loopback address (trusted networks only)",
    )
    parser.add_argument(
        "--allow-custom-fal-hosts",
        action="store_true",
        default=None,
        help="let FAL_*_URL name hosts other than fal's and loopback (the key is sent to them)",
    )
    parser.add_argument("--rest", action="store_true", default=None, help="also serve the REST surface under /v1")
    parser.add_argument("--log-format", choices=["text", "json"], help="stderr log lines as text (default) or JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for all)")
    parser.add_argument("--version", action="version", version=f"fal-mcp {__version__}")
    return parser.parse_args(argv)


def _variable(loc: tuple[int | str, ...]) -> str:
    """Name a setting as the user wrote it: fal's own variables as they are, ours with their prefix."""
    return variable_of(str(loc[0])) if loc else "?"


def _log_level(verbose: int) -> str | None:
    return {0: None, 1: "INFO"}.get(verbose, "DEBUG")


@contextlib.contextmanager
def sandboxed(settings: Settings) -> Generator[Settings]:
    """With --sandbox, start the fake fal and point every fal URL (and a sandbox key) at it."""
    if not settings.sandbox:
        yield settings
        return
    from fal_mcp.jobs.deliveries import WEBHOOK_PATH
    from fal_mcp.sandbox import SANDBOX_ADMIN_KEY, SANDBOX_KEY, FakeFal, SandboxServer

    redactor.add(SANDBOX_KEY)  # a key like any other: callers of --sandbox --auth fal-key send it too
    # Served to the network, the callers choosing webhook URLs may be remote: then the fake delivers webhooks only
    # to fal-mcp's own route on loopback, never to whatever else listens there.
    remote = settings.transport == "http" and not is_loopback(settings.host)
    # With a public URL the fake pushes outcomes to this server's own webhook there (which no caller chooses), signed
    # with its own key, and the server checks them against the fake's keys.
    ours = (settings.public_url + WEBHOOK_PATH,) if settings.public_url and settings.transport == "http" else ()
    with SandboxServer(FakeFal(webhook_path=WEBHOOK_PATH if remote else None, webhook_urls=ours)) as fake:
        logger.warning("sandbox: fake fal on %s; nothing leaves this machine and nothing is billed", fake.url)
        # With --auth fal-key the callers bring the key (the sandbox's own); the server still holds none.
        key = None if settings.auth == "fal-key" else SecretStr(SANDBOX_KEY)
        yield settings.model_copy(
            update={
                "run_url": fake.run_url,
                "queue_url": fake.queue_url,
                "api_url": fake.api_url,
                "rest_url": fake.rest_url,
                "fal_key": key,
                "fal_key_id": None,
                "fal_key_secret": None,
                "admin_key": SecretStr(SANDBOX_ADMIN_KEY),  # the sandbox's charges, read as fal's are
                "webhook_jwks_url": fake.jwks_url,
                # the fake lives in this process: no proxy in between (one could not reach our loopback anyway)
                "https_proxy": None,
                "http_proxy": None,
                "all_proxy": None,
            }
        )


def store_problem(settings: Settings) -> str | None:
    """The store's settings that cannot start (imported only when a database is configured: a start stays light)."""
    if settings.database_url is None:
        return None
    from fal_mcp.store.opening import startup_problem as problem

    return problem(settings)


def secrets_of(settings: Settings) -> list[str]:
    """What must never appear in a log line: the key, the admin key, the state secret, the database's password."""
    secrets = (settings.key, settings.admin_key, settings.state_secret)
    found = [value.get_secret_value() for value in secrets if value is not None]
    password = urlsplit(settings.database_url.get_secret_value()).password if settings.database_url else None
    return [*found, password] if password else found


def serve_stdio(server: MCPServer[Any]) -> None:
    """Serve MCP on stdin/stdout until the client closes them (what desktop clients and IDE agents launch)."""
    from fal_mcp.server.stdio import serve_stdio as serve

    serve(server)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load(
            transport=args.transport,
            host=args.host,
            port=args.port,
            stateless=args.stateless,
            sandbox=args.sandbox,
            log_level=_log_level(args.verbose),
            auth=args.auth,
            allow_unauthenticated=args.allow_unauthenticated,
            rest=args.rest,
            log_format=args.log_format,
            allow_custom_fal_hosts=args.allow_custom_fal_hosts,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"fal-mcp: invalid configuration: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.ignored_from_dotenv:
        announce(
            f"fal-mcp: ignored {', '.join(settings.ignored_from_dotenv)} in {DOTENV}: what decides where the fal key "
            "goes or what may leave this machine is read only from the environment and flags",
            settings.log_format,
        )
    problem = (
        (None if settings.sandbox else fal_host_problem(settings))
        or startup_problem(settings)
        or store_problem(settings)
    )
    if problem is not None:
        print(f"fal-mcp: {problem}", file=sys.stderr)
        raise SystemExit(2)
    configure_logging(settings.log_level, settings.log_format)
    for secret in secrets_of(settings):
        redactor.add(secret)
    if settings.key is None and not settings.sandbox and settings.auth != "fal-key":
        logger.warning("FAL_KEY is not set: tools will answer with an error naming it (or start with --sandbox)")

    with sandboxed(settings) as effective:
        try:
            if effective.transport == "http":
                from fal_mcp.web.app import create_http_app  # the HTTP surface (uvicorn, REST, OpenAPI): HTTP only
                from fal_mcp.web.serving import serve_http

                serve_http(create_http_app(effective), effective)
            else:
                from fal_mcp.server.build import create_server

                serve_stdio(create_server(effective))
        except KeyboardInterrupt:
            pass
