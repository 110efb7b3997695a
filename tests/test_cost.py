"""Cost through the real server and real MCP clients, against the sandbox: the estimate before every billed call,
the caps that refuse before anything reaches fal, the daily budget, the user's confirmation on both protocol eras,
and fal's real charge replacing the estimate."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from fal_mcp.logs import redactor
from fal_mcp.sandbox import SANDBOX_ADMIN_KEY, SANDBOX_KEY, FakeFal, SandboxServer
from fal_mcp.server.build import create_server
from fal_mcp.store.history import History
from fal_mcp.store.migrations import SCHEMA_VERSION
from fal_mcp.store.records import FILE_NAME
from tests.conftest import OTHER_KEY, env_for, settings_for
from tests.harness import http_server
from tests.tasks_client import TasksClient
from tests.test_history import VERSION_1, insert

pytestmark = pytest.mark.anyio

FLUX = "fal-ai/flux/dev"
I2I = "fal-ai/flux/dev/image-to-image"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
INLINE = "fal-ai/sandbox/inline-image"
ECHO = "workflows/sandbox/echo"
LLM = "fal-ai/any-llm"
MODERN = "2026-07-28"
ERAS = ("legacy", MODERN)


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def billed(fake: FakeFal) -> list[str]:
    """Requests that could start a generation (the only billed ones)."""
    return [r.route for r in fake.requests if r.route in ("submit", "run")]


def posts(fake: FakeFal) -> list[str]:
    return [r.path for r in fake.requests if r.method == "POST"]


@asynccontextmanager
async def client_of(
    sandbox: SandboxServer, *, key: str = SANDBOX_KEY, mode: Any = "auto", elicit: Any = None, **settings: Any
) -> AsyncIterator[Client]:
    server = create_server(settings_for(sandbox, key=key, **settings))
    async with Client(server, mode=mode, elicitation_callback=elicit) as client:
        yield client


# -- 1. the estimate -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "payload", "cost", "basis"),
    [
        (I2I, {"prompt": "x", "image_url": "https://example.com/a.png", "num_images": 3}, 0.09, "3 images"),
        (FLUX, {"prompt": "x", "image_size": "square_hd", "num_images": 2}, 0.012, "2 MP each"),
        (VIDEO, {"prompt": "x", "duration": "10"}, 2.8, "10 seconds (duration) at $0.28 per second"),
        (INLINE, {"prompt": "x", "megabytes": 1}, 0.002, "1 call at $0.002 per request"),
        (ECHO, {"anything": 1}, 0.0005, "fal's estimate of a typical call"),
    ],
)
async def test_every_billed_call_carries_its_estimate(
    sandbox: SandboxServer, fake: FakeFal, endpoint: str, payload: dict[str, Any], cost: float, basis: str
) -> None:
    async with client_of(sandbox) as client:
        submitted = await client.call_tool("submit", {"endpoint_id": endpoint, "input": payload})
        ran = await client.call_tool("run-model", {"endpoint_id": endpoint, "input": payload, "mode": "sync"})
    for result in (submitted, ran):
        assert not result.is_error, text(result)
        assert result.structured_content is not None
        assert result.structured_content["estimated_cost_usd"] == pytest.approx(cost)
        assert basis in result.structured_content["estimate_basis"]
        assert "stimated cost: about $" in text(result)


async def test_an_unknown_price_is_null_with_a_reason_and_the_call_still_runs(
    sandbox: SandboxServer, fake: FakeFal
) -> None:
    async with client_of(sandbox) as client:
        result = await client.call_tool("submit", {"endpoint_id": LLM, "input": {"prompt": "hi"}})
    assert not result.is_error
    assert result.structured_content is not None
    assert result.structured_content["estimated_cost_usd"] is None
    assert result.structured_content["estimate_basis"] == f"fal gives no price for {LLM}"
    assert billed(fake) == ["submit"]


async def test_prices_are_cached_like_schemas(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with client_of(sandbox) as client:
        for _ in range(3):
            await client.call_tool("submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    assert len(fake.requests_for("pricing")) == 1 and len(fake.requests_for("models")) == 1


# -- 2. caps: refused before anything reaches fal ---------------------------------------------------------------


async def refused(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, text(result)
    return text(result)


async def test_the_per_call_cap_refuses_and_sends_nothing(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with client_of(sandbox, max_cost_per_call_usd=1.0) as client:
        message = await refused(client, "run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})
        cheap = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "mode": "sync"})
    assert message == (
        "run-model: this call would cost about $1.40 (5 seconds (duration) at $0.28 per second), more than this "
        "server allows per call ($1.00, FAL_MCP_MAX_COST_PER_CALL_USD). Nothing was sent to fal. Ask for less "
        "(fewer or smaller outputs) or use a cheaper model."
    )
    assert not cheap.is_error
    assert billed(fake) == ["run"]  # only the cheap one
    assert not [p for p in posts(fake) if VIDEO in p]


async def test_max_cost_usd_is_the_callers_own_ceiling(sandbox: SandboxServer, fake: FakeFal) -> None:
    video = {"endpoint_id": VIDEO, "input": {"prompt": "x", "duration": "10"}}
    async with client_of(sandbox) as client:
        message = await refused(client, "submit", {**video, "max_cost_usd": 2.5})
        allowed = await client.call_tool("submit", {**video, "max_cost_usd": 2.8})
        negative = await refused(client, "submit", {**video, "max_cost_usd": -1})
    assert "would cost about $2.80" in message and "more than max_cost_usd=2.5" in message
    assert "Nothing was sent to fal" in message and "max_cost_usd of at least 2.8" in message
    assert not allowed.is_error
    assert "argument 'max_cost_usd' got -1; it takes a number of US dollars, at least 0" in negative
    assert billed(fake) == ["submit"]


async def test_an_unknown_price_under_a_cap_is_refused(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with client_of(sandbox, max_cost_per_call_usd=5.0) as client:
        message = await refused(client, "run-model", {"endpoint_id": LLM, "input": {"prompt": "x"}})
    async with client_of(sandbox) as client:
        own = await refused(client, "submit", {"endpoint_id": LLM, "input": {"prompt": "x"}, "max_cost_usd": 1})
    assert message == (
        f"run-model: the cost of this call cannot be estimated (fal gives no price for {LLM}), and a call whose "
        "cost is unknown cannot be held to FAL_MCP_MAX_COST_PER_CALL_USD=5. Nothing was sent to fal. To run it, use "
        "a model fal prices (search-models shows prices)."
    )
    assert own.endswith("or call again without max_cost_usd.")
    assert billed(fake) == [] and posts(fake) == []


async def test_a_quantity_the_input_does_not_give_is_not_guessed_under_a_cap(
    sandbox: SandboxServer, fake: FakeFal
) -> None:
    async with client_of(sandbox, max_cost_per_call_usd=5.0) as client:
        message = await refused(
            client, "submit", {"endpoint_id": FLUX, "input": {"prompt": "x", "image_size": "huge"}, "validate": False}
        )
    assert "image_size 'huge' is not a size this server can read" in message
    assert billed(fake) == []


# -- the daily budget ---------------------------------------------------------------------------------------------


async def test_the_daily_budget_counts_calls_per_key_and_says_when_it_frees_up(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    call = {"endpoint_id": FLUX, "input": {"prompt": "x"}}  # landscape_4_3: 1 MP, $0.003
    async with client_of(sandbox, state_dir=state, daily_budget_usd=0.01) as client:
        answers = [await client.call_tool("submit", call) for _ in range(3)]
        message = await refused(client, "submit", call)
    assert not any(answer.is_error for answer in answers)
    assert message.startswith(
        "submit: this call would cost about $0.003 (1 image (num_images) x 1 MP each (landscape_4_3 is 1024x768, "
        "rounded up) at $0.003 per megapixel), and this caller has spent $0.009 of its $0.01 daily budget in the last "
        "24 hours (FAL_MCP_DAILY_BUDGET_USD). Nothing was sent to fal. It fits again in about 24.0 hours"
    )
    # a restart keeps the spend: it lives in the history
    async with client_of(sandbox, state_dir=state, daily_budget_usd=0.01) as client:
        await refused(client, "run-model", {**call, "mode": "sync"})
    # another key has its own budget
    async with client_of(sandbox, key=OTHER_KEY, state_dir=state, daily_budget_usd=0.01) as client:
        assert not (await client.call_tool("submit", call)).is_error
    assert billed(fake) == ["submit"] * 4


async def test_concurrent_calls_cannot_both_squeeze_under_the_budget(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    call = {"endpoint_id": FLUX, "input": {"prompt": "x"}}
    results: list[CallToolResult] = []
    async with client_of(sandbox, state_dir=str(tmp_path), daily_budget_usd=0.01) as client:

        async def one() -> None:
            results.append(await client.call_tool("submit", call))

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(one)
    assert sum(not result.is_error for result in results) == 3
    assert billed(fake) == ["submit"] * 3


async def test_two_processes_sharing_the_history_share_the_budget_exactly(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    env = env_for(sandbox, FAL_MCP_DAILY_BUDGET_USD="0.01")
    env["FAL_MCP_STATE_DIR"] = str(tmp_path / "shared")
    call = {"endpoint_id": FLUX, "input": {"prompt": "x"}}
    results: list[CallToolResult] = []
    with http_server(env, tmp_path) as one, http_server(env, tmp_path) as two:

        async def calls(url: str) -> None:
            async with Client(url) as client:
                results.extend([await client.call_tool("submit", call) for _ in range(4)])

        async with anyio.create_task_group() as group:
            for url in (one.url, two.url, one.url, two.url):
                group.start_soon(calls, url)
    assert sum(not result.is_error for result in results) == 3  # $0.003 each: 3 fit in $0.01, whoever sent them
    assert billed(fake) == ["submit"] * 3


async def test_a_daily_budget_without_a_history_refuses(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with client_of(sandbox, state_dir="off", daily_budget_usd=1.0) as client:
        message = await refused(client, "submit", {"endpoint_id": FLUX, "input": {"prompt": "x"}})
    assert "no request history to count spend in" in message and billed(fake) == []


# -- 3. confirmation ------------------------------------------------------------------------------------------


class User:
    """A client's user who answers the cost question one way, and remembers what they were asked."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.asked: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action=self.action, content={} if self.action == "accept" else None)  # type: ignore[arg-type]


