"""The limits a call's estimate must fit before anything is sent to fal, and the daily budget that counts spend.

- `max_cost_usd` (an argument of the call): the caller's own ceiling for this call.
- `FAL_MCP_MAX_COST_PER_CALL_USD`: the server's ceiling for any call.
- `FAL_MCP_CONFIRM_ABOVE_USD`: above it, a call runs only with the user's consent: an accepted confirmation (the MCP
  surface asks clients that can be asked), or `max_cost_usd` at least the estimate (clients that cannot be asked,
  REST).
- `FAL_MCP_DAILY_BUDGET_USD`: per key (its partition), what its requests of the last 24 hours cost (fal's charges
  where known, else estimates, read from the history) plus this call may not exceed it. The sum and the history row
  that carries the call's estimate are written in one transaction (`History.begin` with a `SpendLimit`), so two
  concurrent calls cannot both squeeze under the budget, in one process or in several sharing the file. A call that
  seems over budget first has fal's charges brought up to date (they may be lower than the estimates counted).

With any of these set, a call whose cost cannot be estimated is refused (fail closed). Each refusal is a
`CostRefused` naming the estimate, the limit and the setting or argument, and saying what to do; nothing reaches fal.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fal_mcp.jobs.cost.estimates import Estimate, usd
from fal_mcp.jobs.guards import Refused
from fal_mcp.settings import Settings
from fal_mcp.store.history import History, OverBudget, SpendLimit

DAY_S = 86_400.0
NOTHING_SENT = "Nothing was sent to fal."


class CostRefused(Refused):
    """A call refused for what it would cost (403; 429 when the daily budget frees up later)."""


@dataclass(frozen=True, slots=True)
class Spend:
    """What the caller agreed to spend on one call: its `max_cost_usd`, and whether the user confirmed it."""

    max_cost_usd: float | None = None
    confirmed: bool = False


UNLIMITED = Spend()


@dataclass(frozen=True, slots=True)
class CostLimits:
    """The server's cost settings; None means not set."""

    per_call: float | None = None
    daily: float | None = None
    confirm_above: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CostLimits:
        return cls(settings.max_cost_per_call_usd, settings.daily_budget_usd, settings.confirm_above_usd)

    def needs_consent(self, estimate: Estimate) -> bool:
        """Whether the user must agree to this call first (an unknown cost is refused, not asked about)."""
        return self.confirm_above is not None and estimate.usd is not None and estimate.usd > self.confirm_above

    def check(self, estimate: Estimate, *, max_cost_usd: float | None, confirmed: bool) -> None:
        """Refuse (`CostRefused`) a call this estimate does not fit; the daily budget is `Budget`'s."""
        cost = estimate.usd
        if cost is None:
            self._refuse_unknown(estimate, max_cost_usd=max_cost_usd)
            return
        said = f"this call would cost about {usd(cost)} ({estimate.basis})"
        if max_cost_usd is not None and cost > max_cost_usd:
            raise CostRefused(
                f"{said}, more than max_cost_usd={max_cost_usd:g}. {NOTHING_SENT} Ask for less, or call again with "
                f"max_cost_usd of at least {cost:g} if the user agrees to that.",
                status_code=403,
            )
        if self.per_call is not None and cost > self.per_call:
            raise CostRefused(
                f"{said}, more than this server allows per call ({usd(self.per_call)}, "
                f"FAL_MCP_MAX_COST_PER_CALL_USD). {NOTHING_SENT} Ask for less (fewer or smaller outputs) or use a "
                "cheaper model.",
                status_code=403,
            )
        consented = confirmed or (max_cost_usd is not None and cost <= max_cost_usd)
        if self.confirm_above is not None and cost > self.confirm_above and not consented:
            raise CostRefused(
                f"{said}, more than {usd(self.confirm_above)}, so the user must agree first "
                f"(FAL_MCP_CONFIRM_ABOVE_USD). {NOTHING_SENT} Ask the user; once they agree, call again with "
                f"max_cost_usd={cost:g}.",
                status_code=403,
            )

    def _refuse_unknown(self, estimate: Estimate, *, max_cost_usd: float | None) -> None:
        limits = [
            f"max_cost_usd={max_cost_usd:g}" if max_cost_usd is not None else None,
            f"FAL_MCP_MAX_COST_PER_CALL_USD={self.per_call:g}" if self.per_call is not None else None,
            f"FAL_MCP_DAILY_BUDGET_USD={self.daily:g}" if self.daily is not None else None,
            f"FAL_MCP_CONFIRM_ABOVE_USD={self.confirm_above:g}" if self.confirm_above is not None else None,
        ]
        named = [limit for limit in limits if limit is not None]
        if not named:
            return
        ways = "use a model fal prices (search-models shows prices)"
        if "give " in estimate.basis:
            ways = "give that in the input, or " + ways
        if max_cost_usd is not None and len(named) == 1:
            ways += ", or call again without max_cost_usd"
        raise CostRefused(
            f"the cost of this call cannot be estimated ({estimate.basis}), and a call whose cost is "
            f"unknown cannot be held to {', '.join(named)}. {NOTHING_SENT} To run it, {ways}.",
            status_code=403,
        )


