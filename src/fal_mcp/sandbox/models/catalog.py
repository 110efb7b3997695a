"""The sandbox's models: their endpoint ids, input fields, durations, what they produce and what they cost.

Durations are in seconds *before* `FakeFal.time_scale` and live here, in each `Model`, so a test
can swap them without touching the fake::

    from dataclasses import replace
    models = [replace(m, queue_s=0.0, run_s=0.01) for m in default_models()]
    fake = FakeFal(models=models)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fal_mcp.sandbox.models import outputs, usage
from fal_mcp.sandbox.models.inputs import Field, JsonObject, validate
from fal_mcp.sandbox.models.outputs import Generator, LogPlan
from fal_mcp.sandbox.models.usage import Usage

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
    display_name: str = ""
    category: str = "text-to-image"
    description: str = ""
    unit_price: float | None = None
    """USD per `unit`; None: the pricing API does not know this model (and no billing event is made for it)."""
    unit: str = "image"
    billed_units: Usage = usage.per_request
    """How many `unit`s a successful job bills (`fal_mcp.sandbox.models.usage`)."""
    output_schema: JsonObject = field(default_factory=lambda: dict(outputs.NO_OUTPUT))
    """The output's JSON schema as the platform API's OpenAPI document shows it."""

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
    return Field("prompt", "str", required=True, min_length=1, description="The prompt to generate from.")


def default_models() -> tuple[Model, ...]:
    """The nine sandbox models; a fresh tuple each call."""
    fast_image = Model(
        name="fast-image",
        endpoint_ids=("fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/fast-sdxl"),
        queue_s=0.05,
        run_s=0.3,
        fields=(
            _prompt(),
            Field(
                "image_size",
                "enum",
                default="landscape_4_3",
                choices=tuple(outputs.IMAGE_SIZES),
                description="The size of the generated image.",
            ),
            Field("num_images", "int", default=1, ge=1, le=4, description="The number of images to generate."),
            Field("seed", "int", nullable=True, description="The same seed and prompt give the same image."),
            Field("num_inference_steps", "int", default=4, ge=1, le=12, description="The number of inference steps."),
            Field("enable_safety_checker", "bool", default=True, description="Check the output for unsafe content."),
            Field("output_format", "enum", default="png", choices=("png",), description="The format of the image."),
        ),
        generate=outputs.images,
        plan_logs=outputs.image_logs,
        display_name="Fast image (sandbox)",
        description="Sandbox text-to-image model: a small seeded gradient picture per prompt, in well under a second.",
        unit_price=0.003,
        unit="megapixels",
        billed_units=usage.megapixels,
        output_schema=outputs.IMAGES_OUTPUT,
    )
    image_to_image = Model(
        name="image-to-image",
        endpoint_ids=("fal-ai/flux/dev/image-to-image",),
        queue_s=0.05,
        run_s=0.3,
        fields=(
            _prompt(),
            Field("image_url", "str", required=True, min_length=1, description="The URL of the image to transform."),
            Field("strength", "float", default=0.95, ge=0.01, le=1.0, description="How far to move from the input."),
            Field("num_images", "int", default=1, ge=1, le=4, description="The number of images to generate."),
        ),
        generate=outputs.images,
        plan_logs=outputs.image_logs,
        display_name="Image to image (sandbox)",
        category="image-to-image",
        description="Sandbox image-to-image model: takes image_url (any URL, or a file you uploaded) and a prompt.",
        unit_price=0.03,
        unit="images",
        billed_units=usage.images,
        output_schema=outputs.IMAGES_OUTPUT,
    )
    inline_image = Model(
        name="inline-image",
        endpoint_ids=("fal-ai/sandbox/inline-image",),
        queue_s=0.02,
        run_s=0.05,
        fields=(
            _prompt(),
            Field("megabytes", "int", default=5, ge=1, le=8, description="Roughly how large the inline PNG is."),
        ),
        generate=outputs.inline_image,
        display_name="Inline image (sandbox)",
        description="Sandbox model that returns its picture inline as a large base64 data URI instead of a URL.",
        unit_price=0.002,
        unit="request",
        output_schema=outputs.INLINE_IMAGES_OUTPUT,
    )
    huge_image = Model(
        name="huge-image",
        endpoint_ids=("fal-ai/sandbox/huge-image",),
        queue_s=0.02,
        run_s=0.05,
        fields=(
            _prompt(),
            Field("side", "int", default=8000, ge=64, le=16384, description="Width and height of each picture."),
            Field("num_images", "int", default=1, ge=1, le=4, description="The number of pictures."),
        ),
        generate=outputs.huge_images,
        display_name="Huge inline image (sandbox)",
        description="Sandbox model that returns huge pictures (8000x8000 by default) inline, a few hundred KB each.",
        unit_price=0.0,
        output_schema=outputs.INLINE_IMAGES_OUTPUT,
    )
    slow_video = Model(
        name="slow-video",
        endpoint_ids=("fal-ai/kling-video/v2/master/text-to-video",),
        queue_s=6.0,
        run_s=12.0,
        fields=(
            _prompt(),
            Field("duration", "enum", default="5", choices=("5", "10"), description="Video length in seconds."),
            Field("aspect_ratio", "enum", default="16:9", choices=("16:9", "9:16", "1:1")),
            Field("negative_prompt", "str", nullable=True, description="What the video should not show."),
        ),
        generate=outputs.video,
        plan_logs=outputs.video_logs,
        queue_position=3,
        display_name="Slow video (sandbox)",
        category="text-to-video",
        description="Sandbox text-to-video model: queues, then renders for about 18 seconds (scaled in tests).",
        unit_price=0.28,
        unit="seconds",
        billed_units=usage.video_seconds,
        output_schema=outputs.VIDEO_OUTPUT,
    )
    audio = Model(
        name="audio",
        endpoint_ids=("fal-ai/stable-audio",),
        queue_s=0.05,
        run_s=0.4,
        fields=(
            _prompt(),
            Field("seconds_total", "int", default=1, ge=1, le=5, description="Length of the audio in seconds."),
        ),
        generate=outputs.audio,
        display_name="Audio (sandbox)",
        category="text-to-audio",
        description="Sandbox text-to-audio model: a short WAV tone whose pitch follows the prompt.",
        unit_price=0.0,
        unit="seconds",
        billed_units=usage.audio_seconds,
        output_schema=outputs.AUDIO_OUTPUT,
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
        display_name="Always fails (sandbox)",
        description="Sandbox model whose runner always crashes, to see how failures look.",
        unit_price=0.0,
        billed_units=usage.images,
    )
    echo = Model(
        name="echo-workflow",
        endpoint_ids=("workflows/sandbox/echo",),
        queue_s=0.02,
        run_s=0.05,
        fields=None,
        generate=outputs.echo,
        accepts_subpaths=True,
        display_name="Echo workflow (sandbox)",
        category="workflow",
        description="Sandbox workflow that returns its input untouched under 'echo'.",
        unit_price=0.01,
        unit="compute seconds",
        billed_units=usage.compute_seconds,
        output_schema=outputs.ECHO_OUTPUT,
    )
    text = Model(
        name="text",
        endpoint_ids=("fal-ai/any-llm",),
        queue_s=0.02,
        run_s=0.1,
        fields=(_prompt(), Field("model", "str", default="sandbox/echo-llm", description="The language model.")),
        generate=outputs.text,
        display_name="Any LLM (sandbox)",
        category="llm",
        description="Sandbox language model that quotes your prompt back.",
        output_schema=outputs.TEXT_OUTPUT,
    )
    return fast_image, image_to_image, inline_image, huge_image, slow_video, audio, always_fails, echo, text