VIDEO_CALL = {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "mode": "sync"}
VIDEO_SUBMIT = {"endpoint_id": VIDEO, "input": {"prompt": "x"}}
QUESTION = f"Run {VIDEO} for about $1.40? (5 seconds (duration) at $0.28 per second)"


@pytest.mark.parametrize("era", ERAS)
async def test_an_accepted_confirmation_runs_the_call(sandbox: SandboxServer, fake: FakeFal, era: str) -> None:
    user = User("accept")
    async with client_of(sandbox, mode=era, elicit=user, confirm_above_usd=0.5) as client:
        result = await client.call_tool("run-model", VIDEO_CALL)
        cheap = await client.call_tool("run-model", {"endpoint_id": FLUX, "input": {"prompt": "x"}, "mode": "sync"})
    assert not result.is_error, text(result)
    assert not cheap.is_error
    assert user.asked == [QUESTION]  # only the call above the threshold was asked about
    assert billed(fake) == ["run", "run"]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declined_or_dismissed_confirmation_sends_nothing(
    sandbox: SandboxServer, fake: FakeFal, era: str, action: str
) -> None:
    user = User(action)
    async with client_of(sandbox, mode=era, elicit=user, confirm_above_usd=0.5) as client:
        result = await client.call_tool("submit", VIDEO_SUBMIT)
        # the model cannot skip the user's answer with max_cost_usd: a client that can be asked is asked
        again = await client.call_tool("submit", {**VIDEO_SUBMIT, "max_cost_usd": 5})
    assert result.is_error and again.is_error
    said = "declined this call's cost" if action == "decline" else "dismissed the question about this call's cost"
    assert said in text(result) and "nothing was sent to fal" in text(result)
    assert user.asked == [QUESTION, QUESTION]
    assert billed(fake) == [] and not [p for p in posts(fake) if "/queue/" in p]


