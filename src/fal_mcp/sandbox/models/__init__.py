"""The sandbox's models: the catalog (ids, fields, durations, prices), inputs checked the way fal's apps check
them, and the outputs they make (deterministic JSON, real PNG pictures). Imports nothing of the fake's routes."""
