"""What a caller may spend, checked before anything is sent to fal: which models, how much input, how often.

- **Endpoints**: `FAL_MCP_ALLOWED_ENDPOINTS` / `FAL_MCP_DENIED_ENDPOINTS` are comma-separated glob patterns matched
  (case-sensitively, `*` crossing `/`) against the endpoint id as the caller gave it, on every operation. A denied
  pattern wins over an allowed one; with no allowed patterns, everything not denied is allowed.
- **Input shape**: the model input must be JSON fal can read: nested at most `MAX_INPUT_DEPTH` levels, and no
  `NaN` or `Infinity` (a client's JSON parser may let them through; JSON has no spelling for them).
- **Input size**: the model input, as compact JSON, may be at most `FAL_MCP_MAX_INPUT_BYTES`.
- **Submits per minute** (`FAL_MCP_SUBMITS_PER_MINUTE`): submits and synchronous runs of one key over the last
  60 seconds, a sliding window.
- **Running jobs** (`FAL_MCP_MAX_RUNNING_JOBS`): a key's synchronous runs still in flight, plus the queue requests
  it submitted that have not been seen to end. Every operation that sees a job end (a follow, a status, a result,
  a cancel) says so (`ended`), so a finished job stops counting at once. Only when the count still reaches the
  limit does the guard ask fal for the status of the requests nobody watched (at most once per `RECHECK_S` each)
  and forget every one fal reports finished, cancelled or unknown; so a job counts until it ends at fal, whoever
  watched it.

Limits are per key (its partition) and hold for every process sharing the store together (`store.counters`: one
SQLite file on a host, or PostgreSQL for any number of replicas); a store that cannot be reached refuses the start
(503) rather than let it past an uncounted limit.
A refusal is a `Refused` (a `ToolFailure`), worded to name the limit, with the HTTP status the REST surface
answers and, where it is known, when to retry.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import anyio

from fal_mcp.fal.client import FalClient
from fal_mcp.fal.endpoint import EndpointId
from fal_mcp.fal.errors import FalError, FalNotFoundError
from fal_mcp.jobs.failures import ToolFailure
from fal_mcp.settings import Settings, split_list
from fal_mcp.store.counters import RECHECK_S, Admitted, Counters, Full, Limits
from fal_mcp.store.database import StoreUnavailable

logger = logging.getLogger(__name__)
MAX_INPUT_DEPTH = 64
"""Levels of nesting (objects and arrays, the input object itself included) an input may have: far beyond any
model's schema, and well inside what every JSON parser on the way (ours, the MCP SDK's, fal's) can take."""
MAX_PATH_CHARS = 80
"""The longest field path a refusal names (a deep one is cut)."""


