"""Storage and the CDN (`rest.fal.ai/storage`): CDN tokens, uploads, signed upload URLs, the files served back.
May import `sandbox.models` and `sandbox.platform`."""
