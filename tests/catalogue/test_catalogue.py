"""The model catalogue: loading and overriding it, validation that names the allowed values, prices,
field mapping per host, and routing to the configured providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.catalogue import Router, load_catalogue
from bot.catalogue.spec import aspect_of, resolution_of
from bot.domain import ReferenceImage, VideoRequest
from bot.errors import ConfigError, InvalidRequest

REQUIRED = ("veo-3.1", "veo-3.1-fast", "kling-3-pro", "seedance-2", "hailuo-2.3", "sora-2", "sora-2-pro", "demo")
IMAGE = ReferenceImage(data=b"png", url="https://cdn.example/ref.png")


def test_shipped_catalogue_has_the_required_models() -> None:
    catalogue = load_catalogue()
    assert set(REQUIRED) <= set(catalogue.models)
    assert catalogue.models["sora-2"].retired and catalogue.models["sora-2-pro"].retired
    assert not catalogue.models["veo-3.1"].retired


@pytest.mark.parametrize(
    ("size", "aspect", "resolution"),
    [
        ("1280x720", "16:9", "720p"),
        ("720x1280", "9:16", "720p"),
        ("1920x1080", "16:9", "1080p"),
        ("1080x1920", "9:16", "1080p"),
        ("960x960", "1:1", "960p"),
    ],
)
def test_sizes_map_to_aspect_and_resolution(size: str, aspect: str, resolution: str) -> None:
    assert (aspect_of(size), resolution_of(size)) == (aspect, resolution)


def _fal(model: str, request: VideoRequest) -> tuple[str, dict[str, object]]:
    catalogue = load_catalogue()
    host = catalogue.hosts_for("fal")[model]
    image = request.image.url if request.image else None
    return host.model_for(request), host.inputs(request, image=image, audio=catalogue.models[model].audio_for(request))


def test_fal_veo_fields_with_and_without_image() -> None:
    endpoint, body = _fal("veo-3.1", VideoRequest("a cat", 8, "1080x1920", "veo-3.1"))
    assert endpoint == "fal-ai/veo3.1"
    assert body == {
        "prompt": "a cat",
        "duration": "8s",
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "generate_audio": True,
    }
    endpoint, body = _fal(
        "veo-3.1-fast", VideoRequest("a cat", 4, "1280x720", "veo-3.1-fast", image=IMAGE, audio=False)
    )
    assert endpoint == "fal-ai/veo3.1/fast/image-to-video"
    assert body["image_url"] == IMAGE.url and body["duration"] == "4s" and body["generate_audio"] is False


def test_fal_kling_sends_aspect_only_without_image_and_duration_as_text() -> None:
    endpoint, body = _fal("kling-3-pro", VideoRequest("x", 10, "960x960", "kling-3-pro"))
    assert endpoint == "fal-ai/kling-video/v3/pro/text-to-video"
    assert body == {"prompt": "x", "duration": "10", "generate_audio": True, "aspect_ratio": "1:1"}
    endpoint, body = _fal("kling-3-pro", VideoRequest("x", 5, "1280x720", "kling-3-pro", image=IMAGE))
    assert endpoint == "fal-ai/kling-video/v3/pro/image-to-video"
    assert body == {"prompt": "x", "duration": "5", "generate_audio": True, "start_image_url": IMAGE.url}


def test_fal_hailuo_uses_the_pro_endpoint_at_1080p_and_has_no_audio_field() -> None:
    endpoint, body = _fal("hailuo-2.3", VideoRequest("x", 6, "1920x1080", "hailuo-2.3"))
    assert endpoint == "fal-ai/minimax/hailuo-2.3/pro/text-to-video"
    assert body == {"prompt": "x", "duration": "6", "prompt_optimizer": True}
    endpoint, _ = _fal("hailuo-2.3", VideoRequest("x", 10, "1280x720", "hailuo-2.3", image=IMAGE))
    assert endpoint == "fal-ai/minimax/hailuo-2.3/standard/image-to-video"


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (VideoRequest("x", 8, "1280x720", "kling-3-pro"), "8 s is not available for kling-3-pro; choose 5 s or 10 s."),
        (
            VideoRequest("x", 8, "960x960", "veo-3.1"),
            "Size 960x960 is not available for veo-3.1; choose 1280x720, 720x1280, 1920x1080 or 1080x1920.",
        ),
        (VideoRequest("x", 10, "1920x1080", "hailuo-2.3"), "cannot make 10 s at 1080p"),
        (VideoRequest("x", 6, "1280x720", "hailuo-2.3", audio=True), "makes silent videos"),
        (VideoRequest("x", 4, "1280x720", "sora-3"), "Model sora-3 is not available on this bot; choose veo-3.1-fast"),
    ],
)
def test_refusals_name_what_the_model_allows(request_: VideoRequest, needle: str) -> None:
    router = Router.for_providers(["fal", "demo"])
    with pytest.raises(InvalidRequest) as info:
        router.validate(request_)
    assert needle in info.value.user_message


def test_costs_follow_the_price_table() -> None:
    catalogue = load_catalogue()
    veo = catalogue.models["veo-3.1"]
    assert veo.cost(VideoRequest("x", 8, "1280x720", "veo-3.1"), default_rate=1, pro_multiplier=3) == 64
    assert veo.cost(VideoRequest("x", 8, "1280x720", "veo-3.1", audio=False), default_rate=1, pro_multiplier=3) == 32
    seedance = catalogue.models["seedance-2"]
    assert seedance.cost(VideoRequest("x", 5, "1920x1080", "seedance-2"), default_rate=1, pro_multiplier=3) == 30
    # No price in the catalogue: CREDITS_PER_SECOND, times the pro multiplier for a pro model.
    assert catalogue.models["sora-2"].cost(VideoRequest("x", 8, model="sora-2"), default_rate=2, pro_multiplier=3) == 16
    pro = catalogue.models["sora-2-pro"]
    assert pro.cost(VideoRequest("x", 8, model="sora-2-pro"), default_rate=1, pro_multiplier=3) == 24


def test_routing_follows_the_provider_order_and_hides_gone_models() -> None:
    now = [1000.0]
    router = Router(load_catalogue(), ("segmind", "fal"), clock=lambda: now[0])
    assert [h.provider for h in router.hosts("veo-3.1-fast")] == ["segmind", "fal"]
    assert [h.provider for h in router.hosts("kling-3-pro")] == ["fal"]
    assert router.next_host("veo-3.1-fast", ["segmind"]).provider == "fal"  # type: ignore[union-attr]
    router.mark_gone("fal", "kling-3-pro")
    assert "kling-3-pro" not in [m.id for m in router.available()]
    with pytest.raises(InvalidRequest, match="cannot be run right now"):
        router.spec("kling-3-pro")
    now[0] += 7 * 3600
    assert "kling-3-pro" in [m.id for m in router.available()]


def test_default_model() -> None:
    assert Router.for_providers(["demo"]).default() == "demo"
    assert Router.for_providers(["fal"]).default() == "veo-3.1-fast"
    assert Router.for_providers(["relay"]).default() == "sora-2"  # only retired models run: still usable
    assert Router.for_providers(["fal"], default_model="kling-3-pro").default() == "kling-3-pro"
    assert Router.for_providers(["relay"], default_model="kling-3-pro").default() == "sora-2"


def test_models_file_overrides_and_adds(tmp_path: Path) -> None:
    extra = tmp_path / "models.toml"
    extra.write_text(
        """
