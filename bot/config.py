"""Settings: read once from the environment and ``.env`` (the real environment wins), validated.

A wrong value stops start-up with one line naming the variable and what is allowed
(:class:`bot.errors.ConfigError`). Secrets are held in :class:`Secret`, whose repr never shows them.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit

from dotenv import dotenv_values

from bot.errors import ConfigError
from bot.jobs.polling import DEFAULT_POLL_COST

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


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    provider: str = "demo"
    """The preferred provider: PROVIDER when set, else the first of ``providers``."""
    providers: tuple[str, ...] = ()
    """Every usable provider (its key is set), most preferred first; PROVIDER forces just one.
    Left empty, it becomes ``(provider,)``."""
    enabled_models: tuple[str, ...] = ()
    models_file: Path | None = None
    default_model: str = ""

    fal_key: Secret = Secret("")
    fal_base_url: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    replicate_api_token: Secret = Secret("")
    replicate_base_url: str = "https://api.replicate.com"
    runwayml_api_secret: Secret = Secret("")
    runway_base_url: str = "https://api.dev.runwayml.com"

    segmind_api_key: Secret = Secret("")
    segmind_base_url: str = "https://api.segmind.com"
    sora2api_api_key: Secret = Secret("")
    sora2api_base_url: str = "https://api.sora2api.ai"
    sora2api_path_prefix: str = "/api/v1/sora2api"
    relay_api_key: Secret = Secret("")
    relay_base_url: str = ""
    openai_api_key: Secret = Secret("")
    openai_base_url: str = "https://api.openai.com/v1"
    comfyui_url: str = ""
    comfyui_workflow: Path | None = None
    """The operator's API-format workflow with ``{{placeholder}}`` values (bot/providers/comfyui.py)."""
    comfyui_token: Secret = Secret("")
    """Sent as a bearer token, for a proxy in front of ComfyUI (which has no auth of its own)."""

    database_url: str = field(default="sqlite:///data/bot.db", repr=False)  # may hold a password
    data_dir: Path = Path("data")

    discord_token: Secret = Secret("")
    discord_api_base_url: str = ""
    discord_gateway_url: str = ""
    discord_guild_id: int | None = None
    sync_commands: bool = False

    max_running_jobs: int = 4
    max_running_jobs_per_user: int = 1
    job_timeout_seconds: float = 1800.0
    max_result_bytes: int = 512 * 1024 * 1024
    max_image_bytes: int = 10 * 1024 * 1024
    typical_job_seconds: float | None = None
    poll_cost_seconds: float = DEFAULT_POLL_COST
    """What one status request is worth in seconds of detection delay (bot/jobs/poll_planner.py)."""
    lease_seconds: float = 60.0
    """How long a job stays with a bot process that stopped renewing it before another one takes it over."""
    shard_ids: tuple[int, ...] | None = None
    """The Discord shards this process runs (None = all of ``shard_count``, or no sharding)."""
    shard_count: int | None = None

    daily_credits: int = 40
    credits_per_second: int = 1
    pro_credit_multiplier: int = 3
    allow_private_results: bool = True
    """``/sora private:true`` (the video goes to the requester's DMs) is offered."""
    allowed_guild_ids: frozenset[int] = frozenset()
    """The only servers the bot stays in (empty = any); it leaves the others."""
    server_daily_credits: int | None = None
    """Credits a server's members together may spend per UTC day (None = no cap)."""
    global_daily_credits: int | None = None
    """Credits every server together may spend per UTC day (None = no cap)."""
    max_allowance: int | None = None
    """The highest daily allowance /sora-admin allowance may set (None = no limit)."""
    # Defaults for every server until its admins change them with /sora-admin.
    cooldown_seconds: int = 30
    max_pending_jobs_per_user: int = 2

    log_level: str = "INFO"
    log_format: str = "text"

    http_port: int | None = None
    """Serve /healthz, /metrics and provider callbacks on this port (None = no HTTP server)."""
    http_host: str = "127.0.0.1"
    public_base_url: str = ""
    """How providers reach the HTTP port from outside; set = per-job callback URLs are sent."""
    metrics_token: Secret = Secret("")
    """When set, ``/metrics`` answers only requests with ``Authorization: Bearer <token>``."""
    playground: bool = False
    """Serve the playground page beside the Discord bot (without a token it runs on its own anyway)."""
    playground_public: bool = False
    """Serve the playground on a non-loopback HTTP_HOST although it has no login."""

    def __post_init__(self) -> None:
        if not self.providers:  # Settings(provider="relay") in tests and tools: that one alone
            object.__setattr__(self, "providers", (self.provider,))

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
    def get(name: str, default: str = "") -> str:
        return env.get(name, "").strip() or default

    def url(name: str, default: str = "", *, schemes: tuple[str, ...] = ("http", "https")) -> str:
        value = get(name, default).rstrip("/")
        if not value:
            return ""
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ConfigError(
                f"{name} must be a {' or '.join(schemes)} URL like {schemes[0]}://host/..., got {value!r}"
            )
        return value

    def integer(name: str, default: int, *, minimum: int = 0) -> int:
        raw = get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number (>= {minimum}), got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value}")
        return value

    def positive(name: str, default: float) -> float:
        raw = get(name, str(default))
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds (> 0), got {raw!r}") from None
        if not (0 < value < math.inf):
            raise ConfigError(f"{name} must be a number of seconds > 0, got {raw!r}")
        return value

    def boolean(name: str, default: str = "0") -> bool:
        raw = get(name, default).lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be 1/0 (or true/false), got {raw!r}")

    relay_base = url("RELAY_BASE_URL")
    comfyui_url = url("COMFYUI_URL")
    if bool(comfyui_url) != bool(get("COMFYUI_WORKFLOW")):
        raise ConfigError(
            "COMFYUI_URL and COMFYUI_WORKFLOW go together: the server's address (e.g. http://127.0.0.1:8188) "
            "and the path of its API-format workflow JSON"
        )
    providers = _providers(get("PROVIDER").lower(), get("PROVIDER_ORDER").lower(), get, relay_base=relay_base)
    provider = providers[0]
    openai_base = url("OPENAI_BASE_URL", "https://api.openai.com/v1")
    if not openai_base.endswith("/v1"):
        raise ConfigError(f"OPENAI_BASE_URL must end in /v1 (as in the openai SDK), got {openai_base!r}")
    prefix = get("SORA2API_PATH_PREFIX", "/api/v1/sora2api")
    if not prefix.startswith("/"):
        raise ConfigError(f"SORA2API_PATH_PREFIX must start with '/', got {prefix!r}")

    database_url = get("DATABASE_URL", "sqlite:///data/bot.db")
    if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(
            "DATABASE_URL must look like sqlite:///path/to/bot.db or postgresql://user:password@host:5432/db,"
            f" got {database_url.split('@')[-1]!r}"
        )

    guild_raw = get("DISCORD_GUILD_ID")
    guild_id = integer("DISCORD_GUILD_ID", 0, minimum=1) if guild_raw else None

    log_level = get("LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    log_format = get("LOG_FORMAT", "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {log_format!r}")
    http_port = integer("HTTP_PORT", 0, minimum=1) if get("HTTP_PORT") else None
    if http_port is not None and http_port > 65535:
        raise ConfigError(f"HTTP_PORT must be a port number between 1 and 65535, got {http_port}")

    shard_count = integer("SHARD_COUNT", 1, minimum=1) if get("SHARD_COUNT") else None
    shard_ids = _shard_ids(get("SHARD_IDS"), shard_count)

    models_file = get("MODELS_FILE")
    settings = Settings(
        provider=provider,
        providers=providers,
        enabled_models=tuple(dict.fromkeys(m.strip() for m in get("ENABLED_MODELS").split(",") if m.strip())),
        models_file=Path(models_file) if models_file else None,
        default_model=get("DEFAULT_MODEL"),
        fal_key=Secret(get("FAL_KEY")),
        fal_base_url=url("FAL_BASE_URL", "https://queue.fal.run"),
        fal_jwks_url=url("FAL_JWKS_URL", "https://rest.alpha.fal.ai/.well-known/jwks.json"),
        replicate_api_token=Secret(get("REPLICATE_API_TOKEN")),
        replicate_base_url=url("REPLICATE_BASE_URL", "https://api.replicate.com"),
        runwayml_api_secret=Secret(get("RUNWAYML_API_SECRET")),
        runway_base_url=url("RUNWAY_BASE_URL", "https://api.dev.runwayml.com"),
        segmind_api_key=Secret(get("SEGMIND_API_KEY")),
        segmind_base_url=url("SEGMIND_BASE_URL", "https://api.segmind.com"),
        sora2api_api_key=Secret(get("SORA2API_API_KEY")),
        sora2api_base_url=url("SORA2API_BASE_URL", "https://api.sora2api.ai"),
        sora2api_path_prefix=prefix.rstrip("/"),
        relay_api_key=Secret(get("RELAY_API_KEY")),
        relay_base_url=relay_base,
        openai_api_key=Secret(get("OPENAI_API_KEY")),
        openai_base_url=openai_base,
        comfyui_url=comfyui_url,
        comfyui_workflow=Path(get("COMFYUI_WORKFLOW")) if comfyui_url else None,
        comfyui_token=Secret(get("COMFYUI_TOKEN")),
        database_url=database_url,
        data_dir=Path(get("DATA_DIR", "data")),
        discord_token=Secret(get("DISCORD_TOKEN")),
        discord_api_base_url=url("DISCORD_API_BASE_URL"),
        discord_gateway_url=url("DISCORD_GATEWAY_URL", schemes=("ws", "wss")),
        discord_guild_id=guild_id,
        sync_commands=boolean("SYNC_COMMANDS"),
        max_running_jobs=integer("MAX_RUNNING_JOBS", 4, minimum=1),
        max_running_jobs_per_user=integer("MAX_RUNNING_JOBS_PER_USER", 1, minimum=1),
        job_timeout_seconds=float(integer("JOB_TIMEOUT_SECONDS", 1800, minimum=60)),
        max_result_bytes=integer("MAX_RESULT_MB", 512, minimum=1) * 1024 * 1024,
        max_image_bytes=integer("MAX_IMAGE_MB", 10, minimum=1) * 1024 * 1024,
        typical_job_seconds=float(integer("TYPICAL_JOB_SECONDS", 0)) or None,
        poll_cost_seconds=positive("POLL_COST_SECONDS", DEFAULT_POLL_COST),
        lease_seconds=float(integer("LEASE_SECONDS", 60, minimum=2)),
        shard_ids=shard_ids,
        shard_count=shard_count,
        daily_credits=integer("DAILY_CREDITS", 40),
        credits_per_second=integer("CREDITS_PER_SECOND", 1),
        pro_credit_multiplier=integer("PRO_CREDIT_MULTIPLIER", 3, minimum=1),
        allow_private_results=boolean("ALLOW_PRIVATE_RESULTS", "1"),
        allowed_guild_ids=_guild_ids(get("ALLOWED_GUILD_IDS")),
        server_daily_credits=integer("SERVER_DAILY_CREDITS", 0) if get("SERVER_DAILY_CREDITS") else None,
        global_daily_credits=integer("GLOBAL_DAILY_CREDITS", 0) if get("GLOBAL_DAILY_CREDITS") else None,
        max_allowance=integer("MAX_ALLOWANCE", 0) if get("MAX_ALLOWANCE") else None,
        cooldown_seconds=integer("COOLDOWN_SECONDS", 30),
        max_pending_jobs_per_user=integer("MAX_PENDING_JOBS_PER_USER", 2, minimum=1),
        log_level=log_level,
        log_format=log_format,
        http_port=http_port,
        http_host=get("HTTP_HOST", "127.0.0.1"),
        public_base_url=url("PUBLIC_BASE_URL"),
        metrics_token=Secret(get("METRICS_TOKEN")),
        playground=boolean("PLAYGROUND"),
        playground_public=boolean("PLAYGROUND_PUBLIC"),
    )
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


def _guild_ids(raw: str) -> frozenset[int]:
    """``ALLOWED_GUILD_IDS=123,456``: server ids (snowflakes)."""
    try:
        ids = frozenset(int(part) for part in raw.replace(" ", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"ALLOWED_GUILD_IDS must be a comma-separated list of server ids, got {raw!r}") from None
    if any(i <= 0 for i in ids):
        raise ConfigError(f"ALLOWED_GUILD_IDS must hold positive server ids, got {raw!r}")
    return ids


def _providers(forced: str, order_raw: str, get: Callable[[str], str], *, relay_base: str) -> tuple[str, ...]:
    """The usable providers, most preferred first. ``PROVIDER`` forces one (its key must be set);
    otherwise every provider whose key is set, in ``PROVIDER_ORDER``; none: the demo provider."""
    if forced:
        if forced not in PROVIDERS:
            raise ConfigError(f"PROVIDER must be one of {', '.join(PROVIDERS)}, got {forced!r}")
        _require_key(forced, get, relay_base=relay_base)
        return (forced,)
    order = [p.strip() for p in order_raw.split(",") if p.strip()] if order_raw else list(DEFAULT_PROVIDER_ORDER)
    unknown = [p for p in order if p not in PROVIDERS]
    if unknown:
        raise ConfigError(f"PROVIDER_ORDER names unknown providers {', '.join(unknown)}; known: {', '.join(PROVIDERS)}")
    # The providers not named come last, in their usual order: a key that is set is never ignored.
    order += [p for p in DEFAULT_PROVIDER_ORDER if p not in order]
    usable = [p for p in dict.fromkeys(order) if p in _KEY_FOR_PROVIDER and get(_KEY_FOR_PROVIDER[p])]
    for name in usable:
        _require_key(name, get, relay_base=relay_base)
    return tuple(usable) or ("demo",)


def _require_key(provider: str, get: Callable[[str], str], *, relay_base: str) -> None:
    key_name = _KEY_FOR_PROVIDER.get("segmind" if provider == "segmind-sync" else provider)
    if key_name and not get(key_name):
        raise ConfigError(f"{key_name} is required when PROVIDER={provider}")
    if provider == "relay" and not relay_base:
        raise ConfigError("RELAY_BASE_URL is required when PROVIDER=relay (e.g. https://relay.example.com)")


def _shard_ids(raw: str, shard_count: int | None) -> tuple[int, ...] | None:
    """``SHARD_IDS=0,2``: which of ``SHARD_COUNT`` shards this process connects."""
    if not raw:
        return None
    if shard_count is None:
        raise ConfigError("SHARD_IDS needs SHARD_COUNT (the total number of shards across all processes)")
    try:
        ids = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"SHARD_IDS must be a comma-separated list of shard numbers like 0,1, got {raw!r}") from None
    if not ids or ids[0] < 0 or ids[-1] >= shard_count:
        raise ConfigError(f"SHARD_IDS must be numbers from 0 to {shard_count - 1} (SHARD_COUNT - 1), got {raw!r}")
    return ids
