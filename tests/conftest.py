"""Shared fixtures: a clean environment per test and the asyncio backend for anyio tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from fal_mcp.sandbox import SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.settings import Settings
from tests.postgres import Cluster, running_cluster

OTHER_KEY = "other-key-id:other-key-secret-0123456789"
"""A second valid sandbox key, for tests about two callers."""


NETWORK_VARIABLES = frozenset({"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store for the module's long-lived servers, set before any server starts, so no test ever writes into the
    developer's own state directory."""
    path = str(tmp_path_factory.mktemp("state"))
    previous = os.environ.get("FAL_MCP_STATE_DIR")
    os.environ["FAL_MCP_STATE_DIR"] = path
    yield path
    if previous is None:
        os.environ.pop("FAL_MCP_STATE_DIR", None)
    else:
        os.environ["FAL_MCP_STATE_DIR"] = previous


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A developer's own FAL_KEY or FAL_MCP_* settings must never reach a test (or a fake), nor the machine's proxy
    and CA variables (the fal client honours them; the tests that need them set their own). Each test's own servers
    get a store of their own: the guards' counts live in the store, and one test's runs must not spend another's
    submits per minute (a module's long-lived servers keep the module's store)."""
    for name in list(os.environ):
        if name.startswith(("FAL_", "FAL_MCP_")) or name.upper() in NETWORK_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("FAL_MCP_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    yield


# -- the fake fal, shared by the whole session and reset for every test that asks for it -----------------

TIME_SCALE = 0.05
"""Sandbox durations are multiplied by this: the 18 s video model takes about 0.9 s."""


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(FakeFal(time_scale=TIME_SCALE, keys=(SANDBOX_KEY, OTHER_KEY))) as running:
        yield running


@pytest.fixture
def fake(sandbox: SandboxServer) -> Iterator[FakeFal]:
    sandbox.fake.reset()
    sandbox.fake.time_scale = TIME_SCALE
    yield sandbox.fake
    sandbox.fake.reset()


def settings_for(sandbox: SandboxServer, *, key: str | None = SANDBOX_KEY, **overrides: Any) -> Settings:
    """Settings pointing every fal URL at the sandbox, read from nothing but these arguments."""
    return Settings(
        _env_file=None,  # pyright: ignore[reportCallIssue]
        fal_key=key,
        run_url=sandbox.run_url,
        queue_url=sandbox.queue_url,
        api_url=sandbox.api_url,
        rest_url=sandbox.rest_url,
        **overrides,
    )


def env_for(sandbox: SandboxServer, *, key: str | None = SANDBOX_KEY, **extra: str) -> dict[str, str]:
    """The same, as the environment of a spawned `fal-mcp`."""
    env = {
        "FAL_RUN_URL": sandbox.run_url,
        "FAL_QUEUE_URL": sandbox.queue_url,
        "FAL_API_URL": sandbox.api_url,
        "FAL_REST_URL": sandbox.rest_url,
        "PYTHONUNBUFFERED": "1",
        "FAL_MCP_STATE_DIR": os.environ["FAL_MCP_STATE_DIR"],
        **extra,
    }
    if key is not None:
        env["FAL_KEY"] = key
    return env


# -- a real PostgreSQL server for the whole session (tests/postgres.py) -----------------------------------------


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as found:
        if isinstance(found, str):
            pytest.skip(found)
        yield found


@pytest.fixture(scope="module")
def database_url(cluster: Cluster) -> str:
    """A fresh PostgreSQL database for one test module."""
    return cluster.url(cluster.create_database())