@pytest.mark.parametrize("era", ERAS)
async def test_a_client_that_cannot_be_asked_gets_the_max_cost_usd_way(
    sandbox: SandboxServer, fake: FakeFal, era: str
) -> None:
    async with client_of(sandbox, mode=era, confirm_above_usd=0.5) as client:
        message = await refused(client, "run-model", VIDEO_CALL)
        too_low = await refused(client, "run-model", {**VIDEO_CALL, "max_cost_usd": 1.0})
        agreed = await client.call_tool("run-model", {**VIDEO_CALL, "max_cost_usd": 1.4})
    assert message == (
        "run-model: this call would cost about $1.40 (5 seconds (duration) at $0.28 per second), more than $0.50, so "
        "the user must agree first (FAL_MCP_CONFIRM_ABOVE_USD). Nothing was sent to fal. Ask the user; once they "
        "agree, call again with max_cost_usd=1.4."
    )
    assert "more than max_cost_usd=1" in too_low
    assert not agreed.is_error, text(agreed)
    assert billed(fake) == ["run"]


async def test_nobody_is_asked_about_a_call_that_would_be_refused_anyway(sandbox: SandboxServer, fake: FakeFal) -> None:
    user = User("accept")
    async with client_of(sandbox, mode=MODERN, elicit=user, confirm_above_usd=0.5, max_cost_per_call_usd=1.0) as client:
        message = await refused(client, "run-model", VIDEO_CALL)
        invalid = await refused(client, "run-model", {**VIDEO_CALL, "input": {"prompt": "x", "duration": "7"}})
    assert "FAL_MCP_MAX_COST_PER_CALL_USD" in message and "duration" in invalid
    assert user.asked == [] and billed(fake) == []


