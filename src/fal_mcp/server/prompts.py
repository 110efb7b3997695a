"""Prompts: the three things people most often ask fal for, as ready-made requests a user picks in their client.

A prompt costs no context until it is chosen (it is not in `tools/list`), so it can spell out the whole way through
the tools: which to call, in what order, with which arguments. Each renders one user message naming the exact tool
calls, with the user's own words put in as JSON, so the model can send them as they are.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.prompts.base import Message, Prompt
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, InputRequiredResult
from pydantic import Field

DEFAULT_IMAGE_MODEL = "fal-ai/flux/schnell"


def _call(tool: str, arguments: dict[str, Any]) -> str:
    return f"{tool} {json.dumps(arguments, ensure_ascii=False)}"


def generate_image(
    description: Annotated[str, Field(description="What the picture shows, e.g. 'a red fox in the snow'")],
    model: Annotated[str | None, Field(description=f"fal model id (default {DEFAULT_IMAGE_MODEL})")] = None,
) -> str:
    """Generate an image with a fal model and show it."""
    endpoint = model or DEFAULT_IMAGE_MODEL
    return (
        f"Generate an image with fal: {description}\n\n"
        f"Call {_call('run-model', {'endpoint_id': endpoint, 'input': {'prompt': description}})}.\n"
        "If fal refuses the input, call get-model-schema for that endpoint_id, fix the input and run it once more. "
        "Then show me the picture (the result has a preview and a link) and say which model made it."
    )


def image_to_video(
    image: Annotated[str, Field(description="The picture: a URL, or a local file's path")],
    motion: Annotated[str, Field(description="What should happen in the video, e.g. 'the fox runs off'")],
    model: Annotated[str | None, Field(description="fal image-to-video model id (default: find one)")] = None,
) -> str:
    """Make a short video from an image with a fal image-to-video model, through the queue."""
    steps = [f"Make a video with fal from this image: {image}\nWhat happens in it: {motion}\n"]
    if not image.startswith(("http://", "https://", "data:")):
        steps.append(f"1. The image is a local file: upload it with {_call('upload-file', {'path': image})}.")
    else:
        steps.append("1. The image is already a URL: use it as it is.")
    if model:
        steps.append(f"2. Use the model {model}; call {_call('get-model-schema', {'endpoint_id': model})}.")
    else:
        steps.append(
            f"2. Find a model with {_call('search-models', {'category': 'image-to-video'})}, pick one by "
            "quality and price, and call get-model-schema for it."
        )
    steps.append(
        "3. Queue the video with submit: the image URL in the model's image field and the motion as its prompt. "
        "Video takes minutes, so do not wait in one call."
    )
    steps.append(
        "4. Follow it with get-result (request_id, wait_s=50) until it is COMPLETED, then show me the video link."
    )
    return "\n".join(steps)


def run_in_queue(
    endpoint_id: Annotated[str, Field(description="fal model id, e.g. 'fal-ai/flux/schnell'")],
    input: Annotated[str, Field(description='The model\'s input as JSON, e.g. {"prompt": "a red fox"}')],
) -> str:
    """Run any fal model through the queue: submit, follow, fetch the result."""
    return (
        f"Run the fal model {endpoint_id} through the queue.\n\n"
        f"1. Call get-model-schema for it and check this input against its fields: {input}\n"
        f'2. Submit it: submit {{"endpoint_id": {json.dumps(endpoint_id)}, "input": <the input>}}. Note the request_id.\n'
        "3. Check get-status with that request_id; then call get-result (request_id, wait_s=50) until it is COMPLETED.\n"
        "4. Show me the output. If it failed, say why, and cancel it if I ask."
    )


PROMPTS = (
    (generate_image, "generate-image", "Generate an image"),
    (image_to_video, "image-to-video", "Make a video from an image"),
    (run_in_queue, "run-in-queue", "Run a model through the queue"),
)


class FalPrompt(Prompt):
    """A prompt whose missing arguments are named plainly (the SDK answers an opaque internal error)."""

    async def render(
        self, arguments: dict[str, Any] | None, context: Context[Any, Any]
    ) -> list[Message] | InputRequiredResult:
        missing = [arg for arg in self.arguments or [] if arg.required and not (arguments or {}).get(arg.name)]
        if missing:
            wanted = "; ".join(f"{arg.name} ({arg.description})" for arg in missing)
            raise MCPError(INVALID_PARAMS, f"the {self.name} prompt needs: {wanted}")
        return await super().render(arguments, context)


def built_prompts() -> list[Prompt]:
    """The prompts, built (the server registers them from `server.listing`, and builds each on first use)."""
    return [FalPrompt.from_function(fn, name=name, title=title) for fn, name, title in PROMPTS]
