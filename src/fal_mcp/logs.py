"""Logging to stderr, with every known secret blanked out of every record.

stdout belongs to the stdio transport, so nothing of ours may ever print there. The redaction is a filter on
the handler, not a convention: any log line from any library (httpx, uvicorn, the SDK) that would contain a
registered key shows `[REDACTED]` instead.
"""

from __future__ import annotations

import logging
import sys
import threading

REDACTED = "[REDACTED]"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecretRedactor(logging.Filter):
    """Replaces registered secrets (and each half of a `key_id:key_secret` key) in log records."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        parts = {secret, *secret.split(":")}
        with self._lock:
            # Short fragments would blank ordinary words; real key halves are long.
            self._secrets |= {part for part in parts if len(part) >= 8}

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
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


def configure_logging(level: str = "WARNING") -> None:
    """Send all logging to stderr through the redactor; third-party chatter stays at WARNING unless DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Wire-level chatter only when asked for everything; httpx's one line per request follows `level`.
    for noisy in ("httpcore", "uvicorn.access", "sse_starlette", "mcp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
