"""Webhooks: posting a finished job's outcome to the `fal_webhook` URL it was submitted with, signed as fal signs.
May import `sandbox.queue` and `sandbox.models`."""
