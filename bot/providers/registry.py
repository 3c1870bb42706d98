"""Build the provider named in the settings. The only place that knows every provider class."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bot.config import Settings
from bot.providers.base import VideoProvider
from bot.providers.http import HttpClient, RequestHook


def build_provider(
    settings: Settings, session: aiohttp.ClientSession, *, on_request: RequestHook | None = None
) -> VideoProvider:
    """The configured provider; ``on_request`` hears about each of its HTTP attempts (metrics)."""
    provider = _build(settings, session)
    # Every HTTP provider keeps its client in ``_http``: hooking it here spares each constructor a parameter.
    http = getattr(provider, "_http", None)
    if on_request is not None and isinstance(http, HttpClient):
        http.on_request = on_request
    return provider


def _build(settings: Settings, session: aiohttp.ClientSession) -> VideoProvider:
    name = settings.provider
    if name == "demo":
        from bot.providers.demo import DemoProvider

        return DemoProvider(work_dir=settings.data_dir / "demo")
    if name == "segmind":
        from bot.providers.segmind import SegmindProvider

        return SegmindProvider(session, api_key=settings.segmind_api_key.get(), base_url=settings.segmind_base_url)
    if name == "segmind-sync":
        from bot.providers.segmind_sync import SegmindSyncProvider

        return SegmindSyncProvider(
            session,
            api_key=settings.segmind_api_key.get(),
            base_url=settings.segmind_base_url,
            work_dir=Path(settings.data_dir / "segmind-sync"),
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
