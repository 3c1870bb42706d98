# sora-discord-bot: configure it only through environment variables (see .env.example).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install . && useradd --create-home --uid 10001 sora && mkdir -p /app/data && chown sora /app/data

USER sora
# Jobs, credits, reference images and results in flight: keep them across container restarts.
VOLUME ["/app/data"]
ENV DATABASE_URL=sqlite:////app/data/bot.db DATA_DIR=/app/data

# The process is healthy while it can open its database (HTTP /healthz comes with HTTP_PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sqlite3; sqlite3.connect('file:/app/data/bot.db?mode=ro', uri=True).execute('select 1')"

CMD ["python", "-m", "bot"]
