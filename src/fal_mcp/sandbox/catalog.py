"""The sandbox's models: their endpoint ids, input fields, durations and what they produce.

Durations are in seconds *before* `FakeFal.time_scale` and live here, in each `Model`, so a test
can swap them without touching the fake::

    from dataclasses import replace
    models = [replace(m, queue_s=0.0, run_s=0.01) for m in default_models()]
    fake = FakeFal(models=models)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fal_mcp.sandbox import outputs
from fal_mcp.sandbox.outputs import Generator, LogPlan
from fal_mcp.sandbox.schema import Field, JsonObject, validate

ERROR_TYPE_RUNNER = "runner_server_error"


@dataclass(frozen=True)
class Crash:
    """How a model that always fails fails: the result answers `status_code` with this text."""

    message: str
    error_type: str = ERROR_TYPE_RUNNER
    status_code: int = 500


@dataclass(frozen=True)
class Model:
    """One sandbox model, servable under one or more endpoint ids."""

    name: str
    endpoint_ids: tuple[str, ...]
    queue_s: float
    """Time spent IN_QUEUE."""
    run_s: float
    """Time spent IN_PROGRESS."""
    fields: tuple[Field, ...] | None
    """Input schema; None accepts any JSON object as is."""
    generate: Generator
    plan_logs: LogPlan = outputs.no_logs
    queue_position: int = 0
    """Position at submit time; it counts down evenly to 0 over `queue_s`."""
    crash: Crash | None = None
    accepts_subpaths: bool = False
    """Also serve `<id>/<anything>` (workflows take a subpath)."""

    def serves(self, endpoint_id: str) -> bool:
        """Whether a run/submit to `endpoint_id` reaches this model."""
        if endpoint_id in self.endpoint_ids:
            return True
        return self.accepts_subpaths and any(endpoint_id.startswith(own + "/") for own in self.endpoint_ids)

    def validate(self, data: JsonObject) -> tuple[JsonObject, list[JsonObject]]:
        """Cleaned input and pydantic-style error items (empty when the input is fine)."""
        if self.fields is None:
            return data, []
        return validate(self.fields, data)


class Catalog:
    """Endpoint id -> model lookup over a fixed list of models."""

    def __init__(self, models: Iterable[Model]) -> None:
        self.models: tuple[Model, ...] = tuple(models)

    def find(self, endpoint_id: str) -> Model | None:
        """The model serving `endpoint_id`, or None (answered 404)."""
        return next((model for model in self.models if model.serves(endpoint_id)), None)


def _prompt() -> Field:
    return Field("prompt", "str", required=True, min_length=1)


def default_models() -> tuple[Model, ...]:
    """The five sandbox models; a fresh tuple each call."""
    fast_image = Model(
        name="fast-image",
        endpoint_ids=("fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/fast-sdxl"),
        queue_s=0.05,
        run_s=0.3,
        fields=(
            _prompt(),
            Field("image_size", "enum", default="landscape_4_3", choices=tuple(outputs.IMAGE_SIZES)),
            Field("num_images", "int", default=1, ge=1, le=4),
            Field("seed", "int", nullable=True),
            Field("num_inference_steps", "int", default=4, ge=1, le=12),
            Field("enable_safety_checker", "bool", default=True),
            Field("output_format", "enum", default="png", choices=("png",)),
        ),
        generate=outputs.images,
        plan_logs=outputs.image_logs,
    )
    slow_video = Model(
        name="slow-video",
        endpoint_ids=("fal-ai/kling-video/v2/master/text-to-video",),
        queue_s=6.0,
        run_s=12.0,
        fields=(
            _prompt(),
            Field("duration", "enum", default="5", choices=("5", "10")),
            Field("aspect_ratio", "enum", default="16:9", choices=("16:9", "9:16", "1:1")),
            Field("negative_prompt", "str", nullable=True),
        ),
        generate=outputs.video,
        plan_logs=outputs.video_logs,
        queue_position=3,
    )
    always_fails = Model(
        name="always-fails",
        endpoint_ids=("fal-ai/sandbox/always-fails",),
        queue_s=0.05,
        run_s=0.2,
        fields=None,
        generate=outputs.nothing,
        plan_logs=outputs.crash_logs,
        crash=Crash("Runner crashed while generating (sandbox model that always fails)"),
    )
    echo = Model(
        name="echo-workflow",
        endpoint_ids=("workflows/sandbox/echo",),
        queue_s=0.02,
        run_s=0.05,
        fields=None,
        generate=outputs.echo,
        accepts_subpaths=True,
    )
    text = Model(
        name="text",
        endpoint_ids=("fal-ai/any-llm",),
        queue_s=0.02,
        run_s=0.1,
        fields=(_prompt(), Field("model", "str", default="sandbox/echo-llm")),
        generate=outputs.text,
    )
    return fast_image, slow_video, always_fails, echo, text
