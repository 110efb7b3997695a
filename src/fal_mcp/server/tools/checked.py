"""Arguments a model can act on: checked here first, and the SDK's complaints about their values worded here.

A model that sends a wrong argument must learn, in one plain sentence, which argument, what it sent and what is
accepted; pydantic's own message ("1 validation error for search_modelsArguments ... errors.pydantic.dev") teaches
it nothing. So `CheckedTool.run`:

- refuses an argument the tool does not take, listing the ones it does (a model's field put beside `input`
  instead of inside it, such as `prompt`, would otherwise be dropped and the job run and billed without it);
- reads an explicit null for an optional argument as "not given" (OpenAI's strict mode sends one for every
  argument the model leaves unset);
- takes `input` as a JSON object or as that object in JSON text (the form a strict-mode model can always send);
- words each remaining complaint from the argument's advertised schema. What a caller sent is echoed through the
  log redactor, so a key pasted into an argument never comes back.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from fal_mcp.logs import redactor
from fal_mcp.server.replies import failure

logger = logging.getLogger(__name__)

INPUT = "input"
INPUT_ACCEPTS = 'the model\'s input as a JSON object such as {"prompt": "a red fox"}, or that object as JSON text'
SHOWN_CHARS = 60
UNKNOWN_SHOWN = 5


class ArgumentsRefused(ValueError):
    """The arguments of a call, refused before anything ran; the message is what the model reads."""


class CheckedTool(Tool):
    """An SDK tool whose arguments are checked and worded here first (see the module docstring)."""

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        try:
            arguments = self.checked(arguments)
            try:
                return await super().run(arguments, context, convert_result=convert_result)
            except ToolError as error:
                # The SDK validates the arguments once, before anything runs; the tools themselves answer every
                # failure as a result (`guard.guarded`), so a ToolError caused by a ValidationError is that check.
                if not isinstance(error.__cause__, ValidationError):
                    raise
                raise ArgumentsRefused(_worded(error.__cause__, self._advertised())) from None
        except ArgumentsRefused as refused:
            message = redactor.scrub(f"{self.name}: {refused}")  # what a caller sent may hold a key
            logger.info("%s", message)
            return failure(message)

    def _advertised(self) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]], self.parameters.get("properties", {}))

    def checked(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """`arguments` as the tool function takes them (the SDK validates their values next), or
        `ArgumentsRefused` saying what is wrong."""
        advertised = self._advertised()
        required = set(cast(list[str], self.parameters.get("required", [])))
        fields = self.fn_metadata.arg_model.model_fields
        accepted = {field.alias or name for name, field in fields.items()}
        unknown = [name for name in arguments if name not in accepted]
        if unknown:
            raise ArgumentsRefused(_unknown(unknown, list(advertised)))
        given = {name: value for name, value in arguments.items() if value is not None or name in required}
        text = given.get(INPUT)
        if isinstance(text, str) and INPUT in accepted:
            given[INPUT] = _input_from_text(text)
        return given


def _unknown(names: list[str], valid: list[str]) -> str:
    shown = [_cut(redactor.scrub(repr(name))) for name in names[:UNKNOWN_SHOWN]]
    listed = ", ".join(shown) + (f" and {len(names) - UNKNOWN_SHOWN} more" if len(names) > UNKNOWN_SHOWN else "")
    noun = "argument" if len(names) == 1 else "arguments"
    inside = (
        f" A model's own fields go inside input, e.g. input={{{_cut(redactor.scrub(json.dumps(names[0])))}: ...}}."
        if INPUT in valid
        else ""
    )
    return f"unknown {noun} {listed}.{inside} Valid arguments: {', '.join(valid)}."


def _input_from_text(text: str) -> dict[str, Any]:
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ArgumentsRefused(
            f"argument 'input' got text that is not a JSON object, {_shown(text)}; it takes {INPUT_ACCEPTS}."
        )
    return cast(dict[str, Any], parsed)


def _worded(invalid: ValidationError, advertised: dict[str, dict[str, Any]]) -> str:
    """One sentence naming each wrong argument (its first complaint), what it got and what it takes."""
    parts: dict[str, str] = {}
    for error in invalid.errors():
        name = str(error["loc"][0]) if error["loc"] else "arguments"
        if name not in parts:
            parts[name] = _complaint(name, error, advertised.get(name, {}))
    return "; ".join(parts.values()) + "."


def _complaint(name: str, error: ErrorDetails, schema: dict[str, Any]) -> str:
    accepts = INPUT_ACCEPTS if name == INPUT else _accepts(schema)
    if error["type"] == "missing":
        return f"argument '{name}' is missing; it takes {accepts}"
    context = error.get("ctx") or {}
    if error["type"] == "value_error" and "error" in context:
        accepts = str(context["error"])  # our own validators say what they accept
    return f"argument '{name}' got {_shown(error['input'])}; it takes {accepts}"


def _accepts(schema: dict[str, Any]) -> str:
    variants = cast(list[dict[str, Any]], schema.get("anyOf", [schema]))
    said = [_one(variant) for variant in variants if variant.get("type") != "null"]
    return " or ".join(said) or "a value of the type its description gives"


def _one(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(value) for value in cast(list[Any], schema["enum"]))
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return ("a whole number" if kind == "integer" else "a number") + _bounds(schema, "minimum", "maximum", "")
    if kind == "string":
        return "text" + _bounds(schema, "minLength", "maxLength", " characters")
    return {"boolean": "true or false", "object": "a JSON object", "array": "a list"}.get(str(kind), "a value")


def _bounds(schema: dict[str, Any], low: str, high: str, unit: str) -> str:
    least, most = schema.get(low), schema.get(high)
    if least is not None and most is not None:
        return f" from {least:g} to {most:g}{unit}"
    if least is not None:
        return f" of at least {least:g}{unit}"
    if most is not None:
        return f" of at most {most:g}{unit}"
    return ""


def _shown(value: Any) -> str:
    """What the caller sent, as JSON, cut short (the whole message is scrubbed of keys in `run`)."""
    return _cut(redactor.scrub(json.dumps(value, ensure_ascii=False, default=str)))  # before cutting a key in two


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