async def test_confirmation_over_streamable_http_on_both_eras(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    env = env_for(sandbox, FAL_MCP_CONFIRM_ABOVE_USD="0.5")
    with http_server(env, tmp_path) as server:
        for era in ERAS:
            for action in ("decline", "accept"):
                user = User(action)
                async with Client(server.url, mode=era, elicitation_callback=user) as client:
                    result = await client.call_tool("submit", VIDEO_SUBMIT)
                assert result.is_error is (action == "decline"), text(result)
                assert user.asked == [QUESTION]
    assert billed(fake) == ["submit", "submit"]


async def test_a_stateless_legacy_connection_cannot_be_asked_and_is_told_the_way(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    """A stateless legacy server has no channel to send the client a question; a 2026-07-28 client still gets one."""
    env = env_for(sandbox, FAL_MCP_CONFIRM_ABOVE_USD="0.5")
    with http_server(env, tmp_path, "--stateless") as server:
        legacy, modern = User("accept"), User("accept")
        async with Client(server.url, mode="legacy", elicitation_callback=legacy) as client:
            told = await refused(client, "submit", VIDEO_SUBMIT)
        async with Client(server.url, mode=MODERN, elicitation_callback=modern) as client:
            asked = await client.call_tool("submit", VIDEO_SUBMIT)
    assert "call again with max_cost_usd=1.4" in told and legacy.asked == []
    assert not asked.is_error and modern.asked == [QUESTION]
    assert billed(fake) == ["submit"]


# -- 4. the real charge ---------------------------------------------------------------------------------------


async def list_requests(client: Client) -> CallToolResult:
    result = await client.call_tool("list-requests", {"limit": 5})
    assert not result.is_error, text(result)
    return result


async def test_the_real_charge_replaces_the_estimate(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    fake.billing_lag_s = 3600.0  # not charged yet
    fake.billing_discount_percent = 50.0
    async with client_of(sandbox, state_dir=str(tmp_path), admin_key=SANDBOX_ADMIN_KEY) as client:
        ran = await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "mode": "sync"})
        assert not ran.is_error and ran.structured_content is not None
        early = await list_requests(client)
        fake.billing_lag_s = 0.0
        soon = await list_requests(client)  # asked a moment ago: not asked again yet
        assert len(fake.requests_for("billing-events")) == 1
        await forget_when_checked(tmp_path)
        late = await list_requests(client)
    for answer in (early, soon):
        assert "~$1.40 (estimated)" in text(answer)
        assert answer.structured_content is not None
        row = answer.structured_content["requests"][0]
        assert row["estimated_cost_usd"] == pytest.approx(1.4) and "actual_cost_usd" not in row
    assert "total $0.70:" in text(late) and " - $0.70 - 1 media" in text(late)
    assert late.structured_content is not None
    row = late.structured_content["requests"][0]
    assert row["actual_cost_usd"] == pytest.approx(0.7) and row["estimated_cost_usd"] == pytest.approx(1.4)
    lookups = fake.requests_for("billing-events")
    assert len(lookups) == 2 and all(r.headers["authorization"] == f"Key {SANDBOX_ADMIN_KEY}" for r in lookups)
    assert all(r.query == {"request_id": ran.structured_content["request_id"]} for r in lookups)


async def forget_when_checked(state_dir: Path) -> None:
    """As if the last look at fal's charges were long ago (the recheck interval has passed)."""
    with sqlite3.connect(state_dir / "history.sqlite3") as db:
        db.execute("UPDATE requests SET charge_checked_at = ?", (time.time() - 3600,))


async def test_without_an_admin_key_estimates_stand_marked(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    fake.billing_lag_s = 0.0
    async with client_of(sandbox, state_dir=str(tmp_path)) as client:
        for duration in ("5", "10"):
            await client.call_tool(
                "run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x", "duration": duration}, "mode": "sync"}
            )
        answer = await list_requests(client)
    assert "total $4.20 (estimated: FAL_ADMIN_KEY would show fal's charges):" in text(answer)
    assert text(answer).count("(estimated)") == 2
    assert fake.requests_for("billing-events") == []


