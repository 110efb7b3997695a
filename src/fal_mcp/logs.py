"""Logging to stderr, with every known secret blanked out of every record, and the one definition of "a key".

stdout belongs to the stdio transport, so nothing of ours may ever print there. The redaction is a filter on
the handler, not a convention: any log line from any library (httpx, uvicorn, the SDK) that would contain a
key shows `[REDACTED]` instead, in either format (`text`, or `json`: one object per line). The same
`redactor.scrub` is what the surfaces apply to everything they send back (tool results, resource reads,
JSON-RPC errors, REST bodies) and what the history applies to an input before it stores its summary.

What counts as a key:

- the server's own secrets (its fal key, the `--auth token` tokens, the sandbox's key), registered at start
  with `add()` and kept for the life of the process;
- every caller key fal has accepted (a 2xx answer to a request it paid for), registered with `accept()`:
  at most `MAX_ACCEPTED_KEYS`, the least recently used forgotten first. A bearer string fal never accepted is
  never registered, so nobody can grow this set, or choose words to blank out of later lines, by sending
  made-up credentials;
- the credential of the call being served (`protecting()`), accepted or not, for as long as that call runs;
- anything shaped like a fal key, `<uuid>:<32 hex digits>` (also with the colon percent-encoded, or cut short
  as a message may quote it), registered or not.

Scrubbing costs the same however many keys were seen: the server's few secrets are plain substring searches;
accepted keys are looked up in a set, one run of key characters (`A-Z a-z 0-9 _ -`, at least 8) at a time,
and within a run at each of the few distinct lengths the registered key parts have.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from fal_mcp.calls import current_call_id

REDACTED = "[REDACTED]"
MAX_ACCEPTED_KEYS = 4096
"""Caller keys remembered for redaction; beyond that the least recently used is forgotten (and registered again
the next time fal accepts it)."""
MIN_PART = 8
"""Key parts shorter than this are not redacted on their own: they would blank ordinary words."""
STRIDE = 4
"""How far apart the windows a run of text is looked up by are (see `SecretRedactor._hide_run`)."""
LONG_TEXT = 64 * 1024
"""Strings longer than this (inline media, mostly) skip the per-run lookup; every other check still applies."""

_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s"
_FAL_KEY_SHAPE = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?::|%3[Aa])[0-9A-Fa-f]{4,32}"
)
"""A fal key's shape: its id (a uuid), a colon, its secret (32 hex digits; a shortened one, as an error message may
quote it, from 4 on)."""
_RUN = re.compile(r"[A-Za-z0-9_-]+")
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')
"""Characters `json.dumps` may write otherwise than as themselves."""
KEY_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+(?::[A-Za-z0-9_-]+)?")
"""What a fal key may be made of (`<key id>:<key secret>`); a caller's key must have this shape to be accepted."""

_call_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fal_mcp_call_secrets", default=())


def _empty_like(container: Any) -> dict[Any, Any] | list[Any]:
    return {} if isinstance(container, dict) else []


@functools.cache
def _runs_of(length: int) -> re.Pattern[str]:
    return re.compile(f"[A-Za-z0-9_-]{{{length},}}")


def _parts(secret: str) -> tuple[str, ...]:
    """The secret and each of its runs of key characters, long enough to be hidden on their own."""
    return tuple(dict.fromkeys(part for part in (secret, *_RUN.findall(secret)) if len(part) >= MIN_PART))