class Refused(ToolFailure):
    """A guard said no. `status_code` is the HTTP answer of the REST surface; `retry_after_s` when it is known."""

    def __init__(self, message: str, *, status_code: int, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """Glob allow- and deny-lists of endpoint ids."""

    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()

    def permits(self, endpoint_id: str) -> bool:
        if any(fnmatch.fnmatchcase(endpoint_id, pattern) for pattern in self.denied):
            return False
        return not self.allowed or any(fnmatch.fnmatchcase(endpoint_id, pattern) for pattern in self.allowed)

    def check(self, endpoint: EndpointId) -> None:
        endpoint_id = str(endpoint)
        if self.permits(endpoint_id):
            return
        allowed = f" Allowed here: {', '.join(self.allowed)}." if self.allowed else ""
        raise Refused(
            f"endpoint '{endpoint_id}' is not allowed on this server "
            f"(FAL_MCP_ALLOWED_ENDPOINTS / FAL_MCP_DENIED_ENDPOINTS).{allowed} Nothing was sent to fal.",
            status_code=403,
        )


class MalformedInput(ToolFailure):
    """The input is not JSON fal can read (too deep, or a number JSON cannot spell); nothing was sent."""

    @classmethod
    def too_deep(cls, where: str | None = None, max_depth: int = MAX_INPUT_DEPTH) -> MalformedInput:
        at = f" (at {where})" if where else ""
        return cls(
            f"the input is nested more than {max_depth} levels deep{at}; no model takes that: flatten it. "
            "Nothing was sent to fal."
        )


def _spelled(number: float) -> str:
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def _path(node: tuple[Any, ...] | None) -> str:
    """`input.a[0].b` from a chain of `(parent, key)` nodes."""
    keys: list[str | int] = []
    while node is not None:
        node, key = node
        keys.append(key)
    where = "input"
    for key in reversed(keys):
        where += f"[{key}]" if isinstance(key, int) else f".{key}"
    return where if len(where) <= MAX_PATH_CHARS else where[:MAX_PATH_CHARS] + "..."


_PLAIN: frozenset[type[Any]] = frozenset({str, int, bool, type(None)})


def check_shape(payload: Mapping[str, Any], max_depth: int = MAX_INPUT_DEPTH) -> None:
    """Refuse an input nested deeper than `max_depth` levels or holding a number JSON cannot carry.

    Walked with a stack, never by recursion: the input may be nested deeper than Python's own recursion limit. The
    walk that passes keeps no paths (a large input costs a few ms); only a refusal walks again to name the field.
    """
    if not _fits(payload, max_depth):
        raise _shape_problem(payload, max_depth)


def _fits(payload: Mapping[str, Any], max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return False
        for value in cast(Mapping[Any, Any], item).values() if isinstance(item, Mapping) else cast(list[Any], item):
            if type(value) in _PLAIN:  # the common case first: an ABC check costs more than the rest
                continue
            if isinstance(value, float):
                if not math.isfinite(value):
                    return False
            elif isinstance(value, Mapping | list | tuple):
                stack.append((cast(Any, value), depth + 1))
    return True


def _shape_problem(payload: Mapping[str, Any], max_depth: int) -> MalformedInput:
    """The refusal `check_shape` found, with the path of the first field at fault."""
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(payload, 1, None)]
    while stack:
        item, depth, node = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return MalformedInput(
                f"{_path(node)} is {_spelled(item)}, which JSON cannot carry (fal accepts only finite numbers): "
                "send a number or leave the field out. Nothing was sent to fal."
            )
        if isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                return MalformedInput.too_deep(_path(node), max_depth)
            pairs: list[tuple[Any, Any]] = list(
                cast(Mapping[Any, Any], item).items() if isinstance(item, Mapping) else enumerate(cast(list[Any], item))
            )
            stack.extend((value, depth + 1, (node, key)) for key, value in reversed(pairs))
    return MalformedInput.too_deep(None, max_depth)  # not reached: check_shape found a problem


def nested_deeper_than(value: Any, levels: int) -> bool:
    """Whether JSON `value` nests more than `levels` objects and arrays deep (walked with a stack, not recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth > levels:
                return True
            children = cast(Mapping[Any, Any], item).values() if isinstance(item, Mapping) else cast(list[Any], item)
            stack.extend((child, depth + 1) for child in children)
    return False


def input_size(payload: Mapping[str, Any]) -> int:
    """Bytes of the input as the client sends it (compact JSON, UTF-8)."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


class Start:
    """A granted start: tell it the request id once fal queued the job, so it counts until the job ends."""

    def __init__(self) -> None:
        self.request: tuple[EndpointId, str] | None = None

    def queued(self, endpoint: EndpointId, request_id: str) -> None:
        self.request = (endpoint, request_id)


TOLD_ENDED_KEPT = 4096
"""How many ended jobs a process remembers having reported, the most recently asked about kept."""


class Guards:
    """The checks of the module docstring; the counts live in the store (`store.counters`)."""

    def __init__(
        self,
        policy: EndpointPolicy,
        counters: Counters,
        *,
        max_input_bytes: int,
        submits_per_minute: int,
        max_running_jobs: int,
    ) -> None:
        self.policy = policy
        self.counters = counters
        self.max_input_bytes = max_input_bytes
        self.submits_per_minute = submits_per_minute
        self.max_running_jobs = max_running_jobs
        # Jobs this process already told the store had ended: asking about a finished job again (get-status of a
        # completed request, a reader polling) then costs no store write, which is a thread hop or a round trip.
        self._told_ended: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, counters: Counters) -> Guards:
        return cls(
            EndpointPolicy(split_list(settings.allowed_endpoints), split_list(settings.denied_endpoints)),
            counters,
            max_input_bytes=settings.max_input_bytes,
            submits_per_minute=settings.submits_per_minute,
            max_running_jobs=settings.max_running_jobs,
        )

    def check_endpoint(self, endpoint: EndpointId) -> None:
        self.policy.check(endpoint)

    def check(self, endpoint: EndpointId, payload: Mapping[str, Any]) -> None:
        """What can be refused without asking anyone: the endpoint lists, the input's shape and its size."""
        self.policy.check(endpoint)
        check_shape(payload)
        size = input_size(payload)
        if size > self.max_input_bytes:
            raise Refused(
                f"the input is {size} bytes; this server accepts at most {self.max_input_bytes} "
                "(FAL_MCP_MAX_INPUT_BYTES). Upload large files and pass their URLs instead. Nothing was sent to fal.",
                status_code=413,
            )

    @asynccontextmanager
    async def starting(
        self, partition: str, fal: FalClient, endpoint: EndpointId, payload: Mapping[str, Any]
    ) -> AsyncGenerator[Start]:
        """Admit one submit or run of `endpoint` for the key of `partition`, or raise `Refused`.

        The run counts as running while the block lasts; a job named with `Start.queued` counts until fal says
        it ended.
        """
        self.check(endpoint, payload)
        limits = Limits(per_minute=self.submits_per_minute, running=self.max_running_jobs)
        token = await self._admit(partition, fal, limits) if limits.per_minute or limits.running else None
        start = Start()
        try:
            yield start
        finally:
            if token is not None:
                with anyio.CancelScope(shield=True):  # the count must follow what happened, whoever left
                    await self._settle(token, start)

    async def _settle(self, token: str, start: Start) -> None:
        try:
            if start.request is not None:
                endpoint, request_id = start.request
                await self.counters.queued(token, str(endpoint), request_id)
            else:
                await self.counters.release(token)
        except StoreUnavailable as exc:  # the row stays; its owner's liveness or fal's answer clears it later
            logger.warning("running-jobs count not updated: %s", exc)

    async def ended(self, partition: str, request_id: str) -> None:
        """A job of this key was seen to end (or was cancelled here, or fal does not know it): it stops counting."""
        told = self._first_told(partition, request_id)
        if told is None:
            return
        try:
            await self.counters.ended(partition, [request_id])
        except StoreUnavailable as exc:
            self._not_recorded(told, exc)

    def ended_soon(self, partition: str, request_id: str) -> None:
        """`ended`, the store written behind the caller's back (`Counters.ended_soon`): for a status on the way to
        a job's output, which the answer should not wait for."""
        told = self._first_told(partition, request_id)
        if told is not None:
            self.counters.ended_soon(partition, request_id, lambda exc: self._not_recorded(told, exc))

    def _first_told(self, partition: str, request_id: str) -> tuple[str, str] | None:
        """The job to tell the store about, or None when it need not be (no limit, or told already)."""
        if not self.max_running_jobs:
            return None
        told = (partition, request_id)
        if told in self._told_ended:  # a request id is never submitted twice: once out, its job never counts again
            self._told_ended.move_to_end(told)
            return None
        # Noted before the store is: calls that see the same job end together (many waiting on it) write once.
        self._told_ended[told] = None
        if len(self._told_ended) > TOLD_ENDED_KEPT:
            self._told_ended.popitem(last=False)
        return told

    def _not_recorded(self, told: tuple[str, str], exc: StoreUnavailable) -> None:
        logger.warning("running-jobs count not updated: %s", exc)
        self._told_ended.pop(told, None)  # the next call to see it end tries again

    async def _admit(self, partition: str, fal: FalClient, limits: Limits) -> str | None:
        try:
            admitted = await self.counters.admit(partition, limits)
            if isinstance(admitted, Full) and admitted.due:  # only fal knows whether those jobs ended: ask, then retry
                await self._forget_finished(partition, fal, admitted.due)
                admitted = await self.counters.admit(partition, limits)
        except StoreUnavailable as exc:
            raise Refused(f"{exc}. Nothing was sent to fal.", status_code=503, retry_after_s=5.0) from exc
        if isinstance(admitted, Admitted):
            return admitted.token
        if admitted.limit == "rate":
            retry = admitted.retry_after_s
            raise Refused(
                f"this key may start at most {limits.per_minute} requests per minute on this server "
                f"(FAL_MCP_SUBMITS_PER_MINUTE). Retry in {retry:.0f}s. Nothing was sent to fal.",
                status_code=429,
                retry_after_s=retry,
            )
        raise Refused(
            f"this key already has {admitted.counted} requests running on this server, the most allowed "
            f"(FAL_MCP_MAX_RUNNING_JOBS={limits.running}). Wait for one to finish (get-status / get-result) or cancel "
            f"one, then retry in a few seconds. Nothing was sent to fal.",
            status_code=429,
            retry_after_s=RECHECK_S,
        )

    async def _forget_finished(self, partition: str, fal: FalClient, due: list[tuple[str, str]]) -> None:
        """Ask fal about the jobs handed back; forget those that ended (or that fal forgot)."""
        ended: list[str] = []

        async def recheck(request_id: str, endpoint_id: str) -> None:
            try:
                status = await fal.status(EndpointId.parse(endpoint_id), request_id)
            except FalNotFoundError:
                ended.append(request_id)
                return
            except (FalError, ValueError):
                return  # cannot tell: it keeps counting
            if status.is_terminal:
                ended.append(request_id)

        async with anyio.create_task_group() as group:
            for request_id, endpoint_id in due:
                group.start_soon(recheck, request_id, endpoint_id)
        await self.counters.ended(partition, ended)
