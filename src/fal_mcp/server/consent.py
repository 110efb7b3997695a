"""Asking the user before a call that costs more than `FAL_MCP_CONFIRM_ABOVE_USD` ("Run <model> for about $X?").

The question is the SDK's `Resolve(...)`/`Elicit(...)` dependency, which works on both protocol eras: on 2026-07-28
the call answers with the question (`InputRequiredResult`) and the client retries it with the user's answer (the SDK
seals that round trip with `RequestStateSecurity`); on earlier versions the server sends `elicitation/create` in the
middle of the call. `confirm_cost` runs before the tool's body: it works out the estimate and runs every check the
call will meet (so nobody is asked about a call that would be refused anyway), and asks only when the user's consent
is what is missing and the client can be asked. The body then sends nothing unless the answer was accept. A client
that takes MCP tasks is asked before any task exists: a call answered with a question never got under way, so it is
an ordinary answer (`fal_mcp.server.tasks`), and the retried, accepted call becomes the task.

A client that cannot be asked (no form elicitation, or a legacy connection that cannot carry a request to the
client: stateless HTTP) is not asked: the call is refused with the estimate and how to proceed (`max_cost_usd` at
least the estimate, once the user agreed), by the same check that guards REST. `confirm_cost` never raises:
whatever goes wrong while it looks is found again, and worded, by the tool's own checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.elicitation import CancelledElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from fal_mcp.fal.endpoint import resolve_endpoint
from fal_mcp.jobs.cost.estimates import usd
from fal_mcp.jobs.cost.limits import Spend
from fal_mcp.jobs.failures import ToolFailure
from fal_mcp.jobs.operations import Operations
from fal_mcp.server.context import app_state, caller_of

logger = logging.getLogger(__name__)


class CostConfirmation(BaseModel):
    """The question's form: nothing to fill in, the user accepts or declines."""


@dataclass(frozen=True, slots=True)
class NotAsked:
    """No question was put to the user (none was needed, or the client cannot be asked)."""


def can_ask(ctx: Context[Any, Any]) -> bool:
    """Whether this call's client can be asked a form question now."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return True  # the question goes back as the call's answer
    return ctx.session.can_send_request  # a stateless legacy connection cannot carry a request to the client


async def confirm_cost(
    ctx: Context[Any, Any],
    input: dict[str, Any],
    endpoint_id: str | None,
    app_owner: str | None,
    app_id: str | None,
    app_variant: str | None,
    validate: bool,
    max_cost_usd: float | None,
) -> Elicit[CostConfirmation] | NotAsked:
    """Ask "Run <model> for about $X?" when only the user's consent stands between this call and fal."""
    try:
        ops = Operations(state=app_state(ctx), caller=caller_of(ctx))  # no uploads here: no client roots needed
        if ops.state.limits.confirm_above is None or not can_ask(ctx):
            return NotAsked()
        endpoint = resolve_endpoint(endpoint_id, app_owner, app_id, app_variant)
        estimate = await ops.vet(endpoint, input, validate=validate, spend=Spend(max_cost_usd, confirmed=True))
        if not ops.state.limits.needs_consent(estimate) or estimate.usd is None:
            return NotAsked()
    except Exception as exc:  # the body meets it again and words it
        logger.debug("no cost question: %s", exc)
        return NotAsked()
    return Elicit(f"Run {endpoint} for about {usd(estimate.usd)}? ({estimate.basis})", CostConfirmation)


Consent = Annotated[ElicitationResult[Any], Resolve(confirm_cost)]
"""A tool parameter filled by `confirm_cost` before the body runs (never an argument a caller gives): the user's
answer, or, accepted, the `NotAsked` that `confirm_cost` returned instead of a question."""


def agreed(consent: ElicitationResult[Any]) -> bool:
    """True when the user accepted the cost; raises, so that nothing is sent, when they declined or dismissed it."""
    if isinstance(consent, DeclinedElicitation):
        raise ToolFailure(
            "the user declined this call's cost, so nothing was sent to fal. Do not run it again unless the user asks."
        )
    if isinstance(consent, CancelledElicitation):
        raise ToolFailure(
            "the user dismissed the question about this call's cost, so nothing was sent to fal. "
            "Do not run it again unless the user asks."
        )
    return isinstance(consent.data, CostConfirmation)  # accepted: the answer, or the `NotAsked` in its place
