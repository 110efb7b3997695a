"""The queue and runs: a job's timeline computed from the clock, and the status stream (Server-Sent Events).
May import `sandbox.models` and `sandbox.routing`."""
