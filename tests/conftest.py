"""Shared fixtures: a clean environment per test and the asyncio backend for anyio tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A developer's own FAL_KEY or FAL_MCP_* settings must never reach a test (or a fake)."""
    for name in list(os.environ):
        if name.startswith(("FAL_", "FAL_MCP_")):
            monkeypatch.delenv(name)
    yield