[models."veo-3.1"]
cost_per_second = 10

[models."wan-local"]
name = "Wan on our GPU"
durations = [5]
sizes = ["832x480"]
cost_per_second = 0
[[models."wan-local".hosts]]
provider = "comfyui"
model = "wan"
"""
    )
    catalogue = load_catalogue(extra, ["veo-3.1", "wan-local"])
    assert list(catalogue.models) == ["veo-3.1", "wan-local"]
    assert catalogue.models["veo-3.1"].cost_per_second == {"base": 10.0}
    assert catalogue.models["veo-3.1"].durations == (4, 6, 8)  # the rest of the shipped entry stays
    wan = catalogue.models["wan-local"]
    assert wan.cost(VideoRequest("x", 5, "832x480", "wan-local"), default_rate=1, pro_multiplier=3) == 0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[models.x]\nname = "x"\nsizes = ["1x1"]', "model 'x': missing 'durations'"),
        ('[models.x]\ndurations = [4]\nsizes = ["big"]', "model 'x': malformed value"),
        ('[models.x]\ndurations = [4]\nsizes = ["1x1"]\ncolour = "red"', "unknown keys colour"),
        ("[models.x", "is not valid TOML"),
    ],
)
def test_malformed_models_file_is_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_catalogue(path)


def test_enabled_models_must_exist() -> None:
    with pytest.raises(ConfigError, match="ENABLED_MODELS names unknown models nope"):
        load_catalogue(None, ["veo-3.1", "nope"])
