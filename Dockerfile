# fal-mcp in a container: streamable HTTP by default, stdio on request.
#   docker build -t fal-mcp .
#   docker run --rm -p 8000:8000 -e FAL_MCP_AUTH=fal-key fal-mcp                 # HTTP, callers bring their keys
#   docker run --rm -i -e FAL_KEY fal-mcp --transport stdio                      # stdio, for a desktop client
# Bound to every address inside the container, it refuses to start without --auth (see the README).

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# With the PostgreSQL driver, so replicas can share a database (FAL_MCP_DATABASE_URL, see deploy/compose.yaml).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FAL_MCP_HOST=0.0.0.0 \
    FAL_MCP_PORT=8000 \
    FAL_MCP_LOG_FORMAT=json
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 --user-group fal
USER 10001:10001
WORKDIR /home/fal
EXPOSE 8000
# Liveness without curl: the image's own Python asks /healthz on the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FAL_MCP_PORT', '8000'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fal-mcp"]
CMD ["--transport", "http"]