async def test_the_budget_counts_fal_s_charge_once_known(sandbox: SandboxServer, fake: FakeFal, tmp_path: Path) -> None:
    fake.billing_lag_s = 0.0
    fake.billing_discount_percent = 50.0  # fal charges half of what was estimated
    call = {"endpoint_id": VIDEO, "input": {"prompt": "x"}, "mode": "sync"}
    settings = {"state_dir": str(tmp_path), "daily_budget_usd": 3.0, "admin_key": SANDBOX_ADMIN_KEY}
    async with client_of(sandbox, **settings) as client:
        first = await client.call_tool("run-model", call)
        second = await client.call_tool("run-model", call)
        third = await client.call_tool("run-model", call)  # estimates say $4.20 > $3; charges say $1.40 + $1.40
    assert not first.is_error and not second.is_error
    assert not third.is_error, text(third)
    assert billed(fake) == ["run"] * 3 and len(fake.requests_for("billing-events")) == 2


# -- 5. visible: the schema's price, the REST surface ------------------------------------------------------------


async def test_get_model_schema_says_how_the_price_is_computed(sandbox: SandboxServer, fake: FakeFal) -> None:
    async with client_of(sandbox) as client:
        flux = await client.call_tool("get-model-schema", {"endpoint_id": FLUX})
        video = await client.call_tool("get-model-schema", {"endpoint_id": VIDEO})
        echo = await client.call_tool("get-model-schema", {"endpoint_id": ECHO})
    assert flux.structured_content is not None and video.structured_content is not None
    assert flux.structured_content["pricing"].startswith("$0.003 per megapixel: each image's width x height")
    assert "$0.28 per second: the length asked for in duration." in text(video)
    assert echo.structured_content is not None and "typical call" in echo.structured_content["pricing"]


