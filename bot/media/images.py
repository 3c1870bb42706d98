"""Reference images: identify them by their bytes, refuse what a provider cannot take, fit them to a size.

Everything here is pure and synchronous (CPU work); callers in the event loop use the ``*_async``
wrappers, which run the work in a thread.

Choices a user may notice:

* Only static PNG, JPEG and WebP are accepted. Animated images are refused: a provider takes one frame
  and picking one for the user would be a surprise.
* CMYK (print) JPEGs and other colour modes are converted to RGB rather than refused.
* Transparent areas are flattened over **white**: most transparent images are logos or stickers drawn
  for light backgrounds, and dark artwork would vanish over black.
* The fitted image is a fresh PNG with no metadata: EXIF (GPS position, camera serial...) never
  reaches a provider.
"""

from __future__ import annotations

import asyncio
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from bot.errors import MediaError
from bot.providers.base import ReferenceImage, parse_size

log = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000
"""Largest width*height we decode (a 40 MP photo is ~120 MB of RGB in memory)."""

FitMode = Literal["crop", "letterbox"]

_NOT_AN_IMAGE = "That attachment is not an image (PNG, JPEG or WebP)."
_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# MPO is the multi-picture JPEG some cameras write (a JPEG plus a preview/depth image): use its first picture.
_FORMAT_ALIASES = {"MPO": "JPEG"}
_BACKGROUND = (255, 255, 255)
_LETTERBOX = (0, 0, 0)
# Magic numbers of image formats people commonly send that we do not take, for a precise refusal.
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)

# A DecompressionBombWarning must stop the decode, not merely print. Pillow only warns above its own
# limit (~89 MP), which our MAX_PIXELS check already refuses first; this is belt and braces for callers
# that raise max_pixels. The filter is scoped to that one warning class, so nothing else changes.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    content_type: str


def check_declared(size_bytes: int, content_type: str | None, filename: str | None, *, max_bytes: int) -> None:
    """Refuse an attachment from its metadata alone, before downloading it.

    ``filename`` only goes to the log detail: it is user-controlled text, never echoed to users.
    """
    if size_bytes > max_bytes:
        raise MediaError(
            f"That image is {_mb(size_bytes)} MB; the limit is {_mb(max_bytes)} MB.",
            f"attachment {filename!r} declares {size_bytes} bytes > {max_bytes}",
        )
    if content_type and not content_type.lower().startswith("image/"):
        raise MediaError(_NOT_AN_IMAGE, f"attachment {filename!r} declares content type {content_type!r}")


def sniff_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Identify an image by its bytes and check it can be used; MediaError with a user sentence if not.

    The whole image is decoded (that is the only way to find a truncated file), but only after the
    header's pixel count passed ``max_pixels``.
    """
    with _open_checked(data, max_pixels) as image:
        fmt = _FORMAT_ALIASES.get(image.format or "", image.format or "")
        return ImageInfo(fmt, image.width, image.height, _CONTENT_TYPES[fmt])


def fit_image(data: bytes, width: int, height: int, *, mode: FitMode = "crop", max_pixels: int = MAX_PIXELS) -> bytes:
    """Validate ``data`` and return PNG bytes of exactly ``width`` x ``height`` RGB, without metadata.

    ``crop`` fills the frame and cuts the overflow around the centre; ``letterbox`` keeps the whole
    picture and pads with black bars.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"bad target size {width}x{height}")
    with _open_checked(data, max_pixels) as image:
        rgb = _to_rgb(_upright(image))
    if mode == "crop":
        fitted = ImageOps.fit(rgb, (width, height), method=Image.Resampling.LANCZOS)
    elif mode == "letterbox":
        fitted = ImageOps.pad(rgb, (width, height), method=Image.Resampling.LANCZOS, color=_LETTERBOX)
    else:
        raise ValueError(f"unknown fit mode {mode!r}")
    # A fresh image: nothing of the source's info (EXIF, ICC, text chunks) can ride along.
    clean = Image.new("RGB", fitted.size)
    clean.paste(fitted)
    out = io.BytesIO()
    # Low compression: the PNG is uploaded once, speed matters more than a few hundred KB.
    clean.save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()


