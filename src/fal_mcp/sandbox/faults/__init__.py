"""Misbehaviour on demand: injected faults (statuses, slow answers, dropped or reset connections, cut answers)
and chaos (a seeded random fraction of requests faulted). May import `sandbox.routing` and `sandbox.queue`."""
