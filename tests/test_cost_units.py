"""The pure part of cost: fal's unit words read loosely, the quantity an input implies, money in words."""

from __future__ import annotations

from typing import Any

import pytest

from fal_mcp.fal.platform import ListedPrice
from fal_mcp.jobs.cost.estimates import per_unit, price_in_words, usd
from fal_mcp.jobs.cost.units import Unit, quantity, read_unit
from fal_mcp.jobs.model_schemas import EndpointSchema, InputFieldInfo


@pytest.mark.parametrize(
    ("word", "unit"),
    [
        ("image", Unit("count", "image")),
        ("Images", Unit("count", "image")),
        ("megapixels", Unit("megapixels", "megapixels")),
        ("MP", Unit("megapixels", "megapixels")),
        ("second", Unit("seconds", "seconds")),
        ("Seconds", Unit("seconds", "seconds")),
        ("video seconds", Unit("seconds", "seconds")),
        ("seconds of video", Unit("seconds", "seconds")),
        ("5 seconds", Unit("seconds", "seconds", 5.0)),
        ("minutes", Unit("minutes", "minutes")),
        ("video", Unit("count", "video")),
        ("videos", Unit("count", "video")),
        ("request", Unit("call", "call")),
        ("Requests", Unit("call", "call")),
        ("generation", Unit("call", "call")),
        ("compute seconds", None),
        ("GPU seconds", None),
        ("1000 characters", None),
        ("1k tokens", None),
        ("tokens", None),
        ("furlongs", None),
        ("", None),
        (None, None),
    ],
)
def test_unit_words_are_read_loosely_and_never_guessed(word: str | None, unit: Unit | None) -> None:
    assert read_unit(word) == unit


def schema(*fields: InputFieldInfo) -> EndpointSchema:
    return EndpointSchema(input_schema={"type": "object"}, fields=fields)


FLUX = schema(
    InputFieldInfo("prompt", "string", True),
    InputFieldInfo("image_size", "string", False, True, "landscape_4_3"),
    InputFieldInfo("num_images", "integer", False, True, 1),
)
VIDEO = schema(InputFieldInfo("prompt", "string", True), InputFieldInfo("duration", "string", False, True, "5"))
ONE_IMAGE = schema(InputFieldInfo("prompt", "string", True))


@pytest.mark.parametrize(
    ("unit", "payload", "model", "amount"),
    [
        ("images", {"num_images": 3}, FLUX, 3.0),
        ("images", {}, FLUX, 1.0),  # the schema's default
        ("images", {}, ONE_IMAGE, 1.0),  # a model without num_images makes one
        ("images", {}, None, None),  # no schema to read the default from: not guessed
        ("images", {"num_images": "many"}, FLUX, None),
        ("megapixels", {}, FLUX, 1.0),  # landscape_4_3 is 1024x768: 0.79 MP, billed as 1
        ("megapixels", {"image_size": "square_hd", "num_images": 2}, FLUX, 4.0),  # 1.05 MP each, billed as 2
        ("megapixels", {"image_size": {"width": 2048, "height": 2048}}, FLUX, 5.0),
        ("megapixels", {"width": 512, "height": 512}, ONE_IMAGE, 1.0),
        ("megapixels", {}, ONE_IMAGE, None),  # no size given and none to default to
        ("megapixels", {"image_size": "giant"}, FLUX, None),
        ("seconds", {}, VIDEO, 5.0),
        ("seconds", {"duration": "10"}, VIDEO, 10.0),
        ("seconds", {"duration": "8s"}, VIDEO, 8.0),
        ("seconds", {"seconds_total": 3}, None, 3.0),
        ("seconds", {"duration": "long"}, VIDEO, None),
        ("seconds", {}, ONE_IMAGE, None),
        ("5 seconds", {"duration": 10}, None, 2.0),
        ("minutes", {"duration": 90}, None, 1.5),
        ("request", {}, None, 1.0),
    ],
)
def test_the_quantity_an_input_implies(
    unit: str, payload: dict[str, Any], model: EndpointSchema | None, amount: float | None
) -> None:
    read = read_unit(unit)
    assert read is not None
    found = quantity(read, payload, model)
    assert found.amount == amount, found.said
    if amount is None:
        assert "give" in found.said or "not" in found.said  # says why, never a silent guess


@pytest.mark.parametrize(
    ("amount", "said"),
    [
        (0, "$0.00"),
        (1.4, "$1.40"),
        (12.345, "$12.35"),
        (0.5, "$0.50"),
        (0.125, "$0.125"),
        (0.003, "$0.003"),
        (0.0005, "$0.0005"),
        (0.00001, "$0.00001"),
    ],
)
def test_money_reads_like_money(amount: float, said: str) -> None:
    assert usd(amount) == said


def test_price_in_words_says_what_counts_as_a_unit() -> None:
    per_megapixel = ListedPrice(endpoint_id="x", unit_price=0.025, unit="megapixels", currency="USD")
    assert price_in_words(per_megapixel, FLUX) == (
        "$0.025 per megapixel: each image's width x height in megapixels (image_size), rounded up to a whole "
        "megapixel, times num_images"
    )
    per_second = ListedPrice(endpoint_id="x", unit_price=0.28, unit="seconds", currency="USD")
    assert price_in_words(per_second, VIDEO) == "$0.28 per second: the length asked for in duration"
    per_gpu = ListedPrice(endpoint_id="x", unit_price=0.0011, unit="compute seconds")
    assert "fal's figure for a typical call" in (price_in_words(per_gpu, None) or "")
    assert price_in_words(None, FLUX) is None
    assert per_unit("video seconds") == "video second" and per_unit("class") == "class"
