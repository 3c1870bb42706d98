"""The model catalogue: the shipped ``models.toml``, the operator's ``MODELS_FILE`` over it, cut down
to ``ENABLED_MODELS``; and the routing of a model to the configured providers that host it.

Pure apart from reading the TOML files at start-up.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bot.catalogue.spec import Host, ModelSpec
from bot.domain import VideoRequest, one_of, parse_size
from bot.errors import ConfigError, InvalidRequest

GONE_FOR_SECONDS = 6 * 3600.0
"""How long a model a provider said no longer exists stays hidden on that provider."""

_MODEL_KEYS = {
    "name",
    "durations",
    "sizes",
    "hosts",
    "audio",
    "audio_default",
    "image",
    "last_frame",
    "typical_seconds",
    "spread",
    "cost_per_second",
    "pro",
    "unsupported",
    "retired",
}
_HOST_KEYS = {
    "provider",
    "model",
    "image_model",
    "model_by_resolution",
    "image_model_by_resolution",
    "fields",
    "text_fields",
    "image_fields",
    "retired",
}


def load_catalogue(
    models_file: Path | None = None, enabled: Sequence[str] = (), *, shipped: str | None = None
) -> Catalogue:
    """The shipped catalogue with ``models_file``'s entries over it, restricted to ``enabled``.
    ConfigError (one line naming the file and the entry) for anything malformed."""
    text = shipped if shipped is not None else resources.files("bot.catalogue").joinpath("models.toml").read_text()
    raw: dict[str, dict[str, Any]] = dict(_parse(text, "the shipped models.toml").get("models", {}))
    if models_file is not None:
        try:
            extra_text = models_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"MODELS_FILE {str(models_file)!r} cannot be read: {exc.strerror}") from None
        for model_id, entry in _parse(extra_text, f"MODELS_FILE {str(models_file)!r}").get("models", {}).items():
            raw[model_id] = {**raw.get(model_id, {}), **entry}
    models = {model_id: _model(model_id, entry) for model_id, entry in raw.items()}
    if enabled:
        unknown = [m for m in enabled if m not in models]
        if unknown:
            raise ConfigError(f"ENABLED_MODELS names unknown models {', '.join(unknown)}; known: {', '.join(models)}")
        models = {m: models[m] for m in enabled}
    return Catalogue(models)


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None


def _model(model_id: str, entry: Mapping[str, Any]) -> ModelSpec:
    where = f"model {model_id!r}"
    unknown = set(entry) - _MODEL_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    try:
        durations = tuple(int(s) for s in entry["durations"])
        sizes = tuple(str(s) for s in entry["sizes"])
        for size in sizes:
            width, height = parse_size(size)
            if width <= 0 or height <= 0:
                raise ValueError(size)
        hosts = tuple(_host(where, h) for h in entry.get("hosts", ()))
        cost = entry.get("cost_per_second", {})
        cost_map = {"base": float(cost)} if isinstance(cost, int | float) else {k: float(v) for k, v in cost.items()}
        return ModelSpec(
            id=model_id,
            name=str(entry.get("name", model_id)),
            durations=durations,
            sizes=sizes,
            hosts=hosts,
            audio=bool(entry.get("audio", False)),
            audio_default=bool(entry.get("audio_default", False)),
            image=bool(entry.get("image", True)),
            last_frame=bool(entry.get("last_frame", False)),
            typical_seconds=float(entry.get("typical_seconds", 180.0)),
            spread=float(entry.get("spread", 0.35)),
            cost_per_second=cost_map,
            pro=bool(entry.get("pro", False)),
            unsupported=tuple(str(u) for u in entry.get("unsupported", ())),
            retired=bool(entry.get("retired", False)),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: malformed value ({exc})") from None


def _host(where: str, entry: Mapping[str, Any]) -> Host:
    unknown = set(entry) - _HOST_KEYS
    if unknown:
        raise ConfigError(f"{where}: host has unknown keys {', '.join(sorted(unknown))}")
    if not entry.get("provider") or not entry.get("model"):
        raise ConfigError(f"{where}: every host needs provider and model")
    return Host(
        provider=str(entry["provider"]),
        model=str(entry["model"]),
        image_model=entry.get("image_model"),
        model_by_resolution=dict(entry.get("model_by_resolution", {})),
        image_model_by_resolution=dict(entry.get("image_model_by_resolution", {})),
        fields=dict(entry.get("fields", {})),
        text_fields=dict(entry.get("text_fields", {})),
        image_fields=dict(entry.get("image_fields", {})),
        retired=bool(entry.get("retired", False)),
    )


@dataclass
class Catalogue:
    """Every model the bot knows, in the catalogue's order."""

    models: Mapping[str, ModelSpec]

    def get(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)

    def hosted_by(self, provider: str) -> bool:
        return any(h.provider == provider for m in self.models.values() for h in m.hosts)

    def hosts_for(self, provider: str) -> dict[str, Host]:
        """The models ``provider`` hosts, with how it names them: what a provider is built with."""
        return {m.id: h for m in self.models.values() for h in m.hosts if h.provider == provider}


