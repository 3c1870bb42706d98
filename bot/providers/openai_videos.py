"""The OpenAI-style ``/v1/videos`` API (the original Sora 2 API, kept by many relays).

Wire format (PROVIDERS.md §5): ``POST {base}/videos`` as multipart/form-data returns a video
object ``{id, status, progress, ...}``; ``GET {base}/videos/{id}`` polls it; the bytes come from
``GET {base}/videos/{id}/content?variant=video`` (the API itself, so with the bearer key);
``DELETE {base}/videos/{id}`` cancels/deletes; ``POST {base}/videos/{id}/remix`` makes a variant.
``base_url`` ends in ``/v1`` as in the openai SDK.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from bot.config import Settings
from bot.domain import ALL_SIZES, LANDSCAPE, PORTRAIT, JobState, JobStatus, VideoRequest, parse_size
from bot.errors import InvalidRequest, MediaError, ProviderError, redact
from bot.providers.base import Capabilities
from bot.providers.failures import classify_failure
from bot.providers.http import HttpClient, Response, parse_poll_after

log = logging.getLogger(__name__)

PROVIDER_LABEL = "the OpenAI-style API"

CAPABILITIES = Capabilities(
    sizes={"sora-2": (LANDSCAPE, PORTRAIT), "sora-2-pro": ALL_SIZES},
    seconds={"sora-2": (4, 8, 12), "sora-2-pro": (4, 8, 12)},
    image_mode="bytes",
    image_must_match_size=True,
    can_cancel=True,
    can_remix=True,
    reports_progress=True,
)

_STATES: Mapping[str, JobState] = {
    "queued": JobState.QUEUED,
    "in_progress": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
}


class OpenAIVideosProvider:
    """Sora 2 through ``/v1/videos``: multipart submit, polling with progress, authenticated download."""

    name = "openai"
    capabilities = CAPABILITIES

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str = Settings.openai_base_url,
        retry_base_delay: float = 0.5,
        max_retries: int = 4,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._secrets = (api_key,)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = HttpClient(
            session,
            provider="openai",
            secrets=self._secrets,
            base_delay=retry_base_delay,
            max_retries=max_retries,
            base_url=self._base,
        )

    def __repr__(self) -> str:
        # Never let the key reach a log line through repr().
        return f"OpenAIVideosProvider(base_url={self._base!r})"

    # --- VideoProvider ---------------------------------------------------------------------

    def validate(self, request: VideoRequest) -> None:
        self.capabilities.validate(request, PROVIDER_LABEL)
        if request.image is None:
            return
        # The API refuses ("Inpaint image must match the requested width and height") a reference
        # whose pixel size differs from ``size``; say so before spending anything. Reading the
        # size only parses the header, so this is cheap enough for the event loop.
        try:
            with Image.open(io.BytesIO(request.image.data)) as image:
                actual = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise MediaError("The reference image could not be read as an image.", f"openai: {exc}") from exc
        width, height = parse_size(request.size)
        if actual != (width, height):
            raise InvalidRequest(
                f"The reference image must be exactly {width}x{height} pixels to make a {request.size} video "
                f"with {PROVIDER_LABEL}; it is {actual[0]}x{actual[1]}."
            )

    async def submit(self, request: VideoRequest) -> str:
        self.validate(request)

        def form() -> aiohttp.FormData:
            # A fresh body per attempt: a multipart payload is consumed by sending it.
            data = aiohttp.FormData(default_to_multipart=True)
            data.add_field("prompt", request.prompt)
            data.add_field("model", request.model)
            data.add_field("seconds", str(request.seconds))
            data.add_field("size", request.size)
            if request.image is not None:
                data.add_field(
                    "input_reference",
                    request.image.data,
                    filename=request.image.filename,
                    content_type=request.image.content_type,
                )
            return data

        resp = await self._create("POST", f"{self._base}/videos", data=form)
        video_id = self._video_id(resp.body, "create")
        log.info("openai: submitted %s (%s, %s, %s s)", video_id, request.model, request.size, request.seconds)
        return video_id

    async def status(self, job_id: str) -> JobStatus:
        resp = await self._http.request("GET", f"{self._base}/videos/{job_id}", headers=self._headers)
        body = resp.body if isinstance(resp.body, dict) else {}
        poll_after = parse_poll_after(resp.headers)
        raw_status = str(body.get("status", ""))
        state = _STATES.get(raw_status)
        if state is None:
            # A relay with its own vocabulary: keep polling rather than give up on the job.
            log.warning("openai: video %s has unknown status %r; treating it as running", job_id, raw_status)
            state = JobState.RUNNING
        if state is JobState.SUCCEEDED:
            return JobStatus(
                state,
                progress=100.0,
                result_url=None,  # the content is fetched through the API, with our key
                expires_at=_number(body.get("expires_at")),
                poll_after=poll_after,
            )
        if state is JobState.FAILED:
            return JobStatus(state, progress=_progress(body), error=self._failure(body), poll_after=poll_after)
        return JobStatus(state, progress=_progress(body), poll_after=poll_after)

    async def download(self, job_id: str, status: JobStatus, dest: Path, max_bytes: int) -> Path:
        # ``variant`` sits in the URL: HttpClient.download takes no params, and logs strip queries.
        url = f"{self._base}/videos/{job_id}/content?variant=video"
        return await self._http.download(url, dest, max_bytes=max_bytes, headers=self._headers)

    async def cancel(self, job_id: str) -> bool:
        resp = await self._http.request(
            "DELETE", f"{self._base}/videos/{job_id}", headers=self._headers, ok_statuses=(404,)
        )
        if resp.status == 404:
            log.info("openai: cancel %s: no such video", job_id)
            return False
        log.info("openai: cancelled %s", job_id)
        return True

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    # --- extras ----------------------------------------------------------------------------

    async def remix(self, job_id: str, prompt: str) -> str:
        """Start a remix of a finished video with a new prompt; returns the new video's id."""
        resp = await self._create("POST", f"{self._base}/videos/{job_id}/remix", json_body={"prompt": prompt})
        video_id = self._video_id(resp.body, "remix")
        log.info("openai: remix of %s submitted as %s", job_id, video_id)
        return video_id

    # --- helpers ---------------------------------------------------------------------------

    async def _create(
        self, method: str, url: str, *, data: Callable[[], aiohttp.FormData] | None = None, json_body: Any = None
    ) -> Response:
        """Send a job-creating request; only "not taken" answers are re-sent (HttpClient.create)."""
        return await self._http.create(method, url, headers=self._headers, data=data, json_body=json_body)

    def _video_id(self, body: Any, what: str) -> str:
        if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
            return body["id"]
        shown = redact(str(body)[:300], self._secrets)
        raise ProviderError(f"openai: {what} answer carries no video id: {shown}")

    def _failure(self, body: Mapping[str, Any]) -> ProviderError:
        error = body.get("error")
        message, code = "no reason given", None
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = error.get("code")
        elif isinstance(error, str) and error:
            message = error
        return classify_failure(
            redact(message, self._secrets), provider="openai", code=str(code) if code is not None else None
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _progress(body: Mapping[str, Any]) -> float | None:
    value = _number(body.get("progress"))
    return None if value is None else max(0.0, min(100.0, value))
