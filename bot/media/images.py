"""Reference images: identify them by their bytes, refuse what a provider cannot take, fit them to a size.

Everything here is pure and synchronous (CPU work); callers in the event loop go through
:class:`bot.media.gate.ImageGate`, which runs it in a thread, a bounded number at a time and one per member.
Memory stays bounded too: a JPEG is decoded at a reduced scale (``draft``) and any image is reduced
(box filter) towards the target size before the colour work, so only the decode itself is full size.

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

import io
import logging
import math
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

_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"})
_BAND_ROWS = 64
# EXIF orientations that swap width and height.
_SIDEWAYS = frozenset({5, 6, 7, 8})

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
    image = _open_checked(data, max_pixels, target=(width, height, mode))
    try:
        reduced = _reduce(image, width, height, mode)
        if reduced is None:
            rgb = _to_rgb(_upright(image))
    finally:
        image.close()  # frees the full-size pixels now (leaving a ``with`` block only closes the file)
    if reduced is not None:
        rgb = _to_rgb(_upright(reduced))
        reduced.close()
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


# --- internals ---------------------------------------------------------------------------------


def _needed_size(image: Image.Image, target: tuple[int, int, FitMode]) -> tuple[int, int]:
    """The smallest stored size (width, height) from which ``target`` can still be made at full quality,
    whichever way the EXIF orientation turns the picture."""
    width, height, mode = target
    stored_w, stored_h = image.size
    needed = []
    for w, h in ((stored_w, stored_h), (stored_h, stored_w)):
        scale = max(width / w, height / h) if mode == "crop" else min(width / w, height / h)
        needed.append((math.ceil(w * scale), math.ceil(h * scale)))
    (w1, h1), (h2, w2) = needed  # the second pair is in turned coordinates: turn it back
    return max(w1, w2, 1), max(h1, h2, 1)


def _reduce(image: Image.Image, width: int, height: int, mode: FitMode) -> Image.Image | None:
    """A box-reduced copy of ``image``, still at least the needed size; None when it is not worth it.

    Band by band, so that no second full-size buffer exists: Pillow would reduce RGBA through a
    premultiplied full-size copy, and a palette image must become colours first (averaging palette
    indices makes noise). Bands are a multiple of ``factor`` rows high, so the blocks line up."""
    need_w, need_h = _needed_size(image, (width, height, mode))
    factor = int(min(image.width / need_w, image.height / need_h))
    band_mode = ("RGBA" if "transparency" in image.info else "RGB") if image.mode == "P" else image.mode
    if factor < 2 or band_mode not in _REDUCIBLE_MODES:
        return None
    rows = factor * max(1, _BAND_ROWS // factor)
    reduced = Image.new(band_mode, (-(-image.width // factor), -(-image.height // factor)))
    for top in range(0, image.height, rows):
        with image.crop((0, top, image.width, min(image.height, top + rows))) as band:
            colours = band.convert(band_mode) if band.mode != band_mode else band
            reduced.paste(colours.reduce(factor), (0, top // factor))
    reduced.info = {k: v for k, v in image.info.items() if k != "transparency"}  # ICC profile, EXIF
    return reduced


def _open_checked(data: bytes, max_pixels: int, *, target: tuple[int, int, FitMode] | None = None) -> Image.Image:
    """Open, check format/animation/pixel count from the header, then decode. The caller closes it.

    With a ``target``, a JPEG is decoded at the smallest DCT scale that still covers it."""
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
        frames = int(getattr(image, "n_frames", 1))
        if fmt != "JPEG" and frames > 1:
            raise MediaError(
                "Animated images cannot be used as a reference; please send a still PNG, JPEG or WebP.",
                f"animated {fmt} with {frames} frames",
            )
        if target is not None and fmt == "JPEG":
            image.draft(None, _needed_size(image, target))
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
