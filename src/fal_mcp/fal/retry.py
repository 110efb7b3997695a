"""When to try a fal call again, and how long to wait first.

Two rules, because one of them costs money:

- **Reads and cancels** (status, result, cancel) are idempotent: retried on connection errors and timeouts,
  on 429 (waiting what `Retry-After` asks, when that fits the budget) and on 502/503/504 from fal's ingress
  (no `x-fal-request-id`, so no fal app saw the request).
- **run and submit** start a billed generation: they are re-sent only when the request certainly never left
  this machine (the connection could not be opened). Once bytes may have reached fal, a retry could bill
  twice, so the failure is reported instead, with the advice to check before re-submitting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fal_mcp.fal.errors import FalAPIError, FalError, FalTransportError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter."""

    retries: int = 4
    """Extra attempts after the first."""
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    max_retry_after_s: float = 10.0
    """A `Retry-After` longer than this is not waited out inside a tool call; the error is reported instead."""

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): exponential, capped, jittered into [50%, 100%]."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return ceiling * random.uniform(0.5, 1.0)

    def delay_before_retry(self, error: FalError, attempt: int, *, idempotent: bool) -> float | None:
        """Seconds to wait before retry `attempt`, or None when `error` must not be retried."""
        if attempt > self.retries or not is_retryable(error, idempotent=idempotent):
            return None
        if isinstance(error, FalAPIError) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after_s:
                return None
            return max(error.retry_after, self.backoff(attempt) / 2)
        return self.backoff(attempt)


def is_retryable(error: FalError, *, idempotent: bool) -> bool:
    """The retry rule of the module docstring."""
    if isinstance(error, FalTransportError):
        return idempotent or not error.maybe_sent
    if not idempotent or not isinstance(error, FalAPIError):
        return False
    return error.status_code == 429 or error.from_ingress
