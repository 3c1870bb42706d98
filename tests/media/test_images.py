"""bot.media.images on real images made with Pillow: refusals, fitting, orientation, colour modes, privacy."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.errors import InvalidRequest, MediaError
from bot.media.images import (
    MAX_PIXELS,
    ImageInfo,
    check_declared,
    fit_image,
    prepare_reference,
    sniff_image,
)

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 60), (30, 60, 220)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def open_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 24) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC recomputed)."""
    data = bytearray(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --- sniffing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_sniff_accepts_the_three_formats(fmt: str, content_type: str) -> None:
    data = encode(Image.new("RGB", (64, 48), BLUE), fmt)
    assert sniff_image(data) == ImageInfo(fmt, 64, 48, content_type)


def test_sniff_refuses_a_text_file_whatever_its_name() -> None:
    with pytest.raises(MediaError) as err:
        sniff_image(b"this is a text file called holiday.png\n")
    assert err.value.user_message == "That attachment is not an image (PNG, JPEG or WebP)."
    assert isinstance(err.value, InvalidRequest)


def test_sniff_refuses_empty_bytes() -> None:
    with pytest.raises(MediaError):
        sniff_image(b"")


def test_sniff_refuses_gif_by_name() -> None:
    data = encode(Image.new("P", (16, 16)), "GIF")
    with pytest.raises(MediaError) as err:
        sniff_image(data)
    assert "GIF images are not supported" in err.value.user_message


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_sniff_refuses_animated_png_and_webp(fmt: str) -> None:
    first, *rest = _frames()
    data = encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)
    with pytest.raises(MediaError) as err:
        sniff_image(data)
    assert "Animated images cannot be used" in err.value.user_message
    assert "3 frames" in err.value.detail


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_sniff_refuses_a_truncated_image(fmt: str) -> None:
    data = encode(Image.effect_noise((128, 128), 60).convert("RGB"), fmt)
    with pytest.raises(MediaError) as err:
        sniff_image(data[: len(data) // 2])
    assert "damaged or incomplete" in err.value.user_message


def test_sniff_refuses_a_png_with_a_corrupt_chunk() -> None:
    data = bytearray(encode(Image.effect_noise((64, 64), 60).convert("RGB"), "PNG"))
    data[60:70] = b"\x00" * 10  # inside the IDAT stream
    with pytest.raises(MediaError):
        sniff_image(bytes(data))


@pytest.mark.parametrize("side", [40_000, 30_000, 7_000])
def test_decompression_bomb_is_refused_from_the_header(side: int) -> None:
    """7000² is over our 40 MP cap but under Pillow's own limit; the others trip Pillow's bomb error."""
    data = png_with_declared_size(side, side)
    assert len(data) < 100
    started = time.perf_counter()
    with pytest.raises(MediaError) as err:
        sniff_image(data)
    assert time.perf_counter() - started < 0.5  # nothing was allocated or decoded
    assert "too many pixels" in err.value.user_message
    with pytest.raises(MediaError):
        fit_image(data, 1280, 720)


def test_max_pixels_is_a_parameter() -> None:
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    assert sniff_image(data, max_pixels=10_000).width == 100
    with pytest.raises(MediaError):
        sniff_image(data, max_pixels=9_999)
    assert MAX_PIXELS == 40_000_000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def fully_decoded(data: bytes) -> tuple[str, int, int] | None:
    """Pillow's own verdict, independent of sniff_image: format and size if the whole image decodes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return str(image.format), image.width, image.height
    except Exception:  # any failure means "not a usable image"
        return None


_SAMPLES = [encode(Image.effect_noise((16, 12), 40).convert("RGB"), fmt) for fmt in ("PNG", "JPEG", "WEBP")]
_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_truncated_samples = st.sampled_from(_SAMPLES).flatmap(lambda d: st.integers(0, len(d)).map(lambda n: d[:n]))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), _truncated_samples))
@example(_SAMPLES[0])
@example(_SAMPLES[1])
@example(_SAMPLES[2])
def test_sniff_accepts_exactly_the_bytes_that_decode_whole(data: bytes) -> None:
    """Arbitrary bytes and every prefix of a real PNG, JPEG and WebP: accepted if and only if Pillow
    decodes the whole image, and then described as Pillow sees it; refused with MediaError otherwise."""
    expected = fully_decoded(data)
    try:
        info = sniff_image(data)
    except MediaError as err:
        assert expected is None, f"a whole {expected} image was refused: {err.detail}"
        assert err.user_message
        return
    assert expected is not None, f"accepted bytes Pillow cannot decode: {info}"
    assert (info.format, info.width, info.height) == expected
    assert info.content_type == _CONTENT_TYPES[info.format]


_VALID_PNG = encode(Image.effect_noise((24, 24), 50).convert("RGB"), "PNG")
_IHDR_END = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=8, max_value=len(_VALID_PNG) - 1), st.integers(min_value=0, max_value=255))
def test_sniff_of_a_damaged_png_accepts_only_what_still_decodes(position: int, value: int) -> None:
    data = bytearray(_VALID_PNG)
    data[position] = value
    expected = fully_decoded(bytes(data))
    try:
        info = sniff_image(bytes(data))
    except MediaError:
        assert expected is None, "a PNG that still decodes was refused"
        return
    # Damage to the header is always caught (its CRC); elsewhere a file that still decodes is fine.
    assert position >= _IHDR_END or bytes(data) == _VALID_PNG
    assert expected == ("PNG", 24, 24)
    assert info == ImageInfo("PNG", 24, 24, "image/png")


# --- declared metadata ---------------------------------------------------------------------------


def test_check_declared_refuses_oversize_naming_the_limit() -> None:
    with pytest.raises(MediaError) as err:
        check_declared(12 * 1024 * 1024, "image/png", "big.png", max_bytes=10 * 1024 * 1024)
    assert err.value.user_message == "That image is 12 MB; the limit is 10 MB."
    assert "big.png" in err.value.detail


def test_check_declared_refuses_non_image_types_without_echoing_the_filename() -> None:
    with pytest.raises(MediaError) as err:
        check_declared(1000, "application/pdf", "@everyone.pdf", max_bytes=10_000)
    assert "not an image" in err.value.user_message
    assert "@everyone" not in err.value.user_message


@pytest.mark.parametrize("content_type", ["image/png", "IMAGE/JPEG", None, ""])
def test_check_declared_accepts_images_and_unknown_types(content_type: str | None) -> None:
    check_declared(10_000, content_type, None, max_bytes=10_000)


# --- fitting -------------------------------------------------------------------------------------


def halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (width, height), right)
    image.paste(left, (0, 0, width // 2, height))
    return image


@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (1024, 1792), (1792, 1024)])
@pytest.mark.parametrize("mode", ["crop", "letterbox"])
def test_fit_gives_exactly_the_requested_size(size: tuple[int, int], mode: str) -> None:
    data = encode(halves(400, 300, RED, BLUE), "JPEG")
    fitted = open_png(fit_image(data, *size, mode=mode))  # type: ignore[arg-type]
    assert fitted.size == size
    assert fitted.mode == "RGB"


def test_crop_fills_the_frame_around_the_centre() -> None:
    # A very wide picture into a portrait frame: only the middle survives, split down the centre.
    fitted = open_png(fit_image(encode(halves(1000, 200, RED, BLUE), "PNG"), 720, 1280, mode="crop"))
    assert close(fitted.getpixel((100, 640)), RED)
    assert close(fitted.getpixel((620, 640)), BLUE)
    assert close(fitted.getpixel((100, 5)), RED)  # no bars


def test_letterbox_keeps_everything_and_pads_with_black() -> None:
    fitted = open_png(fit_image(encode(Image.new("RGB", (300, 400), GREEN), "PNG"), 1280, 720, mode="letterbox"))
    assert fitted.getpixel((5, 360)) == (0, 0, 0)
    assert fitted.getpixel((1274, 360)) == (0, 0, 0)
    assert close(fitted.getpixel((640, 5)), GREEN)
    assert close(fitted.getpixel((640, 715)), GREEN)


def test_exif_orientation_is_applied() -> None:
    # Stored landscape with a red band on the left; orientation 6 means "turn 90° clockwise to view",
    # so the viewer sees a portrait picture whose red band is at the top.
    stored = Image.new("RGB", (200, 100), GREEN)
    stored.paste(RED, (0, 0, 50, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    fitted = open_png(fit_image(data, 720, 1280))
    assert close(fitted.getpixel((360, 100)), RED)
    assert close(fitted.getpixel((360, 1000)), GREEN)
    assert close(fitted.getpixel((20, 640)), GREEN)


def test_exif_and_gps_are_stripped() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCamMaker"  # Make
    exif[0x0112] = 1
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPSLatitude
    data = encode(Image.new("RGB", (64, 64), BLUE), "JPEG", exif=exif.tobytes())
    assert b"SecretCamMaker" in data
    out = fit_image(data, 1280, 720)
    assert b"SecretCamMaker" not in out
    assert b"Exif" not in out and b"eXIf" not in out
    fitted = open_png(out)
    assert "exif" not in fitted.info
    assert len(fitted.getexif()) == 0


def test_cmyk_jpeg_is_converted_not_refused() -> None:
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG")
    assert sniff_image(data).format == "JPEG"
    fitted = open_png(fit_image(data, 1280, 720))
    assert fitted.mode == "RGB"
    assert close(fitted.getpixel((640, 360)), (255, 0, 0), tol=30)


def test_transparency_is_flattened_over_white() -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((30, 60, 220, 255), (25, 25, 75, 75))
    fitted = open_png(fit_image(encode(image, "PNG"), 1280, 720, mode="letterbox"))
    assert fitted.getpixel((640, 40)) == (255, 255, 255)  # transparent corner area of the picture
    assert close(fitted.getpixel((640, 360)), BLUE)


@pytest.mark.parametrize("mode", ["P", "LA", "L", "1"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = Image.new("RGB", (40, 40), (200, 200, 200)).convert(mode)
    if mode == "P":
        image.info["transparency"] = 0
    fitted = open_png(fit_image(encode(image, "PNG"), 1280, 720))
    assert fitted.mode == "RGB"


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    data = encode(Image.new("I;16", (32, 32), 40_000), "PNG")
    fitted = open_png(fit_image(data, 1280, 720))
    grey = fitted.getpixel((640, 360))
    assert close(grey, (156, 156, 156), tol=3)


def test_fit_refuses_what_sniff_refuses() -> None:
    with pytest.raises(MediaError):
        fit_image(b"not an image", 1280, 720)


def test_prepare_reference_makes_a_png_of_the_request_size() -> None:
    ref = prepare_reference(encode(Image.new("RGB", (640, 640), RED), "WEBP"), "720x1280")
    assert ref.content_type == "image/png"
    assert ref.url is None
    assert ref.filename == "reference.png"
    assert open_png(ref.data).size == (720, 1280)
