"""Build the configured providers. The only place that knows every provider class."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bot.catalogue import Catalogue, load_catalogue
from bot.config import Settings
from bot.providers.base import VideoProvider
from bot.providers.http import HttpClient, RequestHook


def build_providers(
    settings: Settings,
    session: aiohttp.ClientSession,
    catalogue: Catalogue,
    *,
    on_request: RequestHook | None = None,
) -> dict[str, VideoProvider]:
    """Every usable provider (``settings.providers``, in order of preference), by name.
    ``on_request`` hears about each of their HTTP attempts (metrics)."""
    providers: dict[str, VideoProvider] = {}
    for name in settings.providers:
        provider = build_provider(name, settings, session, catalogue)
        # Every HTTP provider keeps its client in ``_http``: hooking it here spares each constructor a parameter.
        http = getattr(provider, "_http", None)
        if on_request is not None and isinstance(http, HttpClient):
            http.on_request = on_request
        providers[name] = provider
    return providers


def check_setup(settings: Settings) -> None:
    """Refuse at start-up, with one ConfigError line, what would only fail once connected: a malformed
    catalogue, or a provider whose own files do not fit it (ComfyUI's workflows, its models)."""
    catalogue = load_catalogue(settings.models_file, settings.enabled_models)
    if "comfyui" in settings.providers and settings.comfyui_workflow is not None:
        from bot.providers.comfyui import load_workflows

        load_workflows(settings.comfyui_workflow, catalogue.hosts_for("comfyui"))


def build_provider(
    name: str, settings: Settings, session: aiohttp.ClientSession, catalogue: Catalogue
) -> VideoProvider:
    if name == "demo":
        from bot.providers.demo import DemoProvider

        return DemoProvider(work_dir=settings.data_dir / "demo", hosts=catalogue.hosts_for("demo"))
    if name == "fal":
        from bot.providers.fal import FalProvider

        return FalProvider(
            session,
            api_key=settings.fal_key.get(),
            base_url=settings.fal_base_url,
            jwks_url=settings.fal_jwks_url,
            hosts=catalogue.hosts_for("fal"),
            specs=catalogue.models,
        )
    if name == "replicate":
        from bot.providers.replicate import ReplicateProvider

        return ReplicateProvider(
            session,
            api_token=settings.replicate_api_token.get(),
            base_url=settings.replicate_base_url,
            hosts=catalogue.hosts_for("replicate"),
            specs=catalogue.models,
        )
    if name == "runway":
        from bot.providers.runway import RunwayProvider

        return RunwayProvider(
            session,
            api_secret=settings.runwayml_api_secret.get(),
            base_url=settings.runway_base_url,
            hosts=catalogue.hosts_for("runway"),
            specs=catalogue.models,
        )
    if name == "segmind":
        from bot.providers.segmind import SegmindProvider

        return SegmindProvider(
            session,
            api_key=settings.segmind_api_key.get(),
            base_url=settings.segmind_base_url,
            hosts=catalogue.hosts_for("segmind"),
            specs=catalogue.models,
        )
    if name == "comfyui":
        from bot.providers.comfyui import ComfyUIProvider, load_client_id

        assert settings.comfyui_workflow is not None  # noqa: S101 - config.py requires it with COMFYUI_URL
        return ComfyUIProvider(
            session,
            base_url=settings.comfyui_url,
            workflow=settings.comfyui_workflow,
            hosts=catalogue.hosts_for("comfyui"),
            specs=catalogue.models,
            client_id=load_client_id(settings.data_dir / "comfyui-client-id"),
            token=settings.comfyui_token.get(),
        )
    if name == "segmind-sync":
        from bot.providers.segmind_sync import SegmindSyncProvider

        return SegmindSyncProvider(
            session,
            api_key=settings.segmind_api_key.get(),
            base_url=settings.segmind_base_url,
            work_dir=Path(settings.data_dir / "segmind-sync"),
            hosts=catalogue.hosts_for("segmind-sync"),
            specs=catalogue.models,
        )
    if name == "sora2api":
        from bot.providers.sora2api import Sora2ApiProvider

        return Sora2ApiProvider(
            session,
            api_key=settings.sora2api_api_key.get(),
            base_url=settings.sora2api_base_url,
            path_prefix=settings.sora2api_path_prefix,
        )
    if name == "relay":
        from bot.providers.relay import RelayProvider

        return RelayProvider(session, api_key=settings.relay_api_key.get(), base_url=settings.relay_base_url)
    if name == "openai":
        from bot.providers.openai_videos import OpenAIVideosProvider

        return OpenAIVideosProvider(session, api_key=settings.openai_api_key.get(), base_url=settings.openai_base_url)
    raise ValueError(f"unknown provider {name!r}")  # config.py already refuses this
