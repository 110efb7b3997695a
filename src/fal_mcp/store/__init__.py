"""Where everything fal-mcp remembers lives: the request history, the guards' counters, MCP tasks, webhook deliveries.

This layer knows rows, not fal and not MCP: it may import only the base modules (`settings`, `logs`, `calls`), and
`jobs/`, `server/` and `web/` use it. One set of statements serves two backends:

- **SQLite** (the default): a file in `FAL_MCP_STATE_DIR`, shared by every process on the host that opens it (WAL
  mode, a busy timeout, writes that must be exact under `BEGIN IMMEDIATE`). With the history off, or its file
  unusable, the counters, tasks and deliveries live in an in-memory database of the process instead.
- **PostgreSQL** (`FAL_MCP_DATABASE_URL=postgresql://...`): shared by any number of replicas. Exact writes hold a
  transaction-scoped advisory lock per key; wake-ups travel as `NOTIFY` on one channel.

Modules: `records` (what a request row is), `owners` (which process wrote a row, and whether it still lives),
`database` (the connection seam both backends implement, and in-process wake-ups), `sqlite` and `postgres` (the
backends), `migrations` (the versioned schema), then one module per thing kept: `history`, `counters`, `tasks`,
`deliveries`; `opening` picks the backend from the settings and runs the background upkeep.
"""
