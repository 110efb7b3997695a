"""The sandbox's platform API and storage, over loopback, as reference sections 6 and 7 describe fal's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from fal_mcp.sandbox import SANDBOX_ADMIN_KEY, SANDBOX_KEY, FakeFal, SandboxServer

FLUX = "fal-ai/flux/schnell"
I2I = "fal-ai/flux/dev/image-to-image"


@pytest.fixture
def client(sandbox: SandboxServer, fake: FakeFal) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Key {SANDBOX_KEY}"}, timeout=5.0) as http:
        yield http


def models(client: httpx.Client, sandbox: SandboxServer, **params: Any) -> dict[str, Any]:
    answer = client.get(f"{sandbox.api_url}/v1/models", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_search_pages_with_a_cursor_until_done(client: httpx.Client, sandbox: SandboxServer) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = models(client, sandbox, q="sandbox image", limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [entry["endpoint_id"] for entry in page["models"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert FLUX in seen and I2I in seen and "fal-ai/any-llm" not in seen
    assert len(seen) == len(set(seen))


def test_category_filter_and_metadata(client: httpx.Client, sandbox: SandboxServer) -> None:
    page = models(client, sandbox, category="image-to-image")
    assert [entry["endpoint_id"] for entry in page["models"]] == [I2I]
    metadata = page["models"][0]["metadata"]
    assert metadata["category"] == "image-to-image" and metadata["display_name"] and metadata["description"]
    assert "openapi" not in page["models"][0]


def test_find_with_openapi_expansion_describes_what_the_fake_enforces(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    page = models(client, sandbox, endpoint_id=f"{FLUX},fal-ai/no-such", expand="openapi-3.0")
    assert [entry["endpoint_id"] for entry in page["models"]] == [FLUX]
    document = page["models"][0]["openapi"]
    schemas = document["components"]["schemas"]
    body_ref = document["paths"][f"/{FLUX}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref == "#/components/schemas/FluxSchnellInput"
    assert "FluxSchnellOutput" in schemas and schemas["FluxSchnellInput"]["required"] == ["prompt"]
    root = {**schemas["FluxSchnellInput"], "components": document["components"]}
    jsonschema.Draft202012Validator(root).validate({"prompt": "x", "seed": None, "num_images": 2})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(root).validate({"prompt": "x", "num_images": 9})
    # the documented output is what the model really answers
    submitted = client.post(f"{sandbox.run_url}/{FLUX}", json={"prompt": "x"}).json()
    output_root = {**schemas["FluxSchnellOutput"], "components": document["components"]}
    jsonschema.Draft202012Validator(output_root).validate(submitted)


def test_listing_works_without_a_key_but_pricing_needs_one(sandbox: SandboxServer, fake: FakeFal) -> None:
    with httpx.Client(timeout=5.0) as anonymous:
        assert anonymous.get(f"{sandbox.api_url}/v1/models").status_code == 200
        assert anonymous.get(f"{sandbox.api_url}/v1/models/pricing", params={"endpoint_id": FLUX}).status_code == 401
        bad = anonymous.get(f"{sandbox.api_url}/v1/models", headers={"Authorization": "Key nope:nope"})
        assert bad.status_code == 401


def test_pricing_lists_known_prices_only(client: httpx.Client, sandbox: SandboxServer, fake: FakeFal) -> None:
    answer = client.get(
        f"{sandbox.api_url}/v1/models/pricing", params=[("endpoint_id", FLUX), ("endpoint_id", "fal-ai/any-llm")]
    )
    assert answer.json() == {
        "prices": [{"endpoint_id": FLUX, "unit_price": 0.003, "unit": "megapixels", "currency": "USD"}]
    }
    assert [r.route for r in fake.requests] == ["pricing"]
    assert client.get(f"{sandbox.api_url}/v1/models", params={"limit": 0}).status_code == 422
    assert client.get(f"{sandbox.api_url}/v1/models", params={"cursor": "!!"}).status_code == 400


def test_cdn_upload_takes_the_cdn_token_and_never_the_key(
    client: httpx.Client, sandbox: SandboxServer, fake: FakeFal
) -> None:
    token = client.post(f"{sandbox.rest_url}/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={})
    grant = token.json()
    assert grant["token_type"] == "Bearer" and grant["base_url"] == sandbox.cdn_url and grant["expires_at"]
    with httpx.Client(timeout=5.0) as plain:
        with_key = plain.post(
            f"{grant['base_url']}/files/upload", content=b"x", headers={"Authorization": f"Key {SANDBOX_KEY}"}
        )
        assert with_key.status_code == 401
        uploaded = plain.post(
            f"{grant['base_url']}/files/upload",
            content=b"\x89PNG fake",
            headers={
                "Authorization": f"Bearer {grant['token']}",
                "Content-Type": "image/png",
                "X-Fal-File-Name": "cat.png",
            },
        )
        url = uploaded.json()["access_url"]
        assert url.startswith(f"{sandbox.cdn_url}/files/") and url.endswith("-cat.png")
        served = plain.get(url)
    assert served.content == b"\x89PNG fake" and served.headers["content-type"] == "image/png"


def test_signed_upload_refuses_any_authorization(client: httpx.Client, sandbox: SandboxServer) -> None:
    ticket = client.post(
        f"{sandbox.rest_url}/storage/upload/initiate",
        params={"storage_type": "gcs"},
        json={"file_name": "../../etc/passwd", "content_type": "text/plain"},
    ).json()
    assert ticket["file_url"].endswith("-upload.bin")  # a hostile name is not kept
    with httpx.Client(timeout=5.0) as plain:
        assert plain.put(ticket["upload_url"], content=b"x", headers={"Authorization": "Key a:b"}).status_code == 400
        assert plain.put(ticket["upload_url"], content=b"data").status_code == 200
        assert plain.put(ticket["upload_url"], content=b"again").status_code == 403  # one use only
        assert plain.get(ticket["file_url"]).content == b"data"


def test_inline_image_model_answers_a_large_data_uri(client: httpx.Client, sandbox: SandboxServer) -> None:
    output = client.post(f"{sandbox.run_url}/fal-ai/sandbox/inline-image", json={"prompt": "x", "megabytes": 1}).json()
    uri = output["images"][0]["url"]
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    assert data.startswith(b"\x89PNG") and 900_000 < len(data) < 1_200_000


# -- cost: the estimate API and billing events (reference 8.2) ---------------------------------------------------

VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
ECHO = "workflows/sandbox/echo"


def test_estimate_api_multiplies_unit_prices_or_answers_a_typical_call(
    client: httpx.Client, sandbox: SandboxServer, fake: FakeFal
) -> None:
    url = f"{sandbox.api_url}/v1/models/pricing/estimate"
    units = client.post(
        url,
        json={"estimate_type": "unit_price", "endpoints": {VIDEO: {"unit_quantity": 10}, FLUX: {"unit_quantity": 2}}},
    )
    assert units.status_code == 200
    assert units.json() == {"estimate_type": "unit_price", "total_cost": pytest.approx(2.806), "currency": "USD"}
    # a typical echo call works its 0.05 s at $0.01 per compute second
    typical = client.post(
        url, json={"estimate_type": "historical_api_price", "endpoints": {ECHO: {"call_quantity": 3}}}
    )
    assert typical.json()["total_cost"] == pytest.approx(0.0015)
    unpriced = client.post(
        url, json={"estimate_type": "unit_price", "endpoints": {"fal-ai/any-llm": {"unit_quantity": 1}}}
    )
    assert unpriced.status_code == 404 and "any-llm" in unpriced.json()["detail"]
    assert client.post(url, json={"estimate_type": "guess", "endpoints": {FLUX: {}}}).status_code == 422
    assert client.post(url, json={"estimate_type": "unit_price", "endpoints": {FLUX: {}}}).status_code == 422
    assert client.post(url, content=b"nope").status_code == 422
    with httpx.Client(timeout=5.0) as anonymous:
        assert anonymous.post(url, json={"estimate_type": "unit_price", "endpoints": {}}).status_code == 401


def billing_events(sandbox: SandboxServer, key: str, **params: str) -> httpx.Response:
    with httpx.Client(headers={"Authorization": f"Key {key}"}, timeout=5.0) as http:
        return http.get(f"{sandbox.api_url}/v1/models/billing-events", params=params)


def test_billing_events_need_an_admin_key_and_lag_behind_the_job(
    client: httpx.Client, sandbox: SandboxServer, fake: FakeFal
) -> None:
    fake.billing_lag_s = 3600.0
    ran = client.post(f"{sandbox.run_url}/{FLUX}", json={"prompt": "x", "num_images": 2, "image_size": "square_hd"})
    request_id = ran.headers["x-fal-request-id"]
    assert billing_events(sandbox, SANDBOX_KEY, request_id=request_id).status_code == 403
    assert billing_events(sandbox, SANDBOX_ADMIN_KEY, request_id=request_id).json()["billing_events"] == []
    fake.billing_lag_s = 0.0
    fake.billing_discount_percent = 10.0
    events = billing_events(sandbox, SANDBOX_ADMIN_KEY, request_id=request_id).json()["billing_events"]
    # 1024x1024 is 1.05 megapixels, billed as 2 per image: 4 megapixels at $0.003, less 10%
    assert len(events) == 1
    event = events[0]
    assert event["request_id"] == request_id and event["endpoint_id"] == FLUX
    assert event["output_units"] == 4 and event["unit_price"] == 0.003 and event["percent_discount"] == 10.0
    assert event["cost_estimate_nano_usd"] == 10_800_000 and event["timestamp"].endswith("Z")


def test_only_successful_jobs_of_priced_models_are_billed(
    client: httpx.Client, sandbox: SandboxServer, fake: FakeFal
) -> None:
    fake.billing_lag_s = 0.0
    for endpoint, body in (
        (VIDEO, {"prompt": "x", "duration": "10"}),
        ("fal-ai/sandbox/always-fails", {"prompt": "x"}),
        ("fal-ai/any-llm", {"prompt": "x"}),
        ("fal-ai/sandbox/inline-image", {"prompt": "x", "megabytes": 1}),
    ):
        client.post(f"{sandbox.run_url}/{endpoint}", json=body)
    events = billing_events(sandbox, SANDBOX_ADMIN_KEY).json()["billing_events"]
    billed = {event["endpoint_id"]: (event["output_units"], event["cost_estimate_nano_usd"]) for event in events}
    assert billed == {VIDEO: (10.0, 2_800_000_000), "fal-ai/sandbox/inline-image": (1.0, 2_000_000)}
    only_video = billing_events(sandbox, SANDBOX_ADMIN_KEY, endpoint_id=VIDEO).json()["billing_events"]
    assert [event["endpoint_id"] for event in only_video] == [VIDEO]