def prepare_reference(data: bytes, size: str, *, mode: FitMode = "crop") -> ReferenceImage:
    """A user's picture -> the reference frame for a request of ``size`` (e.g. ``"1280x720"``)."""
    width, height = parse_size(size)
    return ReferenceImage(data=fit_image(data, width, height, mode=mode), content_type="image/png", url=None)


async def sniff_image_async(data: bytes, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    return await asyncio.to_thread(sniff_image, data, max_pixels=max_pixels)


async def prepare_reference_async(data: bytes, size: str, *, mode: FitMode = "crop") -> ReferenceImage:
    return await asyncio.to_thread(prepare_reference, data, size, mode=mode)


# --- internals ---------------------------------------------------------------------------------


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open, check format/animation/pixel count from the header, then decode. The caller closes it."""
    _check_magic(data)
    try:
        image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(_NOT_AN_IMAGE, f"unidentified image: {exc}") from exc
    try:
        fmt = _FORMAT_ALIASES.get(image.format or "", image.format or "")
        if fmt not in _CONTENT_TYPES:
            raise MediaError(_NOT_AN_IMAGE, f"unexpected format {image.format!r}")
        if image.width <= 0 or image.height <= 0:
            raise MediaError(_NOT_AN_IMAGE, f"empty image {image.size}")
        if image.width * image.height > max_pixels:
            raise _too_many_pixels(f"{image.width}x{image.height} > {max_pixels} pixels", max_pixels)
        if fmt != "JPEG" and getattr(image, "n_frames", 1) > 1:
            raise MediaError(
                "Animated images cannot be used as a reference; please send a still PNG, JPEG or WebP.",
                f"animated {fmt} with {image.n_frames} frames",
            )
        image.load()  # the real decode: finds truncated and corrupt files
    except MediaError:
        image.close()
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        image.close()
        raise _too_many_pixels(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        image.close()
        raise MediaError(
            "That image is damaged or incomplete and cannot be read; please send it again.", f"decode failed: {exc}"
        ) from exc
    return image


def _check_magic(data: bytes) -> None:
    head = data[:16]
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            raise MediaError(
                f"{name} images are not supported; please send a PNG, JPEG or WebP.", f"{name} magic number"
            )
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"):
        raise MediaError(
            "HEIC/AVIF images are not supported; please send a PNG, JPEG or WebP.", f"ISO-BMFF brand {head[8:12]!r}"
        )
    is_png = head.startswith(b"\x89PNG\r\n\x1a\n")
    is_jpeg = head.startswith(b"\xff\xd8\xff")
    is_webp = head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    if not (is_png or is_jpeg or is_webp):
        raise MediaError(_NOT_AN_IMAGE, f"unknown magic number {head[:8]!r}")


def _too_many_pixels(detail: str, max_pixels: int = MAX_PIXELS) -> MediaError:
    megapixels = max(1, round(max_pixels / 1_000_000))
    return MediaError(
        f"That image has too many pixels (the limit is about {megapixels} megapixels); please send a smaller one.",
        f"decompression bomb guard: {detail}",
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store portraits sideways plus a tag). Always returns a copy."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # malformed EXIF is common in the wild: keep the picture as stored
        log.debug("ignoring unreadable EXIF orientation: %s", exc)
        return image.copy()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB: colour-managed to sRGB when the file carries a profile, transparency over white."""
    image = _to_srgb(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        return image.convert("I").point(lambda value: value / 256).convert("L").convert("RGB")
    if mode == "F":
        return image.convert("L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise MediaError(
            "That image uses a colour format that cannot be converted; please send an ordinary RGB picture.",
            f"cannot convert mode {mode}: {exc}",
        ) from exc


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (phone photos are often Display P3, print JPEGs CMYK) when possible."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        # A broken profile is common and harmless: fall back to a plain conversion.
        log.debug("ignoring unusable ICC profile: %s", exc)
        return image
    return converted if converted is not None else image


def _mb(size: int) -> str:
    return f"{size / 1_048_576:.1f}".removesuffix(".0")
