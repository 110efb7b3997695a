"""What a request row is: its fields as callers see them, the states it can be in, and how an input is summarized.

Pure functions and constants, shared by both backends and by the layers above.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from fal_mcp.logs import redactor

if TYPE_CHECKING:
    from fal_mcp.settings import Settings

SUBMITTING = "SUBMITTING"
UNKNOWN = "UNKNOWN"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
ACTIVE_STATES = ("SUBMITTING", "IN_QUEUE", "IN_PROGRESS", "CANCELLATION_REQUESTED")
FINISHED_STATES = ("COMPLETED", FAILED, CANCELLED)
"""States in which fal may have charged a request and will not charge it more."""
KEPT_STATES = (*ACTIVE_STATES, UNKNOWN)
"""Rows of a request that may still be billing: never pruned to keep under the row cap."""
MAX_SUMMARY_CHARS = 2000
MAX_INLINE_CHARS = 200
MAX_MEDIA_URLS = 50
FILE_NAME = "history.sqlite3"


class RequestRecord(BaseModel):
    """One request as the history knows it."""

    request_id: str | None = Field(default=None, description="absent if fal's answer to the submit was lost")
    endpoint_id: str
    state: str = Field(description="IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, UNKNOWN, ...")
    submitted_at: str = Field(description="UTC, ISO 8601")
    updated_at: str
    origin: str
    error: str | None = None
    error_type: str | None = None
    media_urls: list[str] = Field(default_factory=list[str])
    input_digest: str = Field(description="sha256 of the input")
    input_summary: Any = Field(description="the input, large inline data elided")
    # Left out of the JSON schema (list-requests' output schema is read on every turn; it is open, so records that
    # hold them still conform): results carry them whenever they are known.
    estimated_cost_usd: SkipJsonSchema[float | None] = Field(default=None, description="estimated before sending")
    actual_cost_usd: SkipJsonSchema[float | None] = Field(default=None, description="what fal charged, once known")

    @property
    def cost_usd(self) -> float | None:
        """What the request cost: fal's charge when known, else the estimate."""
        return self.actual_cost_usd if self.actual_cost_usd is not None else self.estimated_cost_usd


def default_state_dir() -> Path:
    """Where per-user state lives on this platform."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "fal-mcp"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "fal-mcp"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fal-mcp"


def resolve_state_dir(setting: str | None) -> Path | None:
    """`FAL_MCP_STATE_DIR`: unset means the platform default, `off` means no history at all."""
    if setting is None or not setting.strip():
        return default_state_dir()
    if setting.strip().lower() == "off":
        return None
    return Path(setting).expanduser()


def summarize_input(value: Any, budget: int = MAX_SUMMARY_CHARS) -> Any:
    """The input with large inline data replaced by a note of what was there."""

    def elide(item: Any) -> Any:
        if isinstance(item, str):
            if item.startswith("data:") and len(item) > MAX_INLINE_CHARS:
                head = item.split(",", 1)[0]
                return f"<{head} inline data, {len(item)} characters, elided>"
            if len(item) > MAX_INLINE_CHARS:
                return item[:MAX_INLINE_CHARS] + f"... <{len(item)} characters>"
            return item
        if isinstance(item, dict):
            return {str(k): elide(v) for k, v in cast(dict[Any, Any], item).items()}
        if isinstance(item, list):
            return [elide(v) for v in cast(list[Any], item)]
        return item

    summary = redactor.scrub_data(elide(value))  # a key pasted into an input is never stored, nor shown again
    text = json.dumps(summary, ensure_ascii=False)
    if len(text) > budget:
        return {"summary": text[:budget] + "...", "truncated_from_chars": len(text)}
    return summary


def input_digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def media_urls(output: Any) -> list[str]:
    """URLs of files in a model's output: every http(s) string under a key named like a URL."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(output, "")]  # a stack, not recursion: an output may nest very deep
    while stack and len(found) < MAX_MEDIA_URLS:
        item, key = stack.pop()
        if isinstance(item, str):
            if item.startswith(("https://", "http://")) and (key == "url" or key.endswith("_url")):
                found.append(item)
        elif isinstance(item, dict):
            stack.extend((v, str(k)) for k, v in reversed(cast(dict[Any, Any], item).items()))
        elif isinstance(item, list):
            stack.extend((v, key) for v in reversed(cast(list[Any], item)))
    return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows are kept: `max_age_s` (None: forever) and a partition's newest `max_rows` (None: all)."""

    max_age_s: float | None = 30 * 86400.0
    max_rows: int | None = 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        """`FAL_MCP_HISTORY_MAX_AGE_DAYS` and `FAL_MCP_HISTORY_MAX_ROWS`; 0 turns either off."""
        days, rows = settings.history_max_age_days, settings.history_max_rows
        return cls(max_age_s=days * 86400.0 if days else None, max_rows=rows or None)
