"""Settings: read once from the environment and ``.env`` (the real environment wins), validated.

Each setting is declared once, on its ``Settings`` field (:func:`bot.config_fields.setting`): its
variable, default, parser and help text. ``.env.example`` and the README table are generated from
these declarations (``python -m bot.config_docs``). A wrong value stops start-up with one line naming
the variable and what is allowed (:class:`bot.errors.ConfigError`). Secrets are held in
:class:`Secret`, whose repr never shows them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from bot.config_fields import (
    Secret,
    check,
    choice,
    declared,
    flag,
    lower,
    megabytes,
    names,
    optional,
    path,
    port,
    positive_seconds,
    seconds,
    secret,
    setting,
    text,
    then,
    url,
    whole,
)
from bot.errors import ConfigError

DEFAULT_POLL_COST = 0.115
"""Seconds of detection delay one status request is worth (``POLL_COST_SECONDS``). Chosen so a
3-minute job (the sora-2 prior) takes ≤ 20 requests (19.6) at ≤ 2.2 s mean delay (2.15 s);
see bench/bench_polling.py (bot.jobs.polling takes it from here)."""

__all__ = ["PROVIDERS", "Secret", "Settings", "check_playground_host", "is_loopback", "load_settings"]

PROVIDERS = ("demo", "fal", "replicate", "runway", "segmind", "segmind-sync", "sora2api", "relay", "openai", "comfyui")
DEFAULT_PROVIDER_ORDER = ("fal", "replicate", "runway", "segmind", "sora2api", "relay", "openai", "comfyui")
_KEY_FOR_PROVIDER = {
    "fal": "FAL_KEY",
    "replicate": "REPLICATE_API_TOKEN",
    "runway": "RUNWAYML_API_SECRET",
    "segmind": "SEGMIND_API_KEY",
    "sora2api": "SORA2API_API_KEY",
    "relay": "RELAY_API_KEY",
    "openai": "OPENAI_API_KEY",
    "comfyui": "COMFYUI_URL",  # a self-hosted server: its address stands for the key
}


def _provider_order(name: str, value: str) -> tuple[str, ...]:
    order = names(name, value.lower())
    unknown = [p for p in order if p not in PROVIDERS]
    if unknown:
        raise ConfigError(f"PROVIDER_ORDER names unknown providers {', '.join(unknown)}; known: {', '.join(PROVIDERS)}")
    # The providers not named come last, in their usual order: a key that is set is never ignored.
    return (*order, *(p for p in DEFAULT_PROVIDER_ORDER if p not in order))


def _database_url(name: str, value: str) -> str:
    if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(
            f"{name} must look like sqlite:///path/to/bot.db or postgresql://user:password@host:5432/db,"
            f" got {value.split('@')[-1]!r}"  # never the user:password before it
        )
    return value


def _guild_ids(name: str, value: str) -> frozenset[int]:
    """``ALLOWED_GUILD_IDS=123,456``: server ids (snowflakes)."""
    try:
        ids = frozenset(int(part) for part in value.replace(" ", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a comma-separated list of server ids, got {value!r}") from None
    if any(i <= 0 for i in ids):
        raise ConfigError(f"{name} must hold positive server ids, got {value!r}")
    return ids


def _shard_ids(name: str, value: str) -> tuple[int, ...]:
    """``SHARD_IDS=0,2``; checked against SHARD_COUNT in :func:`_parse`."""
    try:
        return tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"{name} must be a comma-separated list of shard numbers like 0,1, got {value!r}") from None


_sora2api_prefix = then(
    check(text, lambda v: v.startswith("/"), "{name} must start with '/', got {value!r}"), lambda v: v.rstrip("/")
)
_openai_url = check(url(), lambda v: v.endswith("/v1"), "{name} must end in /v1 (as in the openai SDK), got {value!r}")


@dataclass(frozen=True)
class Settings:
    # --- Discord ---
    discord_token: Secret = setting(
        "DISCORD_TOKEN",
        "",
        secret,
        """The bot token (Developer Portal > your application > Bot > Reset Token). Without it, `python -m bot`
        opens the playground instead (README "Playground").""",
        section="Discord",
    )
    sync_commands: bool = setting(
        "SYNC_COMMANDS",
        "0",
        flag,
        "`1` = register the slash commands with Discord at start (on the first start and after upgrades).",
    )
    discord_guild_id: int | None = setting(
        "DISCORD_GUILD_ID",
        "",
        optional(whole(1)),
        "With `SYNC_COMMANDS=1`: register in this server only (instant; good for testing) instead of globally.",
    )
    discord_api_base_url: str = setting(
        "DISCORD_API_BASE_URL",
        "",
        url(),
        "Another Discord REST API base (only for tests against a fake Discord).",
        unset="Discord's",
    )
    discord_gateway_url: str = setting(
        "DISCORD_GATEWAY_URL",
        "",
        url(schemes=("ws", "wss")),
        "Another Discord gateway (only for tests against a fake Discord).",
        unset="Discord's",
    )

    # --- Video providers and models ---
    provider: str = setting(
        "PROVIDER",
        "",
        lower,
        f"""Force one provider: {", ".join(f"`{p}`" for p in PROVIDERS)}. Unset: every provider whose key is set is
        used; with none, the `demo` provider renders locally (no account).""",
        unset="every provider whose key is set",
        section="Video providers and models",
    )
    """The preferred provider: PROVIDER when set, else the first of ``providers``."""
    provider_order: tuple[str, ...] = setting(
        "PROVIDER_ORDER",
        ",".join(DEFAULT_PROVIDER_ORDER),
        _provider_order,
        """Which provider runs a model several of them host (the first whose key is set); a job moves once to
        the next when the first proves it took nothing (out of credits, throttled, bad key, model gone).
        Providers left out come last.""",
    )
    providers: tuple[str, ...] = ()
    """Every usable provider (its key is set), most preferred first; PROVIDER forces just one.
    Left empty, it becomes ``(provider,)``."""
    enabled_models: tuple[str, ...] = setting(
        "ENABLED_MODELS",
        "",
        names,
        """Comma-separated catalogue ids offered in `/sora`, e.g. `veo-3.1-fast,kling-3-pro`;
        `python -m bot models` lists them.""",
        unset="all",
    )
    models_file: Path | None = setting(
        "MODELS_FILE",
        "",
        optional(path),
        "A TOML file adding or overriding catalogue entries (format: top of `bot/catalogue/models.toml`).",
    )
    default_model: str = setting(
        "DEFAULT_MODEL", "", text, "The model `/sora` uses when the member picks none.", unset="the first available"
    )
    fal_key: Secret = setting(
        "FAL_KEY", "", secret, "fal.ai queue API: Veo 3.1 (+Fast), Kling 3 Pro, Seedance 2.0, Hailuo 2.3."
    )
    fal_base_url: str = setting("FAL_BASE_URL", "https://queue.fal.run", url(), "fal's queue API.")
    fal_jwks_url: str = setting(
        "FAL_JWKS_URL",
        "https://rest.alpha.fal.ai/.well-known/jwks.json",
        url(),
        "The keys fal's signed webhooks are verified against (used with `PUBLIC_BASE_URL`).",
    )
    replicate_api_token: Secret = setting(
        "REPLICATE_API_TOKEN",
        "",
        secret,
        """Replicate: Veo 3.1, Kling 2.1 Master, Wan 3. With `PUBLIC_BASE_URL` its signed "completed" webhooks
        wake jobs at once (the signing secret is fetched from the API with this token).""",
    )
    replicate_base_url: str = setting(
        "REPLICATE_BASE_URL", "https://api.replicate.com", url(), "Replicate's predictions API."
    )
    runwayml_api_secret: Secret = setting(
        "RUNWAYML_API_SECRET", "", secret, "Runway: Gen-4.5, Veo 3.1 (+Fast); shows real progress."
    )
    runway_base_url: str = setting("RUNWAY_BASE_URL", "https://api.dev.runwayml.com", url(), "Runway's task API.")
    segmind_api_key: Secret = setting(
        "SEGMIND_API_KEY",
        "",
        secret,
        """Segmind: Veo 3.1 (+Fast) (`segmind` = v2 async API; `segmind-sync` = v1, one long request, cannot
        resume).""",
    )
    segmind_base_url: str = setting("SEGMIND_BASE_URL", "https://api.segmind.com", url(), "Segmind's API.")
    sora2api_api_key: Secret = setting("SORA2API_API_KEY", "", secret, "Sora2API.")
    sora2api_base_url: str = setting("SORA2API_BASE_URL", "https://api.sora2api.ai", url(), "Sora2API's API.")
    sora2api_path_prefix: str = setting(
        "SORA2API_PATH_PREFIX", "/api/v1/sora2api", _sora2api_prefix, "The path of Sora2API's endpoints."
    )
    relay_api_key: Secret = setting(
        "RELAY_API_KEY", "", secret, "A relay speaking `POST /v2/videos/generations` (with `RELAY_BASE_URL`)."
    )
    relay_base_url: str = setting(
        "RELAY_BASE_URL", "", url(), "The relay's address, e.g. `https://relay.example.com` (required for it)."
    )
    openai_api_key: Secret = setting(
        "OPENAI_API_KEY", "", secret, "The OpenAI-style `/v1/videos` API (OpenAI itself or a compatible relay)."
    )
    openai_base_url: str = setting(
        "OPENAI_BASE_URL", "https://api.openai.com/v1", _openai_url, "Its address; must end in `/v1`."
    )
    comfyui_url: str = setting(
        "COMFYUI_URL",
        "",
        url(),
        """Your own ComfyUI server (README "ComfyUI"), e.g. `http://127.0.0.1:8188`; the models it offers come
        from `MODELS_FILE` (examples/comfyui/).""",
    )
    comfyui_workflow: Path | None = setting(
        "COMFYUI_WORKFLOW",
        "",
        optional(path),
        "The API-format workflow JSON it runs, with `{{placeholders}}` the bot fills (goes with `COMFYUI_URL`).",
    )
    """The operator's API-format workflow with ``{{placeholder}}`` values (bot/providers/comfyui.py)."""
    comfyui_token: Secret = setting(
        "COMFYUI_TOKEN",
        "",
        secret,
        'Sent as "Authorization: Bearer ..." for a proxy in front of ComfyUI (which has no auth of its own).',
    )

    # --- Storage ---
    database_url: str = setting(
        "DATABASE_URL",
        "sqlite:///data/bot.db",
        _database_url,
        """Jobs and the credit ledger: `sqlite:///path/to/bot.db`, or `postgresql://user:password@host:5432/db`.
        Several bot processes (shards) may share one PostgreSQL database: jobs move between them through
        leases (`LEASE_SECONDS`).""",
        section="Storage",
        repr=False,  # may hold a password
    )
    data_dir: Path = setting(
        "DATA_DIR", "data", path, "Where reference images, downloaded results and demo renders are kept while jobs run."
    )

    # --- Jobs ---
    max_running_jobs: int = setting(
        "MAX_RUNNING_JOBS",
        "4",
        whole(1),
        "Jobs generating at once (all users); the rest wait in a persisted queue.",
        section="Jobs",
    )
    max_running_jobs_per_user: int = setting(
        "MAX_RUNNING_JOBS_PER_USER", "1", whole(1), "Jobs generating at once per user; the rest wait."
    )
    job_timeout_seconds: float = setting(
        "JOB_TIMEOUT_SECONDS",
        "1800",
        seconds(60),
        "A job still unfinished this long after submission is cancelled and refunded.",
    )
    typical_job_seconds: float | None = setting(
        "TYPICAL_JOB_SECONDS",
        "0",
        then(seconds(0), lambda s: s or None),
        """Median generation time for the poll planner, used as is; `0` = the model's typical time (catalogue,
        or the provider's own), refined from the last 50 finished jobs of the same provider and model.""",
    )
    poll_cost_seconds: float = setting(
        "POLL_COST_SECONDS",
        str(DEFAULT_POLL_COST),
        positive_seconds,
        """What one status request to the provider is worth, in seconds of delay in noticing a finished video:
        the poll planner minimises mean delay + this x requests. Higher = fewer requests, later notice.
        0.115 = about 20 requests at 2.15 s mean delay for a 3-minute job.""",
    )
    """What one status request is worth in seconds of detection delay (bot/jobs/poll_planner.py)."""
    max_result_bytes: int = setting("MAX_RESULT_MB", "512", megabytes, "Largest result the bot will download, in MB.")
    max_image_bytes: int = setting("MAX_IMAGE_MB", "10", megabytes, "Largest reference image it accepts, in MB.")

    # --- Credits ---
    daily_credits: int = setting(
        "DAILY_CREDITS", "40", whole(0), "Each user's allowance per UTC day, per server.", section="Credits"
    )
    credits_per_second: int = setting(
        "CREDITS_PER_SECOND",
        "1",
        whole(0),
        """Models priced in the catalogue cost their own rate (1 credit ~ US$0.05); the others cost seconds x
        this.""",
    )
    pro_credit_multiplier: int = setting(
        "PRO_CREDIT_MULTIPLIER", "3", whole(1), "sora-2-pro costs seconds x `CREDITS_PER_SECOND` x this."
    )
    server_daily_credits: int | None = setting(
        "SERVER_DAILY_CREDITS",
        "",
        optional(whole(0)),
        """Credits one server's members together may spend per UTC day (reserves minus refunds); beyond it
        `/sora` is refused with the reset time.""",
        unset="no cap",
    )
    """Credits a server's members together may spend per UTC day (None = no cap)."""
    global_daily_credits: int | None = setting(
        "GLOBAL_DAILY_CREDITS",
        "",
        optional(whole(0)),
        "Credits every server together may spend per UTC day.",
        unset="no cap",
    )
    """Credits every server together may spend per UTC day (None = no cap)."""
    max_allowance: int | None = setting(
        "MAX_ALLOWANCE",
        "",
        optional(whole(0)),
        "The highest daily allowance `/sora-admin allowance` may set.",
        unset="no limit",
    )
    """The highest daily allowance /sora-admin allowance may set (None = no limit)."""
    allowed_guild_ids: frozenset[int] = setting(
        "ALLOWED_GUILD_IDS",
        "",
        _guild_ids,
        """The only servers the bot stays in, comma-separated ids; it leaves any other server (at start-up and
        on join) and logs it.""",
        unset="any",
    )
    """The only servers the bot stays in (empty = any); it leaves the others."""
    allow_private_results: bool = setting(
        "ALLOW_PRIVATE_RESULTS",
        "1",
        flag,
        "`1` = `/sora private:true` sends the finished video by direct message (`0` = the option is refused).",
    )

    # --- Several bot processes on one database ---
    lease_seconds: float = setting(
        "LEASE_SECONDS",
        "60",
        seconds(2),
        """A job whose process stopped renewing its lease for this long is taken over by another process (at
        least `2`).""",
        section='Several bot processes on one database (see README "Running as a service")',
    )
    """How long a job stays with a bot process that stopped renewing it before another one takes it over."""
    shard_count: int | None = setting(
        "SHARD_COUNT",
        "",
        optional(whole(1)),
        "Discord sharding: the total number of shards across all processes. Unset = one unsharded connection.",
    )
    shard_ids: tuple[int, ...] | None = setting(
        "SHARD_IDS",
        "",
        optional(_shard_ids),
        "The shards this process connects, comma-separated (e.g. `0,1`; needs `SHARD_COUNT`).",
        unset="all of SHARD_COUNT",
    )
    """The Discord shards this process runs (None = all of ``shard_count``, or no sharding)."""

    # --- Moderation defaults (for every server until its admins change them with /sora-admin) ---
    cooldown_seconds: int = setting(
        "COOLDOWN_SECONDS",
        "30",
        whole(0),
        "Seconds a member waits between two videos (`0` = no cooldown); `/sora-admin cooldown` overrides it.",
        section="Moderation defaults (each server's admins can change them with /sora-admin)",
    )
    max_pending_jobs_per_user: int = setting(
        "MAX_PENDING_JOBS_PER_USER",
        "2",
        whole(1),
        """Unfinished (queued or running) videos a member may have per server; beyond it `/sora` is refused
        (`/sora-admin max-jobs` overrides it). Not the same as `MAX_RUNNING_JOBS_PER_USER`, which only
        queues.""",
    )

    # --- Logging ---
    log_level: str = setting(
        "LOG_LEVEL",
        "INFO",
        choice("DEBUG", "INFO", "WARNING", "ERROR", case=str.upper),
        "`DEBUG`, `INFO`, `WARNING` or `ERROR`.",
        section="Logging",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        choice("text", "json"),
        """`text` or `json` (one JSON object per line: `ts`, `level`, `logger`, `message`, `job_id`...; secrets
        are always scrubbed).""",
    )

    # --- Service ---
    http_port: int | None = setting(
        "HTTP_PORT",
        "",
        optional(port),
        """Serve `GET /healthz`, `GET /metrics` (Prometheus) and `POST /callbacks/{secret}` on this port (and the
        playground page when it runs, on 8080 when empty).""",
        unset="off",
        section="Service (health, metrics, provider callbacks)",
    )
    """Serve /healthz, /metrics and provider callbacks on this port (None = no HTTP server)."""
    http_host: str = setting(
        "HTTP_HOST",
        "127.0.0.1",
        text,
        "Address to listen on (`0.0.0.0` to be reachable from outside the host or container, as in the Docker image).",
    )
    public_base_url: str = setting(
        "PUBLIC_BASE_URL",
        "",
        url(),
        """The public address of `HTTP_PORT` (e.g. `https://bot.example.com` behind a reverse proxy). When set,
        fal, relay and sora2api jobs are sent a per-job callback URL, so a finished video is noticed
        at once (fal's are signature-checked against `FAL_JWKS_URL`).""",
    )
    """How providers reach the HTTP port from outside; set = per-job callback URLs are sent."""
    metrics_token: Secret = setting(
        "METRICS_TOKEN",
        "",
        secret,
        """When set, `GET /metrics` requires "Authorization: Bearer <this token>" (else 401; Prometheus:
        authorization.credentials).""",
        unset="open",
    )

    # --- Playground ---
    playground: bool = setting(
        "PLAYGROUND",
        "0",
        flag,
        """`1` = also serve the playground page (`/sora` in a browser) beside the Discord bot, on `HTTP_PORT`.
        It then runs on the bot's pipeline and `DATABASE_URL`, its jobs in a server named "playground"
        (without a token it runs on its own anyway).""",
        section='Playground (README "Playground")',
    )
    playground_public: bool = setting(
        "PLAYGROUND_PUBLIC",
        "0",
        flag,
        """The playground has no login, so it refuses a non-loopback `HTTP_HOST`; `1` = serve it there anyway
        (anyone who reaches it spends your provider credits: publish it on loopback or behind your own
        login).""",
    )

    def __post_init__(self) -> None:
        # Settings(provider="relay") in tests and tools: that one alone; Settings(): the demo provider.
        if not self.providers:
            object.__setattr__(self, "providers", (self.provider or "demo",))
        if not self.provider:
            object.__setattr__(self, "provider", self.providers[0])

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that may have picked one up."""
        found = tuple(v.get() for f in fields(self) if isinstance(v := getattr(self, f.name), Secret) and v)
        password = urlsplit(self.database_url).password  # postgresql://user:password@host/db
        return (*found, *dict.fromkeys((password, unquote(password)))) if password else found

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))


def load_settings(env: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env") -> Settings:
    """Build Settings from ``env`` (default: ``os.environ`` over ``.env``)."""
    if env is None:
        file_values = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if dotenv_path else {}
        merged = {**file_values, **os.environ}
    else:
        merged = dict(env)
    return _parse(merged)


def _parse(env: Mapping[str, str]) -> Settings:
    """Each declared setting on its own, then the rules that span several."""
    values: dict[str, Any] = {}
    by_env: dict[str, Any] = {}
    for f, declaration in declared(Settings):
        values[f.name] = by_env[declaration.env] = declaration.read(env.get(declaration.env, ""))

    if bool(values["comfyui_url"]) != bool(values["comfyui_workflow"]):
        raise ConfigError(
            "COMFYUI_URL and COMFYUI_WORKFLOW go together: the server's address (e.g. http://127.0.0.1:8188) "
            "and the path of its API-format workflow JSON"
        )
    providers = _providers(values["provider"], values["provider_order"], by_env)
    values["provider"] = providers[0]
    _check_shards(values["shard_ids"], values["shard_count"], raw=env.get("SHARD_IDS", "").strip())
    settings = Settings(**values, providers=providers)
    if settings.playground:
        check_playground_host(settings)
    return settings


def check_playground_host(settings: Settings) -> None:
    """The playground has no login: anyone who reaches it spends the configured provider's credits.
    It listens on loopback only unless PLAYGROUND_PUBLIC=1 says that is meant (the Docker image sets
    HTTP_HOST=0.0.0.0 for /healthz and callbacks, which must not open the playground by accident)."""
    if settings.playground_public or is_loopback(settings.http_host):
        return
    raise ConfigError(
        f"HTTP_HOST={settings.http_host} would expose the playground, which has no login: use HTTP_HOST=127.0.0.1,"
        " or set PLAYGROUND_PUBLIC=1 to serve it there anyway (anyone who reaches it can spend your provider credits)"
    )


def is_loopback(host: str) -> bool:
    """``host`` names this machine only (``localhost``, 127.0.0.0/8, ::1); a name we cannot tell is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _providers(forced: str, order: tuple[str, ...], by_env: Mapping[str, Any]) -> tuple[str, ...]:
    """The usable providers, most preferred first. ``PROVIDER`` forces one (its key must be set);
    otherwise every provider whose key is set, in ``PROVIDER_ORDER``; none: the demo provider."""
    if forced:
        if forced not in PROVIDERS:
            raise ConfigError(f"PROVIDER must be one of {', '.join(PROVIDERS)}, got {forced!r}")
        _require_key(forced, by_env)
        return (forced,)
    usable = [p for p in order if p in _KEY_FOR_PROVIDER and by_env[_KEY_FOR_PROVIDER[p]]]
    for name in usable:
        _require_key(name, by_env)
    return tuple(usable) or ("demo",)


def _require_key(provider: str, by_env: Mapping[str, Any]) -> None:
    key_name = _KEY_FOR_PROVIDER.get("segmind" if provider == "segmind-sync" else provider)
    if key_name and not by_env[key_name]:
        raise ConfigError(f"{key_name} is required when PROVIDER={provider}")
    if provider == "relay" and not by_env["RELAY_BASE_URL"]:
        raise ConfigError("RELAY_BASE_URL is required when PROVIDER=relay (e.g. https://relay.example.com)")


def _check_shards(ids: tuple[int, ...] | None, shard_count: int | None, *, raw: str) -> None:
    """``SHARD_IDS=0,2``: which of ``SHARD_COUNT`` shards this process connects."""
    if ids is None:
        return
    if shard_count is None:
        raise ConfigError("SHARD_IDS needs SHARD_COUNT (the total number of shards across all processes)")
    if not ids or ids[0] < 0 or ids[-1] >= shard_count:
        raise ConfigError(f"SHARD_IDS must be numbers from 0 to {shard_count - 1} (SHARD_COUNT - 1), got {raw!r}")
