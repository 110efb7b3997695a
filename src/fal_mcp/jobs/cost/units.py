"""fal's unit words, and the quantity of them a model input implies. Pure: no I/O.

fal prices each model per unit of output (reference section 8.2) and names the unit in words that vary in form:
`image`, `images`, `megapixels`, `second`, `video seconds`, `1000 characters`, `compute seconds`, ... A word is
matched loosely (case, plural, a leading count such as `5 seconds`) to one of five rules:

- **count**: images (or videos) made: `num_images` (`num_videos`) from the input, else the field's default in the
  model's schema, else 1 when the schema has no such field (the model makes one);
- **megapixels**: each image's width x height from `image_size` (one of fal's presets, or `{width, height}`) or
  `width` and `height`, else the schema's default; rounded up to a whole megapixel per image, as fal bills them;
  times the image count;
- **seconds** (and **minutes**): the length asked for in `duration`, `duration_seconds`, `seconds_total` or
  `seconds` (`5`, `"5"`, `"5s"`), else that field's default;
- **call**: one per call (`request`, `call`, `run`, `generation`).

Anything else (tokens, characters, GPU or compute seconds) cannot be told from the input, and neither can a
quantity whose field is missing with no default to fall back on: `quantity` then says why instead of guessing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from fal_mcp.jobs.model_schemas import EndpointSchema, InputFieldInfo

Rule = Literal["count", "megapixels", "seconds", "minutes", "call"]

PRESET_SIZES: Mapping[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
"""fal's `image_size` presets, in pixels (width, height)."""

DURATION_FIELDS = ("duration", "duration_seconds", "seconds_total", "seconds")
COUNT_FIELDS: Mapping[str, str] = {"image": "num_images", "video": "num_videos"}
"""What each counted output is counted by."""
_RULES: Mapping[str, Rule] = {
    "image": "count",
    "video": "count",
    "megapixel": "megapixels",
    "mp": "megapixels",
    "second": "seconds",
    "sec": "seconds",
    "minute": "minutes",
    "min": "minutes",
    "request": "call",
    "call": "call",
    "run": "call",
    "generation": "call",
}
_PRECEDENCE: tuple[Rule, ...] = ("megapixels", "seconds", "minutes", "count", "call")
"""When a unit names two things, the measure wins over the thing measured."""
_NOT_OUTPUT = ("compute", "gpu", "machine", "token", "character", "char")
"""Words that make a unit something the input does not tell (a GPU second is not a second of output)."""
_LEADING_COUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*(k?)\s+(.*)$")
_SECONDS_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Unit:
    """A unit word understood: which rule counts it, what it counts (image or video), and per how many."""

    rule: Rule
    thing: str
    per: float = 1.0


@dataclass(frozen=True)
class Quantity:
    """How many units an input implies (`amount`), said in words; `amount` None when it cannot be told, and `said`
    then says why."""

    amount: float | None
    said: str


def singular(word: str) -> str:
    """`images` -> `image`, `seconds` -> `second` (fal's plural units); `mp`, `class` stay as they are."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def read_unit(unit: str | None) -> Unit | None:
    """The rule for one of fal's unit words, or None when the input cannot tell how many of them a call uses."""
    if not unit:
        return None
    text = " ".join(unit.lower().replace("-", " ").replace("_", " ").split())
    per = 1.0
    leading = _LEADING_COUNT.match(text)
    if leading:
        per = float(leading.group(1)) * (1000 if leading.group(2) else 1)
        text = leading.group(3)
    words = [singular(word) for word in text.split()]
    if not words or per <= 0 or any(word.startswith(_NOT_OUTPUT) for word in words):
        return None
    ruled = [(_PRECEDENCE.index(_RULES[word]), word) for word in words if word in _RULES]
    if not ruled:
        return None
    word = min(ruled)[1]  # "video seconds" and "seconds of video" are both seconds
    rule = _RULES[word]
    return Unit(rule, word if rule == "count" else rule, per)


def _field(schema: EndpointSchema | None, name: str) -> InputFieldInfo | None:
    if schema is None:
        return None
    return next((info for info in schema.fields if info.name == name), None)