async def test_rest_submit_returns_the_estimate_and_takes_max_cost_usd(
    sandbox: SandboxServer, fake: FakeFal, tmp_path: Path
) -> None:
    env = env_for(
        sandbox,
        FAL_MCP_CONFIRM_ABOVE_USD="1",
        FAL_MCP_MAX_COST_PER_CALL_USD="2",
        FAL_MCP_DAILY_BUDGET_USD="3",
        FAL_MCP_STATE_DIR=str(tmp_path / "state"),
    )
    with http_server(env, tmp_path, "--rest") as server:
        url = f"{server.base}/v1/models/{VIDEO}/requests"
        async with httpx.AsyncClient(timeout=30) as http:
            asks = await http.post(url, json={"prompt": "x"})
            agreed = await http.post(url, params={"max_cost_usd": "1.4"}, json={"prompt": "x"})
            too_much = await http.post(url, params={"max_cost_usd": "3"}, json={"prompt": "x", "duration": "10"})
            cheap = await http.post(f"{server.base}/v1/models/{FLUX}/requests", json={"prompt": "x"})
            bad = await http.post(url, params={"max_cost_usd": "lots"}, json={"prompt": "x"})
            again = await http.post(url, params={"max_cost_usd": "1.4"}, json={"prompt": "x"})  # $2.803 of $3
            over = await http.post(url, params={"max_cost_usd": "1.4"}, json={"prompt": "x"})
    assert asks.status_code == 403 and "call again with max_cost_usd=1.4" in asks.json()["error"]["message"]
    assert asks.json()["error"]["error_type"] == "refused"
    assert agreed.status_code == 200 and agreed.json()["estimated_cost_usd"] == pytest.approx(1.4)
    assert agreed.json()["estimate_basis"] == "5 seconds (duration) at $0.28 per second"
    assert too_much.status_code == 403 and "FAL_MCP_MAX_COST_PER_CALL_USD" in too_much.json()["error"]["message"]
    assert cheap.status_code == 200 and cheap.json()["estimated_cost_usd"] == pytest.approx(0.003)
    assert bad.status_code == 400
    assert again.status_code == 200
    assert over.status_code == 429 and "FAL_MCP_DAILY_BUDGET_USD" in over.json()["error"]["message"]
    assert 86000 < int(over.headers["retry-after"]) <= 86400
    assert billed(fake) == ["submit"] * 3


# -- the history keeps its rows when the cost columns arrive ------------------------------------------------------


@pytest.mark.parametrize("layout", [1, 2])
def test_an_older_history_file_gains_the_cost_columns_and_keeps_its_rows(tmp_path: Path, layout: int) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.executescript(VERSION_1)
        if layout == 2:  # what the layout before the cost columns looked like
            db.execute("ALTER TABLE requests ADD COLUMN owner TEXT")
            db.execute("PRAGMA user_version = 2")
        insert(db, [("p", "r1", FLUX, "COMPLETED", time.time())])
    history = History.open(tmp_path)
    try:
        rows = anyio.run(lambda: history.recent("p"))
        spent = anyio.run(lambda: history.spend_since("p", 0))
    finally:
        history.close()
    assert [(row.request_id, row.estimated_cost_usd, row.actual_cost_usd) for row in rows] == [("r1", None, None)]
    assert spent == 0.0
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        assert {"estimated_cost_usd", "actual_cost_usd", "charge_checked_at"} <= columns
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_task_capable_client_is_asked_before_its_task_starts(sandbox: SandboxServer, fake: FakeFal) -> None:
    user = User("accept")
    tasks = TasksClient()
    server = create_server(settings_for(sandbox, confirm_above_usd=0.5))
    async with Client(server, mode=MODERN, elicitation_callback=user, extensions=[tasks]) as client:
        result = await client.call_tool("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "x"}})
    assert not result.is_error, text(result)
    assert user.asked == [QUESTION] and len(tasks.created) == 1  # asked first, then the run became a task
    assert billed(fake) == ["submit"]


async def test_the_admin_key_is_registered_with_the_log_redactor(sandbox: SandboxServer, fake: FakeFal) -> None:
    admin = "an-admin-key-only-this-test-knows-0123456789"
    assert redactor.scrub(f"Key {admin}") != "Key [REDACTED]"
    async with client_of(sandbox, admin_key=admin) as client:
        await client.list_tools()
    assert redactor.scrub(f"Key {admin}") == "Key [REDACTED]"
