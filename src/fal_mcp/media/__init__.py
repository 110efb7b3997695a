"""Media in outputs and local files: finding media in an output, fetching it safely, previews, the upload fence.

May import `fal` (for its URLs) and `settings`; must never import `jobs`, `server` or `web`.
"""