def _given_or_default(name: str, payload: Mapping[str, Any], schema: EndpointSchema | None) -> tuple[bool, Any]:
    """(found, value): the input's value, else the schema's default for the field."""
    if payload.get(name) is not None:
        return True, payload[name]
    info = _field(schema, name)
    if info is not None and info.has_default and info.default is not None:
        return True, info.default
    return False, None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def count_of(thing: str, payload: Mapping[str, Any], schema: EndpointSchema | None) -> Quantity:
    """How many images (or videos) a call makes."""
    name = COUNT_FIELDS.get(thing, f"num_{thing}s")
    found, value = _given_or_default(name, payload, schema)
    if found:
        count = _whole(value)
        if count is None:
            return Quantity(None, f"{name} is {value!r}, not a count")
        return Quantity(float(count), f"{count} {thing}{'' if count == 1 else 's'} ({name})")
    if schema is not None and _field(schema, name) is None:
        return Quantity(1.0, f"1 {thing} (the model takes no {name})")
    return Quantity(None, f"the number of {thing}s is not known: give {name} in the input")


def _pixels(payload: Mapping[str, Any], schema: EndpointSchema | None) -> tuple[tuple[int, int] | None, str]:
    """The size of each image ((width, height), where it came from), or None and why."""
    found, size = _given_or_default("image_size", payload, schema)
    if found:
        if isinstance(size, str) and size in PRESET_SIZES:
            width, height = PRESET_SIZES[size]
            return (width, height), f"{size} is {width}x{height}"
        if isinstance(size, dict):
            given = cast(dict[str, Any], size)
            width, height = _whole(given.get("width")), _whole(given.get("height"))
            if width and height:
                return (width, height), f"{width}x{height}"
        return None, f"image_size {size!r} is not a size this server can read"
    width, height = _whole(payload.get("width")), _whole(payload.get("height"))
    if width and height:
        return (width, height), f"{width}x{height}"
    return None, "the image size is not known: give image_size in the input"


def megapixels_of(payload: Mapping[str, Any], schema: EndpointSchema | None) -> Quantity:
    """Megapixels billed: each image's, rounded up to a whole megapixel, times the image count."""
    size, where = _pixels(payload, schema)
    if size is None:
        return Quantity(None, where)
    images = count_of("image", payload, schema)
    if images.amount is None:
        return images
    each = math.ceil(size[0] * size[1] / 1_000_000)
    return Quantity(images.amount * each, f"{images.said} x {each} MP each ({where}, rounded up)")


def seconds_of(payload: Mapping[str, Any], schema: EndpointSchema | None) -> Quantity:
    """Seconds of output asked for, from the first duration field the input or the schema has."""
    for name in DURATION_FIELDS:
        found, value = _given_or_default(name, payload, schema)
        if not found:
            continue
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            seconds = float(value)
        elif isinstance(value, str) and (text := _SECONDS_TEXT.match(value)):
            seconds = float(text.group(1))
        if seconds is None:
            return Quantity(None, f"{name} is {value!r}, not a number of seconds")
        return Quantity(seconds, f"{seconds:g} seconds ({name})")
    return Quantity(None, "the length is not known: give duration in the input")


def quantity(unit: Unit, payload: Mapping[str, Any], schema: EndpointSchema | None) -> Quantity:
    """How many `unit`s the call with this input will be billed for."""
    if unit.rule == "call":
        found = Quantity(1.0, "1 call")
    elif unit.rule == "count":
        found = count_of(unit.thing, payload, schema)
    elif unit.rule == "megapixels":
        found = megapixels_of(payload, schema)
    else:
        found = seconds_of(payload, schema)
        if unit.rule == "minutes" and found.amount is not None:
            found = Quantity(found.amount / 60, found.said)
    if found.amount is None or unit.per == 1:
        return found
    return Quantity(found.amount / unit.per, f"{found.said}, priced per {unit.per:g}")


def rule_in_words(unit: Unit, schema: EndpointSchema | None) -> str:
    """What counts as one unit for this model, for a reader deciding what a call will cost."""
    if unit.rule == "call":
        said = "each call"
    elif unit.rule == "count":
        said = f"each {unit.thing} made, times {COUNT_FIELDS.get(unit.thing, f'num_{unit.thing}s')}"
    elif unit.rule == "megapixels":
        said = (
            "each image's width x height in megapixels (image_size), rounded up to a whole megapixel, times num_images"
        )
    else:
        fields = [name for name in DURATION_FIELDS if _field(schema, name) is not None] or ["duration"]
        said = f"the length asked for in {fields[0]}" + (" (in minutes)" if unit.rule == "minutes" else "")
    return said if unit.per == 1 else f"{said}, per {unit.per:g}"
