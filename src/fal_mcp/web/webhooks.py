"""`POST /webhooks/fal`: where fal pushes a request's outcome, when `FAL_MCP_PUBLIC_URL` names this server.

It sits outside the bearer/OAuth gate, since fal holds no token of ours and proves itself with its signature
(`fal.webhooks`), but behind the gate's Host and Origin check (fal's requests carry the public URL's host, which is
allowed) and the body-size limit. Each answer, in the order the checks run:

    405  not a POST
    503  the server is starting or stopping, fal's signing keys cannot be fetched, or the store cannot be reached
    401  a signature header missing or malformed, a timestamp more than 300 s from now (checked before the body is
         read), a signature no published key verifies (after at most one refetch of the keys), or a body whose
         `request_id` is not the signed one; nothing changes
    413  a body over `FAL_MCP_MAX_BODY_BYTES`
    400  a signed body that is not fal's webhook body
    404  a request this server did not submit with its webhook (fal retries a non-2xx for a while, then gives up; a
         delivery that overtook the note of its own submit gets its retry); nothing changes
    200  `{"status": "accepted"}`, or `{"status": "duplicate"}` for a delivery already taken (fal retries until it
         hears a 2xx, so a repeat is normal); a duplicate changes nothing

fal retries until it gets a 2xx, so only what cannot succeed later is answered 2xx. Every refusal is logged with its
reason (never the body); none of them reaches the store.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from fal_mcp.fal.webhooks import KeysUnavailable, MalformedDelivery, Signed, Unverified, WebhookBody
from fal_mcp.jobs.deliveries import accept
from fal_mcp.jobs.state import StateSlot
from fal_mcp.settings import Settings
from fal_mcp.store.database import StoreUnavailable
from fal_mcp.web.rest import BodyTooLarge, error_response, read_body

logger = logging.getLogger(__name__)


class WebhookRoute:
    """The ASGI app of `/webhooks/fal` (the Host check in front of it is the gate's)."""

    def __init__(self, slot: StateSlot, settings: Settings) -> None:
        self._slot = slot
        self._max_body_bytes = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (await self._answer(scope, receive))(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        if scope["method"] != "POST":
            return error_response(
                405, "fal's webhooks are POSTed here", error_type="method_not_allowed", headers={"Allow": "POST"}
            )
        state = self._slot.state
        if state is None:
            return error_response(503, "the server is starting or stopping; retry shortly", error_type="not_ready")
        headers = Headers(scope=scope)
        client = scope.get("client")
        sender = client[0] if client else "unknown"
        try:
            signed = Signed.from_headers(headers)
            signed.check_fresh(time.time())  # before the body is read: a replay costs us no upload
        except Unverified as why:
            return _unverified(sender, why)
        try:
            body = await read_body(receive, headers, self._max_body_bytes)
            kid = await state.webhook_keys.verify(signed.message(body), signed.signature)
            delivery = WebhookBody.parse(body)
            if delivery.request_id != signed.request_id:
                raise Unverified("the body's request_id is not the one signed")
            outcome = await accept(state, delivery)
        except BodyTooLarge:
            return error_response(
                413, f"the body is larger than this server accepts ({self._max_body_bytes} bytes)", error_type="refused"
            )
        except Unverified as why:
            return _unverified(sender, why)
        except KeysUnavailable as exc:
            logger.warning("cannot check a webhook delivery: fal's signing keys are unavailable (%s)", exc)
            return error_response(503, "fal's signing keys cannot be fetched right now", error_type="keys_unavailable")
        except MalformedDelivery as exc:
            logger.warning("refused a signed webhook delivery for %s: %s", signed.request_id, exc)
            return error_response(400, f"not a fal webhook body: {exc}", error_type="invalid_request")
        except StoreUnavailable as exc:
            logger.warning("cannot take the webhook delivery for %s: %s", signed.request_id, exc)
            return error_response(503, "the store cannot be reached right now", error_type="store_unavailable")
        if outcome == "unknown":
            logger.warning("webhook delivery for %s, a request this server did not submit: ignored", signed.request_id)
            return error_response(404, "this server did not submit that request", error_type="not_found")
        logger.info("webhook delivery for %s %s (key %s)", signed.request_id, outcome, kid)
        return JSONResponse({"status": outcome})


def _unverified(sender: str, why: Unverified) -> Response:
    logger.warning("refused a webhook delivery from %s: %s", sender, why)
    return error_response(401, f"not a verified fal webhook: {why}", error_type="unverified")
