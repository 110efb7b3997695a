"""Logging to stderr, with every known secret blanked out of every record.

stdout belongs to the stdio transport, so nothing of ours may ever print there. The redaction is a filter on
the handler, not a convention: any log line from any library (httpx, uvicorn, the SDK) that would contain a
registered key shows `[REDACTED]` instead, in either format (`text`, or `json`: one object per line).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime

from fal_mcp.calls import current_call_id

REDACTED = "[REDACTED]"
_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s"


class SecretRedactor(logging.Filter):
    """Replaces registered secrets (and each half of a `key_id:key_secret` key) in log records."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._longest_first: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        """Register a key; cheap when it is known already (over HTTP with BYOK, every request registers its key)."""
        # Short fragments would blank ordinary words; real key halves are long.
        parts = {part for part in (secret, *secret.split(":")) if len(part) >= 8}
        if parts <= self._secrets:
            return
        with self._lock:
            self._secrets |= parts
            self._longest_first = tuple(sorted(self._secrets, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._longest_first:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


redactor = SecretRedactor()
"""The process-wide filter: register every key the server will use with `redactor.add(key)`."""


class CallIdFilter(logging.Filter):
    """Stamps each record with the id of the tool or REST call it was made in (`call_id`, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        call_id = current_call_id.get()
        record.call_id = call_id
        record.call = f" [call {call_id}]" if call_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, call_id (when in a call), exc (when one was logged)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            entry["call_id"] = call_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # the redactor scrubbed it if a key was known
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def announce(message: str, log_format: str = "text") -> None:
    """A line on stderr whatever the level (how to reach the server): plain, or a JSON object in json format."""
    if log_format == "json":
        message = JsonFormatter().format(
            logging.makeLogRecord({"name": "fal_mcp", "levelname": "INFO", "msg": message})
        )
    print(message, file=sys.stderr, flush=True)


def configure_logging(level: str = "WARNING", log_format: str = "text") -> None:
    """Send all logging to stderr through the redactor; third-party chatter stays at WARNING unless DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_FORMAT))
    handler.addFilter(CallIdFilter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Wire-level chatter only when asked for everything; httpx's one line per request follows `level`.
    for noisy in ("httpcore", "uvicorn.access", "sse_starlette", "mcp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