@dataclass
class Router:
    """Which configured provider runs which model, in ``order``; and the models a provider has said
    no longer exist (hidden on it for a while)."""

    catalogue: Catalogue
    order: tuple[str, ...]
    """The configured providers, most preferred first (PROVIDER_ORDER filtered to those with a key)."""
    default_model: str = ""
    universal: frozenset[str] = frozenset({"demo"})
    """Providers that stand in for every model (the demo provider, test doubles)."""
    clock: Any = field(default=time.time, repr=False)
    _gone: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    @classmethod
    def for_providers(
        cls, names: Iterable[str], catalogue: Catalogue | None = None, *, default_model: str = ""
    ) -> Router:
        """A router over ``names`` in that order; a provider the catalogue does not list (a test
        double) stands in for every model, like the demo provider."""
        catalogue = catalogue if catalogue is not None else load_catalogue()
        order = tuple(names)
        universal = frozenset({"demo", *(n for n in order if not catalogue.hosted_by(n))})
        return cls(catalogue, order, default_model=default_model, universal=universal)

    def hosts(self, model_id: str) -> list[Host]:
        """The providers that can run ``model_id`` now, in order (``universal`` ones run any model)."""
        spec = self.catalogue.get(model_id)
        if spec is None:
            return []
        now = self.clock()
        by_provider = {h.provider: h for h in spec.hosts if not h.retired}
        found: list[Host] = []
        for provider in self.order:
            host = by_provider.get(provider)
            if host is None and provider in self.universal:
                host = Host(provider=provider, model=model_id)
            if host is not None and self._gone.get((provider, model_id), 0.0) <= now:
                found.append(host)
        return found

    def available(self) -> list[ModelSpec]:
        """The models some configured provider can run, in catalogue order."""
        return [m for m in self.catalogue.models.values() if self.hosts(m.id)]

    def default(self) -> str:
        """``DEFAULT_MODEL`` when it can run; else the first model still live upstream that can (on a
        bot with only the demo provider, the demo model)."""
        available = self.available()
        ids = [m.id for m in available]
        if self.default_model in ids:
            return self.default_model
        if set(self.order) <= self.universal and "demo" in ids:
            return "demo"
        live = [m.id for m in available if not m.retired and m.id != "demo"]
        return (live or ids or [self.default_model or "demo"])[0]

    def spec(self, model_id: str) -> ModelSpec:
        """The model's entry, or InvalidRequest naming the models that can run."""
        spec = self.catalogue.get(model_id)
        if spec is None or not self.hosts(model_id):
            names = [m.id for m in self.available()]
            reason = "is not available on this bot" if spec is None else "cannot be run right now"
            raise InvalidRequest(
                f"Model {_shown_id(model_id)} {reason}; choose {one_of(names) if names else 'another model later'}."
            )
        return spec

    def validate(self, request: VideoRequest) -> ModelSpec:
        """The request's model entry after checking duration, size, audio and image against it."""
        spec = self.spec(request.model)
        spec.validate(request)
        return spec

    def first_host(self, model_id: str) -> Host:
        hosts = self.hosts(model_id)
        if not hosts:
            raise InvalidRequest(f"Model {_shown_id(model_id)} cannot be run right now; please choose another.")
        return hosts[0]

    def next_host(self, model_id: str, tried: Iterable[str]) -> Host | None:
        """The next provider to try for ``model_id`` after those in ``tried``."""
        done = set(tried)
        return next((h for h in self.hosts(model_id) if h.provider not in done), None)

    def mark_gone(self, provider: str, model_id: str) -> None:
        """``provider`` said ``model_id`` no longer exists: stop offering it there for a while."""
        self._gone[(provider, model_id)] = self.clock() + GONE_FOR_SECONDS


def _shown_id(value: str) -> str:
    return repr(value[:40]) if not value.isprintable() or len(value) > 40 else value


def markdown_table(catalogue: Catalogue) -> str:
    """The README's model table (a test keeps the README equal to this)."""
    lines = [
        "| Model id | Name | Providers | Durations (s) | Sizes | Sound | Image | Credits per second |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in catalogue.models.values():
        hosts = ", ".join(f"`{h.provider}`" for h in spec.hosts) or "any (made locally)"
        sound = ("yes (on by default)" if spec.audio_default else "yes") if spec.audio else "no"
        if spec.cost_per_second:
            cost = ", ".join(f"{_cost_key(k)} {v:g}" for k, v in spec.cost_per_second.items())
        else:
            cost = "`CREDITS_PER_SECOND`" + (" × `PRO_CREDIT_MULTIPLIER`" if spec.pro else "")
        image = "first frame" if spec.image else "no"
        lines.append(
            f"| `{spec.id}` | {spec.label} | {hosts} | {', '.join(map(str, spec.durations))} | "
            f"{', '.join(spec.sizes)} | {sound} | {image} | {cost} |"
        )
    return "\n".join(lines)


def _cost_key(key: str) -> str:
    return {"base": "standard", "audio": "with sound"}.get(key, key.replace("+audio", " with sound"))
