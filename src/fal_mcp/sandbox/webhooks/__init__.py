"""Webhooks: posting a finished job's outcome to the `fal_webhook` URL it was submitted with.
May import `sandbox.queue` and `sandbox.models`."""
