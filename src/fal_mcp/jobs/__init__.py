"""What happens to a request whichever surface it came through: checks, guards, the history, waiting, wording.

`operations` is the road every run, submit, status, result and cancel takes; around it live the input checks
(`preflight`, `validation`, the model's schema from `catalog`), the per-key `guards`, the `history`, `waiting`
on a job, the results' models and the worded failures. May import `fal`, `media`, `settings`, `logs`, `calls`;
must never import `server` (MCP) or `web` (HTTP).
"""
