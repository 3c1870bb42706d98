"""One model's entry in the catalogue, and how a host turns a neutral request into its own fields.

Pure data and pure functions: no I/O, no Discord, no HTTP.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.domain import VideoRequest, one_of, parse_size, shown_input
from bot.errors import InvalidRequest

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def aspect_of(size: str) -> str:
    """``"1280x720"`` -> ``"16:9"``: the size reduced by its greatest common divisor."""
    width, height = parse_size(size)
    divisor = math.gcd(width, height) or 1
    return f"{width // divisor}:{height // divisor}"


def resolution_of(size: str) -> str:
    """``"1920x1080"`` -> ``"1080p"`` (the short side, as the APIs name resolutions)."""
    width, height = parse_size(size)
    return f"{min(width, height)}p"


@dataclass(frozen=True)
class Host:
    """Where a model runs: a provider, its id for the model, and how the request body is spelled."""

    provider: str
    model: str
    image_model: str | None = None
    model_by_resolution: Mapping[str, str] = field(default_factory=dict)
    image_model_by_resolution: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    text_fields: Mapping[str, Any] = field(default_factory=dict)
    image_fields: Mapping[str, Any] = field(default_factory=dict)
    retired: bool = False

    def model_for(self, request: VideoRequest) -> str:
        """The provider's model id for this request (the image-to-video one when there is an image)."""
        resolution = resolution_of(request.size)
        if request.image is not None:
            return self.image_model_by_resolution.get(resolution) or self.image_model or self.model
        return self.model_by_resolution.get(resolution) or self.model

    def inputs(self, request: VideoRequest, *, image: str | None = None, audio: bool | None = None) -> dict[str, Any]:
        """The request body's fields. ``image`` is the reference as this provider takes it (a URL or a
        data URI); ``audio`` whether to make sound (None: the field is left out)."""
        width, height = parse_size(request.size)
        values: dict[str, Any] = {
            "prompt": request.prompt,
            "seconds": int(request.seconds),
            "seconds_text": str(int(request.seconds)),
            "aspect": aspect_of(request.size),
            "resolution": resolution_of(request.size),
            "audio": audio,
            "image": image,
            "width": width,
            "height": height,
            "ratio": f"{width}:{height}",
            "size": request.size,
        }
        chosen = {**self.fields, **(self.image_fields if request.image is not None else self.text_fields)}
        body: dict[str, Any] = {}
        for name, template in chosen.items():
            value = _fill(template, values)
            if value is not None:
                body[name] = value
        return body


def _fill(template: Any, values: Mapping[str, Any]) -> Any:
    """A literal stays as it is; ``"{x}"`` becomes the value itself (a number stays a number);
    ``"{x}s"`` becomes text. None when a value it needs is missing."""
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        return values.get(whole[1])
    missing = False

    def sub(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match[1])
        if value is None:
            missing = True
            return ""
        return str(value)

    text = _PLACEHOLDER.sub(sub, template)
    return None if missing else text


@dataclass(frozen=True)
class ModelSpec:
    """What one model can do, what it costs and who hosts it. Everything that validates, prices or
    routes a request reads it; nothing else hard-codes durations, sizes or prices."""

    id: str
    name: str
    durations: tuple[int, ...]
    sizes: tuple[str, ...]
    hosts: tuple[Host, ...] = ()
    audio: bool = False
    audio_default: bool = False
    image: bool = True
    last_frame: bool = False
    typical_seconds: float = 180.0
    spread: float = 0.35
    cost_per_second: Mapping[str, float] = field(default_factory=dict)
    """Empty: the bot's CREDITS_PER_SECOND (times PRO_CREDIT_MULTIPLIER for a ``pro`` model)."""
    pro: bool = False
    unsupported: tuple[str, ...] = ()
    """Combinations refused although each part is allowed: ``"10s@1080p"``."""
    retired: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} (retired upstream)" if self.retired else self.name

    def audio_for(self, request: VideoRequest) -> bool | None:
        """Whether this request makes sound: the member's choice, else the model's default."""
        if not self.audio:
            return None
        return self.audio_default if request.audio is None else request.audio

    def expected_seconds(self, seconds: int) -> float:
        """Typical generation time for a clip of ``seconds`` (the figure is for an 8 s clip)."""
        return self.typical_seconds * (0.6 + 0.05 * seconds)

    def rate(self, request: VideoRequest, *, default_rate: float, pro_multiplier: float) -> float:
        """Credits per second of video for this request."""
        if not self.cost_per_second:
            return default_rate * (pro_multiplier if self.pro else 1)
        resolution = resolution_of(request.size)
        sound = bool(self.audio_for(request))
        keys = ([f"{resolution}+audio", "audio"] if sound else []) + [resolution, "base"]
        for key in keys:
            if key in self.cost_per_second:
                return float(self.cost_per_second[key])
        return default_rate

    def cost(self, request: VideoRequest, *, default_rate: float, pro_multiplier: float) -> int:
        rate = self.rate(request, default_rate=default_rate, pro_multiplier=pro_multiplier)
        return math.ceil(request.seconds * rate)

    def validate(self, request: VideoRequest) -> None:
        """Refuse, naming what this model allows, a duration, size, audio or image it cannot do."""
        if request.size not in self.sizes:
            raise InvalidRequest(
                f"Size {shown_input(request.size)} is not available for {self.id}; choose {one_of(self.sizes)}."
            )
        if request.seconds not in self.durations:
            choices = one_of([f"{s} s" for s in self.durations])
            raise InvalidRequest(f"{request.seconds} s is not available for {self.id}; choose {choices}.")
        combo = f"{request.seconds}s@{resolution_of(request.size)}"
        if combo in self.unsupported:
            raise InvalidRequest(
                f"{self.id} cannot make {request.seconds} s at {resolution_of(request.size)}; "
                "choose a shorter clip or a smaller size."
            )
        if request.audio and not self.audio:
            raise InvalidRequest(f"{self.id} makes silent videos; leave out audio (or choose another model).")
        if request.image is not None and not self.image:
            raise InvalidRequest(f"{self.id} cannot start from an image; leave out the image or choose another model.")
