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

# /healthz, /metrics and provider callbacks (see README "Running as a service"); HTTP_PORT= turns them off.
ENV HTTP_PORT=8080 HTTP_HOST=0.0.0.0
EXPOSE 8080

# Healthy = /healthz answers 200 (gateway connected, database reachable); without HTTP_PORT, the
# database file can at least be opened.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, sqlite3, urllib.request as r; p = os.environ.get('HTTP_PORT'); \
p and r.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=4); \
p or sqlite3.connect('file:/app/data/bot.db?mode=ro', uri=True).execute('select 1')"

CMD ["python", "-m", "bot"]