class SecretRedactor(logging.Filter):
    """Replaces every key (see the module docstring) in log records and in whatever `scrub()` is given."""

    def __init__(self, max_accepted: int = MAX_ACCEPTED_KEYS) -> None:
        super().__init__()
        self._max_accepted = max_accepted
        self._lock = threading.Lock()
        self._own: tuple[str, ...] = ()
        """The server's own secrets and their parts, longest first (a handful: plain substring searches)."""
        self._accepted: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        """Accepted caller keys -> their runs, least recently used first."""
        self._runs: dict[str, int] = {}
        """Every run of every accepted key -> how many accepted keys have it."""
        self._lengths: tuple[int, ...] = ()
        """The distinct lengths in `_runs`, longest first."""
        self._long_runs = _runs_of(MIN_PART)
        """Runs of key characters at least as long as the shortest registered run."""
        self._length_counts: Counter[int] = Counter()
        self._index: tuple[int, dict[str, tuple[tuple[str, int], ...]]] = (0, {})
        """(window, grams): each registered run's `window`-long substrings at its first `STRIDE` offsets -> the
        runs (with offset) they come from; window = the shortest run's length - STRIDE + 1, so that any run of
        text holding a registered run has, at a multiple of `STRIDE`, a window of it listed here."""

    # -- registering ---------------------------------------------------------------------------------

    def add(self, secret: str) -> None:
        """Register one of the server's own secrets (its key, a token, the sandbox's key) for good."""
        parts = _parts(secret.strip())
        if set(parts) <= set(self._own):
            return
        with self._lock:
            self._own = tuple(sorted({*self._own, *parts}, key=len, reverse=True))

    def accept(self, key: str) -> None:
        """Register a caller's key that fal has just accepted; cheap when it is known already."""
        if key in self._accepted:
            try:
                self._accepted.move_to_end(key)
            except KeyError:  # evicted by another thread in between: it comes back below
                pass
            else:
                return
        runs = tuple(run for run in _RUN.findall(key) if len(run) >= MIN_PART)
        if not runs:
            return
        with self._lock:
            if key in self._accepted:
                return
            self._accepted[key] = runs
            changed: list[tuple[str, int]] = []
            for run in runs:
                self._count(run, +1, changed)
            while len(self._accepted) > self._max_accepted:
                _, forgotten = self._accepted.popitem(last=False)
                for run in forgotten:
                    self._count(run, -1, changed)
            self._lengths = tuple(sorted(self._length_counts, reverse=True))
            self._long_runs = _runs_of(self._lengths[-1] if self._lengths else MIN_PART)
            self._reindex(changed)

    def _count(self, run: str, change: int, changed: list[tuple[str, int]]) -> None:
        count = self._runs.get(run, 0) + change
        if count > 0:
            if run not in self._runs:
                self._length_counts[len(run)] += 1
                changed.append((run, +1))
            self._runs[run] = count
        else:
            del self._runs[run]
            changed.append((run, -1))
            self._length_counts[len(run)] -= 1
            if not self._length_counts[len(run)]:
                del self._length_counts[len(run)]

    def _reindex(self, changed: list[tuple[str, int]]) -> None:
        """Bring `_index` up to date: entry by entry, or whole when the window changed. Readers on other threads
        see either the old tuple of a gram or the new one; a new index replaces the old in one assignment."""
        window = self._lengths[-1] - STRIDE + 1 if self._lengths else 0
        if window != self._index[0]:
            grams: dict[str, tuple[tuple[str, int], ...]] = {}
            for run in self._runs if window else ():
                for offset in range(STRIDE):
                    gram = run[offset : offset + window]
                    grams[gram] = (*grams.get(gram, ()), (run, offset))
            self._index = (window, grams)
            return
        grams = self._index[1]
        for run, change in changed:
            for offset in range(STRIDE):
                gram = run[offset : offset + window]
                entries = grams.get(gram, ())
                if change > 0:
                    grams[gram] = (*entries, (run, offset))
                elif kept := tuple(entry for entry in entries if entry != (run, offset)):
                    grams[gram] = kept
                else:
                    grams.pop(gram, None)

    def accepted(self, key: str) -> bool:
        """Whether fal has accepted `key` (recently enough to be remembered)."""
        return key in self._accepted

    @property
    def accepted_count(self) -> int:
        return len(self._accepted)

    @contextmanager
    def protecting(self, secret: str | None) -> Generator[None]:
        """While the block runs (and in every task it starts), `secret` is scrubbed too, accepted or not.

        The HTTP gate wraps each request in it with the caller's credential, so a key fal has not accepted yet
        (or never will) still cannot reach a log line or an answer made while serving that caller.
        """
        if not secret:
            yield
            return
        token = _call_secrets.set((*_call_secrets.get(), *_parts(secret)))
        try:
            yield
        finally:
            _call_secrets.reset(token)

    # -- scrubbing -----------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """`text` with every key replaced by `[REDACTED]`."""
        if len(text) < MIN_PART:  # shorter than any key or part of one hidden on its own (a field name, say)
            return text
        for secret in self._own:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for secret in _call_secrets.get():
            if secret in text:
                text = text.replace(secret, REDACTED)
        if ":" in text or "%3" in text:
            text = _FAL_KEY_SHAPE.sub(REDACTED, text)
        if self._runs and len(text) <= LONG_TEXT:
            text = self._long_runs.sub(self._hide_run, text)
        return text

    def _hide_run(self, match: re.Match[str]) -> str:
        run = match.group()
        if run in self._runs:
            return REDACTED
        # A key glued to other key characters (`3A` of a percent-encoded colon, say). A registered run inside this
        # one covers a whole window at some multiple of STRIDE, so only those windows are looked up: the cost
        # depends on the run's length, never on how many keys there are.
        window, grams = self._index
        found: list[tuple[int, int]] = []
        for at in range(0, len(run) - window + 1, STRIDE) if window else ():
            for registered, offset in grams.get(run[at : at + window], ()):
                start = at - offset
                if start >= 0 and run.startswith(registered, start):
                    found.append((start, start + len(registered)))
        if not found:
            return run
        found.sort(key=lambda span: (span[0], -span[1]))  # leftmost first, then longest
        pieces: list[str] = []
        plain = 0
        for start, stop in found:
            if start >= plain:
                pieces += (run[plain:start], REDACTED)
                plain = stop
        pieces.append(run[plain:])
        return "".join(pieces)

    def scrub_data(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with every string scrubbed; the same shape back.

        Walked with a stack of its own, not by recursion: a model's output may be nested deeper than Python
        recurses.
        """
        if not isinstance(value, dict | list | tuple):
            return self.scrub(value) if isinstance(value, str) else value
        if self._clean_at_a_glance(cast(Any, value)):
            return cast(Any, value)
        top = _empty_like(value)
        pending: list[tuple[Any, Any]] = [(value, top)]
        while pending:
            source, copy = pending.pop()
            items = cast(dict[Any, Any], source).items() if isinstance(source, dict) else enumerate(source)
            for name, item in items:
                if isinstance(item, str):
                    item = self.scrub(item)
                elif isinstance(item, dict | list | tuple):
                    child = _empty_like(item)
                    pending.append((cast(Any, item), child))
                    item = child
                if isinstance(copy, dict):
                    copy[self.scrub(name) if isinstance(name, str) else name] = item
                else:
                    cast(list[Any], copy).append(item)
        return top

    def _clean_at_a_glance(self, value: Any) -> bool:
        """Whether `value` surely holds no key, judged from its JSON text in one pass (the common answer: nothing
        to hide, and then nothing to copy).

        A key is made of characters JSON never escapes, so one inside any string is inside the text as it is; the
        quotes and commas between strings only add matches, never hide one. Secrets with characters JSON escapes,
        text past `LONG_TEXT` (where runs are not looked for) and values JSON cannot write are walked instead.
        """
        if any(_JSON_ESCAPED.search(secret) for secret in (*self._own, *_call_secrets.get())):
            return False
        try:
            text = json.dumps(value, ensure_ascii=False, check_circular=False)
        except (TypeError, ValueError, RecursionError):
            return False
        return len(text) <= LONG_TEXT and self.scrub(text) == text

    def filter(self, record: logging.LogRecord) -> bool:
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
"""The process-wide filter: `add()` the server's secrets at start; fal's answers `accept()` callers' keys."""


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
    # Wire-level chatter only when asked for everything; the one line per request to fal (the fal client's, and
    # httpx's for media) follows `level`.
    for noisy in ("httpcore", "uvicorn.access", "sse_starlette", "mcp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
