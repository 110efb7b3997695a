"""The platform API (`api.fal.ai/v1`): model listing and search, each endpoint's OpenAPI document, pricing.
May import `sandbox.models`."""
