"""Model inputs checked the way fal's FastAPI apps check them, answering with pydantic v1 errors.

fal apps are FastAPI services with pydantic input models, so a bad input comes back as
`422 {"detail": [{"loc": ["body", field], "msg": ..., "type": ...}]}`. This module reproduces those
messages for the handful of field kinds the sandbox models use, including pydantic's lax coercion
(`"4"` is a fine integer, `"yes"` a fine boolean) and its habit of ignoring unknown fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar, cast

Json: TypeAlias = "dict[str, Json] | list[Json] | str | int | float | bool | None"
JsonObject: TypeAlias = "dict[str, Json]"
_Number = TypeVar("_Number", int, float)

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class Invalid(Exception):
    """One field failed; carries the pydantic `msg`, `type` and optional `ctx`."""

    def __init__(self, msg: str, kind: str, ctx: JsonObject | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.kind = kind
        self.ctx = ctx


@dataclass(frozen=True)
class Field:
    """One input field of a model, with the constraints pydantic would enforce."""

    name: str
    kind: Literal["str", "int", "float", "bool", "enum"]
    required: bool = False
    default: Json = None
    nullable: bool = False
    """`Optional[...]`: an explicit null is accepted."""
    choices: tuple[str, ...] = ()
    ge: int | float | None = None
    le: int | float | None = None
    min_length: int | None = None
    description: str = ""
    """What the platform API's OpenAPI document says about the field."""

    def clean(self, value: Json) -> Json:
        """Coerce and check one present value; raises `Invalid`."""
        if value is None:
            if self.nullable:
                return None
            raise Invalid("none is not an allowed value", "type_error.none.not_allowed")
        if self.kind == "str":
            return self._check_length(_as_str(value))
        if self.kind == "int":
            return self._check_range(_as_int(value))
        if self.kind == "float":
            return self._check_range(_as_float(value))
        if self.kind == "bool":
            return _as_bool(value)
        return self._as_member(value)

    def _check_length(self, text: str) -> str:
        if self.min_length is not None and len(text) < self.min_length:
            raise Invalid(
                f"ensure this value has at least {self.min_length} characters",
                "value_error.any_str.min_length",
                {"limit_value": self.min_length},
            )
        return text

    def _check_range(self, number: _Number) -> _Number:
        if self.ge is not None and number < self.ge:
            raise Invalid(
                f"ensure this value is greater than or equal to {self.ge}",
                "value_error.number.not_ge",
                {"limit_value": self.ge},
            )
        if self.le is not None and number > self.le:
            raise Invalid(
                f"ensure this value is less than or equal to {self.le}",
                "value_error.number.not_le",
                {"limit_value": self.le},
            )
        return number

    def _as_member(self, value: Json) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        permitted = ", ".join(f"'{choice}'" for choice in self.choices)
        raise Invalid(
            f"value is not a valid enumeration member; permitted: {permitted}",
            "type_error.enum",
            {"enum_values": list(self.choices)},
        )

    def json_schema(self) -> JsonObject:
        """The field as fal's OpenAPI documents show it: pydantic's JSON schema, `anyOf` with null when optional."""
        kinds: dict[str, str] = {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
            "enum": "string",
        }
        shape: JsonObject = {"type": kinds[self.kind]}
        if self.choices:
            shape["enum"] = list[Json](self.choices)
        if self.ge is not None:
            shape["minimum"] = self.ge
        if self.le is not None:
            shape["maximum"] = self.le
        if self.min_length is not None:
            shape["minLength"] = self.min_length
        schema: JsonObject = {"title": self.name.replace("_", " ").title()}
        if self.nullable:
            schema["anyOf"] = [shape, {"type": "null"}]
        else:
            schema.update(shape)
        if self.description:
            schema["description"] = self.description
        if not self.required and (self.default is not None or not self.nullable):
            schema["default"] = self.default
        return schema


def validate(fields: Sequence[Field], data: JsonObject) -> tuple[JsonObject, list[JsonObject]]:
    """Return (cleaned input with defaults, error items); unknown keys are dropped, as pydantic does."""
    cleaned: JsonObject = {}
    problems: list[JsonObject] = []
    for spec in fields:
        if spec.name not in data:
            if spec.required:
                problems.append(problem(["body", spec.name], "field required", "value_error.missing"))
            else:
                cleaned[spec.name] = spec.default
            continue
        try:
            cleaned[spec.name] = spec.clean(data[spec.name])
        except Invalid as exc:
            problems.append(problem(["body", spec.name], exc.msg, exc.kind, exc.ctx))
    return cleaned, problems


def parse_body(body: bytes) -> JsonObject | list[JsonObject]:
    """Decode a request body that must be a JSON object; a list means 422 with these error items."""
    if not body.strip():
        return [problem(["body"], "field required", "value_error.missing")]
    try:
        parsed: object = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [problem(["body"], str(exc), "value_error.jsondecode")]
    if not isinstance(parsed, dict):
        return [problem(["body"], "value is not a valid dict", "type_error.dict")]
    return cast(JsonObject, parsed)


def problem(loc: list[Json], msg: str, kind: str, ctx: JsonObject | None = None) -> JsonObject:
    """One item of a FastAPI 422 `detail` list."""
    item: JsonObject = {"loc": loc, "msg": msg, "type": kind}
    if ctx is not None:
        item["ctx"] = ctx
    return item


def _as_str(value: Json) -> str:
    # pydantic v1 turns numbers (and so booleans) into strings; containers are refused.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise Invalid("str type expected", "type_error.str")


def _as_int(value: Json) -> int:
    # pydantic v1 calls int() on anything: 3.9 -> 3, "4" -> 4, True -> 1.
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise Invalid("value is not a valid integer", "type_error.integer")


def _as_float(value: Json) -> float:
    # pydantic v1 calls float() on numbers and numeric strings; booleans are numbers to it too.
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise Invalid("value is not a valid float", "type_error.float")


def _as_bool(value: Json) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise Invalid("value could not be parsed to a boolean", "type_error.bool")