Refresh = Callable[[str, float], Awaitable[None]]
"""Brings a key's recent charges up to date in the history (`charges.Charges.refresh`)."""
Record = Callable[[SpendLimit | None], Awaitable[int | None]]
"""Writes the call's history row (`History.begin`), within a spend limit when one is given."""


class Budget:
    """The daily budget of each key, counted in the history (`History.begin` checks and records in one transaction)."""

    def __init__(
        self,
        history: History,
        daily: float | None,
        *,
        refresh: Refresh | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.daily = daily
        self._refresh = refresh
        self._clock = clock

    async def check(self, partition: str, estimate: Estimate) -> None:
        """Refuse a call that does not fit the key's budget as it stands, before any work is done for it (`record`
        checks again, exactly, when the call is written down)."""
        if self.daily is None:
            return
        since = self._clock() - DAY_S
        spent = await self.history.spend_since(partition, since)
        if spent is None:
            raise CostRefused(
                "this server has a daily budget (FAL_MCP_DAILY_BUDGET_USD) but no request history to count spend in. "
                f"{NOTHING_SENT} Turn the history on (FAL_MCP_STATE_DIR) or unset the budget.",
                status_code=503,
            )
        if spent + (estimate.usd or 0.0) > self.daily:
            await self._over(partition, estimate, since, spent, record=None)

    async def record(self, partition: str, estimate: Estimate, record: Record) -> int | None:
        """Write the call down (`record`) if it fits the key's budget; else refresh fal's charges once (they may be
        lower than the estimates counted) and try again, or raise `CostRefused`."""
        if self.daily is None:
            return await record(None)
        limit = SpendLimit(self.daily, since=self._clock() - DAY_S)
        try:
            row = await record(limit)
        except OverBudget as over:
            row = await self._over(partition, estimate, limit.since, over.spent, record=lambda: record(limit))
        if row is None:
            raise CostRefused(
                f"this server's daily budget (FAL_MCP_DAILY_BUDGET_USD) could not be counted: the request history did "
                f"not record the call. {NOTHING_SENT} Retry in a moment.",
                status_code=503,
            )
        return row

    async def _over(
        self,
        partition: str,
        estimate: Estimate,
        since: float,
        spent: float,
        *,
        record: Callable[[], Awaitable[int | None]] | None,
    ) -> int | None:
        """The call seems over budget: with fal's charges brought up to date, write it down after all (`record`), or
        refuse it."""
        assert self.daily is not None
        if self._refresh is not None:
            await self._refresh(partition, since)
            if record is not None:
                try:
                    return await record()
                except OverBudget as over:
                    spent = over.spent
            else:
                spent = await self.history.spend_since(partition, since) or 0.0
                if spent + (estimate.usd or 0.0) <= self.daily:
                    return None
        cost = estimate.usd or 0.0
        said = (
            f"this call would cost about {usd(cost)} ({estimate.basis}), and this caller has spent {usd(spent)} of its "
            f"{usd(self.daily)} daily budget in the last 24 hours (FAL_MCP_DAILY_BUDGET_USD)."
        )
        if cost > self.daily:
            raise CostRefused(f"{said} {NOTHING_SENT} This call alone costs more: ask for less.", status_code=403)
        wait = await self._until_it_fits(partition, since, spent + cost - self.daily)
        raise CostRefused(
            f"{said} {NOTHING_SENT} It fits again in about {_duration(wait)}; or ask for less.",
            status_code=429,
            retry_after_s=wait,
        )

    async def _until_it_fits(self, partition: str, since: float, excess: float) -> float:
        """Seconds until enough of the window's spend is older than a day for `excess` more to fit."""
        freed = 0.0
        for at, cost in await self.history.spend_timeline(partition, since):
            freed += cost
            if freed >= excess - 1e-9:
                return max(1.0, at + DAY_S - self._clock())
        return DAY_S


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"
