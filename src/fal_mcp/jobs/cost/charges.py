"""What fal really charged for each request, read with an admin key and kept in the history.

fal's billing events (`GET /v1/models/billing-events?request_id=...`) need an admin key (`FAL_ADMIN_KEY`), and a
charge shows there some time after the request finished. So charges are fetched lazily, when something needs them
(`list-requests` showing costs, the daily budget about to refuse a call), for the key's finished requests whose
charge is not known yet, each at most once per `RECHECK_S`, at most `MAX_LOOKUPS` per need and within
`LOOKUP_BUDGET_S`. A charge found replaces the estimate wherever spend is counted. Without an admin key nothing is
fetched and estimates stand, marked as such. The admin key goes to fal's platform API only (`FAL_API_URL`) and is
registered with the log redactor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from pydantic import SecretStr

from fal_mcp.fal import platform
from fal_mcp.fal.client import FalClient
from fal_mcp.fal.errors import FalError
from fal_mcp.logs import redactor
from fal_mcp.store.history import History

logger = logging.getLogger(__name__)

RECHECK_S = 120.0
"""A request whose charge fal did not show yet is asked about again at most this often."""
MAX_LOOKUPS = 20
LOOKUP_BUDGET_S = 5.0
CONCURRENT_LOOKUPS = 4


class Charges:
    """Fetches fal's charges into the history; does nothing without an admin key."""

    def __init__(
        self,
        history: History,
        fal: FalClient,
        admin_key: SecretStr | None,
        *,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self._admin = fal.with_key(admin_key) if admin_key is not None else None
        if admin_key is not None:
            redactor.add(admin_key.get_secret_value())
        self._recheck_s = recheck_s
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._admin is not None

    async def refresh(self, partition: str, since: float) -> None:
        """Ask fal for the charges of the key's finished requests made since `since` that are not known yet."""
        admin = self._admin
        if admin is None:
            return
        now = self._clock()
        due = await self.history.uncharged(partition, since, now - self._recheck_s, MAX_LOOKUPS)
        if not due:
            return
        slots = anyio.Semaphore(CONCURRENT_LOOKUPS)

        async def look_up(request_id: str) -> None:
            async with slots:
                await self._look_up(admin, partition, request_id)

        with anyio.move_on_after(LOOKUP_BUDGET_S):
            async with anyio.create_task_group() as group:
                for request_id in due:
                    group.start_soon(look_up, request_id)

    async def _look_up(self, admin: FalClient, partition: str, request_id: str) -> None:
        try:
            events = await platform.charges(admin, request_id)
        except FalError as error:
            logger.info("no charge for %s: %s", request_id, error)
            await self.history.record_charge(partition, request_id, None, self._clock())
            return
        costs = [cost for event in events if (cost := event.cost_usd()) is not None]
        await self.history.record_charge(partition, request_id, round(sum(costs), 9) if costs else None, self._clock())
