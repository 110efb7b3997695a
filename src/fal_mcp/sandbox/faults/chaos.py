"""Chaos: a seeded random fraction of requests meets a random fault, and each one is written down.

    fake.chaos = chaos = Chaos(rate=0.01, seed=7, slow_s=6.0)  # 1 % of the queue and run requests
    ...                                                        # drive traffic
    for hit in chaos.hits: hit.kind, hit.request               # what was faulted, and how

Every request on one of `routes` takes the next draw from one generator seeded with `seed`, in arrival order:
the n-th such request is faulted, or not, the same way in every run with the same seed (which request is the
n-th depends on how concurrent callers interleave). Kinds are dealt from a shuffled deck, dealt again when it
runs out, so each kind comes up once in every `len(kinds)` faults. Explicitly injected faults come first: a
request one of them takes never draws.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fal_mcp.sandbox.faults.injected import Fault
from fal_mcp.sandbox.recording import RecordedRequest
from fal_mcp.sandbox.routing import ROUTES, Route

QUEUE_ROUTES: tuple[Route, ...] = ("run", "submit", "status", "stream", "result", "cancel")
"""The routes fal-mcp sends a model's requests on (not the platform API, storage or the CDN)."""


def _ingress(status: int, phrase: str) -> Callable[[Chaos], Fault]:
    """An nginx error page without `x-fal-request-id`: the ingress answered, no fal app saw the request."""
    html = f"<html><head><title>{status} {phrase}</title></head><body><center>nginx</center></body></html>"
    return lambda _: Fault(status=status, body=html)


KINDS: dict[str, Callable[[Chaos], Fault]] = {
    "429": lambda chaos: Fault(status=429, headers={"Retry-After": f"{chaos.retry_after_s:g}"}),
    "ingress-502": _ingress(502, "Bad Gateway"),
    "ingress-503": _ingress(503, "Service Temporarily Unavailable"),
    "ingress-504": _ingress(504, "Gateway Time-out"),
    "drop-before": lambda _: Fault(drop="before"),
    "drop-after": lambda _: Fault(drop="after"),
    "reset-before": lambda _: Fault(drop="reset"),
    "reset-after": lambda _: Fault(drop="reset-after"),
    "slow": lambda chaos: Fault(delay_s=chaos.slow_s),
    "malformed": lambda _: Fault(truncate=True),
}
"""Each kind of fault chaos deals, as the `Fault` it becomes. Whether the fake then handles the request (a
submit creates its job) is `Fault.handles`: after the drops, resets and a slow answer, and for a malformed one."""


@dataclass(frozen=True)
class ChaosHit:
    """One request chaos faulted."""

    kind: str
    """A key of `KINDS`."""
    request: RecordedRequest
    at: float
    """`time.monotonic()` when it was faulted (before any delay)."""
    handled: bool
    """Whether the fake handled the request anyway (see `Fault.handles`)."""


@dataclass
class Chaos:
    """A fault for a random `rate` of the requests on `routes`, of a kind dealt from `kinds`."""

    rate: float = 0.01
    seed: int = 0
    routes: tuple[Route, ...] = QUEUE_ROUTES
    kinds: tuple[str, ...] = tuple(KINDS)
    slow_s: float = 2.0
    """How long a "slow" fault holds a request before handling it: set it past the client's timeout."""
    retry_after_s: float = 0.1
    """The `Retry-After` a 429 asks for."""
    hits: list[ChaosHit] = field(default_factory=list[ChaosHit], init=False)
    """Every fault dealt, in order."""
    drawn: int = field(default=0, init=False)
    """How many requests drew (faulted or not)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {self.rate!r}")
        unknown = [route for route in self.routes if route not in ROUTES] + [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown routes or kinds {unknown}; kinds: {', '.join(KINDS)}; routes: {ROUTES}")
        self._random = random.Random(self.seed)
        self._deck: list[str] = []
        self._lock = threading.Lock()

    def draw(self, request: RecordedRequest) -> Fault | None:
        """The fault for this request, or None; a fault is recorded in `hits`."""
        if request.route not in self.routes:
            return None
        with self._lock:
            self.drawn += 1
            if self._random.random() >= self.rate:
                return None
            if not self._deck:
                self._deck = list(self.kinds)
                self._random.shuffle(self._deck)
            kind = self._deck.pop()
            fault = KINDS[kind](self)
            self.hits.append(ChaosHit(kind, request, time.monotonic(), fault.handles))
        return fault
